"""adapters.datasets: one home for the data sources, real and synthetic, importable with numpy alone."""
import doctest
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import adapters.datasets as datasets
from adapters.datasets import detection, real, shapes, street

ROOT = Path(__file__).resolve().parents[2]


def test_import_is_light_and_names_are_exported():
    code = ("import sys, adapters.datasets as d; "
            "assert callable(d.make_scenes) and callable(d.street_scan) and callable(d.make_shapes); "
            "bad = [m for m in ('torch', 'cv2', 'open3d', 'sklearn') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert set(datasets.__all__) >= {"load_fashion_mnist", "load_digits_images", "make_shapes", "make_scenes",
                                     "street_scan"}


def test_each_module_says_whether_its_data_are_real_or_synthetic():
    assert "REAL" in real.__doc__ and "SYNTHETIC" not in real.__doc__
    for mod in (shapes, detection, street):
        assert "SYNTHETIC" in mod.__doc__, mod.__name__


def test_make_scenes_docstring_and_seed():
    assert doctest.testmod(detection, optionflags=doctest.ELLIPSIS).failed == 0
    (a,), _ = datasets.make_scenes(1, rng=3)
    (b,), _ = datasets.make_scenes(1, rng=np.random.default_rng(3))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(TypeError, match="rng"):
        datasets.make_scenes(1, rng=np.random.RandomState(0))
