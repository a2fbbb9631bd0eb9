"""Warm-up compiles (or loads) the kernels of the common paths and leaves no state behind."""
import os
import subprocess
import sys

import numpy as np


def test_core_warmup_runs_every_step_and_returns_times():
    import conformal

    times = conformal.warmup(dtypes=(np.float32,), detection=True)
    assert set(times) == {"scores and calibrators (float32)", "abstention (float32)",
                          "per-frame online path (float32)", "conformal detection (2D and 3D)"}
    assert all(t >= 0 for t in times.values())


def test_perturbations_warmup_covers_both_modalities():
    import perturbations

    times = perturbations.warmup()
    assert {"image corruptions", "point-cloud corruptions"} <= set(times)


def test_cli_warmup(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "audit", "warmup", "--core-only"], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "warm-up done" in proc.stdout and "scores and calibrators (float32)" in proc.stdout


def test_numba_cache_dir_serves_read_only_installs(tmp_path):
    # A read-only install cannot hold the cache beside the package; $NUMBA_CACHE_DIR (the documented knob, and
    # where Numba's per-user fallback points) must receive the compiled kernels instead.
    code = ("import numpy as np; from conformal import SplitConformalClassifier as S; "
            "p = np.random.default_rng(0).dirichlet(np.ones(4), 50).astype(np.float32); "
            "S(score='lac').fit(p, np.arange(50) % 4).predict_sets(p)")
    cache = tmp_path / "numba-cache"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert list(cache.rglob("*.nbi")) and list(cache.rglob("*.nbc"))
