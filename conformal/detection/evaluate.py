"""One-call evaluation of a fitted ConformalDetector on labelled test frames (for audits and reports).

Every rate comes with its exact Clopper-Pearson 95 % interval, and every breakdown (per class, per object
size in 2D, per range band in 3D) with its own count, so a small group is never read as a point estimate.
"""
from __future__ import annotations

import numpy as np

from conformal._validation import check_frame_pairs, check_is_fitted, check_match_params
from conformal.detection.matching import match_arrays
from conformal.detection.metrics import (
    range_bins,
    relative_interval_size,
    side_coverage,
    size_bins,
    stratified_coverage,
)
from conformal.stats import clopper_pearson

__all__ = ["evaluate_detector"]


def _rate(mask: np.ndarray) -> dict:
    k, n = int(mask.sum()), int(mask.size)
    lo, hi = clopper_pearson(k, n)
    return {"value": k / n if n else float("nan"), "ci": (lo, hi), "n": n}


def evaluate_detector(detector, predictions, ground_truth) -> dict:
    """Coverage, sizes and missed objects of `detector` on test frames it was not calibrated on.

    Returns a dict with:
      box_joint, class_set, joint_class_and_box : {"value", "ci", "n"} over matched kept detections;
      box_per_side : {"lower": (D,), "upper": (D,)} coverage per side;
      box_per_class, box_per_size (2D) or box_per_range (3D), class_set_per_class :
          {group: (coverage, lower, upper, n)};
      interval_size : see metrics.relative_interval_size;  mean_class_set_size : float;
      recall_risk : mean fraction of each image's objects not matched by a kept detection;
      n_frames, n_kept, n_matched, n_missed, n_false_positives : int.
    """
    check_is_fitted(detector, "boxes_")
    dim = detector.dim
    _, metric, thr, method = check_match_params(dim, detector.match_metric, detector.match_threshold,
                                                detector.match_method)
    preds, gts = check_frame_pairs(predictions, ground_truth, dim)
    cols = {k: [] for k in ("pred", "lower", "upper", "true", "label", "in_set", "set_size")}
    n_kept = n_missed = n_false = 0
    miss_frac = []
    for raw, p, g in zip(predictions, preds, gts):
        res = detector.predict(raw).to_host()  # a frame of tensors: its result copied once
        keep = np.flatnonzero(res.keep)
        n_kept += keep.size
        m = match_arrays(p["boxes"][keep], g["boxes"], p["scores"][keep], metric, thr, method)
        n_missed += m.missed_gt.size
        n_false += m.unmatched_pred.size
        if g["boxes"].shape[0]:
            miss_frac.append(m.missed_gt.size / g["boxes"].shape[0])
        else:
            miss_frac.append(0.0)
        idx = keep[m.pred_index]
        cols["pred"].append(res.boxes[idx])
        cols["lower"].append(res.lower[idx])
        cols["upper"].append(res.upper[idx])
        cols["true"].append(g["boxes"][m.gt_index])
        cols["label"].append(g["labels"][m.gt_index])
        if res.class_sets is not None:
            cols["in_set"].append(res.class_sets[idx, g["labels"][m.gt_index]])
            cols["set_size"].append(res.class_sets[idx].sum(axis=1))
    cat = {k: np.concatenate(v) for k, v in cols.items() if v}
    n_matched = int(cat["pred"].shape[0])
    out = {"n_frames": len(preds), "n_kept": n_kept, "n_matched": n_matched, "n_missed": n_missed,
           "n_false_positives": n_false, "recall_risk": float(np.mean(miss_frac)) if miss_frac else float("nan")}
    if n_matched == 0:
        return out
    lo_ok, hi_ok = side_coverage(cat["pred"], cat["lower"], cat["upper"], cat["true"], dim=dim,
                                 yaw_period=detector.yaw_period)
    joint = (lo_ok & hi_ok).all(axis=1)
    out["box_joint"] = _rate(joint)
    out["box_per_side"] = {"lower": lo_ok.mean(axis=0), "upper": hi_ok.mean(axis=0)}
    out["box_per_class"] = stratified_coverage(joint, cat["label"])
    if dim == 2:
        out["box_per_size"] = {("small", "medium", "large")[k]: v
                               for k, v in stratified_coverage(joint, size_bins(cat["true"])).items()}
    else:
        out["box_per_range"] = {("<20 m", "20-40 m", ">=40 m")[k]: v
                                for k, v in stratified_coverage(joint, range_bins(cat["true"])).items()}
    out["interval_size"] = relative_interval_size(cat["pred"], cat["lower"], cat["upper"], dim=dim)
    if "in_set" in cat:
        out["class_set"] = _rate(cat["in_set"])
        out["class_set_per_class"] = stratified_coverage(cat["in_set"], cat["label"])
        out["mean_class_set_size"] = float(cat["set_size"].mean())
        out["joint_class_and_box"] = _rate(joint & cat["in_set"])
    return out

