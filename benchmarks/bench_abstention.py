"""Dual-threshold abstention: fit and predict time of DualThresholdConformal vs the core calibrator it wraps.

Data: synthetic softmax outputs (y uniform, z = N(0, I) + mu e_y, p = softmax(mu z)), float32, alpha = 0.1,
score RAPS, statistic entropy. Targets (issue 3): fit with 10k calibration points at K=1000 <= 50 ms;
predict for one frame at K=100, median <= 30 us; a 50k x 1000 batch within 1.5x of the core's predict_sets.
Peers measured in the same run: SplitConformalClassifier.fit / predict_sets (the core, same score).
Writes the `abstention` section of docs/benchmarks.md.   Run: python benchmarks/bench_abstention.py [--quick]
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _report import machine_line, timeit, versions, write_section  # noqa: E402

from conformal import DualThresholdConformal, SplitConformalClassifier  # noqa: E402


def make_data(k, n, mu=4.0, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k)).astype(np.float32)
    z[np.arange(n), y] += mu
    s = mu * z
    s -= s.max(axis=1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=1, keepdims=True)
    return p.astype(np.float32), y.astype(np.int64)


def per_call_median(fn, calls=3000, warmup=200):
    for _ in range(warmup):
        fn()
    t = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn()
        t[i] = time.perf_counter() - t0
    return float(np.median(t))


def main(quick: bool = False):
    warnings.simplefilter("ignore")
    rows = []
    n_cal, n_test = (2000, 5000) if quick else (10_000, 50_000)

    # fit at K = 1000
    p_cal, y_cal = make_data(1000, n_cal, seed=1)
    for rule, kw in (("youden", {}), ("budget", {"max_abstain": 0.1}), ("selective_risk", {"delta": 0.05}),
                     ("accept_coverage", {"max_abstain": 0.1})):
        m = DualThresholdConformal(randomized=False, allow_empty=True,
                                   score="raps", alpha=0.1, statistic="entropy", rule=rule, rule_params=kw,
                                   random_state=0)
        t = timeit(lambda: m.fit(p_cal, y_cal), repeat=5)
        rows.append((f"fit, {n_cal} x 1000, rule={rule}", t, None))
    core = SplitConformalClassifier(randomized=False, allow_empty=True, score="raps", alpha=0.1)
    t_core_fit = timeit(lambda: core.fit(p_cal, y_cal), repeat=5)
    rows.append((f"peer: core SplitConformalClassifier.fit, {n_cal} x 1000", t_core_fit, None))

    # one frame at K = 100
    p100, y100 = make_data(100, 5000, seed=2)
    m = DualThresholdConformal(randomized=False, allow_empty=True,
                               score="raps", alpha=0.1, statistic="entropy", random_state=0).fit(p100[:4000],
                                                                                                  y100[:4000])
    cal100 = m.calibrator_
    frame = p100[4000:4001]
    t_frame = per_call_median(lambda: m.predict(frame))
    t_frame_core = per_call_median(lambda: cal100.predict_sets(frame))
    t_frame_dict = per_call_median(lambda: m.predict(frame).to_dicts())
    rows.append(("predict, one frame, K=100 (median per call)", t_frame, t_frame / t_frame_core))
    rows.append(("predict + to_dicts, one frame, K=100", t_frame_dict, t_frame_dict / t_frame_core))
    rows.append(("peer: core predict_sets, one frame, K=100", t_frame_core, 1.0))

    # batch at K = 1000
    p_test, _ = make_data(1000, n_test, seed=3)
    m = DualThresholdConformal(randomized=False, allow_empty=True,
                               score="raps", alpha=0.1, statistic="entropy", random_state=0).fit(p_cal, y_cal)
    t_core = timeit(lambda: m.calibrator_.predict_sets(p_test), repeat=3)
    t_batch = timeit(lambda: m.predict(p_test), repeat=3)
    rows.append((f"predict, batch {n_test} x 1000", t_batch, t_batch / t_core))
    rows.append((f"peer: core predict_sets, batch {n_test} x 1000", t_core, 1.0))

    def fmt(t):
        return f"{t * 1e6:.1f} us" if t < 1e-3 else f"{t * 1e3:.1f} ms"

    md = ["### Abstention (`DualThresholdConformal`)", "",
          f"Machine: {machine_line()}. {versions('numpy', 'numba')}."
          + (" **--quick run (smaller sizes).**" if quick else ""), "",
          "Synthetic float32 softmax outputs, RAPS, alpha 0.1, statistic entropy; median of repeated runs after "
          "warm-up (one-frame rows: median of 3000 single calls). Ratio = time / the core calibrator's "
          "predict_sets on the same input, measured in the same run.", "",
          "| what | time | ratio vs core predict_sets |", "|---|---|---|"]
    for name, t, ratio in rows:
        md.append(f"| {name} | {fmt(t)} | {'' if ratio is None else f'{ratio:.2f}x'} |")
    md += ["", "Targets: fit (10k x 1000) <= 50 ms; one frame (K=100) <= 30 us; batch <= 1.5x core."]
    text = "\n".join(md)
    print(text)
    write_section("abstention", text)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    main(ap.parse_args().quick)
