"""ShiftAwareAbstention: raise abstention from a trailing window of unlabeled inputs when the inputs shift.

A per-input threshold fitted on clean data cannot know *how much* to abstain once a sensor degrades: under fog or
low contrast a classifier becomes confidently wrong and softmax statistics barely move. A window of recent inputs
can tell: their statistics (and those of a fitted shift statistic such as the kNN feature distance) drift as a
whole. This estimator turns a trailing window into an estimated abstention level r_hat, then abstains on the
window's r_hat most uncertain inputs (by the per-input statistic), on top of the clean threshold.

**No finite-sample guarantee under shift.** Under exchangeable (clean) data the clean threshold keeps
P(abstain) <= max_abstain and the sets cover with probability >= 1 - alpha. Under a shift, r_hat is an *estimate*
of the abstention needed for coverage among accepted inputs to stay >= 1 - alpha; it can be wrong, above all for
a shift unlike the ones its regressor was fitted on (benchmarks/bench_shift.py measures it with the test
corruption's family held out, and across a change point). A trailing window also lags a change point by up to
`window` inputs: pair it with a shift monitor (`conformal.online.ShiftMonitor`) for the first inputs after an
alarm.

Estimators of the coverage loss (`estimator`):

* "atc" -- average thresholded confidence (Garg et al., ICLR 2022): a threshold t on the statistic fitted on clean
  data so that the clean share of inputs with statistic <= t equals the clean coverage of the sets; a window's
  estimated coverage is its share below t. The estimated misses are spread over the window in proportion to the
  clean miss rate at each input's statistic, and r_hat is the smallest share of the most uncertain inputs whose
  removal brings the estimated coverage among accepted inputs to >= 1 - alpha. Needs no corrupted data; it
  underestimates the loss when the model is confidently wrong.
* "regressor" -- nearest-neighbour regression of the required abstention on label-free window features
  (`window_features`), fitted on windows of calibration data corrupted by known corruptions. The corrupting and
  the oracle targets (`required_abstention`, which uses labels) are computed *outside* this module (e.g.
  `adapters.shift.window_training_set`); the core only receives arrays.
* "max" -- the larger of the two.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from conformal._base import Array, BaseEstimator, Float, Int, Interval, Nested, Optional, Options
from conformal._validation import as_array, check_labels, check_scores_matrix
from conformal.abstention.decisions import Decisions
from conformal.abstention.statistics import STATISTICS, get_statistic
from conformal.calibrators import _SCORE, SplitConformalClassifier
from conformal.io import StateError, register_kind
from conformal.quantile import sorted_quantile

__all__ = ["ShiftAwareAbstention", "ESTIMATORS", "required_abstention", "WindowState"]

ESTIMATORS = ("atc", "regressor", "max")
_N_BINS = 20  # clean quantile bins of the statistic for the miss-rate curve
_PROB = [Interval(numbers.Real, 0, 1, closed="neither")]


def required_abstention(statistic, covered, alpha: float) -> float:
    """The smallest share r of the inputs with the largest `statistic` whose removal leaves coverage >= 1 - alpha
    among the rest (1.0 when no share does). USES LABELS (through `covered`, the set-contains-label indicators):
    an oracle for fitting the window regressor and for comparison, never a decision rule."""
    s = np.asarray(statistic, dtype=np.float64)
    c = np.asarray(covered, dtype=bool)
    if s.ndim != 1 or c.shape != s.shape or s.size == 0:
        raise ValueError(f"`statistic` and `covered` must be 1-D of the same non-zero length; got {s.shape} and "
                         f"{c.shape}")
    order = np.argsort(s, kind="mergesort")  # accepted = the n_acc smallest
    cov = np.cumsum(c[order]) / np.arange(1, s.size + 1)
    ok = np.flatnonzero(cov >= 1 - alpha - 1e-12)
    if ok.size == 0:
        return 1.0
    return float(1.0 - (ok[-1] + 1) / s.size)


def _trailing_mean(x: np.ndarray, window: int) -> np.ndarray:
    """mean of x[max(0, i - window + 1): i + 1] for every i (x (n,) or (n, d))."""
    c = np.cumsum(np.concatenate([np.zeros((1,) + x.shape[1:]), x]), axis=0)
    n = x.shape[0]
    hi = np.arange(1, n + 1)
    lo = np.maximum(hi - window, 0)
    cnt = (hi - lo).reshape((-1,) + (1,) * (x.ndim - 1))
    return (c[hi] - c[lo]) / cnt


@register_kind
class ShiftAwareAbstention(BaseEstimator):
    """Conformal sets with window-level abstention that rises when the inputs shift (experimental).

    Parameters
    ----------
    score, score_params, alpha : the conformal sets (as `SplitConformalClassifier`, fitted on clean data).
    statistic : str          Per-input label-free ranking statistic (a name of `STATISTICS`; default entropy).
    max_abstain : float      Clean abstention budget: the clean tau is the conformal (1 - max_abstain) quantile
                             of the clean statistic, so P(abstain | clean) <= max_abstain from it alone.
    window : int             Trailing window length (inputs).
    min_window : int         Fewer inputs than this in the window: no window estimate (clean tau only).
    estimator : "atc", "regressor" or "max"   See the module docstring.
    n_neighbors : int        Regressor: the training windows averaged.
    deadband : float >= 0    ATC: a window whose estimated coverage is within `deadband` binomial standard errors
                             of the clean one counts as clean (r_hat = 0): window noise alone would otherwise
                             raise abstention on clean streams.

    Attributes
    ----------
    calibrator_ : SplitConformalClassifier    The sets.
    tau_ : float                 Clean abstention threshold.
    atc_threshold_ : float       ATC's t (inputs with statistic <= t count as covered).
    clean_coverage_ : float      The sets' coverage on the calibration data.
    bin_edges_, bin_miss_ : float64 (_N_BINS + 1,), (_N_BINS,)   Clean miss rate per quantile bin of the statistic.
    shift_reference_ : float64 (m,) or None     Sorted clean values of the shift statistic (None: none given).
    train_features_, train_targets_ : float64 (w, d), (w,) or None   The regressor's training windows.

    Notes
    -----
    Guarantees: under exchangeable data only (sets >= 1 - alpha; the clean tau's P(abstain) <= max_abstain; the
    window rule only adds abstention). Under shift there is none: r_hat is an estimate (module docstring).
    The shift statistic's clean values (`shift_statistic=` in fit) must come from inputs its reference bank did
    not contain (a kNN distance of a bank point to its own bank is too small).
    """

    _parameter_constraints = {
        "score": _SCORE, "score_params": [None, dict], "alpha": _PROB,
        "statistic": [Options(tuple(STATISTICS), registry="statistic")], "max_abstain": _PROB,
        "window": [Interval(numbers.Integral, 2, None, closed="left")],
        "min_window": [Interval(numbers.Integral, 1, None, closed="left")],
        "estimator": [Options(ESTIMATORS)],
        "n_neighbors": [Interval(numbers.Integral, 1, None, closed="left")],
        "deadband": [Interval(numbers.Real, 0, None, closed="left")],
    }
    _fitted_attributes = {"calibrator_": Nested(SplitConformalClassifier), "tau_": Float(),
                          "atc_threshold_": Float(), "clean_coverage_": Float(low=0, high=1),
                          "bin_edges_": Array("f", 1), "bin_miss_": Array("f", 1),
                          "statistic_reference_": Array("f", 1),
                          "shift_reference_": Optional(Array("f", 1, finite=True)),
                          "train_features_": Optional(Array("f", 2, finite=True)),
                          "train_targets_": Optional(Array("f", 1, finite=True)),
                          "n_calibration_": Int(1)}
    _fitted_marker = "tau_"

    def __init__(self, *, score="lac", score_params: dict | None = None, alpha: float = 0.1,
                 statistic: str = "entropy", max_abstain: float = 0.1, window: int = 200, min_window: int = 50,
                 estimator: str = "atc", n_neighbors: int = 10, deadband: float = 2.0):
        self.score = score
        self.score_params = score_params
        self.alpha = alpha
        self.statistic = statistic
        self.max_abstain = max_abstain
        self.window = window
        self.min_window = min_window
        self.estimator = estimator
        self.n_neighbors = n_neighbors
        self.deadband = deadband

    def _check_dependent_params(self) -> None:
        if self.min_window > self.window:
            raise ValueError(f"`min_window` must be <= `window` ({self.window}); got {self.min_window}")
        if self.statistic in ("set_size", "credibility", "top1_score"):
            raise ValueError(f"`statistic` must be a function of the probabilities alone (entropy, max_prob, "
                             f"margin); got {self.statistic!r}")

    # --- fit --------------------------------------------------------------------------------------------------
    def fit(self, probs, labels, *, shift_statistic=None, window_features=None, required_abstention=None):
        """Fit on clean calibration data.

        probs, labels : (n, K) clean calibration outputs and their labels.
        shift_statistic : (n,) or None   A fitted label-free shift statistic (larger = more shifted, e.g. the kNN
            feature distance) on these inputs, from a bank that excludes them; its clean reference.
        window_features, required_abstention : (w, d), (w,) or None   The regressor's training windows:
            `window_features` of windows of corrupted calibration data and their oracle `required_abstention`
            (computed outside the core). Needed for estimator="regressor" / "max".
        """
        self.validate_params()
        p = check_scores_matrix(probs, "probs")
        n, k = p.shape
        y = check_labels(labels, n, k)
        cal = SplitConformalClassifier(score=self.score, score_params=self.score_params, alpha=self.alpha,
                                       allow_empty=False).fit(p, y)
        stat = get_statistic(self.statistic)[1](p)
        covered = cal.predict_sets(p)[np.arange(n), y]
        ref = np.sort(stat)
        self.calibrator_ = cal
        self.statistic_reference_ = ref
        self.tau_ = float(sorted_quantile(ref, self.max_abstain))
        self.clean_coverage_ = float(covered.mean())
        # ATC: the share of clean inputs with statistic <= t equals the clean coverage
        idx = min(max(int(round(self.clean_coverage_ * n)) - 1, 0), n - 1)
        self.atc_threshold_ = float(ref[idx])
        edges = np.quantile(stat, np.linspace(0, 1, _N_BINS + 1))
        edges[0], edges[-1] = -np.inf, np.inf
        b = np.clip(np.searchsorted(edges, stat, side="right") - 1, 0, _N_BINS - 1)
        cnt = np.bincount(b, minlength=_N_BINS)
        miss = np.bincount(b, weights=~covered, minlength=_N_BINS)
        # a little smoothing toward the overall rate, then monotone in the statistic (more uncertain, more misses)
        rate = (miss + (1 - self.clean_coverage_)) / (cnt + 1.0)
        self.bin_edges_, self.bin_miss_ = edges, np.maximum.accumulate(rate)
        self.shift_reference_ = None
        if shift_statistic is not None:
            s = as_array(shift_statistic, "shift_statistic").astype(np.float64)
            if s.shape != (n,) or not np.isfinite(s).all():
                raise ValueError(f"`shift_statistic` must be a finite (n,) = ({n},) array; got shape {s.shape}")
            self.shift_reference_ = np.sort(s)
        self.n_calibration_ = n
        self.train_features_ = self.train_targets_ = None
        if (window_features is None) != (required_abstention is None):
            raise ValueError("`window_features` and `required_abstention` go together; got only one of them")
        if window_features is not None:
            x = as_array(window_features, "window_features").astype(np.float64)
            t = as_array(required_abstention, "required_abstention").astype(np.float64)
            d = self.n_features
            if x.ndim != 2 or x.shape[1] != d or t.shape != (x.shape[0],) or x.shape[0] < self.n_neighbors:
                raise ValueError(f"`window_features` must be (w, {d}) and `required_abstention` (w,) with w >= "
                                 f"n_neighbors={self.n_neighbors}; got {x.shape} and {t.shape}")
            if not (np.isfinite(x).all() and np.isfinite(t).all() and (t >= 0).all() and (t <= 1).all()):
                raise ValueError("`window_features` must be finite and `required_abstention` in [0, 1]")
            self.train_features_, self.train_targets_ = x, t
        elif self.estimator != "atc":
            raise ValueError(f"estimator={self.estimator!r} needs `window_features` and `required_abstention` "
                             f"(training windows of corrupted calibration data); got none")
        return self

    def _check_fitted_state(self) -> None:
        if self.bin_edges_.shape != (_N_BINS + 1,) or self.bin_miss_.shape != (_N_BINS,):
            raise StateError(f"saved fields `bin_edges` / `bin_miss` must have shapes ({_N_BINS + 1},) / "
                             f"({_N_BINS},)")
        if (self.train_features_ is None) != (self.train_targets_ is None) or (
                self.train_features_ is not None and self.train_features_.shape[1] != self.n_features):
            raise StateError("saved fields `train_features` / `train_targets` do not match")

    # --- window features --------------------------------------------------------------------------------------
    @property
    def n_features(self) -> int:
        """Length of a window's feature vector: 3, plus 3 with a shift statistic."""
        self._check_is_fitted()
        return 3 if self.shift_reference_ is None else 6

    def _per_input(self, stat, shift):
        """Per-input values whose window means are the window features (all in [0, 1], label-free)."""
        ref = self.statistic_reference_
        cols = [stat <= self.atc_threshold_, stat > self.tau_,
                np.searchsorted(ref, stat, side="right") / ref.shape[0]]
        if self.shift_reference_ is not None:
            sref = self.shift_reference_
            q90, q99 = sorted_quantile(sref, 0.1), sorted_quantile(sref, 0.01)
            cols += [shift > q90, shift > q99, np.searchsorted(sref, shift, side="right") / sref.shape[0]]
        return np.column_stack(cols).astype(np.float64)

    def _inputs(self, probs, shift_statistic):
        self._check_is_fitted()
        p = check_scores_matrix(probs, "probs", n_classes=self.calibrator_.n_classes_)
        stat = get_statistic(self.statistic)[1](p)
        shift = None
        if self.shift_reference_ is not None:
            if shift_statistic is None:
                raise ValueError("this ShiftAwareAbstention was fitted with a shift statistic; pass "
                                 "`shift_statistic=` (n,) (e.g. the kNN feature distance of these inputs)")
            shift = as_array(shift_statistic, "shift_statistic").astype(np.float64)
            if shift.shape != (p.shape[0],) or not np.isfinite(shift).all():
                raise ValueError(f"`shift_statistic` must be a finite ({p.shape[0]},) array; got {shift.shape}")
        elif shift_statistic is not None:
            raise ValueError("`shift_statistic` given, but fit saw none; refit with `shift_statistic=`")
        return p, stat, shift

    def statistic_of(self, probs) -> np.ndarray:
        """The per-input ranking statistic of `probs` (the one compared with tau_)."""
        self._check_is_fitted()
        p = check_scores_matrix(probs, "probs", n_classes=self.calibrator_.n_classes_)
        return get_statistic(self.statistic)[1](p)

    def window_features(self, probs, *, shift_statistic=None) -> np.ndarray:
        """The label-free feature vector (n_features,) of one window of inputs: the ATC coverage estimate, the
        share above the clean tau, the mean clean rank of the statistic; with a shift statistic also its shares
        above the clean 90 % and 99 % quantiles and its mean clean rank."""
        _, stat, shift = self._inputs(probs, shift_statistic)
        return self._per_input(stat, shift).mean(axis=0)

    # --- estimates --------------------------------------------------------------------------------------------
    def _atc_level(self, stat_window: np.ndarray, covered_share: float) -> float:
        """r_hat from ATC: misses (1 - covered_share) spread over the window by the clean miss curve."""
        w = stat_window.shape[0]
        c0 = self.clean_coverage_
        if covered_share >= c0 - self.deadband * math.sqrt(c0 * (1 - c0) / w):
            return 0.0
        b = np.clip(np.searchsorted(self.bin_edges_, stat_window, side="right") - 1, 0, _N_BINS - 1)
        m = self.bin_miss_[b]
        total = (1.0 - covered_share) * w
        m = np.minimum(m * (total / m.sum()), 1.0) if m.sum() > 0 else m
        m = np.sort(m)  # the clean miss curve is monotone in the statistic: ascending m = ascending statistic
        acc_miss = np.cumsum(m) / np.arange(1, w + 1)
        ok = np.flatnonzero(acc_miss <= self.alpha + 1e-12)
        return 1.0 if ok.size == 0 else float(1.0 - (ok[-1] + 1) / w)

    def _regressor_level(self, feats: np.ndarray) -> np.ndarray:
        d2 = ((feats[:, None, :] - self.train_features_[None, :, :]) ** 2).sum(-1)
        k = min(self.n_neighbors, d2.shape[1])
        nn = np.argpartition(d2, k - 1, axis=1)[:, :k]
        return self.train_targets_[nn].mean(axis=1)

    def abstention_level(self, probs, *, shift_statistic=None, window: bool = True) -> np.ndarray:
        """r_hat per input from its trailing window (inputs in order, as a stream; NaN where the window holds
        fewer than `min_window` inputs). window=False: one estimate for the whole batch, as one window."""
        _, stat, shift = self._inputs(probs, shift_statistic)
        per = self._per_input(stat, shift)
        n = stat.shape[0]
        if not window:
            feats, starts, ends = per.mean(axis=0, keepdims=True), np.array([0]), np.array([n])
        else:
            feats = _trailing_mean(per, self.window)
            ends = np.arange(1, n + 1)
            starts = np.maximum(ends - self.window, 0)
        out = np.zeros(feats.shape[0])
        if self.estimator in ("atc", "max"):
            out = np.array([self._atc_level(stat[a:b], f[0]) for a, b, f in zip(starts, ends, feats)])
        if self.estimator in ("regressor", "max"):
            out = np.maximum(out, self._regressor_level(feats))
        out[(ends - starts) < self.min_window] = np.nan
        return out

    def predict(self, probs, *, shift_statistic=None, window: bool = True) -> Decisions:
        """Sets and abstention. An input abstains when its statistic exceeds the clean tau, or when it is among
        the r_hat most uncertain of its trailing window (window=False: of the whole batch). Never sees a label."""
        p, stat, _ = self._inputs(probs, shift_statistic)
        r = self.abstention_level(p, shift_statistic=shift_statistic, window=window)
        abstain = stat > self.tau_
        if not window:
            return self._decisions(p, stat, abstain | self._window_abstain(stat, stat, r[0]))
        for i in range(stat.shape[0]):
            abstain[i] |= self._window_abstain(stat[i], stat[max(0, i - self.window + 1): i + 1], r[i])
        return self._decisions(p, stat, abstain)

    @staticmethod
    def _window_abstain(s, w: np.ndarray, r: float):
        """Is `s` (a value or an array) among the share r of the window's largest statistics?"""
        if not math.isfinite(r) or r <= 0:
            return np.zeros(np.shape(s), dtype=bool)
        n_acc = int(math.floor((1.0 - r) * w.shape[0] + 1e-9))
        if n_acc <= 0:
            return np.ones(np.shape(s), dtype=bool)
        if n_acc >= w.shape[0]:
            return np.zeros(np.shape(s), dtype=bool)
        return np.asarray(s > np.partition(w, n_acc - 1)[n_acc - 1])

    def _decisions(self, p, stat, abstain) -> Decisions:
        sets = self.calibrator_.predict_sets(p)
        return Decisions(sets=sets, abstain=abstain, prediction=np.argmax(p, axis=1).astype(np.int64),
                         statistic=stat)


