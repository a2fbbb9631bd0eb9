"""Per-frame cost of StreamingConformal.step (set + abstention statistic + shift monitor + feedback bookkeeping)
vs per-frame use of batch APIs on one row: our own SplitConformalClassifier.predict_sets and TorchCP's
SplitPredictor.predict_with_logits (threshold cached in both). Writes the `streaming` section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from _report import machine_line, versions, write_section  # noqa: E402

from adapters.streaming import StreamingConformal  # noqa: E402
from conformal import DualThresholdConformal, SplitConformalClassifier  # noqa: E402


def per_call(fn, n):
    """Median and 99th percentile of single-call wall times (seconds)."""
    t = np.empty(n)
    pc = time.perf_counter
    for i in range(n):
        t0 = pc()
        fn(i)
        t[i] = pc() - t0
    return float(np.median(t)), float(np.percentile(t, 99))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="K=100 only, fewer calls; writes nothing")
    args = ap.parse_args()
    n_calls = 3000 if args.quick else 20000
    sys.path.insert(0, str(HERE.parent / "tests"))
    try:
        import torch
        from _peers import load_torchcp

        tcp = load_torchcp()
        torch.set_num_threads(1)
    except ImportError:
        torch, tcp = None, None
    rng = np.random.default_rng(0)
    rows = []
    for k in ((100,) if args.quick else (10, 100, 1000)):
        z = 3 * rng.normal(size=(3000 + n_calls, k))
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        y = (p.cumsum(1) > rng.random((len(p), 1))).argmax(1)
        pc, yc, stream = p[:3000], y[:3000], p[3000:]
        for score in ("lac", "aps", "raps"):
            d = DualThresholdConformal(randomized=False, allow_empty=True,
                                       score=score, alpha=0.1, statistic="entropy", rule="budget",
                                       rule_params={"max_abstain": 0.2}, random_state=0).fit(pc, yc)
            s = StreamingConformal(d, reference=pc, max_pending=n_calls + 1)
            for i in range(200):
                s.step(stream[i])
            s = StreamingConformal(d, reference=pc, max_pending=n_calls + 1)
            step = per_call(lambda i: s.step(stream[i]), n_calls)
            fb = per_call(lambda i: s.feedback(i, int(y[3000 + i])), n_calls)
            cal = SplitConformalClassifier(randomized=False, allow_empty=True, score=score, alpha=0.1).fit(pc, yc)
            batch1 = per_call(lambda i: cal.predict_sets(stream[i:i + 1]), min(n_calls, 5000))
            row = {"k": k, "score": score, "step": step, "feedback": fb, "ours_batch": batch1, "tcp": None}
            if tcp is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fn = {"lac": lambda: tcp.score.LAC(score_type="identity"),
                          "aps": lambda: tcp.score.APS(score_type="identity", randomized=False),
                          "raps": lambda: tcp.score.RAPS(score_type="identity", randomized=False, penalty=0.01,
                                                         kreg=5)}[score]()
                    pred = tcp.SplitPredictor(score_function=fn, model=None, alpha=0.1)
                    pred.calculate_threshold(torch.from_numpy(pc), torch.from_numpy(yc), 0.1)
                    ts = torch.from_numpy(stream)
                    row["tcp"] = per_call(lambda i: pred.predict_with_logits(ts[i:i + 1]), min(n_calls, 3000))
            rows.append(row)
            print(f"K={k} {score}: step {step[0] * 1e6:.1f} us (p99 {step[1] * 1e6:.1f}), feedback "
                  f"{fb[0] * 1e6:.1f} us, predict_sets(1 row) {batch1[0] * 1e6:.1f} us"
                  + (f", TorchCP {row['tcp'][0] * 1e6:.1f} us" if row["tcp"] else ""), flush=True)
    if args.quick:
        return
    us = lambda v: f"{v * 1e6:.1f}"  # noqa: E731
    lines = ["## streaming: per-frame `StreamingConformal.step` (K classes)", "",
             f"Machine: {machine_line()}.  ",
             f"Versions: {versions('numpy', 'numba', 'torch', 'torchcp')}.  ",
             f"Median (and 99th percentile) wall time of single calls over {n_calls} frames, one thread, "
             "DualThresholdConformal (entropy statistic, budget rule) with the shift monitor on. `step` = set + "
             "abstain flag + statistic + martingale + pending-frame bookkeeping + the output dict; `feedback` = one "
             "ACI update. Peers make only the set for one row with a cached threshold: our batch "
             "`predict_sets` and TorchCP 1.2.1 `predict_with_logits` (CPU, 1 torch thread). Target: step "
             "median <= 20 us at K = 100.", "",
             "| K | score | step median (p99) us | feedback us | our predict_sets, 1 row, us | TorchCP 1 row us | "
             "TorchCP / step |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["tcp"]
        lines.append((f"| {r['k']} | {r['score']} | {us(r['step'][0])} ({us(r['step'][1])}) | {us(r['feedback'][0])} "
                     f"| {us(r['ours_batch'][0])} | {us(t[0]) if t else 'n/a'} | ")
                     + (f"{(t[0] / r['step'][0]):.1f}x |" if t else "n/a |"))
    write_section("streaming", "\n".join(lines))
    print("wrote docs/benchmarks.md section `streaming`")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
