"""Same definitions, same sets: our non-randomized sets against TorchCP 1.2.1 and MAPIE 1.6 on identical inputs.

Inputs are float64 and untied (continuous random logits), where both libraries define the same sets. TorchCP
and MAPIE are dev-only dependencies that `make test` installs; see tests/_peers.py for how TorchCP is imported.
"""
import warnings

import numpy as np
import pytest

from conformal import SplitConformalClassifier
from tests._peers import IdentityProbaModel, load_torchcp

torch = pytest.importorskip("torch")


def _logits(n, k, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * rng.uniform(0.5, 4.0, size=(n, 1))
    labels = np.array([rng.choice(k, p=np.exp(r) / np.exp(r).sum()) for r in z])
    return z, labels


@pytest.mark.parametrize("name,make", [
    ("lac", lambda s: s.LAC()),
    ("aps", lambda s: s.APS(randomized=False)),
    # TorchCP computes the RAPS penalty in float32 (torch.arange * float); lam = 2**-6 makes that exact, so the
    # comparison tests the definition rather than float32 rounding (with lam = 0.01 qhat differs by ~1e-9).
    ("raps", lambda s: s.RAPS(randomized=False, penalty=2**-6, kreg=5)),
    ("topk", lambda s: s.TOPK(randomized=False)),
])
@pytest.mark.parametrize("k", [10, 100])
def test_sets_identical_to_torchcp(name, make, k):
    tcp = load_torchcp()
    assert tcp is not None, "torchcp is a dev dependency; `make test` installs it"
    z, labels = _logits(3000, k, seed=k)
    zt = torch.from_numpy(z)  # float64
    probs = torch.softmax(zt, dim=-1).numpy()  # the exact probabilities TorchCP computes internally
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        predictor = tcp.SplitPredictor(score_function=make(tcp.score), model=None, alpha=0.1)
    predictor.calculate_threshold(zt[:1001], torch.from_numpy(labels[:1001]), 0.1)
    theirs = predictor.predict_with_logits(zt[1001:]).numpy().astype(bool)
    params = {"lam": 2**-6, "k_reg": 5} if name == "raps" else {}
    ours = SplitConformalClassifier(score=name, alpha=0.1, score_params=params, randomized=False,  # TorchCP mode
                                    allow_empty=True).fit(probs[:1001], labels[:1001])
    assert ours.qhat_ == pytest.approx(float(predictor.q_hat), abs=1e-12)
    np.testing.assert_array_equal(ours.predict_sets(probs[1001:]), theirs)


def test_lac_sets_identical_to_mapie():
    mapie = pytest.importorskip("mapie.classification")
    z, labels = _logits(4000, 12, seed=5)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    m = mapie.SplitConformalClassifier(IdentityProbaModel(12), confidence_level=0.9, conformity_score="lac",
                                       prefit=True)
    m.conformalize(p[:1500], labels[:1500])
    _, theirs = m.predict_set(p[1500:])
    ours = SplitConformalClassifier(score="lac", alpha=0.1).fit(p[:1500], labels[:1500]).predict_sets(p[1500:])
    assert (ours != theirs[:, :, 0]).mean() == 0.0
