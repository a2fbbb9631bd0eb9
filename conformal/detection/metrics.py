"""Metrics of conformal detection: box coverage (per side, joint, stratified, with exact CIs), interval sizes,
and detector confidence calibration (D-ECE, LaECE) with post-hoc isotonic calibration as the baseline.

Stratified coverage reports Clopper-Pearson 95 % intervals, so a group's coverage is never read from a point
estimate on a handful of objects.
"""
from __future__ import annotations

import numpy as np

from conformal._base import Array, BaseEstimator, Boolean, Mapping
from conformal._validation import (
    as_array,
    check_boxes,
    check_confidences,
    check_dim,
    check_frame_pairs,
    check_is_fitted,
    check_match_params,
)
from conformal.detection import _kernels as _k
from conformal.detection._geometry import TWO_PI, wrap_angle, wrapped_yaw
from conformal.detection.matching import match_arrays
from conformal.io import StateError, register_kind
from conformal.stats import clopper_pearson

__all__ = ["side_coverage", "box_coverage", "outer_box_coverage", "relative_interval_size", "stratified_coverage",
           "size_bins", "range_bins", "detection_targets", "detection_ece", "laece", "isotonic_regression",
           "IsotonicCalibrator"]


def _boxes(x, dim, name):
    return check_boxes(x, dim, name)


def side_coverage(pred, lower, upper, true, *, dim: int = 2, yaw_period: float = TWO_PI):
    """(lower_ok, upper_ok): bool (n, D) arrays, true_j >= lower_j and true_j <= upper_j.

    Yaw is compared on the circle: wrap(true - pred) against the margins lower - pred and upper - pred; a yaw
    interval of length >= yaw_period covers every angle."""
    dim = check_dim(dim)
    p, t = _boxes(pred, dim, "pred"), _boxes(true, dim, "true")
    lo = as_array(lower, "lower").astype(np.float64, copy=False)
    hi = as_array(upper, "upper").astype(np.float64, copy=False)
    for name, arr in (("lower", lo), ("upper", hi), ("true", t)):
        if arr.shape != p.shape:
            raise ValueError(f"`{name}` must have the shape of `pred` {p.shape}; got {arr.shape}")
    lo_ok = t >= lo
    hi_ok = t <= hi
    if dim == 3:
        p = wrapped_yaw(p, yaw_period)  # as BoxIntervalCalibrator.predict: its bounds are around this yaw
        d = wrap_angle(t[:, 6] - p[:, 6], yaw_period)
        full = (hi[:, 6] - lo[:, 6]) >= yaw_period
        lo_ok[:, 6] = (d >= lo[:, 6] - p[:, 6]) | full
        hi_ok[:, 6] = (d <= hi[:, 6] - p[:, 6]) | full
    return lo_ok, hi_ok


def box_coverage(pred, lower, upper, true, *, dim: int = 2, yaw_period: float = TWO_PI, level: float = 0.95) -> dict:
    """Coverage per lower side, per upper side (each (D,)), per coordinate (both sides), and jointly, with the
    Clopper-Pearson interval of the joint coverage: keys lower, upper, coordinate, joint, joint_ci, n."""
    lo_ok, hi_ok = side_coverage(pred, lower, upper, true, dim=dim, yaw_period=yaw_period)
    both = lo_ok & hi_ok
    joint = both.all(axis=1)
    n = int(joint.shape[0])
    k = int(joint.sum())
    return {"lower": lo_ok.mean(axis=0), "upper": hi_ok.mean(axis=0), "coordinate": both.mean(axis=0),
            "joint": k / n if n else float("nan"), "joint_ci": clopper_pearson(k, n, level), "n": n}


def outer_box_coverage(outer, true) -> np.ndarray:
    """bool (n,): the true xyxy box lies inside the outer box."""
    o = as_array(outer, "outer").astype(np.float64, copy=False)
    t = _boxes(true, 2, "true")
    if o.shape != t.shape:
        raise ValueError(f"`outer` must have the shape of `true` {t.shape}; got {o.shape}")
    return (o[:, 0] <= t[:, 0]) & (o[:, 1] <= t[:, 1]) & (o[:, 2] >= t[:, 2]) & (o[:, 3] >= t[:, 3])


