"""Prediction sets on torch tensors equal the Numba path's bit for bit on CPU tensors, on both paths a tensor can
take: the host kernels through a shared view (a CPU tensor's, by default) and the tensor ops of conformal/_tensor.py
(a CUDA tensor's; forced on CPU tensors by the `path` fixture)."""
import warnings

import numpy as np
import pytest

from conformal import ClassConditionalConformalClassifier, SplitConformalClassifier, _tensor

torch = pytest.importorskip("torch")

SCORES = [("lac", None), ("aps", None), ("raps", {"lam": 0.05, "k_reg": 2}), ("saps", {"weight": 0.3}),
          ("topk", None)]


def _data(k, n, ties, dtype, seed, logits=False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    if logits:
        z = rng.normal(size=(n, k)) * 2.0
        z[np.arange(n), y] += 2.0
        return z.astype(dtype), y
    if ties:  # few distinct weights -> exact ties after normalisation
        w = rng.integers(0, 4, size=(n, k)).astype(np.float64)
        w[np.arange(n), y] += 2.0
    else:
        w = rng.gamma(0.3, size=(n, k)) + 1e-12
        w[np.arange(n), y] += 0.5 * w.sum(axis=1)
    p = w / w.sum(axis=1, keepdims=True)
    return p.astype(dtype), y


@pytest.fixture(params=["host", "device"])
def path(request, monkeypatch):
    """Run a test on both paths of a CPU tensor: the host kernels (default) and the device path (forced)."""
    monkeypatch.setattr(_tensor, "_device_path_on_cpu", request.param == "device")
    return request.param


def _params(randomized, allow_empty):
    return {"randomized": randomized, "allow_empty": allow_empty, "random_state": 0}


@pytest.mark.parametrize("k", [3, 10, 40, 100])
@pytest.mark.parametrize("score,sp", SCORES, ids=[s for s, _ in SCORES])
def test_tensor_sets_equal_numpy_sets(score, sp, k, path):
    for ties in (False, True):
        for dtype in (np.float32, np.float64):
            p, y = _data(k, 600, ties, dtype, seed=k + ties)
            for randomized in (False, True):
                for allow_empty in (True, False):
                    for cls in (SplitConformalClassifier, ClassConditionalConformalClassifier):
                        cp = cls(score=score, score_params=sp, alpha=0.2, **_params(randomized, allow_empty))
                        with warnings.catch_warnings():  # rare classes at K = 40, 100 (class-conditional)
                            warnings.simplefilter("ignore", UserWarning)
                            cp.fit(p[:300], y[:300])
                        want = cp.predict_sets(p[300:], rng=1)
                        got = cp.predict_sets(torch.from_numpy(p[300:]), rng=1)
                        assert isinstance(got, torch.Tensor) and got.dtype == torch.bool
                        assert got.device.type == "cpu"
                        np.testing.assert_array_equal(got.numpy(), want, err_msg=f"{cls.__name__} {score} K={k} "
                                                      f"ties={ties} {dtype} rnd={randomized} ae={allow_empty}")


@pytest.mark.parametrize("score,sp", SCORES, ids=[s for s, _ in SCORES])
def test_tensor_sets_from_logits_equal_numpy_sets(score, sp, path):
    z, y = _data(20, 800, False, np.float32, seed=3, logits=True)
    for randomized in (False, True):
        for temperature in (1.0, 1.7):
            cp = SplitConformalClassifier(score=score, score_params=sp, alpha=0.1, inputs="logits",
                                          temperature=temperature, **_params(randomized, True)).fit(z[:400], y[:400])
            np.testing.assert_array_equal(cp.predict_sets(torch.from_numpy(z[400:]), rng=2).numpy(),
                                          cp.predict_sets(z[400:], rng=2))


@pytest.mark.parametrize("score,sp", SCORES[1:], ids=[s for s, _ in SCORES[1:]])
def test_window_fallback_rows_and_thresholds_at_observed_scores(score, sp):
    """Thresholds equal to calibration scores (ties with qhat) and huge windows: exact, including the rows whose
    top-m window does not decide the set (redone with a full sort)."""
    from conformal.scores import get_score
    p, _ = _data(60, 400, True, np.float32, seed=5)
    s = get_score(score, **(sp or {}))
    allv = np.unique(s.all_scores(p))
    for q in [*allv[:: max(1, allv.size // 15)], np.inf, -1.0]:
        for u in (None, np.random.default_rng(0).random(400)):
            for allow_empty in (True, False):
                want = s.sets(p, q, u, allow_empty=allow_empty)
                got = _tensor.rank_sets(s, torch.from_numpy(p), float(q), u, False, 1.0, allow_empty)
                np.testing.assert_array_equal(got.numpy(), want, err_msg=f"q={q}")
    np.testing.assert_array_equal(_tensor.rank_all_scores(s, torch.from_numpy(p), None, False, 1.0).numpy(),
                                  s.all_scores(p))


def test_tensor_input_errors_name_the_problem(path):
    p, y = _data(5, 200, False, np.float32, seed=6)
    cp = SplitConformalClassifier(score="aps").fit(p[:100], y[:100])
    t = torch.from_numpy(p[100:].copy())
    with pytest.raises(TypeError, match="float32 or float64"):
        cp.predict_sets(t.half())
    with pytest.raises(ValueError, match="2-D"):
        cp.predict_sets(t[0])
    with pytest.raises(ValueError, match="fitted with 5"):
        cp.predict_sets(t[:, :4])
    for bad, msg in [(float("nan"), "row 7 holds NaN"), (1.5, "row 7 does not"), (-0.2, "row 7 does not")]:
        b = t.clone()
        b[7, 1] = bad
        with pytest.raises(ValueError, match=msg):
            cp.predict_sets(b)
    b = t.clone()
    b[9] *= 1.5
    with pytest.raises(ValueError, match="row 9 sums to"):
        cp.predict_sets(b)


def _spy(monkeypatch, *names):
    """Count the calls of device-path functions of conformal/_tensor.py."""
    calls = []
    for name in names:
        fn = getattr(_tensor, name)
        monkeypatch.setattr(_tensor, name, lambda *a, _fn=fn, _name=name, **kw: calls.append(_name) or _fn(*a, **kw))
    return calls


def test_cpu_tensors_take_the_host_kernels_unless_forced(monkeypatch):
    """By default a CPU tensor never reaches the tensor ops: its sets are the host kernels' on a shared view,
    returned as a CPU tensor; the private switch sends it down the device path (which the tests above prove)."""
    p, y = _data(10, 400, False, np.float32, seed=9)
    t = torch.from_numpy(p[200:])
    calls = _spy(monkeypatch, "check_values", "rank_sets", "lac_sets", "rank_all_scores")
    for cls in (SplitConformalClassifier, ClassConditionalConformalClassifier):
        for score in ("aps", "lac"):
            cp = cls(score=score, random_state=0).fit(p[:200], y[:200])
            got = cp.predict_sets(t, rng=4)
            assert isinstance(got, torch.Tensor) and got.dtype == torch.bool and got.device.type == "cpu"
            np.testing.assert_array_equal(got.numpy(), cp.predict_sets(p[200:], rng=4))
            assert calls == []
            monkeypatch.setattr(_tensor, "_device_path_on_cpu", True)
            np.testing.assert_array_equal(cp.predict_sets(t, rng=4).numpy(), got.numpy())
            assert calls and calls[0] == "check_values"
            calls.clear()
            monkeypatch.setattr(_tensor, "_device_path_on_cpu", False)


def test_host_path_reads_any_cpu_tensor_without_grad_or_copy_concerns():
    """A tensor that needs grad is detached, a transposed (non-contiguous) one is read through its strides, the
    result is a plain writable tensor, and predict_labels reads the sets on the host."""
    p, y = _data(7, 600, False, np.float64, seed=10)
    cp = SplitConformalClassifier(score="raps", score_params={"lam": 0.1, "k_reg": 1}, random_state=0).fit(p[:300],
                                                                                                           y[:300])
    want = cp.predict_sets(p[300:], rng=5)
    g = torch.from_numpy(p[300:].copy()).requires_grad_(True)
    got = cp.predict_sets(g, rng=5)
    assert not got.requires_grad
    np.testing.assert_array_equal(got.numpy(), want)
    tr = torch.from_numpy(np.ascontiguousarray(p[300:].T)).t()
    assert not tr.is_contiguous()
    np.testing.assert_array_equal(cp.predict_sets(tr, rng=5).numpy(), want)
    got[0, 0] = not bool(got[0, 0])  # a plain writable tensor
    assert cp.predict_labels(torch.from_numpy(p[300:]), rng=5) == cp.predict_labels(p[300:], rng=5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine (CPU tensors are tested "
                                                          "above; this checks the device path)")
@pytest.mark.parametrize("score,sp", SCORES, ids=[s for s, _ in SCORES])
def test_cuda_tensor_sets_stay_on_the_device_and_agree(score, sp):
    p, y = _data(100, 4000, False, np.float32, seed=7)
    for randomized in (False, True):
        cp = SplitConformalClassifier(score=score, score_params=sp, **_params(randomized, True)).fit(p[:2000], y[:2000])
        got = cp.predict_sets(torch.from_numpy(p[2000:]).cuda(), rng=3)
        assert got.is_cuda and got.dtype == torch.bool
        want = cp.predict_sets(p[2000:], rng=3)
        # probability inputs involve no float reduction in the set rule: identical on the device too
        np.testing.assert_array_equal(got.cpu().numpy(), want)


def test_abstention_on_cpu_tensors_returns_tensor_decisions(path):
    """DualThresholdConformal on a CPU tensor: tensor decisions equal to the NumPy ones (issue 20; the full checks
    are in tests/conformal/abstention/test_tensor_decisions.py); the public set_size function reads the host view."""
    from conformal import DualThresholdConformal
    from conformal.abstention.statistics import set_size
    p, y = _data(6, 1200, False, np.float32, seed=8)
    d = DualThresholdConformal(score="aps", statistic="set_size", alpha=0.1, random_state=0).fit(p[:800], y[:800])
    a, b = d.predict(torch.from_numpy(p[800:])), d.predict(p[800:])
    assert isinstance(a.sets, torch.Tensor) and isinstance(a.abstain, torch.Tensor)
    np.testing.assert_array_equal(a.sets.numpy(), b.sets)
    np.testing.assert_array_equal(a.abstain.numpy(), b.abstain)
    cp = SplitConformalClassifier(score="aps", random_state=0).fit(p[:800], y[:800])
    np.testing.assert_array_equal(set_size(torch.from_numpy(p[800:]), cp), set_size(p[800:], cp))
