"""ConformalDetector: wraps any detector's per-frame output with calibrated class sets, box intervals and a
missed-object-controlled confidence threshold; every threshold is fitted once and cached for per-frame use.

fit(predictions, ground_truth) on calibration frames the detector was not trained on:
  1. (if recall_alpha is set) a seeded share `recall_fraction` of the frames picks the confidence threshold
     by Learn-then-Test on the image-level recall risk (`RecallRiskControl`); the remaining frames do the rest,
     so the threshold is independent of the data the sets and intervals are calibrated on;
  2. detections with score >= threshold are matched to ground truth (Hungarian or greedy, IoU / BEV IoU /
     centre distance);
  3. class sets: a core calibrator (any score; marginal or class-conditional) on the matched detections'
     `class_probs` and their true classes;
  4. box intervals: `BoxIntervalCalibrator` on the matched pairs (signed per-side scores, max-rank).
predict(frame) applies cached numbers only: no sorting, no calibration data touched.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, fields

import numpy as np

from conformal import _tensor
from conformal._base import BaseEstimator, Boolean, Float, Int, Interval, Nested, Optional, Options
from conformal._validation import check_frame, check_frame_pairs, check_is_fitted, check_match_params
from conformal.calibrators import _SCORE, _SEED, ClassConditionalConformalClassifier, SplitConformalClassifier
from conformal.detection import _tensor as _dtensor
from conformal.detection._geometry import TWO_PI
from conformal.detection.intervals import CORRECTIONS, SIDES, BoxIntervalCalibrator, outer_inner
from conformal.detection.matching import METRICS, match_arrays
from conformal.detection.recall import RecallRiskControl
from conformal.io import StateError, register_kind
from conformal.scores import get_score
from conformal.utils import check_random_state

__all__ = ["ConformalDetector", "DetectionResult", "matched_pairs"]

_ONE_GROUP = np.ones((1024, 1), np.bool_)  # read-only mask "every detection uses the marginal margins"
_ONE_GROUP.setflags(write=False)


@dataclass(frozen=True)
class DetectionResult:
    """One frame's conformal output (all arrays have one row per input detection, in input order).

    boxes (M, D), scores (M,), labels (M,): the detector's own output (float64/int64 views).
    keep (M,) bool: score >= the calibrated confidence threshold.
    class_sets (M, K) bool or None: conformal class sets (None when the detector gives no class_probs or class
        sets are off).
    lower, upper (M, D): per-coordinate intervals (yaw unwrapped around the prediction).
    outer, inner (M, 4) or None: 2D boxes that contain / are contained in the true box.
    For a frame of torch tensors every array is a tensor on the frame's device (`to_host()` gives NumPy).
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    keep: np.ndarray
    class_sets: np.ndarray | None
    lower: np.ndarray
    upper: np.ndarray
    outer: np.ndarray | None
    inner: np.ndarray | None

    def to_host(self) -> "DetectionResult":
        """This result with NumPy arrays (a frame of tensors gives tensors on its device: copied once here)."""
        if not _tensor.is_tensor(self.boxes):
            return self
        return DetectionResult(**{f.name: _dtensor.to_host(getattr(self, f.name)) for f in fields(self)})

    def to_dicts(self) -> list[dict]:
        """One JSON-ready dict per kept detection (e.g. for a ROS companion message)."""
        if _tensor.is_tensor(self.boxes):
            return self.to_host().to_dicts()
        out = []
        for i in np.flatnonzero(self.keep).tolist():
            d = {"index": i, "box": self.boxes[i].tolist(), "score": float(self.scores[i]),
                 "label": int(self.labels[i]), "lower": self.lower[i].tolist(), "upper": self.upper[i].tolist()}
            if self.class_sets is not None:
                d["class_set"] = np.flatnonzero(self.class_sets[i]).tolist()
            if self.outer is not None:
                d["outer"] = self.outer[i].tolist()
                d["inner"] = self.inner[i].tolist()
            out.append(d)
        return out