def relative_interval_size(pred, lower, upper, *, dim: int = 2) -> dict:
    """Interval size relative to the box. 2D: mean outer-box area / predicted area and mean interval width per
    coordinate / (box width or height). 3D: mean interval length per coordinate (m, rad) and relative to l, w, h
    for the size coordinates. Infinite margins give inf."""
    dim = check_dim(dim)
    p = _boxes(pred, dim, "pred")
    lo = as_array(lower, "lower").astype(np.float64, copy=False)
    hi = as_array(upper, "upper").astype(np.float64, copy=False)
    width = hi - lo
    if dim == 2:
        w = np.maximum(p[:, 2] - p[:, 0], 1e-12)
        h = np.maximum(p[:, 3] - p[:, 1], 1e-12)
        area_out = np.maximum(hi[:, 2] - lo[:, 0], 0) * np.maximum(hi[:, 3] - lo[:, 1], 0)
        rel = width / np.stack([w, h, w, h], axis=1)
        return {"outer_area_ratio": float(np.mean(area_out / (w * h))), "relative_width": rel.mean(axis=0),
                "mean_width": width.mean(axis=0)}
    rel_size = width[:, 3:6] / np.maximum(p[:, 3:6], 1e-12)
    return {"mean_width": width.mean(axis=0), "relative_size_width": rel_size.mean(axis=0)}


def stratified_coverage(covered, groups, level: float = 0.95) -> dict:
    """Coverage per group with its exact interval: {group: (coverage, lower, upper, n)}."""
    c = as_array(covered, "covered")
    g = as_array(groups, "groups")
    if c.dtype != np.bool_ or c.ndim != 1 or g.shape != c.shape:
        raise ValueError(f"`covered` must be bool (n,) and `groups` (n,); got {c.dtype} {c.shape}, {g.shape}")
    out = {}
    for key in np.unique(g).tolist():
        sel = c[g == key]
        k, n = int(sel.sum()), int(sel.size)
        lo, hi = clopper_pearson(k, n, level)
        out[key] = (k / n, lo, hi, n)
    return out


def size_bins(true_boxes, edges=(32.0 ** 2, 96.0 ** 2)) -> np.ndarray:
    """COCO size bins of xyxy boxes by area: 0 small (< 32^2), 1 medium, 2 large (>= 96^2)."""
    t = _boxes(true_boxes, 2, "true_boxes")
    return np.searchsorted(np.asarray(edges, np.float64), (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1]), side="right")


def range_bins(true_boxes3d, edges=(20.0, 40.0)) -> np.ndarray:
    """Range bands of 3D boxes by BEV distance: 0 (< 20 m), 1 (20-40 m), 2 (>= 40 m) by default."""
    t = _boxes(true_boxes3d, 3, "true_boxes3d")
    return np.searchsorted(np.asarray(edges, np.float64), np.hypot(t[:, 0], t[:, 1]), side="right")


def detection_targets(predictions, ground_truth, *, dim: int = 2, metric: str | None = None,
                      threshold: float = 0.5, method: str = "hungarian") -> dict:
    """Per detection of every frame: scores, labels, tp (matched to an object of the same class) and iou (the
    match quality when tp, else 0) — the targets of D-ECE, LaECE and isotonic calibration to IoU."""
    dim, metric, threshold, method = check_match_params(dim, metric, threshold, method)
    preds, gts = check_frame_pairs(predictions, ground_truth, dim)
    scores, labels, tp, iou = [], [], [], []
    for p, g in zip(preds, gts):
        m = match_arrays(p["boxes"], g["boxes"], p["scores"], metric, threshold, method)
        t = np.zeros(p["boxes"].shape[0], np.bool_)
        q = np.zeros(p["boxes"].shape[0])
        ok = p["labels"][m.pred_index] == g["labels"][m.gt_index]
        t[m.pred_index[ok]] = True
        q[m.pred_index[ok]] = m.quality[ok]
        scores.append(p["scores"])
        labels.append(p["labels"])
        tp.append(t)
        iou.append(q)
    def cat(a, dt):
        return np.concatenate(a) if a else np.empty(0, dt)

    return {"scores": cat(scores, np.float64), "labels": cat(labels, np.int64), "tp": cat(tp, np.bool_),
            "iou": cat(iou, np.float64)}


def _binned_gap(conf, target, n_bins):
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    s_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    s_tgt = np.bincount(idx, weights=target, minlength=n_bins)
    nz = count > 0
    return float(np.sum(np.abs(s_conf[nz] - s_tgt[nz])) / conf.shape[0])


def detection_ece(scores, tp, n_bins: int = 10) -> float:
    """D-ECE (Kueppers et al. 2020, confidence-only): sum over equal-width bins of |bin| / N * |mean confidence -
    precision|, where precision is the fraction of true positives in the bin."""
    c = check_confidences(scores)
    t = as_array(tp, "tp")
    if t.dtype != np.bool_ or t.shape != c.shape:
        raise ValueError(f"`tp` must be bool with the shape of `scores` {c.shape}")
    return _binned_gap(c, t.astype(np.float64), int(n_bins))


