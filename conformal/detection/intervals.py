"""Box intervals with signed, per-side nonconformity scores (2D xyxy and 3D x, y, z, l, w, h, yaw).

For coordinate j of a matched detection, e_j = (true_j - pred_j) / scale_j (yaw: the difference wrapped on the
circle). The *upper* side of coordinate j is scored by e_j and the *lower* side by -e_j, so each side gets its
own threshold: the interval [pred_j - q_lo_j scale_j, pred_j + q_hi_j scale_j] is shifted when the detector is
biased (boxes 3 px too small give q_lo < 0 < q_hi on x2, i.e. the interval moves outward), instead of relying on
residuals being symmetric (the sign error of puncc's SplitBoxWise, which drops to 2 % coverage there).

2D boxes also give an *outer* box (lower x1, y1 and upper x2, y2) that contains the true box and an *inner* box
(upper x1, y1 and lower x2, y2) that the true box contains; ``sides="outer"`` (or "inner") scores only the four
sides that box needs.

Joint correction over the C scored sides (Timans et al. 2024; max-rank: arXiv 2311.10900):
  "max_rank"   each calibration object's sides are ranked within their column; the object's score is its
               largest rank; the threshold rank r is the conformal quantile of those maxima (plus one rank when
               C > 1, see Notes) and every side's threshold is its column's r-th smallest score. Valid like
               Bonferroni, tighter whenever sides are dependent (they are: a poorly localised object is off on
               several sides).
  "bonferroni" each side at alpha / C.
  "none"       each side at alpha: per-side (marginal) coverage only, no joint guarantee.
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from conformal._base import Array, BaseEstimator, Boolean, Int, Interval, Options
from conformal._validation import BOX_DIM, check_boxes, check_is_fitted
from conformal.detection import _kernels as _k
from conformal.detection._geometry import TWO_PI, wrap_angle, wrapped_yaw
from conformal.io import StateError, register_kind
from conformal.quantile import conformal_quantile, conformal_rank

__all__ = ["COORDS", "SCALES", "SIDES", "CORRECTIONS", "residuals", "box_scales", "side_scores",
           "max_rank_thresholds", "joint_thresholds", "BoxIntervalCalibrator", "outer_inner"]

COORDS = {2: ("x1", "y1", "x2", "y2"), 3: ("x", "y", "z", "l", "w", "h", "yaw")}
SCALES = {2: ("none", "size", "uncertainty"), 3: ("none", "size", "range", "uncertainty")}
SIDES = ("two_sided", "outer", "inner")
CORRECTIONS = ("max_rank", "bonferroni", "none")
# (dim, scale) -> mode of the compiled per-frame kernel (_kernels.scaled_margins), same formulas as box_scales
SCALE_MODES = {(2, "none"): 0, (3, "none"): 0, (2, "size"): 1, (3, "size"): 2, (3, "range"): 3,
               (2, "uncertainty"): 4, (3, "uncertainty"): 4}
_NO_STD = np.ones((0, 0))


def residuals(pred: np.ndarray, true: np.ndarray, dim: int, yaw_period: float = TWO_PI) -> np.ndarray:
    """true - pred per coordinate (n, D); for 3D the yaw difference is wrapped into [-period/2, period/2)."""
    r = true - pred
    if dim == 3:
        r[:, 6] = wrap_angle(r[:, 6], yaw_period)
    return r



def box_scales(pred: np.ndarray, dim: int, scale: str, box_std=None, min_scale: float = 1e-6) -> np.ndarray:
    """Positive scale per coordinate (n, D) that divides the residuals.

    "none": 1. "size" (2D): box width for x1, x2 and height for y1, y2. "size" (3D): max(l, w) for x, y, h for
    z, l, w, h for themselves, 1 for yaw. "range" (3D): BEV distance sqrt(x^2 + y^2) for every coordinate but
    yaw (1) — LiDAR localisation error grows with range. "uncertainty": the detector's `box_std` (n, D).
    Sizes and ranges are floored at `min_scale` so degenerate boxes cannot divide by zero.
    """
    n = pred.shape[0]
    if scale == "none":
        return np.ones((n, BOX_DIM[dim]))
    if scale == "uncertainty":
        if box_std is None:
            raise ValueError("scale='uncertainty' needs a per-box `box_std` array from the detector")
        return box_std
    out = np.ones((n, BOX_DIM[dim]))
    if dim == 2:
        w = np.maximum(pred[:, 2] - pred[:, 0], min_scale)
        h = np.maximum(pred[:, 3] - pred[:, 1], min_scale)
        out[:, 0] = out[:, 2] = w
        out[:, 1] = out[:, 3] = h
    elif scale == "size":
        lw = np.maximum(np.maximum(pred[:, 3], pred[:, 4]), min_scale)
        out[:, 0] = out[:, 1] = lw
        for j in (2, 5):
            out[:, j] = np.maximum(pred[:, 5], min_scale)
        out[:, 3] = np.maximum(pred[:, 3], min_scale)
        out[:, 4] = np.maximum(pred[:, 4], min_scale)
    else:  # range
        r = np.maximum(np.hypot(pred[:, 0], pred[:, 1]), min_scale)
        out[:, :6] = r[:, None]
    return out


def side_masks(dim: int, sides: str) -> tuple[np.ndarray, np.ndarray]:
    """Which lower / upper sides are scored: bool (D,), (D,)."""
    d = BOX_DIM[dim]
    lo = np.ones(d, np.bool_)
    hi = np.ones(d, np.bool_)
    if sides == "outer":  # true x1, y1 >= outer x1, y1; true x2, y2 <= outer x2, y2
        lo[2:] = False
        hi[:2] = False
    elif sides == "inner":
        lo[:2] = False
        hi[2:] = False
    return lo, hi


def side_scores(e: np.ndarray, lo_mask: np.ndarray, hi_mask: np.ndarray) -> np.ndarray:
    """Score matrix (n, C): -e_j for the scored lower sides, then e_j for the scored upper sides."""
    return np.concatenate([-e[:, lo_mask], e[:, hi_mask]], axis=1)


def max_rank_thresholds(scores: np.ndarray, alpha: float) -> tuple[np.ndarray, int]:
    """Per-column thresholds (C,) with joint coverage >= 1 - alpha, and the threshold rank r (n + 1 if none).

    Each entry's rank is 1 + #{smaller entries in its column}; an object's max-rank is the largest over its
    columns; r is the k-th smallest max-rank, k = ceil((n + 1)(1 - alpha)), plus one when C > 1; thresholds
    are the r-th smallest score of each column (all +inf when r > n).

    Notes
    -----
    Why one more rank when C > 1: adding the test object to the calibration set moves a calibration object's
    column rank up by at most one, so its max-rank among n + 1 objects is at most its calibration max-rank + 1.
    With r = r* + 1 (r* the plug-in rank), the test object is covered whenever its max-rank among the n + 1 is
    at most r, which holds unless it is strictly larger than the max-ranks of >= k calibration objects — an
    event of probability <= (n + 1 - k)/(n + 1) <= alpha by exchangeability, ties included. For C = 1 this is
    ordinary split conformal and r = r*. The cost is one order statistic (about 1/n in coverage).
    """
    n, c = scores.shape
    k = conformal_rank(n, alpha)
    if k > n:
        return np.full(c, np.inf), n + 1
    ordered = np.sort(scores, axis=0)
    ranks = np.empty((n, c), np.int64)
    for j in range(c):
        ranks[:, j] = np.searchsorted(ordered[:, j], scores[:, j], side="left") + 1
    max_rank = ranks.max(axis=1)
    r = int(np.partition(max_rank, k - 1)[k - 1]) + (1 if c > 1 else 0)
    if r > n:
        return np.full(c, np.inf), r
    return ordered[r - 1].copy(), r


def joint_thresholds(scores: np.ndarray, alpha: float, correction: str) -> np.ndarray:
    """Per-column thresholds (C,) for the chosen correction (see the module docstring)."""
    c = scores.shape[1]
    if correction == "max_rank":
        return max_rank_thresholds(scores, alpha)[0]
    a = alpha / c if correction == "bonferroni" else alpha
    return np.array([conformal_quantile(np.ascontiguousarray(scores[:, j]), a) for j in range(c)])


def outer_inner(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2D outer box (lower x1, y1, upper x2, y2) and inner box (upper x1, y1, lower x2, y2), each (M, 4).

    An inner box whose x1 > x2 (or y1 > y2) is empty: nothing is certainly inside the object there."""
    return _k.outer_inner(lower, upper, np.empty_like(lower), np.empty_like(lower))


