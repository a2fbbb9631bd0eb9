"""Split conformal classification: our Numba kernels vs TorchCP (CPU), MAPIE and plain NumPy, one run.

Data: synthetic, perfectly calibrated softmax outputs (y uniform, z = N(0, I) + mu e_y, p = softmax(mu z), mu set
for ~75% top-1 accuracy), float32, alpha = 0.1; CIFAR-100 scale (K=100, 10k/10k) and ImageNet scale
(K=1000, 10k calibration / 50k test). fit = everything done with (p_cal, y_cal); predict = p_test to a boolean
mask. Median of 3 runs after a warm-up. Writes the `conformal` section of docs/benchmarks.md.
Run: python benchmarks/bench_conformal.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _report import machine_line, timeit, versions, write_section  # noqa: E402

from conformal import SplitConformalClassifier, metrics  # noqa: E402


def make_data(k, n, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)

    def probs_for(mu, m):
        z = rng.normal(size=(m, k)).astype(np.float32)
        z[np.arange(m), y[:m]] += mu
        s = mu * z
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        return p / p.sum(axis=1, keepdims=True)

    lo, hi = 0.5, 6.0  # bisection on mu for 75% top-1 accuracy, on a 4k sample
    for _ in range(25):
        mid = 0.5 * (lo + hi)
        acc = (probs_for(mid, 4000).argmax(1) == y[:4000]).mean()
        lo, hi = (mid, hi) if acc < 0.75 else (lo, mid)
    mu = 0.5 * (lo + hi)
    z = rng.normal(size=(n, k)).astype(np.float32)
    z[np.arange(n), y] += mu
    s = mu * z
    s -= s.max(axis=1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=1, keepdims=True)
    return p.astype(np.float32), y


# ---- plain NumPy reference (the "obvious" implementation) ---------------------------------------------------
def numpy_fit(score, p, y, alpha=0.1):
    n = len(y)
    py = p[np.arange(n), y][:, None]
    if score == "lac":
        s = 1.0 - py[:, 0]
    else:
        s = np.where(p >= py, p, 0).sum(axis=1)
        if score == "raps":
            s = s + 0.01 * np.maximum((p >= py).sum(axis=1) - 5, 0)
    k = int(np.ceil((n + 1) * (1 - alpha)))
    return np.partition(s, k - 1)[k - 1]


def numpy_predict(score, p, qhat):
    if score == "lac":
        return p >= 1 - qhat
    order = np.argsort(-p, axis=1)
    sp = np.take_along_axis(p, order, axis=1)
    cs = np.cumsum(sp, axis=1)
    if score == "raps":
        cs = cs + 0.01 * np.maximum(np.arange(1, p.shape[1] + 1) - 5, 0)
    out = np.zeros(p.shape, dtype=bool)
    np.put_along_axis(out, order, cs <= qhat, axis=1)
    return out


def bench_case(k, n_cal, n_test, repeat, rows, tcp, mapie_cls, torch):
    p, y = make_data(k, n_cal + n_test, seed=k)
    pc, yc, pt, yt = p[:n_cal], y[:n_cal], p[n_cal:], y[n_cal:]
    for score in ["lac", "aps", "raps"]:
        # ours
        cp = SplitConformalClassifier(randomized=False, allow_empty=True, score=score, alpha=0.1)
        t_fit = timeit(lambda: cp.fit(pc, yc), repeat=repeat)
        t_pred = timeit(lambda: cp.predict_sets(pt), repeat=repeat)
        sets = cp.predict_sets(pt)
        ours = dict(fit=t_fit, pred=t_pred, cov=metrics.coverage(sets, yt), size=metrics.mean_set_size(sets))
        rows.append((k, score, "conformal-perception", ours, None))
        # NumPy
        q = numpy_fit(score, pc, yc)
        r = dict(fit=timeit(lambda: numpy_fit(score, pc, yc), repeat=repeat),
                 pred=timeit(lambda: numpy_predict(score, pt, q), repeat=repeat))
        s = numpy_predict(score, pt, q)
        r.update(cov=metrics.coverage(s, yt), size=metrics.mean_set_size(s))
        rows.append((k, score, "NumPy", r, ours))
        # TorchCP (CPU, float32 tensors, identity transform: fed the probabilities)
        if tcp is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fn = {"lac": lambda: tcp.score.LAC(score_type="identity"),
                      "aps": lambda: tcp.score.APS(score_type="identity", randomized=False),
                      "raps": lambda: tcp.score.RAPS(score_type="identity", randomized=False, penalty=0.01,
                                                     kreg=5)}[score]()
                pred = tcp.SplitPredictor(score_function=fn, model=None, alpha=0.1)
            tc, tyc, tt = torch.from_numpy(pc), torch.from_numpy(yc), torch.from_numpy(pt)
            r = dict(fit=timeit(lambda: pred.calculate_threshold(tc, tyc, 0.1), repeat=repeat),
                     pred=timeit(lambda: pred.predict_with_logits(tt), repeat=repeat))
            s = pred.predict_with_logits(tt).numpy().astype(bool)
            r.update(cov=metrics.coverage(s, yt), size=metrics.mean_set_size(s))
            rows.append((k, score, "TorchCP (CPU)", r, ours))
        # MAPIE (LAC and APS; its RAPS tunes its own lambda/k_reg and fails on rare classes, see peers.md)
        if mapie_cls is not None and score in ("lac", "aps"):
            from _peers import IdentityProbaModel  # tests/ is on sys.path (see main)
            est = IdentityProbaModel(k)

            def mfit():
                m = mapie_cls(est, confidence_level=0.9, conformity_score=score, prefit=True)
                m.conformalize(pc, yc)
                return m
            m = mfit()
            r = dict(fit=timeit(mfit, repeat=repeat), pred=timeit(lambda: m.predict_set(pt), repeat=repeat))
            s = m.predict_set(pt)[1][:, :, 0]
            r.update(cov=metrics.coverage(s, yt), size=metrics.mean_set_size(s))
            rows.append((k, score, "MAPIE" + (" (randomized calib.)" if score == "aps" else ""), r, ours))
        print(f"K={k} {score}: done", flush=True)


def frame_latency():
    p, y = make_data(100, 10001, seed=3)
    out = {}
    for score in ["lac", "aps", "raps"]:
        cp = SplitConformalClassifier(randomized=False, allow_empty=True, score=score).fit(p[:10000], y[:10000])
        x = p[10000:]
        cp.predict_sets(x)
        ts = []
        for _ in range(3000):
            t0 = time.perf_counter()
            cp.predict_sets(x)
            ts.append(time.perf_counter() - t0)
        out[score] = float(np.median(ts))
    return out


_MEM_CHILD = """
import numpy as np, sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {here!r})
from bench_conformal import make_data
from conformal import SplitConformalClassifier
p, y = make_data(1000, 60000, seed=1000)
cp = SplitConformalClassifier(randomized=False, allow_empty=True, score={score!r}).fit(p[:10000], y[:10000])
pt = np.ascontiguousarray(p[10000:])
cp.predict_sets(pt[:100])
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM'):
            return int(line.split()[1]) * 1024
