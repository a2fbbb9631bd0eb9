"""First-call cost: Numba compiles on the first call of each kernel signature and caches the machine code. Each
row runs in a NEW process with its own, initially empty, Numba cache directory, so nothing is shared with other
runs. Writes the `warmup` section of docs/benchmarks.md.

Rows: (1) a fresh environment, no warm-up: the first fit + predict, the first StreamingConformal.step and the
first fog corruption compile their kernels; (2) `conformal.warmup()` and `perturbations.warmup()` into an empty
cache (what `conformal-audit warmup` does once after installing); (3) the same into the filled cache (what a
long-running process does at start-up); (4) a new process with the filled cache, without calling warm-up; (5) a
new process that calls `conformal.warmup()` first.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from _report import machine_line, versions, write_section  # noqa: E402

FIRST = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, conformal
from adapters.streaming import StreamingConformal
t_import = time.perf_counter() - t0
warm = {}
if "{mode}" == "warm":
    t = time.perf_counter(); conformal.warmup(); warm["conformal.warmup"] = time.perf_counter() - t
rng = np.random.default_rng(0)
p = rng.dirichlet(np.ones(10), size=2000).astype(np.float32); y = rng.integers(0, 10, 2000)
t = time.perf_counter()
cp = conformal.SplitConformalClassifier(score="aps", alpha=0.1).fit(p[:1000], y[:1000]); cp.predict_sets(p[1000:])
fit_predict = time.perf_counter() - t
st = StreamingConformal(cp, reference=p[1000:1500])
t = time.perf_counter(); st.step(p[1500]); first_step = time.perf_counter() - t
t = time.perf_counter(); st.step(p[1501]); second_step = time.perf_counter() - t
img = rng.integers(0, 256, (28, 28), dtype=np.uint8)
from perturbations.image import corrupt
t = time.perf_counter(); corrupt(img, "fog", 3, rng=0); first_fog = time.perf_counter() - t
print(json.dumps({"import": t_import, **warm, "fit_predict": fit_predict, "first_step": first_step,
                  "second_step": second_step, "first_fog": first_fog}))
"""

WARMUP = r"""
import json, time
t = time.perf_counter(); import conformal, perturbations
conformal.warmup(); tc = time.perf_counter() - t
t = time.perf_counter(); perturbations.warmup(); tp = time.perf_counter() - t
print(json.dumps({"conformal.warmup": tc, "perturbations.warmup": tp}))
"""


def run(code: str, cache: str) -> dict:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(HERE.parent)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def ms(x: float) -> str:
    return f"{1e3 * x:.1f} ms" if x < 1 else f"{x:.2f} s"


def main():
    with tempfile.TemporaryDirectory() as cold, tempfile.TemporaryDirectory() as cache:
        fresh = run(FIRST.replace("{mode}", "plain"), cold)
        filling = run(WARMUP, cache)
        loading = run(WARMUP, cache)
        plain = run(FIRST.replace("{mode}", "plain"), cache)
        warm = run(FIRST.replace("{mode}", "warm"), cache)
    rows = [
        ("(1) fresh environment, no warm-up", "", ms(fresh["fit_predict"]), ms(fresh["first_step"]),
         ms(fresh["first_fog"])),
        ("(2) `conformal-audit warmup` into an empty cache",
         f"{ms(filling['conformal.warmup'])} + {ms(filling['perturbations.warmup'])}", "", "", ""),
        ("(3) the same, cache filled (start-up of a long-running process)",
         f"{ms(loading['conformal.warmup'])} + {ms(loading['perturbations.warmup'])}", "", "", ""),
        ("(4) new process, cache filled, no warm-up call", "", ms(plain["fit_predict"]), ms(plain["first_step"]),
         ms(plain["first_fog"])),
        ("(5) new process, `conformal.warmup()` first", ms(warm["conformal.warmup"]), ms(warm["fit_predict"]),
         ms(warm["first_step"]), ms(plain["first_fog"]) + " (perturbations not warmed)"),
    ]
    lines = [f"Machine: {machine_line()}. Versions: {versions('numpy', 'numba', 'llvmlite', 'scipy')}.", "",
             "Every row is a new Python process with its own Numba cache directory (`NUMBA_CACHE_DIR`), empty for "
             "row 1 and filled by row 2 for rows 3-5. First fit + predict: `SplitConformalClassifier(score='aps')` "
             "on 1,000 x 10 float32 calibration rows, predict on 1,000; first step: the first "
             "`StreamingConformal.step` (with the shift monitor) after construction; first fog: the first "
             "`perturbations.image.corrupt(fog)` of a 28 x 28 image. Import of `conformal` + `adapters.streaming`: "
             f"{ms(plain['import'])}. A second step costs {1e6 * plain['second_step']:.0f} us.", "",
             "| row | warm-up call | first fit + predict | first step | first fog |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    lines += ["", "Targets (issue 18): after warm-up, first fit + predict <= 0.3 s and first step <= 5 ms: "
              f"{'met' if warm['fit_predict'] <= 0.3 and warm['first_step'] <= 0.005 else 'MISSED'} "
              f"({ms(warm['fit_predict'])}, {ms(warm['first_step'])}). Without the warm-up call a new process "
              "still pays Numba's one-off initialisation (its typing registries; SciPy is imported by Numba when "
              "it is installed) and the loading of each cached kernel on its first call (row 4)."]
    print("\n".join(lines))
    write_section("warmup", "### First calls and warm-up (`benchmarks/bench_warmup.py`)\n\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
