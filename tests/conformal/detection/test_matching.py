"""Matching and overlap kernels against brute-force / independent references."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformal.detection import _kernels as K
from conformal.detection import bev_iou, box_iou, center_distance, hungarian, match

from . import _naive

DK = "conformal.detection._kernels."


def _rand_boxes(rng, n, size=100.0):
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(1, 40, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


def _rand_boxes3d(rng, n):
    return np.column_stack([rng.uniform(-8, 8, (n, 2)), rng.uniform(0, 1, n), rng.uniform(0.5, 6, (n, 3)),
                            rng.uniform(-4, 4, n)])


@pytest.mark.twin(DK + "iou_2d", twin=_naive.iou_2d)
@settings(max_examples=40, deadline=None)
@given(st.integers(0, 6), st.integers(0, 6), st.integers(0, 10 ** 6))
def test_iou_2d_matches_naive(n, m, seed):
    rng = np.random.default_rng(seed)
    a, b = _rand_boxes(rng, n), _rand_boxes(rng, m)
    np.testing.assert_allclose(box_iou(a, b), _naive.iou_2d(a, b), rtol=1e-12, atol=1e-12)


@pytest.mark.twin(DK + "iou_bev", DK + "_corners", DK + "_clip_area", twin=_naive.bev_iou_raster)
def test_bev_iou_axis_aligned_equals_2d_and_rotated_matches_raster():
    rng = np.random.default_rng(0)
    a, b = _rand_boxes3d(rng, 6), _rand_boxes3d(rng, 5)
    a0, b0 = a.copy(), b.copy()
    a0[:, 6] = b0[:, 6] = 0.0

    def xyxy(x):
        return np.column_stack([x[:, 0] - x[:, 3] / 2, x[:, 1] - x[:, 4] / 2, x[:, 0] + x[:, 3] / 2,
                                x[:, 1] + x[:, 4] / 2])

    np.testing.assert_allclose(bev_iou(a0, b0), _naive.iou_2d(xyxy(a0), xyxy(b0)), atol=1e-12)
    # yaw = pi/2 swaps length and width; yaw + pi is the same rectangle
    a1 = a0.copy()
    a1[:, 6] = math.pi / 2
    a1[:, [3, 4]] = a0[:, [4, 3]]
    np.testing.assert_allclose(bev_iou(a1, b0), bev_iou(a0, b0), atol=1e-9)
    a2 = a.copy()
    a2[:, 6] += math.pi
    np.testing.assert_allclose(bev_iou(a2, b), bev_iou(a, b), atol=1e-9)
    # rotated: independent rasterised reference, to grid resolution
    np.testing.assert_allclose(bev_iou(a, b), _naive.bev_iou_raster(a, b), atol=0.02)
    assert (bev_iou(a, b) > 0).sum() >= 3  # the check is not vacuous


@pytest.mark.twin(DK + "center_distance", twin="inline")
def test_center_distance():
    rng = np.random.default_rng(1)
    a, b = _rand_boxes3d(rng, 4), _rand_boxes3d(rng, 3)
    ref = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
    np.testing.assert_allclose(center_distance(a, b), ref, rtol=1e-12)


@pytest.mark.twin(DK + "hungarian", twin=_naive.best_assignment_value)
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 10 ** 6))
def test_hungarian_is_optimal(n, m, seed):
    cost = np.random.default_rng(seed).normal(size=(n, m))
    rows, cols = hungarian(cost)
    assert len(rows) == min(n, m) and len(set(cols.tolist())) == len(cols) and len(set(rows.tolist())) == len(rows)
    assert cost[rows, cols].sum() == pytest.approx(_naive.best_assignment_value(cost), abs=1e-9)


def test_hungarian_agrees_with_scipy_on_larger_problems():
    from scipy.optimize import linear_sum_assignment
    rng = np.random.default_rng(2)
    for shape in [(30, 30), (20, 45), (45, 20)]:
        cost = rng.uniform(size=shape)
        r, c = hungarian(cost)
        r2, c2 = linear_sum_assignment(cost)
        assert cost[r, c].sum() == pytest.approx(cost[r2, c2].sum(), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 5), st.integers(0, 5), st.integers(0, 10 ** 6), st.sampled_from([0.1, 0.3, 0.5]))
def test_match_agrees_with_brute_force(n, m, seed, thr):
    rng = np.random.default_rng(seed)
    gt = _rand_boxes(rng, m, size=60)
    pred = np.concatenate([gt[: min(n, m)] + rng.normal(0, 4, (min(n, m), 4)), _rand_boxes(rng, max(n - m, 0), 60)])
    pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
    res = match(pred, gt, threshold=thr)
    q = _naive.iou_2d(pred, gt)
    k, best = _naive.brute_force_match(q, thr)
    assert res.pred_index.size == k
    assert res.quality.sum() == pytest.approx(best, abs=1e-9)
    assert (res.quality >= thr).all()
    assert set(res.unmatched_pred.tolist()) | set(res.pred_index.tolist()) == set(range(n))
    assert set(res.missed_gt.tolist()) | set(res.gt_index.tolist()) == set(range(m))


@pytest.mark.twin(DK + "greedy_match", twin=_naive.greedy)
@settings(max_examples=40, deadline=None)
@given(st.integers(0, 6), st.integers(0, 6), st.integers(0, 10 ** 6))
def test_greedy_matches_naive(n, m, seed):
    rng = np.random.default_rng(seed)
    gt = _rand_boxes(rng, m, size=50)
    pred = _rand_boxes(rng, n, size=50)
    scores = rng.uniform(size=n)
    res = match(pred, gt, threshold=0.1, method="greedy", scores=scores)
    q = _naive.iou_2d(pred, gt)
    np.testing.assert_array_equal(res.pred_to_gt, _naive.greedy(q, scores, q >= 0.1))


def test_center_distance_matching_3d():
    gt = np.array([[10.0, 0, 0, 4, 2, 1.5, 0], [20.0, 5, 0, 4, 2, 1.5, 3.0]])
    pred = np.array([[20.5, 5, 0, 4, 2, 1.5, 0], [10.2, 0.1, 0, 4, 2, 1.5, 0], [40.0, 0, 0, 4, 2, 1.5, 0]])
    r = match(pred, gt, dim=3, metric="center_distance", threshold=2.0)
    assert r.pred_to_gt.tolist() == [1, 0, -1] and r.missed_gt.size == 0
    r = match(pred, gt, dim=3, threshold=0.3)  # BEV IoU; yaw 3.0 vs 0 is nearly the same rectangle
    assert r.pred_to_gt.tolist() == [1, 0, -1]
    gt[1, 6] = 1.2  # now a 4 x 2 box crossing the prediction at ~69 degrees: IoU below 0.5
    assert _naive.bev_iou_raster(pred[:1], gt[1:])[0, 0] < 0.45
    assert match(pred, gt, dim=3, threshold=0.5).pred_to_gt.tolist() == [-1, 0, -1]


def test_empty_frames_are_valid():
    e = np.zeros((0, 4))
    b = np.array([[0.0, 0, 5, 5]])
    assert match(e, b).missed_gt.tolist() == [0]
    assert match(b, e).unmatched_pred.tolist() == [0]
    assert match(e, e).pred_index.size == 0


@pytest.mark.twin(DK + "apply_margins", DK + "_class_margins", twin=_naive.apply_margins)
def test_apply_margins_matches_naive():
    rng = np.random.default_rng(3)
    boxes = rng.normal(size=(20, 4))
    scale = rng.uniform(0.5, 2, (20, 4))
    q_lo, q_hi = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    mask = rng.random((20, 3)) < 0.5
    lo, hi = K.apply_margins(boxes, scale, q_lo, q_hi, mask, np.empty((20, 4)), np.empty((20, 4)))
    nlo, nhi = _naive.apply_margins(boxes, scale, q_lo, q_hi, mask)
    np.testing.assert_array_equal(lo, nlo)
    np.testing.assert_array_equal(hi, nhi)


@pytest.mark.twin(DK + "scaled_margins", DK + "_scale", DK + "_class_margins", twin=_naive.apply_margins)
@pytest.mark.parametrize("dim,scale", [(2, "none"), (2, "size"), (2, "uncertainty"), (3, "none"), (3, "size"),
                                       (3, "range"), (3, "uncertainty")])
def test_scaled_margins_kernel_matches_box_scales(dim, scale):
    from conformal.detection.intervals import SCALE_MODES, box_scales
    rng = np.random.default_rng(4)
    boxes = _rand_boxes(rng, 30) if dim == 2 else _rand_boxes3d(rng, 30)
    boxes[0, 2:4] = boxes[0, 0:2]  # a degenerate box: the scale floor applies
    std = rng.uniform(0.5, 2, boxes.shape)
    q_lo, q_hi = rng.normal(size=(2, boxes.shape[1])), rng.normal(size=(2, boxes.shape[1]))
    mask = rng.random((30, 2)) < 0.6
    lo, hi = K.scaled_margins(boxes, std, SCALE_MODES[(dim, scale)], 1e-3, q_lo, q_hi, mask,
                              np.empty_like(boxes), np.empty_like(boxes))
    nlo, nhi = _naive.apply_margins(boxes, box_scales(boxes, dim, scale, std, 1e-3), q_lo, q_hi, mask)
    np.testing.assert_array_equal(lo, nlo)
    np.testing.assert_array_equal(hi, nhi)


@pytest.mark.twin(DK + "outer_inner", twin="inline")
def test_outer_inner_kernel():
    from conformal.detection import outer_inner
    rng = np.random.default_rng(5)
    lo, hi = rng.normal(size=(7, 4)), rng.normal(size=(7, 4))
    o, i = outer_inner(lo, hi)
    np.testing.assert_array_equal(o, np.concatenate([lo[:, :2], hi[:, 2:]], axis=1))
    np.testing.assert_array_equal(i, np.concatenate([hi[:, :2], lo[:, 2:]], axis=1))


@pytest.mark.twin("conformal._kernels.checks.box_errors", twin=_naive.box_errors)
@settings(max_examples=60, deadline=None)
@given(dim=st.sampled_from([2, 3]), m=st.integers(0, 8), seed=st.integers(0, 10 ** 6),
       bad=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 6), st.sampled_from([np.nan, np.inf, -1e3, -1.0]))))
def test_box_check_kernel_matches_naive(dim, m, seed, bad):
    from conformal._kernels.checks import box_errors
    rng = np.random.default_rng(seed)
    boxes = _rand_boxes(rng, m) if dim == 2 else _rand_boxes3d(rng, m)
    for i, j, v in bad:
        if i < m and j < boxes.shape[1]:
            boxes[i, j] = v
    assert tuple(box_errors(boxes, dim)) == _naive.box_errors(boxes, dim)
