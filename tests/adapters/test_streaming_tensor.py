"""StreamingConformal.step on a torch tensor row computed on the tensor's device (conformal/_tensor.py `frame`):
the same outputs, feedback, monitor and snapshots as the host kernel, frame for frame, on CPU tensors (the device
path is forced there with `_device_path_on_cpu`); on CUDA when one is present."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from adapters.streaming import StreamingConformal
from conformal import DualThresholdConformal, SplitConformalClassifier
from conformal.abstention import KNNDistance
from conformal.io import dumps_state

torch = pytest.importorskip("torch")

K = 6
SCORES = [("lac", None), ("aps", None), ("raps", {"lam": 0.05, "k_reg": 1}), ("saps", {"weight": 0.2}),
          ("topk", None)]


def _data(n, seed=0, sharp=2.0, ties=False):
    rng = np.random.default_rng(seed)
    z = sharp * rng.normal(size=(n, K))
    if ties:  # tied probabilities: tie groups, ties at the top (allow_empty=False fills the whole group)
        z = np.round(z)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return z, p, np.array([rng.choice(K, p=row) for row in p])


def _pair(conformal, **kw):
    dev, host = StreamingConformal(conformal, **kw), StreamingConformal(conformal, **kw)
    dev._device_path_on_cpu = True
    return dev, host


_FLOATS = ("set_probs", "confidence", "statistic", "monitor_pvalue", "log10_martingale")


def _close(a, b, t):
    """Logits: torch's vectorised exp may differ from libm's in the last bit, so the softmax (and what is computed
    from it) agrees to a few ulps; labels, sets and decisions exactly."""
    for key in _FLOATS:
        np.testing.assert_allclose(a.pop(key), b.pop(key), rtol=1e-13, atol=1e-15, err_msg=f"{key} frame {t}")
    assert a == b, (t, a, b)


def _run(dev, host, rows, labels, to_tensor=torch.from_numpy, side=None, exact=True):
    """Step both streams over the same rows (feedback for two frames in three, delayed by one) and compare."""
    held = []
    for t, (row, y) in enumerate(zip(rows, labels)):
        kw = {} if side is None else {"features": side[t]}
        a, b = dev.step(to_tensor(row), **kw), host.step(row, **kw)
        if not exact:
            _close(dict(a), dict(b), t)
        else:
            assert a == b, (t, a, b)
        if t % 3:
            held.append((a["frame_id"], int(y)))
        if len(held) > 1:
            fid, lab = held.pop(0)
            assert dev.feedback(fid, lab) == host.feedback(fid, lab)
    assert dev.q_t_ == host.q_t_ and dev.alpha_t_ == host.alpha_t_ and dev.coverage_ == host.coverage_
    if not exact:
        np.testing.assert_allclose(dev.to_dict()["state"]["pending_scores"], host.to_dict()["state"]["pending_scores"],
                                   rtol=1e-13, atol=1e-15)
        return
    # pending scores kept on the device are copied for the snapshot: the same checksummed JSON
    assert dumps_state("StreamingConformal", dev.to_dict()) == dumps_state("StreamingConformal", host.to_dict())


@pytest.mark.parametrize("score,sp", SCORES, ids=[s for s, _ in SCORES])
def test_device_frames_equal_host_frames(score, sp):
    for ties in (False, True):
        _, p, y = _data(900, seed=1, ties=ties)
        for allow_empty in (True, False):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # degenerate non-randomized calibrations
                cal = SplitConformalClassifier(score=score, score_params=sp, alpha=0.1, randomized=False,
                                               allow_empty=allow_empty).fit(p[:400], y[:400])
            for statistic in ("entropy", "margin", "max_prob"):
                for dtype in (np.float64, np.float32):
                    rows = p[400:520].astype(dtype)
                    _run(*_pair(cal, statistic=statistic, reference=p[:400], gamma=0.05), rows, y[400:520])


def test_device_frames_with_logits_and_dual_statistics():
    z, p, y = _data(900, seed=2)
    cal = SplitConformalClassifier(score="lac", alpha=0.1, inputs="logits", temperature=1.3).fit(z[:400], y[:400])
    _run(*_pair(cal, reference=z[:400]), z[400:500], y[400:500], exact=False)
    for statistic in ("entropy", "set_size", "credibility"):  # kernel, kernel (set size), calibrator's own
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            d = DualThresholdConformal(score="lac", statistic=statistic, rule="budget", randomized=False,
                                       random_state=0).fit(p[:400], y[:400])
        for martingale in ("jumper", "power_mixture"):  # jumper: the host path's fused monitor kernel
            _run(*_pair(d, reference=p[:400], martingale=martingale, method="quantile"), p[400:520], y[400:520])


def test_device_frames_with_fitted_statistics_read_host_features():
    _, p, y = _data(900, seed=3)
    feats = np.random.default_rng(3).normal(size=(900, 4))
    d = DualThresholdConformal(score="lac", statistic=("entropy", KNNDistance(k=3, backend="exact")),
                               rule="budget", randomized=False, random_state=0).fit(p[:400], y[:400],
                                                                                      features=feats[:400])
    _run(*_pair(d), p[400:480], y[400:480], side=feats[400:480])


def test_device_path_errors_name_the_argument_and_leave_the_state():
    _, p, y = _data(600, seed=4)
    s, _ = _pair(SplitConformalClassifier(score="lac", alpha=0.1).fit(p[:300], y[:300]))
    row = torch.from_numpy(p[400].copy())
    with pytest.raises(ValueError, match=r"`probs` must have shape \(6,\)"):
        s.step(row[:4])
    with pytest.raises(TypeError, match="`probs` must be float32 or float64; got dtype float16"):
        s.step(row.half())
    for bad, msg in [(float("nan"), "contains NaN or inf"), (1.5, "outside"), (-0.1, "outside")]:
        b = row.clone()
        b[2] = bad
        with pytest.raises(ValueError, match=msg):
            s.step(b)
    with pytest.raises(ValueError, match="does not sum to 1"):
        s.step(row * 1.01)
    assert s.n_steps_ == 0 and s.pending_frames == []
    s.step(row.reshape(1, K))
    assert s.n_steps_ == 1


def test_cpu_tensor_frames_take_the_host_kernel_unless_forced(monkeypatch):
    """By default a CPU tensor row is read by the host kernel through a shared view (the device frame is never
    computed); the stream's own switch or the core's (`conformal._tensor._device_path_on_cpu`, the one the
    calibrators, abstention and detector read) sends it down the device path. Same frames either way."""
    from conformal import _tensor
    calls = []
    fn = _tensor.frame
    monkeypatch.setattr(_tensor, "frame", lambda *a: calls.append(1) or fn(*a))
    _, p, y = _data(600, seed=6)
    cal = SplitConformalClassifier(score="aps", alpha=0.1, randomized=False).fit(p[:300], y[:300])
    a, b = StreamingConformal(cal, reference=p[:300]), StreamingConformal(cal, reference=p[:300])
    _run(a, b, p[300:340], y[300:340])
    assert calls == []
    monkeypatch.setattr(_tensor, "_device_path_on_cpu", True)
    a, b = StreamingConformal(cal, reference=p[:300]), StreamingConformal(cal, reference=p[:300])
    _run(a, b, p[300:340], y[300:340], to_tensor=lambda r: r)  # NumPy rows: the host kernel whatever the switch
    assert calls == []
    a, b = StreamingConformal(cal, reference=p[:300]), StreamingConformal(cal, reference=p[:300])
    _run(a, b, p[300:340], y[300:340])
    assert len(calls) == 40


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine (the device path runs on "
                                                          "CPU tensors above; this checks it on a GPU)")
def test_cuda_frames_equal_host_frames():
    _, p, y = _data(900, seed=5)
    cal = SplitConformalClassifier(score="aps", alpha=0.1, randomized=False).fit(p[:400], y[:400])
    dev, host = StreamingConformal(cal, reference=p[:400]), StreamingConformal(cal, reference=p[:400])
    # probabilities: no float reduction in the set, so sets agree exactly; the entropy's lane scan may differ in
    # the last bits on the device: compare it to 1e-12 and the rest exactly
    for t in range(100):
        a, b = dev.step(torch.from_numpy(p[400 + t]).cuda()), host.step(p[400 + t])
        assert abs(a.pop("statistic") - b.pop("statistic")) <= 1e-12
        a.pop("monitor_pvalue"), b.pop("monitor_pvalue"), a.pop("log10_martingale"), b.pop("log10_martingale")
        assert a == b
