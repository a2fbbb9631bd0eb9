"""Before/after CPU times of the hot paths between two checkouts of this repository (not part of `make bench`).

    python benchmarks/compare_revisions.py BEFORE_DIR AFTER_DIR      # e.g. git worktrees of two commits

Each checkout runs the same measurements in its own process (PYTHONPATH = the checkout). Times are the minimum over
repeats of process CPU time (time.process_time), which a busy machine disturbs far less than wall time; the last
column is after / before. Sets are pinned to the non-randomized mode both revisions share.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

MEASURE = r'''
import inspect, json, time, numpy as np
from conformal import SplitConformalClassifier
from conformal.abstention import DualThresholdConformal
from adapters.streaming import StreamingConformal
OLD = {"randomized": False, "allow_empty": True}
rng = np.random.default_rng(0)
def data(K, n):
    return rng.dirichlet(np.ones(K) * 0.1, n).astype(np.float32), rng.integers(0, K, n)
def dual(**kw):  # revisions before DualThresholdConformal took randomized / allow_empty: non-randomized anyway
    takes = "randomized" in inspect.signature(DualThresholdConformal).parameters
    return DualThresholdConformal(**kw, **(OLD if takes else {}))
def cpu(f, r):
    f(); best = 1e9
    for _ in range(r):
        t = time.process_time(); f(); best = min(best, time.process_time() - t)
    return best
def per_call(f, calls, r=5):
    f(); best = 1e9
    for _ in range(r):
        t = time.process_time()
        for _ in range(calls): f()
        best = min(best, (time.process_time() - t) / calls)
    return best
out = {}
for K in (100, 1000):
    p, y = data(K, 10000); pt, _ = data(K, 20000)
    for s in ("lac", "aps", "raps"):
        m = SplitConformalClassifier(score=s, alpha=0.1, **OLD).fit(p, y)
        out[f"SplitConformalClassifier.fit, 10,000 x {K}, {s}"] = cpu(
            lambda: SplitConformalClassifier(score=s, alpha=0.1, **OLD).fit(p, y), 20)
        out[f"predict_sets, 20,000 x {K}, {s}"] = cpu(lambda: m.predict_sets(pt), 10)
        out[f"predict_sets, one frame, K = {K}, {s}"] = per_call(lambda: m.predict_sets(pt[:1]), 2000)
p, y = data(1000, 10000)
for rule in ("youden", "budget"):
    out[f"DualThresholdConformal.fit, 10,000 x 1,000, {rule}"] = cpu(
        lambda: dual(score="aps", alpha=0.1, statistic="entropy", rule=rule).fit(p, y), 10)
p, y = data(100, 5000)
d = dual(score="aps", alpha=0.1, statistic="entropy", rule="youden").fit(p, y)
out["DualThresholdConformal.predict, one frame, K = 100"] = per_call(lambda: d.predict(p[:1]), 3000)
for K in (10, 100, 1000):
    p, y = data(K, 3000)
    d = dual(score="aps", alpha=0.1, statistic="entropy", rule="youden").fit(p, y)
    sc = StreamingConformal(d, reference=p, max_pending=20000)
    out[f"StreamingConformal.step, K = {K}, aps"] = per_call(lambda: sc.step(p[0]), 1000, r=3)
print(json.dumps(out))
'''


def measure(tree: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
    proc = subprocess.run([sys.executable, "-c", MEASURE], cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"measuring {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(t: float) -> str:
    return f"{t * 1e3:.3g} ms" if t >= 1e-3 else f"{t * 1e6:.3g} us"


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    before, after = measure(sys.argv[1]), measure(sys.argv[2])
    print("| path | before | after | after / before |\n|---|---:|---:|---:|")
    for k, b in before.items():
        a = after[k]
        print(f"| {k} | {fmt(b)} | {fmt(a)} | {a / b:.2f} |")
