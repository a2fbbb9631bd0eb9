"""Tensor paths beyond the sets (issue 20 §2): DualThresholdConformal.predict, StreamingConformal.step and
ConformalDetector.predict given torch tensors, against the same calls on NumPy arrays. A CPU tensor takes the host
kernels through a shared view (the default); the device path (tensor ops, the path of a CUDA tensor) is timed on
the same CPU tensors by forcing it (`conformal._tensor._device_path_on_cpu`). Writes the `tensor_paths` section of
docs/benchmarks.md.

CPU tensors only unless a CUDA device is present (the GPU rows say "unmeasured" otherwise, never an estimate).
Every time is the minimum over repeats after a warm-up, one torch thread, one Numba thread (the decisions are
checked identical in the same run). Run: python benchmarks/bench_tensor_paths.py
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _report import machine_line, versions, write_section  # noqa: E402

from adapters.datasets import make_scenes  # noqa: E402
from adapters.streaming import StreamingConformal  # noqa: E402
from conformal import DualThresholdConformal, SplitConformalClassifier, _tensor  # noqa: E402
from conformal.detection import ConformalDetector  # noqa: E402

torch.set_num_threads(1)


def _min_time(fn, repeat=7):
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _cuda_time(fn, repeat=7):
    """Minimum wall time of fn() with the device synchronised before and after each run."""
    def run():
        _sync()
        fn()
        _sync()
    return _min_time(run, repeat)


def _forced(fn):
    """fn run with CPU tensors sent down the device path (the path a CUDA tensor takes)."""
    def run():
        _tensor._device_path_on_cpu = True
        try:
            return fn()
        finally:
            _tensor._device_path_on_cpu = False
    return run


def _fmt(s):
    return f"{s * 1e3:.2f} ms" if s >= 1e-3 else f"{s * 1e6:.0f} us"


def _probs(n, k, seed):
    rng = np.random.default_rng(seed)
    z = 2.0 * rng.normal(size=(n, k))
    y = rng.integers(0, k, n)
    z[np.arange(n), y] += 2.5
    p = np.exp(z - z.max(1, keepdims=True))
    return (p / p.sum(1, keepdims=True)).astype(np.float32), y


def main():
    rows, gpu, cuda = [], {}, torch.cuda.is_available()
    n = 10_000
    for k in (10, 100):
        p, y = _probs(2 * n, k, seed=k)
        for stat in ("entropy", "max_prob"):
            d = DualThresholdConformal(score="aps", statistic=stat, alpha=0.1, randomized=False,
                                       random_state=0).fit(p[:n], y[:n])
            x, t = p[n:], torch.from_numpy(p[n:])
            assert np.array_equal(d.predict(t).abstain.numpy(), d.predict(x).abstain)
            assert np.array_equal(_forced(lambda: d.predict(t))().abstain.numpy(), d.predict(x).abstain)
            rows.append((f"`DualThresholdConformal.predict`, APS + {stat}, {n:,} x {k}",
                         _min_time(lambda: d.predict(x)), _min_time(lambda: d.predict(t)),
                         _min_time(_forced(lambda: d.predict(t)))))
            if cuda:
                tc = t.cuda()
                assert np.array_equal(d.predict(tc).sets.cpu().numpy(), d.predict(x).sets)
                gpu[rows[-1][0]] = _cuda_time(lambda: d.predict(tc))
    p, y = _probs(1500, 10, seed=1)
    cal = SplitConformalClassifier(score="aps", alpha=0.1, randomized=False).fit(p[:1000], y[:1000])
    host, cpu_t, dev = (StreamingConformal(cal, reference=p[:1000]) for _ in range(3))
    dev._device_path_on_cpu = True  # the path a CUDA tensor takes, run on CPU tensors
    frames, tframes = p[1000:1200].astype(np.float64), [torch.from_numpy(r) for r in p[1000:1200].astype(np.float64)]

    def run_host():
        for r in frames:
            host.step(r)

    def run_cpu_t():
        for r in tframes:
            cpu_t.step(r)

    def run_dev():
        for r in tframes:
            dev.step(r)

    rows.append(("`StreamingConformal.step`, APS + entropy, K = 10, per frame",
                 _min_time(run_host, 5) / 200, _min_time(run_cpu_t, 5) / 200, _min_time(run_dev, 5) / 200))
    if cuda:
        cframes = [r.cuda() for r in tframes]

        def run_cuda():
            for r in cframes:
                dev.step(r)
        gpu[rows[-1][0]] = _cuda_time(run_cuda, 5) / 200
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        preds, gts = make_scenes(260, rng=0, bias=2.0)
        det = ConformalDetector(alpha=0.1, alpha_cls=0.1, class_conditional=True, score_threshold=0.3).fit(
            preds[:200], gts[:200])
    fr = preds[200:260]
    tf = [{k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in f.items()} for f in fr]

    def det_host():
        for f in fr:
            det.predict(f)

    def det_dev():
        for f in tf:
            det.predict(f)

    m = np.mean([len(f["boxes"]) for f in fr])
    rows.append((f"`ConformalDetector.predict`, 2D, class-conditional, {m:.1f} boxes, per frame",
                 _min_time(det_host, 5) / len(fr), _min_time(det_dev, 5) / len(fr),
                 _min_time(_forced(det_dev), 5) / len(fr)))
    if cuda:
        cf = [{k: v.cuda() for k, v in f.items()} for f in tf]

        def det_cuda():
            for f in cf:
                det.predict(f)
        gpu[rows[-1][0]] = _cuda_time(det_cuda, 5) / len(fr)
    load = os.getloadavg()[0]
    lines = ["### Tensor paths: abstention, streaming, detection (`benchmarks/bench_tensor_paths.py`)", "",
             f"Machine: {machine_line()}, load average {load:.1f} when the run ended.  ",
             f"Versions: {versions('numpy', 'numba', 'torch')}.  ",
             "Synthetic softmax outputs and simulated detection frames (`make_scenes`, synthetic). The machine may be "
             "shared with other work (the load average above says how busy it was): minimum wall time "
             "over repeats after a warm-up, one torch and one Numba thread; the tensor paths' decisions were checked "
             "identical to the NumPy path's in the run. *CPU tensor*: the default, the host kernels on a shared "
             "view of the tensor, outputs shared back as CPU tensors. *Device path on CPU*: the tensor ops a CUDA "
             "tensor runs, forced on the same CPU tensors (`_device_path_on_cpu`); it shows what a CPU tensor cost "
             "before it was routed to the host kernels, not a GPU time.", "",
             "| call | NumPy input | CPU tensor | CPU tensor / NumPy | device path on CPU | device path / NumPy |",
             "|---|---|---|---|---|---|"]
    for name, a, b, c in rows:
        lines.append(f"| {name} | {_fmt(a)} | {_fmt(b)} | {b / a:.1f}x | {_fmt(c)} | {c / a:.1f}x |")
    lines += ["", "| call | CUDA tensor |", "|---|---|"]
    for name, *_ in rows:
        lines.append(f"| {name} | {_fmt(gpu[name]) if name in gpu else 'unmeasured: no GPU lent to this task'} |")
    write_section("tensor_paths", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
