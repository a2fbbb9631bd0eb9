"""conformal.detection.ap: 3D IoU and KITTI-style AP per class and range band."""
import numpy as np
import pytest

from conformal.detection.ap import (
    average_precision,
    average_precision_by_range,
    average_precision_from_inputs,
    frame_pr_inputs,
    iou_3d,
)
from conformal.detection.matching import bev_iou


def _box(x, y, z=0.0, l=4.0, w=2.0, h=1.5, yaw=0.0):  # noqa: E741
    return [x, y, z, l, w, h, yaw]


def test_iou_3d_axis_aligned_is_the_volume_ratio():
    a = np.array([_box(0, 0, 0, 4, 2, 2)])
    b = np.array([_box(1, 0, 0.5, 4, 2, 2)])  # x overlap 3, z overlap 1.5: 3 * 2 * 1.5 = 9 of 16 + 16 - 9
    np.testing.assert_allclose(iou_3d(a, b), [[9 / 23]], rtol=1e-9)
    np.testing.assert_allclose(iou_3d(a, a), [[1.0]], rtol=1e-9)
    assert iou_3d(a, np.array([_box(0, 0, 5.0)]))[0, 0] == 0.0
    assert iou_3d(a, np.zeros((0, 7))).shape == (1, 0)


def test_iou_3d_of_rotated_boxes_matches_monte_carlo():
    gen = np.random.default_rng(0)
    a = np.array([_box(0.3, -0.2, 0.1, 4.2, 1.8, 1.6, 0.4)])
    b = np.array([_box(0.0, 0.0, 0.4, 4.0, 2.0, 1.5, -0.3)])
    pts = gen.uniform(-3, 3, size=(400_000, 3))

    def inside(p, bx):
        x, y, z, l, w, h, yaw = bx  # noqa: E741
        u = (p[:, 0] - x) * np.cos(yaw) + (p[:, 1] - y) * np.sin(yaw)
        v = -(p[:, 0] - x) * np.sin(yaw) + (p[:, 1] - y) * np.cos(yaw)
        return (np.abs(u) <= l / 2) & (np.abs(v) <= w / 2) & (np.abs(p[:, 2] - z) <= h / 2)

    ia, ib = inside(pts, a[0]), inside(pts, b[0])
    mc = (ia & ib).sum() / (ia | ib).sum()
    assert abs(iou_3d(a, b)[0, 0] - mc) < 0.01
    assert iou_3d(a, b)[0, 0] < bev_iou(a, b)[0, 0]  # less vertical overlap than full


def _frames(dets, gts):
    p = {"boxes3d": np.array([d[0] for d in dets]).reshape(-1, 7), "scores": np.array([d[1] for d in dets]),
         "labels": np.array([d[2] for d in dets], np.int64)}
    g = {"boxes3d": np.array([x[0] for x in gts]).reshape(-1, 7), "labels": np.array([x[1] for x in gts], np.int64)}
    return p, g


def test_ap_known_values():
    gts = [(_box(10, 0), 0), (_box(30, 0), 0)]
    perfect = [(_box(10, 0), 0.9, 0), (_box(30, 0), 0.8, 0)]
    p, g = _frames(perfect, gts)
    assert average_precision([p], [g])["mean"] == 1.0
    # TP 0.9, FP 0.8, TP 0.7: precision 1 up to recall 1/2, then 2/3 -> R40 AP = (20 + 20 * 2/3) / 40
    p, g = _frames([(_box(10, 0), 0.9, 0), (_box(50, 5), 0.8, 0), (_box(30, 0), 0.7, 0)], gts)
    np.testing.assert_allclose(average_precision([p], [g])["per_class"][0], (20 + 20 * 2 / 3) / 40)
    # a wrong class never counts; a duplicate is a false positive
    p, g = _frames([(_box(10, 0), 0.9, 1), (_box(30, 0), 0.8, 0), (_box(30.1, 0), 0.7, 0)], gts)
    res = average_precision([p], [g])
    assert res["per_class"][0] == 0.5 and np.isnan(res["per_class"][1]) and res["mean"] == 0.5
    # a shifted box passes BEV IoU 0.5 but not 3D IoU 0.5 when it is also lifted
    p, g = _frames([(_box(10, 0, 0.9), 0.9, 0)], gts[:1])
    assert average_precision([p], [g], metric="bev_iou")["mean"] == 1.0
    assert average_precision([p], [g], metric="iou_3d")["mean"] == 0.0


def test_range_bands_ignore_objects_and_detections_outside():
    gts = [(_box(10, 0), 0), (_box(30, 0), 0)]
    p, g = _frames([(_box(10, 0), 0.9, 0), (_box(35, 8), 0.95, 0)], gts)  # near hit, far false positive
    by = average_precision_by_range([p], [g], edges=(20.0,))
    assert list(by) == ["<20 m", ">=20 m"]
    assert by["<20 m"]["mean"] == 1.0 and by["<20 m"]["n_gt"][0] == 1
    assert by[">=20 m"]["mean"] == 0.0


def test_bad_arguments():
    p, g = _frames([(_box(10, 0), 0.9, 0)], [(_box(10, 0), 0)])
    with pytest.raises(ValueError, match="metric"):
        average_precision([p], [g], metric="iou")
    with pytest.raises(ValueError, match="threshold"):
        average_precision([p], [g], threshold=0)
    with pytest.raises(ValueError, match="range_band"):
        average_precision([p], [g], range_band=(5, 1))
    with pytest.raises(ValueError, match="edges"):
        average_precision_by_range([p], [g], edges=(40, 20))


def _random_frames(gen, n):
    preds, gts = [], []
    for _ in range(n):
        m, k = int(gen.integers(0, 6)), int(gen.integers(0, 9))
        g = np.column_stack([gen.uniform(-30, 30, (m, 2)), gen.uniform(-1, 0, m), gen.uniform(0.5, 5, (m, 3)),
                             gen.uniform(-1.5, 1.5, m)])
        src = g[gen.integers(0, max(m, 1), k)] if m else np.zeros((k, 7)) + [0, 0, 0, 2, 2, 2, 0]
        p = src + gen.normal(0, [0.4, 0.4, 0.2, 0.3, 0.3, 0.2, 0.2], (k, 7))
        p[:, 3:6] = np.abs(p[:, 3:6]) + 0.1
        preds.append({"boxes3d": p, "scores": gen.uniform(0, 1, k), "labels": gen.integers(0, 3, k)})
        gts.append({"boxes3d": g, "labels": gen.integers(0, 3, m)})
    return preds, gts


@pytest.mark.parametrize("metric", ["bev_iou", "iou_3d"])
def test_ap_of_any_subset_from_per_frame_inputs_equals_average_precision(metric):
    # the audit matches each frame once and scores 10+ random splits of the pool from the per-frame entries
    gen = np.random.default_rng(5)
    preds, gts = _random_frames(gen, 60)
    parts = frame_pr_inputs(preds, gts, metric=metric, threshold=0.5, labels=range(3))
    for _ in range(20):
        sub = np.sort(gen.choice(60, size=int(gen.integers(1, 60)), replace=False)) if _ else np.arange(60)
        want = average_precision([preds[i] for i in sub], [gts[i] for i in sub], metric=metric, threshold=0.5)
        got = average_precision_from_inputs([parts[i] for i in sub])
        assert got["mean"] == want["mean"] or (np.isnan(got["mean"]) and np.isnan(want["mean"]))
        for c, v in want["per_class"].items():
            assert got["per_class"][c] == v or (np.isnan(v) and np.isnan(got["per_class"][c]))