def matched_pairs(preds: list[dict], gts: list[dict], metric: str, threshold: float, method: str,
                  score_threshold: float = -np.inf) -> dict:
    """Concatenate the matched (prediction, truth) pairs of validated frames, keeping detections with
    score >= score_threshold. Returns arrays pred_boxes, true_boxes, pred_labels, true_labels, scores,
    class_probs (or None), box_std (or None), frame (index of the frame of each pair), and n_missed, n_false."""
    keys = ("pred_boxes", "true_boxes", "pred_labels", "true_labels", "scores", "class_probs", "box_std", "frame")
    parts = {k: [] for k in keys}
    n_missed = n_false = 0
    has_probs = all(p["class_probs"] is not None for p in preds)
    has_std = all(p["box_std"] is not None for p in preds)
    for i, (p, g) in enumerate(zip(preds, gts)):
        keep = np.flatnonzero(p["scores"] >= score_threshold)
        m = match_arrays(p["boxes"][keep], g["boxes"], p["scores"][keep], metric, threshold, method)
        pi = keep[m.pred_index]
        n_missed += m.missed_gt.size
        n_false += m.unmatched_pred.size
        parts["pred_boxes"].append(p["boxes"][pi])
        parts["true_boxes"].append(g["boxes"][m.gt_index])
        parts["pred_labels"].append(p["labels"][pi])
        parts["true_labels"].append(g["labels"][m.gt_index])
        parts["scores"].append(p["scores"][pi])
        parts["frame"].append(np.full(pi.size, i, np.int64))
        if has_probs:
            parts["class_probs"].append(p["class_probs"][pi])
        if has_std:
            parts["box_std"].append(p["box_std"][pi])
    out = {k: (np.concatenate(v) if v else None) for k, v in parts.items()}
    out["n_missed"], out["n_false"] = n_missed, n_false
    return out


_PROBABILITY = [Interval(numbers.Real, 0, 1, closed="neither")]