open('/proc/self/clear_refs', 'w').write('5')
base = rss()
s = cp.predict_sets(pt)
print(rss() - base, pt.nbytes, s.nbytes)
"""


def peak_memory(score):
    code = _MEM_CHILD.format(root=str(HERE.parent), here=str(HERE), score=score)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return tuple(int(v) for v in out)


def fmt_t(t):
    return f"{t * 1e3:.1f} ms" if t >= 1e-3 else f"{t * 1e6:.0f} us"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="K=100 only, 1 repeat (a smoke run; writes nothing)")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE.parent / "tests"))
    try:
        import torch
        from _peers import load_torchcp
        tcp = load_torchcp()
        torch.set_num_threads(os.cpu_count())
    except ImportError:
        torch, tcp = None, None
    try:
        from mapie.classification import SplitConformalClassifier as mapie_cls
    except ImportError:
        mapie_cls = None
    rows = []
    repeat = 1 if args.quick else 3
    bench_case(100, 10_000, 10_000, repeat, rows, tcp, mapie_cls, torch)
    if not args.quick:
        bench_case(1000, 10_000, 50_000, repeat, rows, tcp, mapie_cls, torch)
    lat = frame_latency()
    lines = ["### Split conformal classification (`benchmarks/bench_conformal.py`)", "",
             f"Machine: {machine_line()}.  ",
             f"Versions: {versions('numpy', 'numba', 'torch', 'torchcp', 'mapie', 'scikit-learn')}.  ",
             "Synthetic calibrated softmax outputs (top-1 ~75%), float32, alpha = 0.1, median of 3 runs after a "
             "warm-up; all libraries in the same process and run. Ratio = peer time / our time (higher = we are "
             "faster). Non-randomized scores everywhere except MAPIE APS, whose calibration is always randomized "
             "(hence its different coverage and size). Sets from us, NumPy and TorchCP are identical for LAC, "
             "APS and RAPS (tests/conformal/test_peers.py checks this at float64).", "",
             "| K | score | library | fit | predict_sets | fit ratio | predict ratio | coverage | mean size |",
             "|---|---|---|---|---|---|---|---|---|"]
    for k, score, lib, r, ours in rows:
        fr = "" if ours is None else f"{r['fit'] / ours['fit']:.1f}x"
        pr = "" if ours is None else f"{r['pred'] / ours['pred']:.1f}x"
        lines.append(f"| {k} | {score.upper()} | {lib} | {fmt_t(r['fit'])} | {fmt_t(r['pred'])} | {fr} | {pr} | "
                     f"{r['cov']:.4f} | {r['size']:.2f} |")
    lines += ["", "One frame (K = 100, a single row, fitted model, median of 3,000 calls including validation): "
              + ", ".join(f"{s.upper()} {v * 1e6:.1f} us" for s, v in lat.items()) + "."]
    if not args.quick:
        mem = []
        for score in ["lac", "aps", "raps"]:
            extra, inp, mask = peak_memory(score)
            mem.append(f"{score.upper()} +{extra / 2**20:.0f} MiB")
        lines += ["", f"Peak memory of predict_sets at ImageNet scale (fresh process; peak RSS rise during the call; "
                      f"input {inp / 2**20:.0f} MiB float32, output mask {mask / 2**20:.0f} MiB): " + ", ".join(mem)
                  + ". The kernels allocate the mask, an (n,) int8 error code array and O(K) scratch per thread."]
    md = "\n".join(lines)
    print(md)
    if not args.quick:
        write_section("conformal", md)


if __name__ == "__main__":
    main()
