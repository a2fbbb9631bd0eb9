"""Matching detections to ground truth: IoU (2D), BEV IoU or centre distance (3D); Hungarian or greedy.

Hungarian matching maximises, first, the number of valid pairs (IoU >= threshold, or distance <= threshold)
and then their total IoU (or minimises their total distance). Greedy matching is the COCO rule: detections in
descending confidence each take the free ground truth they overlap most. Greedy has a property the recall risk
relies on: the matches of the detections kept at any confidence threshold are the first steps of the full
greedy run, so one run gives the matches at every threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from conformal._validation import MATCH_METRICS, as_array, check_boxes, check_match_params
from conformal.detection import _kernels as _k

__all__ = ["METRICS", "Matching", "pairwise", "hungarian", "match", "box_iou", "bev_iou", "center_distance"]

METRICS = MATCH_METRICS  # metric -> (dims it applies to, larger-is-better)


def box_iou(a, b) -> np.ndarray:
    """IoU matrix (N, M) of xyxy boxes a (N, 4) and b (M, 4)."""
    a = check_boxes(a, 2, "a")
    b = check_boxes(b, 2, "b")
    return _k.iou_2d(a, b, np.empty((a.shape[0], b.shape[0])))


def bev_iou(a, b) -> np.ndarray:
    """Bird's-eye-view IoU matrix (N, M) of rotated boxes a (N, 7), b (M, 7) (x, y, z, l, w, h, yaw)."""
    a = check_boxes(a, 3, "a")
    b = check_boxes(b, 3, "b")
    return _k.iou_bev(a, b, np.empty((a.shape[0], b.shape[0])))


def center_distance(a, b) -> np.ndarray:
    """BEV centre distance matrix (N, M) of boxes a (N, 7), b (M, 7) (the nuScenes matching criterion)."""
    a = check_boxes(a, 3, "a")
    b = check_boxes(b, 3, "b")
    return _k.center_distance(a, b, np.empty((a.shape[0], b.shape[0])))


def pairwise(pred_boxes: np.ndarray, gt_boxes: np.ndarray, metric: str) -> np.ndarray:
    """Similarity or distance matrix between validated float64 boxes (internal, no checks)."""
    out = np.empty((pred_boxes.shape[0], gt_boxes.shape[0]))
    if metric == "iou":
        return _k.iou_2d(pred_boxes, gt_boxes, out)
    if metric == "bev_iou":
        return _k.iou_bev(pred_boxes, gt_boxes, out)
    return _k.center_distance(pred_boxes, gt_boxes, out)


def hungarian(cost) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-cost assignment for a finite (N, M) cost matrix: (rows, cols), min(N, M) pairs, rows ascending.

    Same contract as scipy.optimize.linear_sum_assignment (which the core may not import)."""
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2:
        raise ValueError(f"`cost` must be a 2-D matrix; got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("`cost` must be finite (use a large finite value for forbidden pairs)")
    n, m = c.shape
    if n == 0 or m == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if n <= m:
        cols = _k.hungarian(np.ascontiguousarray(c), np.empty(n, np.int64))
        return np.arange(n, dtype=np.int64), cols
    rows_t = _k.hungarian(np.ascontiguousarray(c.T), np.empty(m, np.int64))
    order = np.argsort(rows_t)
    return rows_t[order], np.arange(m, dtype=np.int64)[order]


@dataclass(frozen=True)
class Matching:
    """Result of matching one frame.

    Attributes
    ----------
    pred_index, gt_index : int64 (P,)  Matched pairs (prediction row, ground-truth row), ascending in pred_index.
    quality : float64 (P,)             IoU (or centre distance) of each pair.
    unmatched_pred : int64             Predictions with no partner (false positives at this threshold).
    missed_gt : int64                  Ground truth no prediction matched (missed objects).
    pred_to_gt : int64 (M,)            For every prediction, its ground-truth row or -1.
    """

    pred_index: np.ndarray
    gt_index: np.ndarray
    quality: np.ndarray
    unmatched_pred: np.ndarray
    missed_gt: np.ndarray
    pred_to_gt: np.ndarray


def match_arrays(pred_boxes, gt_boxes, scores, metric: str, threshold: float, method: str) -> Matching:
    """Match validated float64 arrays (internal; see `match`)."""
    n, m = pred_boxes.shape[0], gt_boxes.shape[0]
    pred_to_gt = np.full(n, -1, np.int64)
    if n and m:
        q = pairwise(pred_boxes, gt_boxes, metric)
        larger_better = METRICS[metric][1]
        valid = q >= threshold if larger_better else q <= threshold
        if method == "greedy":
            sim = q if larger_better else -q
            order = np.argsort(-scores, kind="stable")
            _k.greedy_match(sim, order, valid, pred_to_gt)
        elif valid.any():
            # Forbidden pairs cost more than any full set of allowed pairs, so the assignment first maximises
            # the number of valid pairs, then their total quality.
            base = -q if larger_better else q
            big = (min(n, m) + 1) * (np.abs(base).max() + 1.0)
            cost = np.where(valid, base, big)
            rows, cols = hungarian(cost)
            ok = valid[rows, cols]
            pred_to_gt[rows[ok]] = cols[ok]
        pi = np.flatnonzero(pred_to_gt >= 0)
        gi = pred_to_gt[pi]
        quality = q[pi, gi]
    else:
        pi = gi = np.empty(0, np.int64)
        quality = np.empty(0)
    matched_gt = np.zeros(m, np.bool_)
    matched_gt[gi] = True
    return Matching(pred_index=pi, gt_index=gi, quality=quality, unmatched_pred=np.flatnonzero(pred_to_gt < 0),
                    missed_gt=np.flatnonzero(~matched_gt), pred_to_gt=pred_to_gt)


def match(pred_boxes, gt_boxes, *, dim: int = 2, metric: str | None = None, threshold: float = 0.5,
          method: str = "hungarian", scores=None) -> Matching:
    """Match the predicted boxes of one frame to its ground-truth boxes.

    Parameters
    ----------
    pred_boxes, gt_boxes : (M, 4) xyxy for dim=2, (M, 7) x, y, z, l, w, h, yaw for dim=3; M = 0 allowed.
    metric : "iou" (2D, default), "bev_iou" (3D, default) or "center_distance" (3D, nuScenes style).
    threshold : minimum IoU, or maximum centre distance, for a pair to count as a match.
    method : "hungarian" (optimal one-to-one) or "greedy" (COCO: by descending `scores`, which it requires).

    Examples
    --------
    >>> m = match(np.array([[0., 0, 10, 10], [50, 50, 60, 60]]), np.array([[1., 1, 10, 10]]))
    >>> m.pred_index.tolist(), m.gt_index.tolist(), m.unmatched_pred.tolist(), m.missed_gt.tolist()
    ([0], [0], [1], [])
    """
    dim, metric, threshold, method = check_match_params(dim, metric, threshold, method)
    p = check_boxes(pred_boxes, dim, "pred_boxes")
    g = check_boxes(gt_boxes, dim, "gt_boxes")
    s = None
    if method == "greedy":
        if scores is None:
            raise ValueError("greedy matching needs `scores` (the detector confidences) to order the predictions")
        s = as_array(scores, "scores").astype(np.float64, copy=False)
        if s.shape != (p.shape[0],):
            raise ValueError(f"`scores` must have shape ({p.shape[0]},); got {s.shape}")
    return match_arrays(p, g, s, metric, threshold, method)
