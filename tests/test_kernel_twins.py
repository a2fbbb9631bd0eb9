"""Every Numba kernel has a NumPy-twin test: the meta-test of the rule "every kernel is tested against a plain
NumPy twin" (docs: the house style's Kernels section).

Kernels are discovered, not listed: every numba Dispatcher *defined* in a `_kernels` module (or a module of a
`_kernels` package) of conformal/, perturbations/ and adapters/. Twin tests declare what they cover with
``@pytest.mark.twin(*kernels, twin=...)`` (see tests/conftest.py). The suite is collected in a subprocess with
the declarations written out, and this test fails when
  - a discovered kernel is declared by no collected test (a new kernel without a twin test),
  - a declaration names a kernel that does not exist (renamed or removed: a stale declaration),
  - a declaring test is unconditionally skipped, or its twin is itself a Numba kernel, or neither a callable
    the test's code refers to nor "inline" with the kernel named in the test body (so a marker cannot vouch
    for a test that never calls the twin).
"""
from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("conformal", "perturbations", "adapters")
TWIN_TEST_DIRS = ("tests/conformal", "tests/perturbations", "tests/adapters", "tests/reference")


def kernel_modules() -> list[str]:
    mods = []
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            if f.stem != "__init__" and "_kernels" in parts:
                mods.append(".".join(parts))
    return mods


def discovered_kernels() -> dict[str, object]:
    from numba.core.dispatcher import Dispatcher

    found = {}
    for name in kernel_modules():
        mod = importlib.import_module(name)
        for attr, value in vars(mod).items():
            if isinstance(value, Dispatcher) and value.py_func.__module__ == name:  # defined here, not imported
                found[f"{name}.{attr}"] = value
    return found


def collected_declarations(tmp_path) -> list[dict]:
    report = tmp_path / "twins.json"
    env = {**os.environ, "CONFORMAL_TWIN_REPORT": str(report), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           *TWIN_TEST_DIRS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"collecting the twin tests failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(report.read_text())


def test_kernel_discovery_finds_the_kernel_modules():
    mods = kernel_modules()
    assert "conformal._kernels.scores" in mods and "conformal._kernels.online" in mods
    assert "conformal._kernels.statistics" in mods and "perturbations._kernels.image" in mods
    kernels = discovered_kernels()
    assert "conformal._kernels.scores.set_rows" in kernels and "conformal._kernels.online.frame_step" in kernels
    # imported helpers are attributed to their own module only
    assert "conformal._kernels.online._row_check" not in kernels


def test_every_kernel_has_a_numpy_twin_test(tmp_path):
    kernels = discovered_kernels()
    decls = collected_declarations(tmp_path)
    assert decls, "no test declares @pytest.mark.twin"
    problems = []
    covered = set()
    for d in decls:
        where = d["nodeid"]
        twin = d["twin"]
        if d["skipped"]:
            problems.append(f"{where}: a twin test must not be skipped unconditionally")
        if twin["kind"] == "invalid":
            problems.append(f"{where}: `twin` must be a callable or 'inline'; got {twin['name']!r}")
        elif twin["is_dispatcher"]:
            problems.append(f"{where}: twin {twin['name']} is a Numba kernel, not a plain NumPy twin")
        elif twin["kind"] == "callable" and not d["twin_referenced"]:
            problems.append(f"{where}: the test's code never refers to its twin {twin['module']}.{twin['name']}")
        if not d["kernels"]:
            problems.append(f"{where}: a twin marker must name the kernels it covers")
        for k in d["kernels"]:
            if k not in kernels:
                problems.append(f"{where}: declares {k!r}, which is not a kernel (renamed or removed?)")
                continue
            if twin["kind"] == "inline" and not re.search(rf"\b{re.escape(k.rsplit('.', 1)[1])}\b", d["source"]):
                problems.append(f"{where}: an inline twin test must call {k} itself")
            covered.add(k)
    missing = sorted(set(kernels) - covered)
    if missing:
        problems.append("kernels without a NumPy-twin test (declare them with @pytest.mark.twin on the test that "
                        "compares them with their twin):\n  " + "\n  ".join(missing))
    assert not problems, "\n".join(problems)
