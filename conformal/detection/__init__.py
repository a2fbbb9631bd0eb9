"""Conformal object detection, 2D and 3D (numpy + numba only; torch tensors accepted, never imported).

Three questions, three guarantees (see docs/detection.md):
  which objects exist  -> `RecallRiskControl`: confidence threshold with a Learn-then-Test bound on the fraction
                          of each image's objects that are missed (missed objects count);
  where they are       -> `BoxIntervalCalibrator`: per-coordinate intervals with signed per-side scores (valid
                          for biased detectors), additive or scaled, max-rank or Bonferroni joint correction,
                          yaw on the circle;
  what they are        -> class sets from the core calibrators, optionally class-conditional (two-step boxes).
`ConformalDetector` bundles them for per-frame use; `DetectionAbstention` abstains per detection or per image;
`conformal.detection.ap` has 3D IoU and KITTI-style AP per class and range band;
`conformal.detection.metrics` has coverage breakdowns with exact CIs, D-ECE / LaECE and isotonic calibration;
`conformal.detection.io` reads / writes COCO annotation and result JSON (`load_coco`, `coco_results`);
`adapters.datasets.make_scenes` simulates detectors with known ground truth (synthetic data).
"""
from conformal.detection.abstain import DetectionAbstention
from conformal.detection.ap import average_precision, average_precision_by_range, iou_3d
from conformal.detection.evaluate import evaluate_detector
from conformal.detection.intervals import BoxIntervalCalibrator, outer_inner
from conformal.detection.io import CocoFrames, coco_annotations, coco_results, load_coco
from conformal.detection.matching import Matching, bev_iou, box_iou, center_distance, hungarian, match
from conformal.detection.predictor import ConformalDetector, DetectionResult, matched_pairs
from conformal.detection.recall import RecallRiskControl, recall_risk

__all__ = ["BoxIntervalCalibrator", "CocoFrames", "ConformalDetector", "DetectionAbstention", "DetectionResult",
           "Matching", "RecallRiskControl", "bev_iou", "box_iou", "center_distance", "coco_annotations",
           "coco_results", "evaluate_detector", "hungarian", "load_coco", "match", "matched_pairs", "outer_inner",
           "recall_risk", "average_precision", "average_precision_by_range",
           "iou_3d"]
