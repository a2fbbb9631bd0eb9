"""Abstention per detection or per image: a label-free statistic of the conformal output, thresholded by one of
the dual-threshold rules of `conformal.abstention.rules`, fitted on calibration frames only.

Statistics (larger = more uncertain; computed from a `DetectionResult`, never from labels):
  "confidence"     1 - detector score
  "entropy"        entropy of the class probabilities / log K, in [0, 1] (the core's `entropy` statistic;
                   needs class_probs; pass them to `statistic_of`)
  "set_size"       size of the conformal class set
  "interval_size"  2D: outer-box area / predicted area; 3D: mean interval length of x and y over max(l, w)
Per image, the statistic is the largest over the kept detections (-inf for a frame with none kept).

Target events on calibration frames (what abstaining should catch):
  "error"        detection: a false positive or a wrong label; image: any of those or any missed object
  "miscoverage"  detection: a false positive, an uncovered box or (with class sets) a true class outside the
                 set; image: any of those or any missed object

Rules (guarantees under exchangeability of calibration and test units, frames for level="image", detections
for level="detection" — detections of one frame are dependent, so the image level is the safer unit):
  "budget" (max_abstain)            P(abstain) <= max_abstain
  "fpr" (max_fpr)                   P(abstain | no event) <= max_fpr
  "selective_risk" (delta, epsilon) P(event rate among accepted > delta) <= epsilon (Learn-then-Test on one half
                                    of the units, grid and testing order from the other half)
  "youden"                          none (max TPR - FPR on held-out data; for comparison)
For abstention on class probabilities alone, `conformal.DualThresholdConformal` can be fitted directly on the
matched detections' class_probs and true labels; this class adds the detection-specific statistics and events.
"""
from __future__ import annotations

import numpy as np

from conformal import _tensor
from conformal._base import Array, BaseEstimator, Float, InstanceOf, Int, Mapping, Optional, Options, check_constraints
from conformal._validation import as_array, check_frame_pairs, check_is_fitted, check_match_params
from conformal.abstention import rules as _rules
from conformal.abstention.dual import RULE_PARAM_CONSTRAINTS
from conformal.abstention.statistics import entropy as _entropy
from conformal.calibrators import _SEED
from conformal.detection.matching import match_arrays
from conformal.detection.metrics import side_coverage
from conformal.io import StateError, register_kind
from conformal.utils import check_random_state

__all__ = ["DetectionAbstention", "DETECTION_STATISTICS", "ABSTENTION_RULES"]

DETECTION_STATISTICS = ("confidence", "entropy", "set_size", "interval_size")
ABSTENTION_RULES = {"budget": {"max_abstain": 0.1}, "fpr": {"max_fpr": 0.1},
                    "selective_risk": {"delta": 0.1, "epsilon": 0.1, "max_candidates": 200}, "youden": {}}


