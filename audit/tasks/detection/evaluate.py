"""Metrics of one detection cell under one split's ConformalDetector, and the split-0 example frame."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["METRICS", "metrics", "example_index", "example"]

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


