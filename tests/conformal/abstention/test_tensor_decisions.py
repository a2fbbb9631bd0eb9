"""DualThresholdConformal.predict on torch tensors: sets, statistic, abstain flags and top-1 labels as tensors on the
input's device, equal to the NumPy path's bit for bit on CPU tensors, on both paths a tensor can take: the host
kernels through a shared view (a CPU tensor's, by default) and the tensor ops of conformal/abstention/_tensor.py (a
CUDA tensor's; forced on CPU tensors by the `path` fixture)."""
import warnings

import numpy as np
import pytest

from conformal import DualThresholdConformal
from conformal import _tensor as _ts
from conformal.abstention import KNNDistance
from conformal.abstention.decisions import Decisions

torch = pytest.importorskip("torch")

STATISTICS = ["entropy", "max_prob", "margin", "set_size", "credibility", "top1_score"]
FIELDS = ("sets", "abstain", "prediction", "statistic")


@pytest.fixture(params=["host", "device"])
def path(request, monkeypatch):
    """Run a test on both paths of a CPU tensor: the host kernels (default) and the device path (forced)."""
    monkeypatch.setattr(_ts, "_device_path_on_cpu", request.param == "device")
    return request.param


def _probs(k, n, dtype, seed, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    if ties:  # few distinct weights: tied tops (margin 1, argmax on ties) and tied entropies
        w = rng.integers(0, 3, size=(n, k)).astype(np.float64)
        w[np.arange(n), y] += 1.0
    else:
        w = rng.gamma(0.3, size=(n, k)) + 1e-12
        w[np.arange(n), y] += 0.5 * w.sum(axis=1)
    return (w / w.sum(axis=1, keepdims=True)).astype(dtype), y


def _fit(p, y, features=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # top1_score/credibility with rank scores, one-class folds
        return DualThresholdConformal(alpha=0.1, random_state=0, **kw).fit(p, y, features=features)


def _assert_same(a, b, msg):
    assert isinstance(a, Decisions) and torch.is_tensor(a.sets)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f).numpy(), getattr(b, f), err_msg=f"{f}: {msg}")
        assert getattr(a, f).numpy().dtype == getattr(b, f).dtype, f


@pytest.mark.parametrize("statistic", STATISTICS)
def test_tensor_decisions_equal_numpy_decisions(statistic, path):
    for k in (2, 5, 8, 37):  # K < 4, K % 4 != 0 and == 0: every branch of the entropy's four lanes
        for dtype in (np.float32, np.float64):
            for ties in (False, True):
                p, y = _probs(k, 1200, dtype, seed=k, ties=ties)
                for score, rule, rp in (("aps", "youden", None), ("lac", "budget", {"max_abstain": 0.2}),
                                        ("raps", "fpr", {"max_fpr": 0.2}),
                                        ("lac", "accept_coverage", {"tau_rule": "budget", "max_abstain": 0.2})):
                    d = _fit(p[:600], y[:600], score=score, statistic=statistic, rule=rule, rule_params=rp)
                    msg = f"{statistic} K={k} {dtype.__name__} ties={ties} {score}"
                    _assert_same(d.predict(torch.from_numpy(p[600:])), d.predict(p[600:]), msg)
                    np.testing.assert_array_equal(d.statistic_of(torch.from_numpy(p[600:])).numpy(),
                                                  d.statistic_of(p[600:]), err_msg=msg)


def test_abstain_flags_follow_tau_on_the_tensor(path):
    """The rule itself on the device: abstain iff statistic > tau, at tau = an observed statistic (a tie)."""
    p, y = _probs(10, 2000, np.float32, seed=1)
    d = _fit(p[:1000], y[:1000], score="aps", statistic="entropy", rule="budget", rule_params={"max_abstain": 0.3})
    out = d.predict(torch.from_numpy(p[1000:]))
    np.testing.assert_array_equal(out.abstain.numpy(), out.statistic.numpy() > d.tau_)
    assert 0.1 < out.abstention_rate < 0.5
    d.tau_ = float(out.statistic[7])  # a threshold tied with one test statistic: that one is accepted
    again = d.predict(torch.from_numpy(p[1000:]))
    assert not bool(again.abstain[7])
    np.testing.assert_array_equal(again.abstain.numpy(), d.predict(p[1000:]).abstain)


def test_entropy_twin_matches_the_kernel_bit_for_bit():
    from conformal._kernels import statistics as _ks
    rng = np.random.default_rng(2)
    for k in (2, 3, 4, 7, 64, 1001):
        p = rng.dirichlet(np.full(k, 0.2), size=300)
        p[::7, 0] = 0.0  # exact zeros: 0 log 0 = 0 in both
        p[::7] /= p[::7].sum(axis=1, keepdims=True)
        np.testing.assert_array_equal(_ts.entropy(torch.from_numpy(p)).numpy(), _ks.entropy(p))
        np.testing.assert_array_equal(_ts.margin(torch.from_numpy(p)).numpy(), _ks.margin(p))
        np.testing.assert_array_equal(_ts.max_prob(torch.from_numpy(p)).numpy(), _ks.max_prob(p))


def test_union_and_fitted_statistics_on_tensors(path):
    """A tuple (entropy, knn): the softmax column on the device, the kNN distances from host features."""
    p, y = _probs(6, 1600, np.float32, seed=3)
    feats = np.random.default_rng(3).normal(size=(1600, 8)).astype(np.float32)
    for statistic, rule in ((("entropy", KNNDistance(k=5, backend="exact")), "budget"),
                            (KNNDistance(k=5, backend="exact"), "youden")):
        d = _fit(p[:800], y[:800], score="aps", statistic=statistic, rule=rule, features=feats[:800])
        a = d.predict(torch.from_numpy(p[800:]), features=feats[800:])
        b = d.predict(p[800:], features=feats[800:])
        _assert_same(a, b, str(statistic))
        if b.reasons is not None:
            np.testing.assert_array_equal(a.reasons.numpy(), b.reasons)
            np.testing.assert_array_equal(a.statistics.numpy(), b.statistics)
            assert a.reason_names == b.reason_names
        # features given as a tensor too: read on the host, same values
        c = d.predict(torch.from_numpy(p[800:]), features=torch.from_numpy(feats[800:]))
        np.testing.assert_array_equal(c.abstain.numpy(), b.abstain)


