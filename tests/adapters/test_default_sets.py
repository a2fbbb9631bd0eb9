"""Default APS / RAPS sets are informative on well-trained models and never empty (issue 17, group 2).

On a scikit-learn MLP on real digits (98 % accurate) the non-randomized (TorchCP-identical) APS mode gives sets of
~4 labels and ~4.5 % empty sets; the default (randomized, allow_empty=False, Romano et al. 2020; Angelopoulos et
al. 2021) gives sets close to LAC's size, none empty, with coverage >= 1 - alpha over random splits; fitting the
old mode warns with the numbers. Repetitions: 30 random calibration/test splits; tolerance 3 standard errors.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from conformal import DualThresholdConformal, SplitConformalClassifier

ALPHA = 0.05
N_SPLITS = 30


@pytest.fixture(scope="module")
def digits_mlp():
    """Held-out probabilities of an MLP trained on 900 real digits (scikit-learn load_digits)."""
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(y))
    model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=600, random_state=0).fit(x[idx[:900]] / 16.0,
                                                                                      y[idx[:900]])
    held = idx[900:]
    return model.predict_proba(x[held] / 16.0), y[held]


def _splits(probs, labels, seed=0):
    rng = np.random.default_rng(seed)
    for r in range(N_SPLITS):
        perm = rng.permutation(len(labels))
        yield r, perm[:450], perm[450:]


@pytest.mark.parametrize("score", ["aps", "raps"])
def test_default_sets_are_informative_never_empty_and_cover(digits_mlp, score):
    probs, labels = digits_mlp
    cov, size, empty, lac_size = [], [], [], []
    for r, cal, test in _splits(probs, labels):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the default mode fits without a degeneracy warning
            cp = SplitConformalClassifier(score=score, alpha=ALPHA, random_state=r).fit(probs[cal], labels[cal])
        s = cp.predict_sets(probs[test])
        cov.append(s[np.arange(len(test)), labels[test]].mean())
        size.append(s.sum(1).mean())
        empty.append((s.sum(1) == 0).mean())
        lac = SplitConformalClassifier(score="lac", alpha=ALPHA).fit(probs[cal], labels[cal]).predict_sets(probs[test])
        lac_size.append(lac.sum(1).mean())
    cov = np.array(cov)
    assert cp.randomized_ and not cp.allow_empty_
    assert max(empty) == 0.0
    assert cov.mean() >= 1 - ALPHA - 3 * cov.std(ddof=1) / np.sqrt(N_SPLITS)
    assert np.mean(size) <= np.mean(lac_size) + 0.35, (np.mean(size), np.mean(lac_size))  # measured 1.13 vs 0.98
    assert np.mean(size) < 1.5


def test_the_torchcp_mode_is_kept_by_name_and_warns_with_numbers(digits_mlp):
    probs, labels = digits_mlp
    with pytest.warns(UserWarning, match=r"degenerate calibration: non-randomized APS sets at qhat = [0-9.]+ are "
                                         r"empty for [0-9.]+% of the calibration inputs"):
        cp = SplitConformalClassifier(score="aps", alpha=ALPHA, randomized=False, allow_empty=True).fit(
            probs[:450], labels[:450])
    s = cp.predict_sets(probs[450:])
    assert (s.sum(1) == 0).mean() > 0.01 and s.sum(1).mean() > 2.5  # the degenerate behaviour, still available


def test_dual_threshold_supports_randomized_sets(digits_mlp):
    probs, labels = digits_mlp
    kw = dict(score="raps", alpha=ALPHA, rule="budget", rule_params={"max_abstain": 0.1}, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old = DualThresholdConformal(randomized=False, allow_empty=True, **kw).fit(probs[:700], labels[:700])
    new = DualThresholdConformal(**kw).fit(probs[:700], labels[:700])
    assert new.calibrator_.randomized_ and not old.calibrator_.randomized_
    d_new, d_old = new.predict(probs[700:]), old.predict(probs[700:])
    assert d_new.sets.sum(1).min() >= 1 and (d_old.sets.sum(1) == 0).any()
    assert d_new.sets.sum(1).mean() < 0.5 * d_old.sets.sum(1).mean()
    np.testing.assert_array_equal(new.predict(probs[700:]).sets, d_new.sets)  # seeded: reproducible
    back = DualThresholdConformal.from_dict(new.to_dict())
    np.testing.assert_array_equal(back.predict(probs[700:]).sets, d_new.sets)


def test_temperature_fitting_cannot_sharpen_into_saturation_silently():
    torch = pytest.importorskip("torch")
    from adapters._base import TorchAdapter

    class ArrayAdapter(TorchAdapter):
        """The inputs are the logits (a stand-in model: torch.nn.Identity)."""

        def _check_inputs(self, x):
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            return t.shape[0], lambda lo, hi: t[lo:hi]

    rng = np.random.default_rng(0)
    z = 0.5 * rng.normal(size=(400, 10))
    easy = z.argmax(1)  # every label is the top logit: NLL keeps falling as T -> 0
    with pytest.warns(UserWarning, match=r"sharpened the model into saturation: T = [0-9.e-]+ gives [0-9.]+% of "
                                         r"the 400 fit inputs"):
        ArrayAdapter(torch.nn.Identity(), num_classes=10).fit_temperature(z, easy)
    noisy = np.array([rng.choice(10, p=np.exp(r) / np.exp(r).sum()) for r in z])  # calibrated at T = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = ArrayAdapter(torch.nn.Identity(), num_classes=10).fit_temperature(z, noisy)
    assert 0.5 < a.temperature_ < 2.0
