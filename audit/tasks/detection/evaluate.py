"""Metrics of one detection cell under one split's ConformalDetector, the symmetric box-wise baseline on the same
detections, and the split-0 example frame."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["METRICS", "metrics", "example_index", "example", "symmetric_margins", "symmetric_coverage",
           "cell_state", "score_split"]

METRICS = {
    "box_coverage": "matched kept detections whose every box side lies inside its interval (target 1 - alpha)",
    "class_coverage": "matched kept detections whose true class is in the class set (target 1 - alpha_cls)",
    "joint_coverage": "true class in the set AND every box side covered (target 1 - alpha - alpha_cls)",
    "recall_risk": "mean over test frames of the fraction of true objects no kept detection matches "
                   "(bound recall_alpha, with probability 1 - recall_delta over calibration)",
    "class_set_size": "mean size of the class set of matched kept detections",
    "interval_size": "2D: outer-box area / predicted-box area; 3D: mean interval width of l, w, h / predicted size",
    "fp_per_frame": "kept detections matching no true object, per frame",
    "matched_objects": "matched kept detections in the test frames (the n behind the coverages)",
    "box_coverage_symmetric": "box coverage of the symmetric box-wise baseline on the same kept detections: "
                              "pred +- the conformal quantile of |true - pred| / scale per coordinate at alpha / D "
                              "(Bonferroni; puncc's SplitBoxWise), valid only if residuals are symmetric",
    "interval_size_symmetric": "interval_size of the symmetric baseline (same definition, same detections)",
    "ap50": "COCO AP@0.5 of the detector's raw output on the cell's whole pool (pycocotools; NaN if the source "
            "gives none); the same in every split",
    "ap": "COCO AP@[.5:.95] likewise",
    "score_threshold": "confidence threshold (fitted on clean calibration frames)",
}


def example_index(gts: list, test: np.ndarray, mean_objects: float) -> int:
    counts = np.array([gts[i]["labels"].shape[0] for i in test])
    return int(test[np.argmin(np.abs(counts - max(mean_objects, 3.0)))])


def metrics(res: dict, dim: int) -> dict:
    nan = math.nan
    size = nan
    if "interval_size" in res:
        s = res["interval_size"]
        size = s["outer_area_ratio"] if dim == 2 else float(np.mean(s["relative_size_width"]))
    return {"box_coverage": res["box_joint"]["value"] if "box_joint" in res else nan,
            "class_coverage": res["class_set"]["value"] if "class_set" in res else nan,
            "joint_coverage": res["joint_class_and_box"]["value"] if "joint_class_and_box" in res else nan,
            "recall_risk": res["recall_risk"], "class_set_size": res.get("mean_class_set_size", nan),
            "interval_size": size, "fp_per_frame": res["n_false_positives"] / max(res["n_frames"], 1),
            "matched_objects": float(res["n_matched"])}


def _pairs(det, preds, gts):
    from conformal._validation import check_frame_pairs, check_match_params
    from conformal.detection.intervals import box_scales, residuals
    from conformal.detection.predictor import matched_pairs

    _, metric, thr, method = check_match_params(det.dim, det.match_metric, det.match_threshold, det.match_method)
    p, g = check_frame_pairs(preds, gts, det.dim)
    mp = matched_pairs(p, g, metric, thr, method, score_threshold=det.score_threshold_)
    d = 4 if det.dim == 2 else 7
    if mp["pred_boxes"] is None or mp["pred_boxes"].shape[0] == 0:
        return np.zeros((0, d)), np.zeros((0, d)), np.ones((0, d))
    scale = box_scales(mp["pred_boxes"], det.dim, det.scale, mp["box_std"])
    return residuals(mp["pred_boxes"], mp["true_boxes"], det.dim, det.yaw_period) / scale, mp["pred_boxes"], scale


def symmetric_margins(det, preds: list, gts: list) -> np.ndarray:
    """The symmetric box-wise baseline fitted on the same calibration frames and kept detections as `det`:
    per coordinate, the conformal quantile of |residual| / scale at alpha / D (Bonferroni over the D
    coordinates). Valid when residuals are symmetric about 0; a biased detector breaks it."""
    from conformal.quantile import conformal_quantile

    e = np.abs(_pairs(det, preds, gts)[0])
    d = e.shape[1]
    return np.array([conformal_quantile(e[:, j], det.alpha / d) if e.shape[0] else np.inf for j in range(d)])


def symmetric_coverage(det, margins: np.ndarray, preds: list, gts: list) -> tuple[float, float]:
    """(coverage, size) of the baseline on the matched kept test detections: the share whose every coordinate
    lies within pred +- margin * scale, and the interval size defined as `interval_size` is for ours (2D: mean
    outer-box area / predicted-box area; 3D: mean interval width of l, w, h / predicted size)."""
    e, pred, scale = _pairs(det, preds, gts)
    if not e.shape[0]:
        return math.nan, math.nan
    return _symmetric(det, margins, e, pred, scale)


def example(det, pred: dict, gt: dict, dim: int, index: int) -> dict:
    out = det.predict(pred)
    keep = out.keep
    key = "boxes" if dim == 2 else "boxes3d"
    d = {"ex_frame": np.array(index), "ex_gt": gt[key], "ex_gt_labels": gt["labels"], "ex_pred": out.boxes[keep],
         "ex_pred_labels": out.labels[keep], "ex_lower": out.lower[keep], "ex_upper": out.upper[keep]}
    if out.class_sets is not None:
        d["ex_set_size"] = out.class_sets[keep].sum(axis=1)
    if dim == 2:
        d["ex_outer"], d["ex_inner"] = out.outer[keep], out.inner[keep]
    return d




def cell_state(preds: list, gts: list, dim: int) -> dict:
    """What scoring a cell reuses over the splits: its frames validated once, and a memo of the matchings."""
    from conformal._validation import check_frame_pairs

    return {"valid": check_frame_pairs(preds, gts, dim), "matches": {}}


def score_split(det, margins: np.ndarray, preds: list, gts: list, state: dict, test) -> dict:
    """The metrics of `metrics(evaluate_detector(det, test frames))` plus the symmetric baseline's
    (`symmetric_coverage`), in one pass and with the same numbers (tests/audit/test_detection_scoring.py).

    Faster because (a) the frames are validated once per cell (`state["valid"]`), (b) the matching of a frame
    depends only on the detections the split's score threshold keeps, so it is memoised by (frame, kept set) over
    the splits (`state["matches"]`), (c) the baseline reuses the same matches, and (d) the Clopper-Pearson
    intervals and per-group breakdowns that the audit does not report are not computed."""
    from conformal._validation import check_match_params
    from conformal.detection.intervals import box_scales, residuals
    from conformal.detection.matching import match_arrays
    from conformal.detection.metrics import relative_interval_size, side_coverage

    dim = det.dim
    _, metric, thr, method = check_match_params(dim, det.match_metric, det.match_threshold, det.match_method)
    vp, vg = state["valid"]
    memo = state["matches"]
    test = [int(i) for i in test]
    has_std = all(vp[i]["box_std"] is not None for i in test)
    cols = {k: [] for k in ("pred", "lower", "upper", "true", "in_set", "set_size", "std")}
    n_kept = n_false = 0
    miss_frac = []
    for i in test:
        p, g = vp[i], vg[i]
        res = det.predict(preds[i])
        keep = np.flatnonzero(res.keep)
        n_kept += keep.size
        key = (i, metric, thr, method, keep.tobytes())
        m = memo.get(key)
        if m is None:
            m = memo[key] = match_arrays(p["boxes"][keep], g["boxes"], p["scores"][keep], metric, thr, method)
        n_false += m.unmatched_pred.size
        miss_frac.append(m.missed_gt.size / g["boxes"].shape[0] if g["boxes"].shape[0] else 0.0)
        idx = keep[m.pred_index]
        cols["pred"].append(res.boxes[idx])
        cols["lower"].append(res.lower[idx])
        cols["upper"].append(res.upper[idx])
        cols["true"].append(g["boxes"][m.gt_index])
        if res.class_sets is not None:
            cols["in_set"].append(res.class_sets[idx, g["labels"][m.gt_index]])
            cols["set_size"].append(res.class_sets[idx].sum(axis=1))
        if has_std:
            cols["std"].append(p["box_std"][idx])
    cat = {k: np.concatenate(v) for k, v in cols.items() if v}
    n_matched = int(cat["pred"].shape[0]) if "pred" in cat else 0
    res = {"n_frames": len(test), "n_kept": n_kept, "n_matched": n_matched, "n_false_positives": n_false,
           "recall_risk": float(np.mean(miss_frac)) if miss_frac else math.nan}
    if n_matched:
        lo_ok, hi_ok = side_coverage(cat["pred"], cat["lower"], cat["upper"], cat["true"], dim=dim,
                                     yaw_period=det.yaw_period)
        joint = (lo_ok & hi_ok).all(axis=1)
        res["box_joint"] = {"value": int(joint.sum()) / joint.size}
        res["interval_size"] = relative_interval_size(cat["pred"], cat["lower"], cat["upper"], dim=dim)
        if "in_set" in cat:
            res["class_set"] = {"value": int(cat["in_set"].sum()) / n_matched}
            res["mean_class_set_size"] = float(cat["set_size"].mean())
            res["joint_class_and_box"] = {"value": int((joint & cat["in_set"]).sum()) / n_matched}
    out = metrics(res, dim)
    out["box_coverage_symmetric"] = out["interval_size_symmetric"] = math.nan
    if n_matched:
        pred = cat["pred"]
        scale = box_scales(pred, dim, det.scale, cat.get("std"))
        e = residuals(pred, cat["true"], dim, det.yaw_period) / scale
        out["box_coverage_symmetric"], out["interval_size_symmetric"] = _symmetric(det, margins, e, pred, scale)
    return out


def _symmetric(det, margins, e, pred, scale):
    cover = float(np.all(np.abs(e) <= margins, axis=1).mean())
    half = margins * scale
    if det.dim == 2:
        w, h = np.maximum(pred[:, 2] - pred[:, 0], 1e-12), np.maximum(pred[:, 3] - pred[:, 1], 1e-12)
        size = float(np.mean((w + half[:, 0] + half[:, 2]) * (h + half[:, 1] + half[:, 3]) / (w * h)))
    else:
        size = float(np.mean(2 * half[:, 3:6] / np.maximum(pred[:, 3:6], 1e-12)))
    return cover, size