class WindowState:
    """The trailing window of one stream for a fitted `ShiftAwareAbstention` (the per-frame path of
    `adapters.StreamingConformal(shift_abstention=...)`): `update` adds a frame and says whether the window rule
    abstains on it. Recomputes the window's estimate each frame: O(window) per frame."""

    def __init__(self, estimator: ShiftAwareAbstention):
        estimator._check_is_fitted()
        self.estimator = estimator
        w, k = estimator.window, estimator.calibrator_.n_classes_
        self.probs = np.zeros((w, k))
        self.shift = np.zeros(w)
        self.reset()

    def reset(self) -> None:
        self.count, self.head = 0, 0

    def update(self, probs_row, shift_value=None) -> tuple:
        """Add one frame ((K,) probabilities; its shift statistic when the estimator was fitted with one).
        Returns (abstain: bool, the estimator's decision as in `predict` (clean tau or window rule); r_hat:
        float, NaN while the window holds fewer than min_window frames)."""
        est = self.estimator
        needs = est.shift_reference_ is not None
        if needs and shift_value is None:
            raise ValueError("the window rule was fitted with a shift statistic; pass the frame's value")
        self.probs[self.head] = probs_row
        self.shift[self.head] = 0.0 if shift_value is None else float(shift_value)
        self.head = (self.head + 1) % self.probs.shape[0]
        self.count = min(self.count + 1, self.probs.shape[0])
        idx = np.arange(self.head - self.count, self.head) % self.probs.shape[0]  # oldest first
        p = self.probs[idx]
        stat = est.statistic_of(p)
        clean = bool(stat[-1] > est.tau_)
        if self.count < est.min_window:
            return clean, math.nan
        sh = self.shift[idx] if needs else None
        r = float(est.abstention_level(p, shift_statistic=sh, window=False)[0])
        return clean or bool(est._window_abstain(stat[-1], stat, r)), r

    def state(self) -> dict:
        return {"probs": self.probs.copy(), "shift": self.shift.copy(), "count": self.count, "head": self.head}

    def set_state(self, st: dict) -> None:
        probs, shift = np.asarray(st["probs"], np.float64), np.asarray(st["shift"], np.float64)
        if probs.shape != self.probs.shape or shift.shape != self.shift.shape:
            raise ValueError(f"saved window must have shapes {self.probs.shape} / {self.shift.shape}")
        count, head = int(st["count"]), int(st["head"])
        if not (0 <= count <= self.probs.shape[0] and 0 <= head < self.probs.shape[0]):
            raise ValueError("saved window `count` / `head` out of range")
        self.probs, self.shift, self.count, self.head = probs.copy(), shift.copy(), count, head
