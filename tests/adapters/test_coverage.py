"""End-to-end coverage with the reference CNNs on real held-out images, over 200 random calibration/test splits."""
import numpy as np
import pytest

pytest.importorskip("torch")

from conformal import DualThresholdConformal, SplitConformalClassifier  # noqa: E402

N_SPLITS = 200
ALPHA = 0.1


def _check_coverage(probs, labels, score, n_cal, seed):
    rng = np.random.default_rng(seed)
    covs = []
    for _ in range(N_SPLITS):
        perm = rng.permutation(len(labels))
        cal, test = perm[:n_cal], perm[n_cal:]
        # the two-sided exact bound is the non-randomized TorchCP mode's (tests/adapters/test_default_sets.py: defaults)
        c = SplitConformalClassifier(score=score, alpha=ALPHA, randomized=False, allow_empty=True).fit(probs[cal],
                                                                                                  labels[cal])
        sets = c.predict_sets(probs[test])
        covs.append(sets[np.arange(len(test)), labels[test]].mean())
    covs = np.array(covs)
    se = covs.std(ddof=1) / np.sqrt(N_SPLITS)
    lo, hi = 1 - ALPHA - 3 * se, 1 - ALPHA + 1 / (n_cal + 1) + 3 * se
    assert lo <= covs.mean() <= hi, (covs.mean(), lo, hi)


@pytest.mark.parametrize("score", ["lac", "aps", "raps"])
def test_fashion_mnist_coverage_over_random_splits(fashion_logits, score):
    from adapters._base import softmax

    logits, labels, _ = fashion_logits
    _check_coverage(softmax(logits), labels, score, n_cal=1000, seed=11)


def test_digits_coverage_over_random_splits(digits_heldout):
    probs, labels = digits_heldout
    _check_coverage(probs, labels, "aps", n_cal=449, seed=12)


def test_conformal_model_one_call(fashion_logits):
    from adapters import ConformalModel, reference

    _, labels, images = fashion_logits
    cm = ConformalModel(adapter=reference.load("fashion_cnn", progress=False),
                        conformal=DualThresholdConformal(score="raps", alpha=ALPHA, rule="budget",
                                                         rule_params={"max_abstain": 0.2}, random_state=0),
                        temperature_fraction=0.2)
    cm.fit(images[:1000], labels[:1000])
    assert cm.n_temperature_ == 200 and cm.n_calibration_ == 800
    d = cm.predict(images[1000:])
    assert d.sets.shape == (1000, 10) and d.abstain.dtype == bool
    cov = d.sets[np.arange(1000), labels[1000:]].mean()
    assert cov >= 0.86  # 1 - alpha minus ~3 binomial SEs for one split
    assert 0.0 < d.abstain.mean() < 0.4
    sc = SplitConformalClassifier(score="aps", alpha=ALPHA)
    sets = ConformalModel(adapter=reference.load("fashion_cnn", progress=False), conformal=sc).fit(images[:500],
                                                                                                   labels[:500]) \
        .predict(images[500:600])
    assert sets.shape == (100, 10) and sets.dtype == bool
    with pytest.raises(ValueError, match="not fitted"):
        ConformalModel(adapter=reference.load("fashion_cnn"), conformal=SplitConformalClassifier()).predict(images[:2])
