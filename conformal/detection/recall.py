"""Missed-object control: the confidence threshold chosen by Learn-then-Test on an image-level recall risk.

Loss of image i at confidence threshold lam: L_i(lam) = (ground-truth objects of image i not matched by any
detection with score >= lam) / (ground-truth objects of image i), 0 for an image without objects. It counts
the objects the detector missed altogether, not only those it localised badly. L_i is non-increasing as lam
falls (greedy matching: the kept detections' matches are a prefix of the full greedy run), so the thresholds
are tested from the lowest upward (fixed-sequence testing, Angelopoulos et al. 2021, arXiv 2110.01052) with the
Hoeffding-Bentkus p-value of H_lam: E[L(lam)] > alpha. The returned threshold is the largest one rejected.

Guarantee: if the calibration images and a new image are i.i.d., then with probability >= 1 - delta over the
calibration draw, E[L_new(threshold_)] <= alpha (expected fraction of an image's objects missed).
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from conformal._base import Array, BaseEstimator, Bool, Boolean, Float, Int, Interval, Mapping, Options, Satisfies
from conformal._validation import as_array, check_frame_pairs, check_is_fitted, check_match_params
from conformal.detection import _kernels as _k
from conformal.detection.matching import METRICS, pairwise
from conformal.io import StateError, register_kind
from conformal.stats import binom_cdf

__all__ = ["hb_pvalue", "gt_match_confidence", "recall_losses", "recall_risk", "RecallRiskControl"]


def hb_pvalue(risk_hat: float, n: int, alpha: float) -> float:
    """Hoeffding-Bentkus p-value of H: E[L] > alpha from the mean `risk_hat` of n losses in [0, 1]."""
    r = min(max(risk_hat, 0.0), 1.0)
    a = min(r, alpha)
    if a <= 0.0:
        h1 = math.log(1.0 / (1.0 - alpha))
    else:
        h1 = a * math.log(a / alpha) + (1.0 - a) * math.log((1.0 - a) / (1.0 - alpha))
    p_h = math.exp(-n * h1)
    p_b = math.e * binom_cdf(int(math.ceil(n * r - 1e-12)), n, alpha)
    return float(min(1.0, p_h, p_b))


def _frame_match_conf(pred, gt, metric, threshold, require_label) -> np.ndarray:
    m = gt["boxes"].shape[0]
    conf = np.full(m, -np.inf)
    n = pred["boxes"].shape[0]
    if n == 0 or m == 0:
        return conf
    q = pairwise(pred["boxes"], gt["boxes"], metric)
    larger = METRICS[metric][1]
    valid = q >= threshold if larger else q <= threshold
    if require_label:
        valid &= pred["labels"][:, None] == gt["labels"][None, :]
    sim = q if larger else -q
    order = np.argsort(-pred["scores"], kind="stable")
    p2g = _k.greedy_match(sim, order, valid, np.empty(n, np.int64))
    hit = p2g >= 0
    conf[p2g[hit]] = pred["scores"][hit]
    return conf


def gt_match_confidence(predictions, ground_truth, *, dim: int = 2, metric: str | None = None,
                        threshold: float = 0.5, require_label: bool = False) -> list[np.ndarray]:
    """Per image, for every ground-truth object the confidence of the detection that greedily matches it
    (-inf if none does): the object is found at confidence threshold lam iff this value >= lam."""
    dim, metric, threshold, _ = check_match_params(dim, metric, threshold, "greedy")
    preds, gts = check_frame_pairs(predictions, ground_truth, dim)
    return [_frame_match_conf(p, g, metric, threshold, require_label) for p, g in zip(preds, gts)]


def recall_losses(match_conf: list[np.ndarray], grid: np.ndarray) -> np.ndarray:
    """Loss matrix (n_images, len(grid)): fraction of each image's objects not found at each threshold."""
    out = np.zeros((len(match_conf), grid.shape[0]))
    for i, c in enumerate(match_conf):
        if c.shape[0]:
            cs = np.sort(c)
            out[i] = np.searchsorted(cs, grid, side="left") / c.shape[0]  # #{c < lam} / G
    return out


def recall_risk(predictions, ground_truth, score_threshold: float, **match_params) -> float:
    """Empirical image-level recall risk (mean fraction of objects missed) at one confidence threshold."""
    conf = gt_match_confidence(predictions, ground_truth, **match_params)
    return float(recall_losses(conf, np.array([float(score_threshold)])).mean())


def _is_grid(g) -> bool:
    try:
        a = as_array(g, "grid")
    except TypeError:
        return False
    return a.dtype.kind in "fiu" and a.ndim == 1 and a.size > 0 and bool(np.isfinite(a).all())


