import os
import textwrap

import pytest

CORRUPTIONS = textwrap.dedent('''
    import numpy as np

    def noise(x, severity, rng, **params):
        y = x.astype(np.float64) + rng.normal(0.0, 25.0 * severity, x.shape)
        return np.clip(np.rint(y), 0, 255).astype(np.uint8)

    def dim(x, severity, rng, **params):
        return np.rint(x * (1.0 - 0.15 * severity)).astype(np.uint8)

    def broken(x, severity, rng, **params):
        if severity == 2:
            raise ArithmeticError("this corruption fails at severity 2")
        return x.copy()
''')


@pytest.fixture(scope="module")
def corr_module(tmp_path_factory):
    """A module of custom corruptions importable here, in spawned workers and in Ray workers (which inherit
    PYTHONPATH); both changes are undone after each test module."""
    d = tmp_path_factory.mktemp("mods")
    (d / "audit_test_corruptions.py").write_text(CORRUPTIONS)
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(d))
    mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(d), os.environ.get("PYTHONPATH", "")) if p))
    yield "audit_test_corruptions"
    mp.undo()


@pytest.fixture(scope="module")
def tiny_config(corr_module):
    def make(**over):
        cfg = {
            "name": "tiny",
            "seed": 3,
            "data": {"name": "digits", "params": {"size": 8}},
            "model": {"name": "sklearn_logreg", "params": {"C": 0.1}},
            "split": {"train_fraction": 0.5, "calibration_fraction": 0.5, "repeats": 20},
            "conformal": {"score": "aps", "alpha": 0.1},
            "abstention": {"statistic": "entropy", "rule": "youden", "target": "error"},
            "corruptions": [{"name": f"{corr_module}:noise", "severities": [1, 3]},
                            {"name": f"{corr_module}:dim", "severities": [2, 4]}],
            "output": {"plots": False, "report": False, "examples": 2},
        }
        cfg.update(over)
        return cfg
    return make