def test_callable_statistic_reads_the_host_view(path):
    p, y = _probs(5, 1000, np.float64, seed=4)

    def one_minus_top(probs):
        assert isinstance(probs, np.ndarray)  # written for arrays, called with arrays
        return 1.0 - probs.max(axis=1)

    d = _fit(p[:500], y[:500], score="lac", statistic=one_minus_top)
    _assert_same(d.predict(torch.from_numpy(p[500:])), d.predict(p[500:]), "callable")


def test_tensor_decisions_keep_device_and_convert_to_host(path):
    p, y = _probs(4, 600, np.float32, seed=5)
    d = _fit(p[:300], y[:300], score="aps", statistic="margin")
    t = torch.from_numpy(p[300:])
    out = d.predict(t)
    assert {getattr(out, f).device.type for f in FIELDS} == {"cpu"}
    assert (out.sets.dtype, out.abstain.dtype, out.prediction.dtype, out.statistic.dtype) == \
        (torch.bool, torch.bool, torch.int64, torch.float64)
    host, ref = out.to_host(), d.predict(p[300:])
    assert isinstance(host.sets, np.ndarray)
    assert out.to_dicts(probs=t) == ref.to_dicts(probs=p[300:])
    assert Decisions.from_dict(out.to_dict()).to_dicts() == ref.to_dicts()
    assert out.abstention_rate == ref.abstention_rate


def test_bad_tensors_name_the_argument(path):
    p, y = _probs(5, 400, np.float32, seed=6)
    d = _fit(p[:200], y[:200], score="aps", statistic="entropy")
    t = torch.from_numpy(p[200:].copy())
    with pytest.raises(TypeError, match="`probs` must be a float32 or float64 tensor"):
        d.predict(t.half())
    with pytest.raises(ValueError, match="`probs` must be 2-D"):
        d.predict(t[0])
    with pytest.raises(ValueError, match="`probs` has 4 classes but the calibrator was fitted with 5"):
        d.predict(t[:, :4])
    b = t.clone()
    b[3, 2] = float("nan")
    with pytest.raises(ValueError, match="`probs` must be finite; row 3"):
        d.predict(b)
    with pytest.raises(TypeError, match="`abstain` must be a torch.bool tensor"):
        out = d.predict(t)
        Decisions(sets=out.sets, abstain=out.statistic, prediction=out.prediction, statistic=out.statistic)


def test_cpu_tensors_take_the_host_kernels_unless_forced(monkeypatch):
    """By default a CPU tensor's decisions are the NumPy path's arrays shared back as tensors (the device
    statistics are never called, and the arrays are not frozen: tensors have no read-only flag); the private switch
    sends it down the device path."""
    from conformal.abstention import _tensor as _tstat
    calls = []
    fn = _tstat.statistic
    monkeypatch.setattr(_tstat, "statistic", lambda *a: calls.append(1) or fn(*a))
    p, y = _probs(6, 800, np.float32, seed=8)
    d = _fit(p[:400], y[:400], score="aps", statistic="entropy")
    t = torch.from_numpy(p[400:])
    got = d.predict(t)
    assert calls == [] and isinstance(got.abstain, torch.Tensor)
    _assert_same(got, d.predict(p[400:]), "host path")
    got.abstain[0] = True  # writable tensors
    s = d.statistic_of(t)
    assert calls == [] and isinstance(s, torch.Tensor) and s.dtype == torch.float64
    np.testing.assert_array_equal(s.numpy(), d.statistic_of(p[400:]))
    monkeypatch.setattr(_ts, "_device_path_on_cpu", True)
    _assert_same(d.predict(t), d.predict(p[400:]), "device path")
    assert calls == [1]


def test_host_statistic_of_validates_the_values():
    p, y = _probs(5, 400, np.float64, seed=9)
    d = _fit(p[:200], y[:200], score="lac", statistic="max_prob")
    b = torch.from_numpy(p[200:].copy())
    b[4] *= 0.5
    with pytest.raises(ValueError, match="`probs` rows must sum to 1 within .*; row 4 sums to"):
        d.statistic_of(b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine (CPU tensors are tested "
                                                          "above; this checks the device path)")
@pytest.mark.parametrize("statistic", STATISTICS)
def test_cuda_decisions_stay_on_the_device_and_agree(statistic):
    p, y = _probs(100, 6000, np.float32, seed=7)
    d = _fit(p[:3000], y[:3000], score="aps", statistic=statistic)
    out = d.predict(torch.from_numpy(p[3000:]).cuda())
    assert all(getattr(out, f).is_cuda for f in FIELDS)
    ref = d.predict(p[3000:])
    for f in ("sets", "prediction"):
        np.testing.assert_array_equal(getattr(out, f).cpu().numpy(), getattr(ref, f))
    # entropy's lane sums may be scanned in another order on the device: quantify, do not assume
    diff = np.abs(out.statistic.cpu().numpy() - ref.statistic)
    assert diff.max() <= 1e-12, diff.max()
    flips = out.abstain.cpu().numpy() != ref.abstain
    assert np.all(np.abs(ref.statistic[flips] - d.tau_) <= 1e-12)