@register_kind
class RecallRiskControl(BaseEstimator):
    """Confidence threshold with a Learn-then-Test guarantee on the fraction of objects missed per image.

    Parameters
    ----------
    alpha : float in (0, 1)      Target expected fraction of an image's objects missed.
    delta : float in (0, 1)      Probability that the guarantee fails (over the calibration draw).
    dim, metric, match_threshold : matching of detections to objects (see `conformal.detection.match`).
    require_label : bool         Count an object as found only if the matching detection has its class.
    grid : 1-D array or None     Candidate thresholds, fixed before seeing data (default 0, 0.01, ..., 1.0,
                                 for scores in [0, 1]).

    Attributes
    ----------
    threshold_ : float    Keep detections with score >= threshold_ (the lowest grid value when nothing certifies).
    certified_ : bool     Whether any threshold passed; False means even keeping every box misses too much.
    table_ : dict         grid, empirical risk and p-value of every threshold tested.
    n_images_ : int

    Examples
    --------
    >>> from adapters.datasets import make_scenes
    >>> preds, gts = make_scenes(300, rng=0)
    >>> ctl = RecallRiskControl(alpha=0.2, delta=0.1).fit(preds, gts)
    >>> bool(ctl.certified_), 0.0 <= ctl.threshold_ <= 1.0
    (True, True)
    """

    _parameter_constraints = {
        "alpha": [Interval(numbers.Real, 0, 1, closed="neither")],
        "delta": [Interval(numbers.Real, 0, 1, closed="neither")],
        "dim": [Options((2, 3))],
        "metric": [None, Options(tuple(METRICS))],
        "match_threshold": [Interval(numbers.Real)],
        "require_label": [Boolean()],
        "grid": [None, Satisfies(_is_grid, "a non-empty 1-D array of finite thresholds")],
    }
    _fitted_marker = "threshold_"
    _fitted_attributes = {"threshold_": Float(finite=True), "certified_": Bool(), "n_images_": Int(1),
                          "table_": Mapping({"grid": Array("f", 1, finite=True),
                                             "risk": Array("f", 1, shape=("grid",), low=0.0, high=1.0),
                                             "pvalue": Array("f", 1, shape=("grid",), low=0.0, high=1.0)})}

    def __init__(self, *, alpha: float = 0.1, delta: float = 0.1, dim: int = 2, metric: str | None = None,
                 match_threshold: float = 0.5, require_label: bool = False, grid=None):
        self.alpha = alpha
        self.delta = delta
        self.dim = dim
        self.metric = metric
        self.match_threshold = match_threshold
        self.require_label = require_label
        self.grid = grid

    def _check_dependent_params(self) -> None:
        check_match_params(self.dim, self.metric, self.match_threshold, "greedy")

    def _grid(self):
        if self.grid is None:
            return np.linspace(0.0, 1.0, 101)
        return np.unique(as_array(self.grid, "grid").astype(np.float64, copy=False))

    def fit(self, predictions, ground_truth) -> "RecallRiskControl":
        """Pick the confidence threshold on calibration frames (lists of dicts, one per image); returns self."""
        self.validate_params()
        alpha, delta = float(self.alpha), float(self.delta)
        grid = self._grid()
        conf = gt_match_confidence(predictions, ground_truth, dim=self.dim, metric=self.metric,
                                   threshold=self.match_threshold, require_label=self.require_label)
        if self.grid is None:
            scores = [np.asarray(p["scores"]) for p in predictions if len(p["scores"])]
            if scores and (min(s.min() for s in scores) < 0 or max(s.max() for s in scores) > 1):
                raise ValueError("detector scores outside [0, 1]: pass `grid`, the candidate thresholds for your "
                                 "score range")
        return self._fit_confidences(conf, grid, alpha, delta)

    def _fit_confidences(self, conf: list, grid: np.ndarray, alpha: float, delta: float) -> "RecallRiskControl":
        """Fixed-sequence LTT from per-image match confidences (see `gt_match_confidence`)."""
        n = len(conf)
        if n == 0:
            raise ValueError("no calibration images")
        losses = recall_losses(conf, grid)
        risks = losses.mean(axis=0)
        pvals = np.ones(grid.shape[0])
        best = -1
        for j in range(grid.shape[0]):  # ascending thresholds: the risk can only grow
            pvals[j] = hb_pvalue(float(risks[j]), n, alpha)
            if pvals[j] > delta:
                break
            best = j
        self.certified_ = best >= 0
        if not self.certified_:
            warnings.warn(f"no confidence threshold certifies recall risk <= {alpha} with probability {1 - delta} on "
                          f"{n} images (keeping every detection misses {risks[0]:.3f} of the objects per image); "
                          f"keeping all detections", UserWarning, stacklevel=3)
        self.threshold_ = float(grid[max(best, 0)])
        self.table_ = {"grid": grid, "risk": risks, "pvalue": pvals}
        self.n_images_ = n
        return self

    def predict(self, scores) -> np.ndarray:
        """Boolean mask of the detections to keep (score >= threshold_)."""
        check_is_fitted(self, "threshold_")
        return as_array(scores, "scores") >= self.threshold_

    @staticmethod
    def _last_certified(pvalues: np.ndarray, delta: float) -> int:
        """Index of the last threshold of the fixed sequence that was rejected (-1: none)."""
        failed = np.flatnonzero(pvalues > delta)
        return (int(failed[0]) if failed.size else pvalues.shape[0]) - 1

    def _check_fitted_state(self) -> None:
        t = self.table_
        if not (t["grid"].shape == t["risk"].shape == t["pvalue"].shape):
            raise StateError("saved fields `table.grid`, `table.risk` and `table.pvalue` must have equal lengths")
        best = self._last_certified(t["pvalue"], float(self.delta))
        if self.certified_ != (best >= 0) or self.threshold_ != t["grid"][max(best, 0)]:
            raise StateError("saved fields `threshold` / `certified` do not follow from `table` and delta")