def laece(scores, labels, iou, n_bins: int = 25) -> float:
    """LaECE (Oksuz et al. CVPR 2023, arXiv 2307.00934): per class, sum over bins of |bin| / N_c *
    |mean confidence - precision * mean IoU of the true positives|, averaged over classes. precision * mean TP
    IoU equals the bin mean of `iou` with 0 for false positives, which is what `iou` must hold."""
    c = check_confidences(scores)
    y = as_array(labels, "labels")
    q = as_array(iou, "iou").astype(np.float64, copy=False)
    if y.shape != c.shape or q.shape != c.shape or y.dtype.kind not in "iu":
        raise ValueError("`labels` (int) and `iou` must have the shape of `scores`")
    if q.min() < 0 or q.max() > 1:
        raise ValueError("`iou` must be in [0, 1] (0 for false positives)")
    vals = [_binned_gap(c[y == k], q[y == k], int(n_bins)) for k in np.unique(y)]
    return float(np.mean(vals))


def isotonic_regression(y, sample_weight=None) -> np.ndarray:
    """Non-decreasing least-squares fit to y in the given order (pool adjacent violators; compiled)."""
    v = as_array(y, "y").astype(np.float64)
    if v.ndim != 1 or not np.isfinite(v).all():
        raise ValueError("`y` must be a finite 1-D array")
    w = np.ones_like(v) if sample_weight is None else as_array(sample_weight, "sample_weight").astype(np.float64)
    if w.shape != v.shape or not np.isfinite(w).all() or (w <= 0).any():
        raise ValueError("`sample_weight` must be finite, > 0 and have the shape of `y`")
    return _k.pav(v, w, np.empty_like(v))


@register_kind
class IsotonicCalibrator(BaseEstimator):
    """Post-hoc confidence calibration of a detector (the fiveai baseline, Kuzucu et al. ECCV 2024): isotonic
    regression of a target (IoU of the match, 0 for false positives; or the TP indicator) on the confidence,
    class-wise or class-agnostic; predictions interpolate linearly between fitted points, clipped at the ends.
    No coverage guarantee: it improves the confidence that thresholds and abstention read.

    Attributes
    ----------
    curves_ : dict   {None: (x, f)} and, class-wise, {label: (x, f)}: fitted points, x increasing, f non-decreasing.
    """

    _parameter_constraints = {"class_wise": [Boolean()]}
    _fitted_marker = "curves_"
    _fitted_attributes = {"curves_": Mapping()}

    def __init__(self, *, class_wise: bool = False):
        self.class_wise = class_wise

    def _check_fitted_state(self) -> None:
        if None not in self.curves_:
            raise StateError("saved field `curves` must hold the class-agnostic curve (key None)")
        for key, curve in self.curves_.items():
            where = f"curves[{key!r}]"
            if not (key is None or isinstance(key, int) and key >= 0) or (key is not None and not self.class_wise):
                raise StateError(f"saved field `curves` has key {key!r}; keys are None and, class-wise, labels >= 0")
            if not isinstance(curve, tuple) or len(curve) != 2:
                raise StateError(f"saved field `{where}` must be a pair (x, f)")
            x, f = (Array("f", 1, finite=True)(v, f"{where}[{i}]") for i, v in enumerate(curve))
            if x.shape != f.shape or x.size == 0 or np.any(np.diff(x) <= 0) or np.any(np.diff(f) < 0):
                raise StateError(f"saved field `{where}` must hold increasing x and non-decreasing f of equal length")

    @staticmethod
    def _fit_one(c, t):
        order = np.argsort(c, kind="stable")
        xs, ys = c[order], t[order]
        # tied confidences are one point: their mean target, weighted by count
        ux, start, counts = np.unique(xs, return_index=True, return_counts=True)
        sums = np.add.reduceat(ys, start)
        fitted = _k.pav(sums / counts, counts.astype(np.float64), np.empty(ux.shape[0]))
        return ux, fitted

    def fit(self, scores, target, labels=None) -> "IsotonicCalibrator":
        """Fit the curve(s) of `target` on the confidences `scores` (and per class of `labels`); returns self."""
        self.validate_params()
        c = check_confidences(scores)
        t = as_array(target, "target").astype(np.float64)
        if t.shape != c.shape or not np.isfinite(t).all():
            raise ValueError("`target` must be finite with the shape of `scores`")
        self.curves_ = {None: self._fit_one(c, t)}
        if self.class_wise:
            if labels is None:
                raise ValueError("class_wise=True needs `labels`")
            y = as_array(labels, "labels")
            for k in np.unique(y).tolist():
                self.curves_[int(k)] = self._fit_one(c[y == k], t[y == k])
        return self

    def predict(self, scores, labels=None) -> np.ndarray:
        check_is_fitted(self, "curves_")
        c = check_confidences(scores)
        if not self.class_wise:
            x, f = self.curves_[None]
            return np.interp(c, x, f)
        if labels is None:
            raise ValueError("class_wise=True needs `labels` at predict time too")
        y = as_array(labels, "labels")
        out = np.empty_like(c)
        for k in np.unique(y).tolist():
            x, f = self.curves_.get(int(k), self.curves_[None])  # unseen class: the class-agnostic curve
            sel = y == k
            out[sel] = np.interp(c[sel], x, f)
        return out