@register_kind
class ConformalDetector(BaseEstimator):
    """Conformal wrapper for an object detector (2D or 3D), fitted on calibration frames, applied per frame.

    Parameters
    ----------
    dim : 2 or 3
    alpha : float in (0, 1)
        Joint miscoverage of the box intervals of a matched detection.
    alpha_cls : float in (0, 1) or None
        Miscoverage of the class sets (needs "class_probs"); None: no class sets.
    class_score : str or Score
        Core score of the class sets ("aps", "raps", "lac", ... or a `conformal.scores` object).
    class_conditional : bool
        Class-conditional class sets and per-class box margins; boxes use the largest margin over the classes in
        the detection's set (two-step mode; joint miscoverage <= alpha + alpha_cls). Without class sets the
        predicted label picks the margins.
    scale, sides, correction, yaw_period : see `BoxIntervalCalibrator`.
    match_metric, match_threshold, match_method : see `conformal.detection.match`.
    score_threshold : float
        Fixed confidence threshold, used when recall_alpha is None.
    recall_alpha, recall_delta : float or None
        Control the image-level fraction of missed objects: E[missed fraction] <= recall_alpha with probability
        >= 1 - recall_delta (`RecallRiskControl`), on a `recall_fraction` share of the calibration frames.
    random_state : int or None
        Seed of the frame split for the recall threshold.

    Attributes
    ----------
    score_threshold_ : float;  recall_ : RecallRiskControl or None;  boxes_ : BoxIntervalCalibrator;
    classes_ : core calibrator or None;  n_matched_, n_missed_, n_false_ : int (on the box-calibration frames).

    Examples
    --------
    >>> from adapters.datasets import make_scenes
    >>> preds, gts = make_scenes(400, rng=0, bias=3.0)
    >>> det = ConformalDetector(alpha=0.1, alpha_cls=0.1, score_threshold=0.3).fit(preds[:300], gts[:300])
    >>> out = det.predict(preds[300])
    >>> out.outer.shape == out.boxes.shape, out.class_sets.shape[1]
    (True, 4)
    """

    _parameter_constraints = {
        "dim": [Options((2, 3))], "alpha": _PROBABILITY, "alpha_cls": [None, *_PROBABILITY],
        "class_score": _SCORE, "class_conditional": [Boolean()],
        "scale": [Options(("none", "size", "range", "uncertainty"))], "sides": [Options(SIDES)],
        "correction": [Options(CORRECTIONS)], "yaw_period": [Interval(numbers.Real, 0, None, closed="neither")],
        "match_metric": [None, Options(tuple(METRICS))], "match_threshold": [Interval(numbers.Real)],
        "match_method": [Options(("hungarian", "greedy"))],
        "score_threshold": [Interval(numbers.Real, allow_inf=True)],
        "recall_alpha": [None, *_PROBABILITY], "recall_delta": _PROBABILITY, "recall_fraction": _PROBABILITY,
        "random_state": _SEED,
    }
    _fitted_marker = "boxes_"
    _fitted_attributes = {
        "recall_": Optional(Nested(RecallRiskControl)), "score_threshold_": Float(),
        "classes_": Optional(Nested(SplitConformalClassifier, ClassConditionalConformalClassifier)),
        "boxes_": Nested(BoxIntervalCalibrator), "n_classes_": Int(1), "n_frames_": Int(1), "n_matched_": Int(1),
        "n_missed_": Int(0), "n_false_": Int(0),
    }

    def __init__(self, *, dim: int = 2, alpha: float = 0.1, alpha_cls: float | None = None, class_score="aps",
                 class_conditional: bool = False, scale: str = "none", sides: str = "two_sided",
                 correction: str = "max_rank", yaw_period: float = TWO_PI, match_metric: str | None = None,
                 match_threshold: float = 0.5, match_method: str = "hungarian", score_threshold: float = 0.0,
                 recall_alpha: float | None = None, recall_delta: float = 0.1, recall_fraction: float = 0.3,
                 random_state=None):
        self.dim = dim
        self.alpha = alpha
        self.alpha_cls = alpha_cls
        self.class_score = class_score
        self.class_conditional = class_conditional
        self.scale = scale
        self.sides = sides
        self.correction = correction
        self.yaw_period = yaw_period
        self.match_metric = match_metric
        self.match_threshold = match_threshold
        self.match_method = match_method
        self.score_threshold = score_threshold
        self.recall_alpha = recall_alpha
        self.recall_delta = recall_delta
        self.recall_fraction = recall_fraction
        self.random_state = random_state

    def _box_calibrator(self) -> BoxIntervalCalibrator:
        return BoxIntervalCalibrator(dim=self.dim, alpha=self.alpha, scale=self.scale, sides=self.sides,
                                     correction=self.correction, class_conditional=bool(self.class_conditional),
                                     yaw_period=self.yaw_period)

    def _check_dependent_params(self) -> None:
        get_score(self.class_score)
        check_match_params(self.dim, self.match_metric, self.match_threshold, self.match_method)
        self._box_calibrator().validate_params()

    def fit(self, predictions, ground_truth) -> "ConformalDetector":
        """Calibrate on frames (lists of dicts, one per image, in the same order)."""
        self.validate_params()
        dim, metric, thr, method = check_match_params(self.dim, self.match_metric, self.match_threshold,
                                                      self.match_method)
        preds, gts = check_frame_pairs(predictions, ground_truth, dim)
        all_frames = (("prediction", preds), ("ground truth", gts))
        n = len(preds)
        self.recall_ = None
        idx = np.arange(n)
        if self.recall_alpha is not None:
            perm = check_random_state(self.random_state, "random_state").permutation(n)
            n_r = int(round(self.recall_fraction * n))
            if n_r < 1 or n - n_r < 1:
                raise ValueError(f"recall_fraction={self.recall_fraction} leaves no frames for one of the two steps "
                                 f"({n} frames)")
            r_idx, idx = np.sort(perm[:n_r]), np.sort(perm[n_r:])
            self.recall_ = RecallRiskControl(alpha=self.recall_alpha, delta=self.recall_delta, dim=dim, metric=metric,
                                             match_threshold=thr).fit([predictions[i] for i in r_idx],
                                                                      [ground_truth[i] for i in r_idx])
            self.score_threshold_ = self.recall_.threshold_
        else:
            self.score_threshold_ = float(self.score_threshold)
        preds = [preds[i] for i in idx]
        gts = [gts[i] for i in idx]
        pairs = matched_pairs(preds, gts, metric, thr, method, self.score_threshold_)
        if pairs["pred_boxes"] is None or pairs["pred_boxes"].shape[0] == 0:
            raise ValueError("no detection above the score threshold matches any ground truth; nothing to calibrate")
        n_classes = None
        k_probs = [p["class_probs"].shape[1] for p in preds if p["class_probs"] is not None]
        if k_probs:
            if len(set(k_probs)) > 1:
                raise ValueError(f"`class_probs` must have the same number of classes in every frame; got "
                                 f"{set(k_probs)}")
            n_classes = k_probs[0]
        else:
            n_classes = int(max([g["labels"].max(initial=-1) for g in gts] +
                                [p["labels"].max(initial=-1) for p in preds])) + 1
        # with class_probs, every label (matched or not, predicted or true) must be one of its classes
        for kind, frames in all_frames if k_probs else ():
            for i, f in enumerate(frames):
                if f["labels"].size and f["labels"].max() >= n_classes:
                    raise ValueError(f"{kind} frame {i}: `labels` must be < {n_classes} (the number of "
                                     f"classes of `class_probs`); got {int(f['labels'].max())}")
        self.classes_ = None
        if self.alpha_cls is not None:
            if pairs["class_probs"] is None:
                raise ValueError("alpha_cls is set but the prediction frames have no 'class_probs' (M, K)")
            cls = ClassConditionalConformalClassifier if self.class_conditional else SplitConformalClassifier
            # class sets stay non-randomized (reproducible per detection), as before the calibrators' "auto" default
            self.classes_ = cls(score=self.class_score, alpha=self.alpha_cls, randomized=False,
                                allow_empty=True).fit(pairs["class_probs"],
                                                                                 pairs["true_labels"])
        self.boxes_ = self._box_calibrator().fit(
            pairs["pred_boxes"], pairs["true_boxes"], pairs["true_labels"], box_std=pairs["box_std"],
            n_classes=n_classes)
        self.n_classes_ = int(n_classes)
        self.n_frames_ = int(len(preds))
        self.n_matched_ = int(pairs["pred_boxes"].shape[0])
        self.n_missed_ = int(pairs["n_missed"])
        self.n_false_ = int(pairs["n_false"])
        return self

    def predict(self, frame) -> DetectionResult:
        """Conformal output for one frame; the frame is validated, never modified; no labels are used.

        A frame of torch tensors (boxes, scores, labels, class_probs, box_std on one device) gives a result of
        tensors on that device (float64 boxes, scores, intervals; int64 labels; bool keep and class sets): a CUDA
        frame's computed with the tensors' methods, no host copy of class_probs or of the boxes; a CPU frame's by
        the NumPy path on shared views, its arrays shared back as tensors (conformal/detection/_tensor.py)."""
        check_is_fitted(self, "boxes_")
        if _dtensor.is_tensor_frame(frame):
            return DetectionResult(**_dtensor.predict(self, frame))
        return DetectionResult(**self._predict_arrays(frame))

    def _predict_arrays(self, frame) -> dict:
        """The NumPy path of `predict`: the DetectionResult fields of one frame (arrays, or CPU tensors read
        through shared views)."""
        f = check_frame(frame, self.dim, kind="prediction", n_classes=self.n_classes_)
        boxes, labels = f["boxes"], f["labels"]
        m = boxes.shape[0]
        keep = f["scores"] >= self.score_threshold_
        sets = None
        if self.classes_ is not None:
            if f["class_probs"] is None:
                raise ValueError("this detector was calibrated with class sets; the frame needs 'class_probs'")
            sets = self.classes_.predict_sets(f["class_probs"]) if m else np.zeros((0, self.n_classes_), np.bool_)
        if self.boxes_.class_conditional:
            mask = np.zeros((m, self.n_classes_), np.bool_)
            mask[np.arange(m), labels] = True
            if sets is not None:
                mask |= sets  # two-step: margins cover every class in the set (the label if the set is empty)
        else:
            mask = _ONE_GROUP[:m] if m <= _ONE_GROUP.shape[0] else np.ones((m, 1), np.bool_)
        if self.boxes_.scale == "uncertainty" and f["box_std"] is None:
            raise ValueError("this detector was calibrated with scale='uncertainty'; the frame needs 'box_std'")
        lower, upper = self.boxes_._apply(boxes, mask, f["box_std"])
        outer = inner = None
        if self.dim == 2:
            outer, inner = outer_inner(lower, upper)
        return dict(boxes=boxes, scores=f["scores"], labels=labels, keep=keep, class_sets=sets, lower=lower,
                    upper=upper, outer=outer, inner=inner)

    def predict_batch(self, frames) -> list[DetectionResult]:
        if not isinstance(frames, (list, tuple)):
            raise TypeError(f"`frames` must be a list of dicts; got {type(frames).__name__}")
        return [self.predict(f) for f in frames]

    # --- persistence (the generic path of conformal._base; these only check and upgrade) -----------------------
    def _check_fitted_state(self) -> None:
        box_params = self._box_calibrator().get_params()
        if self.boxes_.get_params() != box_params:
            raise StateError(f"saved field `boxes` was fitted with {self.boxes_!r}; this detector's parameters "
                             f"give {BoxIntervalCalibrator(**box_params)!r}")
        if (self.classes_ is None) != (self.alpha_cls is None):
            raise StateError("saved field `classes` must be present exactly when alpha_cls is set")
        if self.classes_ is not None:
            kind = ClassConditionalConformalClassifier if self.class_conditional else SplitConformalClassifier
            if type(self.classes_) is not kind or self.classes_.alpha != self.alpha_cls \
                    or self.classes_.n_classes_ != self.n_classes_:
                raise StateError(f"saved field `classes` must be a {kind.__name__} with alpha={self.alpha_cls} "
                                 f"and {self.n_classes_} classes")
        if (self.recall_ is None) != (self.recall_alpha is None):
            raise StateError("saved field `recall` must be present exactly when recall_alpha is set")
        expected = self.recall_.threshold_ if self.recall_ is not None else float(self.score_threshold)
        if self.score_threshold_ != expected:
            raise StateError(f"saved field `score_threshold` is {self.score_threshold_}; the parameters and the "
                             f"recall step give {expected}")
        if self.boxes_.class_conditional and self.boxes_.n_classes_ != self.n_classes_:
            raise StateError("saved field `boxes` has margins for a different number of classes")

    @classmethod
    def _upgrade_state(cls, version: int, payload: dict) -> dict:
        """Schema 1 stored the recall step's numbers flat, and its nested calibrators in their schema-1 form."""
        if version != 1:
            return super()._upgrade_state(version, payload)
        try:
            params, f = dict(payload["params"]), dict(payload["fitted"])
            f["boxes"] = {"__estimator__": "BoxIntervalCalibrator",
                          **BoxIntervalCalibrator._upgrade_state(1, f["boxes"])}
            if f["classes"] is not None:
                kind = ClassConditionalConformalClassifier if params["class_conditional"] else SplitConformalClassifier
                f["classes"] = {"__estimator__": kind.__name__, **kind._upgrade_state(1, f["classes"])}
            r = f["recall"]
            if r is not None:
                f["recall"] = {"__estimator__": "RecallRiskControl",
                               "params": {"alpha": params["recall_alpha"], "delta": params["recall_delta"],
                                          "dim": params["dim"], "metric": params["match_metric"],
                                          "match_threshold": params["match_threshold"]},
                               "fitted": {"threshold": r["threshold"], "certified": r["certified"],
                                          "n_images": r["n_images"],
                                          "table": {k: r[k] for k in ("grid", "risk", "pvalue")}}}
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"saved ConformalDetector state (schema_version 1) is malformed: {exc}") from None
        return {"params": params, "fitted": f}
