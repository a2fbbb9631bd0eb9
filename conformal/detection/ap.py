"""3D IoU and average precision of 3D detections, per class and per range band (KITTI-style, simplified).

``iou_3d``: the BEV intersection of two rotated boxes (from the BEV IoU kernel: I = IoU (A1 + A2) / (1 + IoU))
times their vertical overlap, over the union of the volumes (boxes have a vertical axis).

``average_precision``: per frame, detections of one class in descending score each take the free ground truth
of that class they overlap most (IoU >= `threshold`; the COCO / KITTI greedy rule); precision is interpolated
at `n_recall_points` recall levels (KITTI's R40 uses 40, 1/40 .. 1). With a range band, ground truth outside the
band and the detections matched to it are ignored, as are unmatched detections centred outside the band (KITTI's
"don't care" treatment), so a band's AP is not polluted by objects it does not contain.
"""
from __future__ import annotations

import numbers

import numpy as np

from conformal._validation import check_boxes, check_frame_pairs
from conformal.detection.matching import bev_iou

__all__ = ["iou_3d", "average_precision", "average_precision_by_range", "frame_pr_inputs",
           "average_precision_from_inputs"]

AP_METRICS = ("iou_3d", "bev_iou")


def _iou3d_checked(a, b, bev):
    area_a, area_b = a[:, 3] * a[:, 4], b[:, 3] * b[:, 4]
    inter_bev = bev * (area_a[:, None] + area_b[None, :]) / (1.0 + bev)
    top = np.minimum(a[:, 2:3] + a[:, 5:6] / 2, (b[:, 2] + b[:, 5] / 2)[None])
    bottom = np.maximum(a[:, 2:3] - a[:, 5:6] / 2, (b[:, 2] - b[:, 5] / 2)[None])
    inter = inter_bev * np.clip(top - bottom, 0.0, None)
    union = (area_a * a[:, 5])[:, None] + (area_b * b[:, 5])[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def iou_3d(a, b) -> np.ndarray:
    """3D IoU matrix (N, M) of rotated boxes a (N, 7), b (M, 7) (x, y, z centre, l, w, h, yaw about z)."""
    a = check_boxes(a, 3, "a")
    b = check_boxes(b, 3, "b")
    return _iou3d_checked(a, b, bev_iou(a, b))


def _check(metric, threshold, n_recall_points):
    if metric not in AP_METRICS:
        raise ValueError(f"`metric` must be one of {AP_METRICS}; got {metric!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 < threshold <= 1:
        raise ValueError(f"`threshold` must be an IoU in (0, 1]; got {threshold!r}")
    if isinstance(n_recall_points, bool) or not isinstance(n_recall_points, numbers.Integral) or n_recall_points < 1:
        raise ValueError(f"`n_recall_points` must be a positive int (40 for KITTI's R40); got {n_recall_points!r}")


def _frame_pr_inputs(p, g, label, metric, threshold, band):
    """(scores, is_tp) of the counted detections of class `label` in one validated frame, and its counted ground
    truths."""
    scores, tp = [], []
    pk = np.flatnonzero(p["labels"] == label)
    gk = np.flatnonzero(g["labels"] == label)
    pb, gb = p["boxes"][pk], g["boxes"][gk]
    ps = p["scores"][pk]
    if band is None:
        g_in = np.ones(len(gk), bool)
        p_in = np.ones(len(pk), bool)
    else:
        g_in = (np.hypot(gb[:, 0], gb[:, 1]) >= band[0]) & (np.hypot(gb[:, 0], gb[:, 1]) < band[1])
        p_in = (np.hypot(pb[:, 0], pb[:, 1]) >= band[0]) & (np.hypot(pb[:, 0], pb[:, 1]) < band[1])
    n_gt = int(g_in.sum())
    if len(pk):
        if len(gk):
            bev = bev_iou(pb, gb)
            iou = bev if metric == "bev_iou" else _iou3d_checked(pb, gb, bev)
        else:
            iou = np.zeros((len(pk), 0))
        free = np.ones(len(gk), bool)
        for i in np.argsort(-ps, kind="stable"):
            cand = np.flatnonzero(free & (iou[i] >= threshold))
            if cand.size:
                j = cand[np.argmax(iou[i, cand])]
                free[j] = False
                if g_in[j]:
                    scores.append(ps[i])
                    tp.append(True)
            elif p_in[i]:
                scores.append(ps[i])
                tp.append(False)
    return np.asarray(scores, np.float64), np.asarray(tp, bool), n_gt


def _pr_inputs(preds, gts, label, metric, threshold, band):
    """(scores, is_tp) of the counted detections of class `label`, and the number of counted ground truths."""
    parts = [_frame_pr_inputs(p, g, label, metric, threshold, band) for p, g in zip(preds, gts)]
    if not parts:
        return np.zeros(0, np.float64), np.zeros(0, bool), 0
    return (np.concatenate([q[0] for q in parts]), np.concatenate([q[1] for q in parts]),
            sum(q[2] for q in parts))


def frame_pr_inputs(predictions, ground_truth, *, metric: str = "iou_3d", threshold: float = 0.5,
                    labels=None) -> list:
    """Per frame, what `average_precision` draws from it: ``{label: (scores, is_tp, n_gt)}`` for each of `labels`
    (default: every label in the frames). A frame's matching does not depend on the other frames, so an AP
    over any subset of frames is `average_precision_from_inputs` of their entries, number for number; an
    audit that scores many random subsets of one pool matches each frame once."""
    _check(metric, threshold, 40)
    preds, gts = check_frame_pairs(predictions, ground_truth, 3)
    if labels is None:
        labels = sorted(set(np.concatenate([g["labels"] for g in gts] + [p["labels"] for p in preds]).tolist()))
    return [{int(c): _frame_pr_inputs(p, g, c, metric, threshold, None) for c in labels} for p, g in zip(preds, gts)]


def average_precision_from_inputs(parts: list, *, n_recall_points: int = 40) -> dict:
    """`average_precision` of the frames whose `frame_pr_inputs` entries are `parts` (same keys, same numbers:
    a class without ground truth in these frames is nan and left out of the mean)."""
    _check("iou_3d", 0.5, n_recall_points)
    labels = sorted(set().union(*[q.keys() for q in parts])) if parts else []
    per_class, n_gt = {}, {}
    for c in labels:
        rows = [q[c] for q in parts if c in q]
        s, t = np.concatenate([r[0] for r in rows]), np.concatenate([r[1] for r in rows])
        n = sum(r[2] for r in rows)
        per_class[c], n_gt[c] = _interpolated_ap(s, t, n, n_recall_points), n
    valid = [v for v in per_class.values() if v == v]
    return {"per_class": per_class, "n_gt": n_gt, "mean": float(np.mean(valid)) if valid else float("nan")}


def _interpolated_ap(scores, tp, n_gt, n_recall_points):
    if n_gt == 0:
        return float("nan")
    if scores.size == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    ctp = np.cumsum(tp[order])
    recall = ctp / n_gt
    precision = ctp / np.arange(1, len(order) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at recall >= r
    levels = np.arange(1, n_recall_points + 1) / n_recall_points
    pos = np.searchsorted(recall, levels, side="left")
    return float(np.where(pos < len(recall), envelope[np.minimum(pos, len(recall) - 1)], 0.0).mean())


def average_precision(predictions, ground_truth, *, metric: str = "iou_3d", threshold: float = 0.5,
                      n_recall_points: int = 40, range_band=None) -> dict:
    """AP per class and its mean over the classes that have ground truth.

    Parameters
    ----------
    predictions, ground_truth : lists of 3D frames ({"boxes3d", "scores", "labels"} / {"boxes3d", "labels"})
    metric : "iou_3d" or "bev_iou"
    threshold : float in (0, 1]
        IoU a detection needs to count as a true positive (KITTI: 0.7 cars, 0.5 pedestrians and cyclists).
    n_recall_points : int
        Interpolation points (40: KITTI R40; 11: VOC 2007 without the recall-0 point).
    range_band : (lo, hi) metres or None
        Count only objects (and unmatched detections) with BEV centre distance in [lo, hi).

    Returns
    -------
    dict: ``per_class`` {label: AP or nan (no ground truth)}, ``n_gt`` {label: count}, ``mean`` (nan when no
    class has ground truth).
    """
    _check(metric, threshold, n_recall_points)
    if range_band is not None:
        lo, hi = (float(v) for v in range_band)
        if not 0 <= lo < hi:
            raise ValueError(f"`range_band` must be (lo, hi) metres with 0 <= lo < hi; got {range_band!r}")
        range_band = (lo, hi)
    preds, gts = check_frame_pairs(predictions, ground_truth, 3)
    labels = sorted(set(np.concatenate([g["labels"] for g in gts] + [p["labels"] for p in preds]).tolist()))
    per_class, n_gt = {}, {}
    for c in labels:
        s, t, n = _pr_inputs(preds, gts, c, metric, threshold, range_band)
        per_class[c], n_gt[c] = _interpolated_ap(s, t, n, n_recall_points), n
    valid = [v for v in per_class.values() if v == v]
    return {"per_class": per_class, "n_gt": n_gt, "mean": float(np.mean(valid)) if valid else float("nan")}


def average_precision_by_range(predictions, ground_truth, *, edges=(20.0, 40.0), **kwargs) -> dict:
    """`average_precision` in the range bands [0, e0), [e0, e1), ..., [e_last, inf); keys like "<20 m"."""
    e = [float(v) for v in edges]
    if any(b <= a for a, b in zip(e, e[1:])) or not e or e[0] <= 0:
        raise ValueError(f"`edges` must be increasing positive distances; got {edges!r}")
    bounds = [0.0, *e, np.inf]
    out = {}
    for lo, hi in zip(bounds, bounds[1:]):
        name = f"<{hi:g}m" if lo == 0 else (f">={lo:g}m" if hi == np.inf else f"{lo:g}-{hi:g}m")
        out[name.replace("m", " m")] = average_precision(predictions, ground_truth, range_band=(lo, hi), **kwargs)
    return out
