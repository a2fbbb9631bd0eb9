"""adapters.datasets.load_lidar_scenes: SYNTHETIC ray-cast street scans with 3D-box ground truth."""
import numpy as np
import pytest

pytest.importorskip("open3d")

from adapters.datasets import lidar_scenes  # noqa: E402
from adapters.datasets.lidar_scenes import CLASSES, load_lidar_scenes, make_lidar_scene, points_in_boxes  # noqa: E402


def test_module_says_the_scenes_are_synthetic():
    assert "SYNTHETIC" in lidar_scenes.__doc__ and "SYNTHETIC" in load_lidar_scenes.__doc__


def test_same_seed_same_scan_and_splits_are_disjoint():
    a, fa = make_lidar_scene(7)
    b, fb = make_lidar_scene(7)
    assert np.array_equal(a, b) and all(np.array_equal(fa[k], fb[k]) for k in fa)
    c, _ = make_lidar_scene(8)
    assert a.shape != c.shape or not np.array_equal(a, c)
    (s0,), _ = load_lidar_scenes("calibration", 1, start=3)
    assert np.array_equal(s0, make_lidar_scene(lidar_scenes.SPLIT_SEEDS["calibration"] + 3)[0])
    seeds = {k: set(range(v, v + 1_000_000)) for k, v in lidar_scenes.SPLIT_SEEDS.items()}
    assert not (seeds["train"] & seeds["calibration"]) and not (seeds["calibration"] & seeds["test"])


@pytest.mark.parametrize("n_rings", [32, 64])
def test_every_box_holds_exactly_the_points_the_generator_says(n_rings):
    n_objects = n_visible = 0
    for seed in range(6):
        scan, frame = make_lidar_scene(seed, n_rings=n_rings)
        m = len(frame["labels"])
        assert scan.dtype == np.float32 and scan.shape[1] == 4 and frame["boxes3d"].shape == (m, 7)
        assert frame["ring"].shape == frame["instance"].shape == frame["semantic"].shape == (len(scan),)
        assert frame["ring"].max() < n_rings and 0 <= scan[:, 3].min() and scan[:, 3].max() <= 1
        inside = points_in_boxes(scan, frame["boxes3d"])
        # the count of returns inside each box is the count of returns on that object, and they are the same points
        assert np.array_equal(inside.sum(axis=0), frame["n_points"])
        for j in range(m):
            assert np.array_equal(np.flatnonzero(inside[:, j]), np.flatnonzero(frame["instance"] == j))
        assert (frame["semantic"][frame["instance"] >= 0] >= 6).all()  # object classes only on objects
        assert (np.abs(frame["boxes3d"][:, 6]) <= np.pi / 2).all()
        n_objects += m
        n_visible += int((frame["n_points"] >= 20).sum())
    assert n_objects >= 40 and n_visible >= 15


def test_scenes_have_every_class_a_range_of_distances_and_occlusion():
    _, frames = load_lidar_scenes("train", 20)
    labels = np.concatenate([f["labels"] for f in frames])
    dist = np.concatenate([np.hypot(f["boxes3d"][:, 0], f["boxes3d"][:, 1]) for f in frames])
    pts = np.concatenate([f["n_points"] for f in frames])
    assert set(labels.tolist()) == set(range(len(CLASSES)))
    assert dist.max() > 50 and dist.min() < 15
    assert (pts == 0).any() and (pts > 500).any()  # fully hidden objects and close ones


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="split"):
        load_lidar_scenes("val")
    with pytest.raises(ValueError, match="n_scenes"):
        load_lidar_scenes("test", 0)
    with pytest.raises(ValueError, match="seed"):
        make_lidar_scene(-1)
    with pytest.raises(ValueError, match="n_rings"):
        make_lidar_scene(0, n_rings=1)
