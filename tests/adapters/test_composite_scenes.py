"""adapters.datasets.load_composite_scenes: real objects on real photographs, exact boxes, disjoint split pools."""
import doctest

import numpy as np
import pytest

from adapters.datasets import composite, load_composite_scenes


@pytest.fixture(scope="module")
def test_scenes():
    return load_composite_scenes("test", 60)


def test_shapes_labels_and_counts(test_scenes):
    images, gts = test_scenes
    assert images.shape == (60, 128, 128, 3) and images.dtype == np.uint8
    counts = np.array([g["labels"].size for g in gts])
    assert counts.min() == 0 and counts.max() <= composite.MAX_OBJECTS and counts.max() >= 5
    for g in gts:
        assert g["boxes"].dtype == np.float64 and g["boxes"].shape == (g["labels"].size, 4)
        assert g["labels"].dtype == np.int64 and np.all((g["labels"] >= 0) & (g["labels"] < 10))
        b = g["boxes"]
        assert np.all(b[:, :2] >= 0) and np.all(b[:, 2:] <= 128) and np.all(b[:, 2:] > b[:, :2])
        assert np.all((b[:, 2:] - b[:, :2]).max(1) <= composite.MAX_SIZE + 1)
    sides = np.concatenate([g["boxes"][:, 2:] - g["boxes"][:, :2] for g in gts]).max(1)
    assert sides.min() < 30 and sides.max() > 60  # several scales


def test_deterministic_and_prefix_stable(test_scenes):
    images, gts = test_scenes
    again, gts2 = load_composite_scenes("test", 10)
    assert np.array_equal(images[:10], again)
    assert all(np.array_equal(a["boxes"], b["boxes"]) and np.array_equal(a["labels"], b["labels"])
               for a, b in zip(gts[:10], gts2))
    other, _ = load_composite_scenes("calibration", 10)
    assert not np.array_equal(images[:10], other)


def test_boxes_are_exact(test_scenes):
    """In a one-object scene the pixels that differ from the background crop span exactly the box."""
    images, gts = test_scenes
    _, _, photos = composite._pools("test")
    checked = 0
    for i, g in enumerate(gts):
        if g["labels"].size != 1:
            continue
        rng = np.random.default_rng([composite._SPLIT_SEED["test"], i, 128])
        bg = np.clip(np.rint(composite._background(rng, photos, 128)), 0, 255).astype(np.uint8)
        ys, xs = np.nonzero(np.any(images[i] != bg, axis=2))
        x1, y1, x2, y2 = g["boxes"][0]
        assert xs.min() >= x1 and xs.max() + 1 <= x2 and ys.min() >= y1 and ys.max() + 1 <= y2
        assert abs(xs.min() - x1) <= 1 and abs(xs.max() + 1 - x2) <= 1
        assert abs(ys.min() - y1) <= 1 and abs(ys.max() + 1 - y2) <= 1
        checked += 1
    assert checked >= 3


def test_split_pools_are_disjoint():
    pools = composite.SPLIT_POOLS
    bgs = [set(p["backgrounds"]) for p in pools.values()]
    assert all(not (a & b) for i, a in enumerate(bgs) for b in bgs[i + 1:])
    ranges = [p["objects"] for p in pools.values()]
    for i, (s1, lo1, hi1) in enumerate(ranges):
        for s2, lo2, hi2 in ranges[i + 1:]:
            assert s1 != s2 or hi1 <= lo2 or hi2 <= lo1


def test_docstring_says_synthetic_composition_and_runs():
    assert "SYNTHETIC COMPOSITION" in composite.__doc__ and "REAL" in composite.__doc__
    assert doctest.testmod(composite).failed == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        load_composite_scenes("val")
    with pytest.raises(ValueError, match="size"):
        load_composite_scenes("test", 2, size=64)
    with pytest.raises(TypeError, match="`n`"):
        load_composite_scenes("test", 2.0)