@register_kind
class DetectionAbstention(BaseEstimator):
    """Abstain on detections (or whole frames) whose label-free uncertainty exceeds a calibrated tau.

    Parameters
    ----------
    statistic : one of DETECTION_STATISTICS
    level : "detection" or "image"
    rule : one of ABSTENTION_RULES
    rule_params : dict or None   The rule's parameters (defaults in ABSTENTION_RULES), e.g. {"max_abstain": 0.2}.
    target : "error" or "miscoverage"
    random_state : int or None   Seed of the fold split of rule="selective_risk".

    Attributes
    ----------
    tau_ : float (abstain iff statistic > tau_);  n_units_ : int;  event_rate_ : float (calibration units);
    ltt_ : dict or None (selective_risk: the tests run).

    Examples
    --------
    >>> from conformal.detection import ConformalDetector
    >>> from adapters.datasets import make_scenes
    >>> preds, gts = make_scenes(600, rng=1)
    >>> det = ConformalDetector(alpha=0.1, alpha_cls=0.1, score_threshold=0.2).fit(preds[:300], gts[:300])
    >>> ab = DetectionAbstention(statistic="confidence", rule="budget", rule_params={"max_abstain": 0.2})
    >>> ab = ab.fit(det, preds[300:], gts[300:])
    >>> flags = ab.predict(det.predict(preds[0]))
    >>> flags.dtype == bool
    True
    """

    _parameter_constraints = {
        "statistic": [Options(DETECTION_STATISTICS)], "level": [Options(("detection", "image"))],
        "rule": [Options(tuple(ABSTENTION_RULES))], "rule_params": [None, InstanceOf(dict)],
        "target": [Options(("error", "miscoverage"))], "random_state": _SEED,
    }
    _nested_params = {"rule": "rule_params"}
    _fitted_marker = "tau_"
    _fitted_attributes = {"tau_": Float(), "n_units_": Int(2), "event_rate_": Float(low=0.0, high=1.0),
                          "ltt_": Optional(Mapping({"taus": Array("f", 1), "n_accepted": Array("i", 1),
                                                    "n_events": Array("i", 1), "pvalues": Array("f", 1)}))}

    def __init__(self, *, statistic: str = "confidence", level: str = "detection", rule: str = "budget",
                 rule_params: dict | None = None, target: str = "error", random_state=None):
        self.statistic = statistic
        self.level = level
        self.rule = rule
        self.rule_params = rule_params
        self.target = target
        self.random_state = random_state

    def _check_params(self) -> dict:
        """The rule's parameters with defaults filled in (unknown names: TypeError; bad values: named)."""
        allowed = ABSTENTION_RULES[self.rule]
        given = dict(self.rule_params or {})
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise TypeError(f"unknown parameter(s) {unknown} for rule={self.rule!r}; allowed: {sorted(allowed)}")
        params = {**allowed, **given}
        for name, value in params.items():
            check_constraints(name, value, RULE_PARAM_CONSTRAINTS[name])
        return params

    def _check_dependent_params(self) -> None:
        self._check_params()

    # --- statistic --------------------------------------------------------------------------------------------
    def statistic_of(self, result, class_probs=None) -> np.ndarray:
        """Per-detection statistic (M,) of one `DetectionResult` (label-free). A result of tensors (a frame of torch
        tensors) is read through its host copy: M values per field, small next to the frame's class sets."""
        result = result.to_host()
        if class_probs is not None and _tensor.is_tensor(class_probs):
            class_probs = as_array(class_probs, "class_probs")
        s = self.statistic
        if s == "confidence":
            return 1.0 - result.scores
        if s == "set_size":
            if result.class_sets is None:
                raise ValueError("statistic='set_size' needs a detector calibrated with class sets (alpha_cls)")
            return result.class_sets.sum(axis=1).astype(np.float64)
        if s == "entropy":
            if class_probs is None:
                raise ValueError("statistic='entropy' needs the frame's `class_probs`")
            if len(class_probs) == 0:
                return np.zeros(0)
            return _entropy(class_probs)
        b, lo, hi = result.boxes, result.lower, result.upper
        if b.shape[1] == 4:
            area = np.maximum(b[:, 2] - b[:, 0], 1e-12) * np.maximum(b[:, 3] - b[:, 1], 1e-12)
            outer = np.maximum(hi[:, 2] - lo[:, 0], 0) * np.maximum(hi[:, 3] - lo[:, 1], 0)
            return outer / area
        return 0.5 * ((hi[:, 0] - lo[:, 0]) + (hi[:, 1] - lo[:, 1])) / np.maximum(np.maximum(b[:, 3], b[:, 4]), 1e-12)

    def _image_stat(self, stat, keep) -> float:
        return float(stat[keep].max()) if keep.any() else -np.inf

    # --- fit --------------------------------------------------------------------------------------------------
    def _units(self, detector, predictions, ground_truth):
        dim = detector.dim
        _, metric, thr, method = check_match_params(dim, detector.match_metric, detector.match_threshold,
                                                    detector.match_method)
        preds, gts = check_frame_pairs(predictions, ground_truth, dim)
        stats, events = [], []
        for raw, p, g in zip(predictions, preds, gts):
            res = detector.predict(raw).to_host()  # tensor frames: M values per field
            st = self.statistic_of(res, p["class_probs"])
            keep = np.flatnonzero(res.keep)
            m = match_arrays(p["boxes"][keep], g["boxes"], p["scores"][keep], metric, thr, method)
            ev = np.ones(keep.size, np.bool_)  # unmatched kept detections are false positives
            pi, gi = m.pred_index, m.gt_index
            ok = p["labels"][keep[pi]] == g["labels"][gi] if self.target == "error" else np.ones(pi.size, np.bool_)
            if self.target == "miscoverage":
                lo_ok, hi_ok = side_coverage(res.boxes[keep[pi]], res.lower[keep[pi]], res.upper[keep[pi]],
                                             g["boxes"][gi], dim=dim, yaw_period=detector.yaw_period)
                ok = (lo_ok & hi_ok).all(axis=1)
                if res.class_sets is not None:
                    ok &= res.class_sets[keep[pi], g["labels"][gi]]
            ev[pi] = ~ok
            if self.level == "detection":
                stats.append(st[keep])
                events.append(ev)
            else:
                stats.append(np.array([self._image_stat(st, res.keep)]))
                events.append(np.array([bool(ev.any() or m.missed_gt.size)]))
        return np.concatenate(stats), np.concatenate(events)

    def fit(self, detector, predictions, ground_truth) -> "DetectionAbstention":
        """Fit tau on calibration frames *not* used to fit `detector` (a fitted ConformalDetector)."""
        self.validate_params()
        params = self._check_params()
        check_is_fitted(detector, "boxes_")
        stat, events = self._units(detector, predictions, ground_truth)
        n = stat.shape[0]
        if n < 2:
            raise ValueError(f"only {n} calibration units (kept detections or frames); use more frames")
        self.ltt_ = None
        if self.rule == "budget":
            tau = _rules.budget_tau(stat, params["max_abstain"])
        elif self.rule == "fpr":
            tau = _rules.fpr_tau(stat, events, params["max_fpr"])
        elif self.rule == "youden":
            tau = _rules.youden_tau(stat, events)[0]
        else:
            perm = check_random_state(self.random_state, "random_state").permutation(n)
            ref, test = perm[: n // 2], perm[n // 2:]
            delta, eps = params["delta"], params["epsilon"]
            grid = _rules.candidate_grid(stat[ref], params["max_candidates"])
            order = _rules.testing_order(grid, stat[ref], events[ref], test.size, delta)
            tau, table = _rules.ltt_fixed_sequence(stat[test], events[test], grid[order], delta, eps)
            self.ltt_ = table
        self.tau_ = float(tau)
        self.n_units_ = int(n)
        self.event_rate_ = float(events.mean())
        return self

    def _check_fitted_state(self) -> None:
        if (self.ltt_ is not None) != (self.rule == "selective_risk"):
            raise StateError("saved field `ltt` must be present exactly for rule='selective_risk'")

    def predict(self, result, class_probs=None):
        """Detection level: bool (M,) abstain flags (kept detections only can be True). Image level: a bool."""
        check_is_fitted(self, "tau_")
        st = self.statistic_of(result, class_probs)
        keep = result.to_host().keep
        if self.level == "detection":
            flags = (st > self.tau_) & keep
            # a result of tensors gets its flags as a bool tensor on the same device (on CPU sharing their memory)
            if not _tensor.is_tensor(result.keep):
                return flags
            return _tensor.from_host(result.keep, flags) if result.keep.device.type == "cpu" else \
                result.keep.new_tensor(flags)
        return bool(self._image_stat(st, keep) > self.tau_)