@register_kind
class BoxIntervalCalibrator(BaseEstimator):
    """Conformal intervals for every coordinate of a detected box, calibrated on matched (prediction, truth) pairs.

    Parameters
    ----------
    dim : 2 or 3
        2: xyxy image boxes; 3: (x, y, z, l, w, h, yaw) boxes.
    alpha : float in (0, 1)
        Joint miscoverage: all scored sides of a matched object are covered with probability >= 1 - alpha.
    scale : "none" (additive), "size", "range" (3D), "uncertainty" (per-box `box_std`)
        Divides the residuals; see `box_scales`.
    sides : "two_sided" (default), "outer" or "inner" (2D only)
        Which sides are scored; the unscored sides get infinite margins.
    correction : "max_rank" (default), "bonferroni" or "none"
    class_conditional : bool
        Mondrian by true class: one set of thresholds per class (guarantee per class). At predict time each
        detection takes, per side, the largest margin over the classes in its class set (two-step mode).
    fallback : "full" or "marginal"
        Classes with too few calibration objects: infinite margins (keeps the guarantee) or the marginal ones.
    yaw_period : float
        2*pi (heading matters) or pi (heading-agnostic boxes); yaw residuals are wrapped into [-period/2, period/2).
    min_scale : float
        Floor of sizes/ranges used as scales.

    Attributes
    ----------
    q_lo_, q_hi_ : float64 (C, D)   Lower/upper margins in scale units per group (C = n_classes or 1).
    n_calibration_ : int;  class_counts_ : int64 (C,);  fallback_classes_ : int64 array.

    Notes
    -----
    Guarantee: if the calibration pairs and a new matched pair are exchangeable, then
    P(pred_j - q_lo_j s_j <= true_j <= pred_j + q_hi_j s_j for every scored side) >= 1 - alpha (with
    class_conditional, given the true class, and, in two-step mode, >= 1 - alpha - alpha_cls overall by a union
    bound with the class sets). Coverage is conditional on the object being detected and matched: missed
    objects are controlled separately (`RecallRiskControl`). Objects within one image are treated as
    exchangeable units.
    """

    _parameter_constraints = {
        "dim": [Options((2, 3))],
        "alpha": [Interval(numbers.Real, 0, 1, closed="neither")],
        "scale": [Options(("none", "size", "range", "uncertainty"))],
        "sides": [Options(SIDES)],
        "correction": [Options(CORRECTIONS)],
        "class_conditional": [Boolean()],
        "fallback": [Options(("full", "marginal"))],
        "yaw_period": [Interval(numbers.Real, 0, None, closed="neither")],
        "min_scale": [Interval(numbers.Real, 0, None, closed="neither")],
    }
    _fitted_marker = "q_lo_"
    _fitted_attributes = {"q_lo_": Array("f", 2), "q_hi_": Array("f", 2), "n_calibration_": Int(1),
                          "n_classes_": Int(1), "class_counts_": Array("i", 1), "fallback_classes_": Array("i", 1)}

    def __init__(self, *, dim: int = 2, alpha: float = 0.1, scale: str = "none", sides: str = "two_sided",
                 correction: str = "max_rank", class_conditional: bool = False, fallback: str = "full",
                 yaw_period: float = TWO_PI, min_scale: float = 1e-6):
        self.dim = dim
        self.alpha = alpha
        self.scale = scale
        self.sides = sides
        self.correction = correction
        self.class_conditional = class_conditional
        self.fallback = fallback
        self.yaw_period = yaw_period
        self.min_scale = min_scale

    def _check_dependent_params(self) -> None:
        dim = self.dim
        if self.scale not in SCALES[dim]:
            raise ValueError(f"`scale` must be one of {SCALES[dim]} for dim={dim}; got {self.scale!r}")
        if dim == 3 and self.sides != "two_sided":
            raise ValueError(f"`sides` must be one of ('two_sided',) for dim={dim}; got {self.sides!r}")
        if not (math.isclose(self.yaw_period, TWO_PI) or math.isclose(self.yaw_period, math.pi)):
            raise ValueError(f"`yaw_period` must be 2*pi (heading) or pi (heading-agnostic); got {self.yaw_period}")

    def _check_params(self):
        self.validate_params()
        return int(self.dim), float(self.alpha)

    def _scores(self, pred, true, box_std, dim):
        e = residuals(pred, true, dim, self.yaw_period) / box_scales(pred, dim, self.scale, box_std, self.min_scale)
        lo, hi = side_masks(dim, self.sides)
        return side_scores(e, lo, hi), lo, hi

    def fit(self, pred_boxes, true_boxes, labels=None, *, box_std=None, n_classes: int | None = None):
        """Calibrate on matched pairs: pred_boxes, true_boxes (n, D); labels (n,) the true classes (needed for
        class_conditional); box_std (n, D) for scale="uncertainty"; n_classes (default max label + 1)."""
        dim, alpha = self._check_params()
        pred = check_boxes(pred_boxes, dim, "pred_boxes")
        true = check_boxes(true_boxes, dim, "true_boxes")
        if pred.shape != true.shape:
            raise ValueError(f"`pred_boxes` and `true_boxes` must have the same shape; got {pred.shape} and "
                             f"{true.shape}")
        n = pred.shape[0]
        if n == 0:
            raise ValueError("no matched pairs to calibrate on (`pred_boxes` is empty)")
        std = None
        if self.scale == "uncertainty":
            if box_std is None:
                raise ValueError("scale='uncertainty' needs `box_std` (n, D), the detector's per-coordinate spread")
            std = np.asarray(box_std, dtype=np.float64)
            if std.shape != pred.shape or not np.isfinite(std).all() or (std <= 0).any():
                raise ValueError(f"`box_std` must be finite and > 0 with shape {pred.shape}; got shape {std.shape}")
        scores, lo, hi = self._scores(pred, true, std, dim)
        d = BOX_DIM[dim]
        if self.class_conditional:
            if labels is None:
                raise ValueError("class_conditional=True needs `labels`, the true class of each matched object")
            y = np.asarray(labels)
            if y.shape != (n,) or y.dtype.kind not in "iu" or (n and y.min() < 0):
                raise ValueError(f"`labels` must be non-negative integers of shape ({n},); got {y.dtype}, {y.shape}")
            k = int(y.max()) + 1 if n_classes is None else int(n_classes)
            if y.max() >= k:
                raise ValueError(f"`labels` must be < n_classes={k}; got {int(y.max())}")
            groups = [np.flatnonzero(y == c) for c in range(k)]
        else:
            k = 1
            groups = [np.arange(n)]
        marginal = joint_thresholds(scores, alpha, self.correction)
        q = np.empty((k, scores.shape[1]))
        fallback = []
        for c, idx in enumerate(groups):
            if not self.class_conditional:
                t = marginal
            elif idx.size:
                t = joint_thresholds(scores[idx], alpha, self.correction)
            else:
                t = np.full(scores.shape[1], np.inf)
            if not np.isfinite(t).all():
                fallback.append(c)
                if self.fallback == "marginal":
                    t = marginal
            q[c] = t
        if fallback:
            what = "given infinite margins" if self.fallback == "full" else "given the marginal margins"
            warnings.warn(f"{'classes ' + str(fallback) if self.class_conditional else 'the calibration set'} "
                          f"has too few matched objects for alpha={alpha} with correction={self.correction!r}; "
                          f"{what}", UserWarning, stacklevel=2)
        n_lo = int(lo.sum())
        self.q_lo_ = np.full((k, d), np.inf)
        self.q_hi_ = np.full((k, d), np.inf)
        self.q_lo_[:, lo] = q[:, :n_lo]
        self.q_hi_[:, hi] = q[:, n_lo:]
        self.n_calibration_ = int(n)
        self.n_classes_ = int(k)
        self.class_counts_ = np.array([g.size for g in groups], np.int64)
        self.fallback_classes_ = np.asarray(fallback, np.int64)
        return self

    def predict(self, pred_boxes, class_mask=None, *, box_std=None) -> tuple[np.ndarray, np.ndarray]:
        """Intervals (lower, upper), each (M, D), for new predicted boxes.

        class_mask : bool (M, n_classes) — the class set of each detection (two-step mode) or a one-hot of its
        predicted label; required when class_conditional. Yaw bounds are returned unwrapped around the
        predicted yaw (lower <= pred <= upper when both margins are >= 0); a yaw beyond +-yaw_period is first
        wrapped into [-yaw_period/2, yaw_period/2) (the same box), so its interval keeps its width; when
        q_lo + q_hi >= yaw_period the yaw interval is the whole circle.
        """
        check_is_fitted(self, "q_lo_")
        dim = self.dim
        pred = check_boxes(pred_boxes, dim, "pred_boxes")
        m = pred.shape[0]
        if self.class_conditional:
            if class_mask is None:
                raise ValueError("a class_conditional calibrator needs `class_mask` (M, n_classes) at predict time")
            mask = np.asarray(class_mask)
            if mask.dtype != np.bool_ or mask.shape != (m, self.n_classes_):
                raise ValueError(f"`class_mask` must be bool with shape ({m}, {self.n_classes_}); got "
                                 f"{mask.dtype}, {mask.shape}")
        else:
            mask = np.ones((m, 1), np.bool_)
        std = None
        if self.scale == "uncertainty":
            if box_std is None:
                raise ValueError("scale='uncertainty' needs `box_std` at predict time too")
            std = np.asarray(box_std, dtype=np.float64)
            if std.shape != pred.shape or not np.isfinite(std).all() or (std <= 0).any():
                raise ValueError(f"`box_std` must be finite and > 0 with shape {pred.shape}; got {std.shape}")
        return self._apply(pred, mask, std)

    def _apply(self, pred: np.ndarray, mask: np.ndarray, std) -> tuple[np.ndarray, np.ndarray]:
        """Margins on validated float64 inputs (the per-frame fast path of ConformalDetector)."""
        if self.dim == 3:
            pred = wrapped_yaw(pred, float(self.yaw_period))
        lower = np.empty_like(pred)
        upper = np.empty_like(pred)
        mode = SCALE_MODES[(self.dim, self.scale)]
        _k.scaled_margins(pred, _NO_STD if std is None else std, mode, float(self.min_scale), self.q_lo_,
                          self.q_hi_, mask, lower, upper)
        return lower, upper

    def _check_fitted_state(self) -> None:
        k, d = self.n_classes_, BOX_DIM[self.dim]
        for name in ("q_lo", "q_hi"):
            if getattr(self, name + "_").shape != (k, d):
                raise StateError(f"saved field `{name}` must have shape ({k}, {d}) (n_classes, box dims); got "
                                 f"{getattr(self, name + '_').shape}")
        lo, hi = side_masks(self.dim, self.sides)
        if not (np.isinf(self.q_lo_[:, ~lo]).all() and np.isinf(self.q_hi_[:, ~hi]).all()):
            raise StateError(f"saved fields `q_lo` / `q_hi` must be infinite on the sides sides={self.sides!r} "
                             f"does not score")
        if self.class_counts_.shape != (k,) or (self.class_counts_ < 0).any() \
                or self.class_counts_.sum() != self.n_calibration_:
            raise StateError("saved field `class_counts` must have one count >= 0 per class, summing to "
                             "`n_calibration`")
        if (k > 1) != bool(self.class_conditional) and not (self.class_conditional and k == 1):
            raise StateError(f"saved margins have {k} groups; class_conditional={self.class_conditional}")

    @classmethod
    def _upgrade_state(cls, version: int, payload: dict) -> dict:
        """Schema 1 did not store n_classes (the number of margin rows)."""
        if version != 1:
            return super()._upgrade_state(version, payload)
        try:
            fitted = dict(payload["fitted"])
            fitted["n_classes"] = int(np.asarray(fitted["q_lo"]).shape[0])
            return {"params": dict(payload["params"]), "fitted": fitted}
        except (KeyError, TypeError, IndexError) as exc:
            raise StateError(f"saved BoxIntervalCalibrator state (schema_version 1) is malformed: {exc}") from None
