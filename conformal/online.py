"""Online conformal prediction: the per-frame math of adaptive thresholds and of a label-free shift monitor.

* `aci_update` -- adaptive conformal inference (Gibbs & Candes, NeurIPS 2021): alpha_{t+1} = alpha_t +
  gamma (alpha - err_t); the threshold is the conformal_rank(n, alpha_t)-th smallest score of a fixed
  calibration set or of a window of recent fed-back scores. For ANY sequence of inputs and labels,
  |(1/T) sum err_t - alpha| <= (max(alpha, 1 - alpha) + gamma) / (gamma T) over T answered inputs
  (`aci_bound`; feedback applied in order, with delays the bound gains a term of order gamma * delay).
* `quantile_tracking_update` -- quantile tracking (Angelopoulos, Candes & Tibshirani, NeurIPS 2023):
  q_{t+1} = q_t + gamma (err_t - alpha) on the score scale; the same long-run guarantee for scores in [0, B]
  with bound (B + gamma) / (gamma T).
* `conformal_pvalue` and `simple_jumper_update` -- a conformal test martingale (Vovk, Nouretdinov &
  Gammerman 2021): smoothed p-values of a label-free statistic against reference statistics feed the Simple
  Jumper; Ville's inequality bounds the false-alarm probability by `level` when the martingale is compared
  with 1 / level (exact given exchangeable reference and stream, see `ShiftMartingale`).
* `ShiftMonitor` -- the one-sided monitors on the same p-values, of any label-free statistic (softmax or fitted:
  kNN distance, input quality, ...): a power-mixture test martingale (default; bets only on small p-values, so
  conservative p-values never raise it) and a CUSUM e-detector for change points; `detection_delay` reads the
  delay off a monitor's path.
* `UnionShiftMonitor` -- several statistics at once (e.g. a kNN feature distance and an input-quality distance):
  one `ShiftMonitor` per statistic at level / m, alarm when any fires (union bound + Ville: P(false alarm) <= level),
  naming the statistic that fired.

`OnlineThreshold`, `ShiftMartingale` and `FrameScorer` hold the state of one stream; `adapters.StreamingConformal`
wraps them per frame (frame ids, delayed feedback, threads, snapshots). The rank is the exact one of
`conformal.quantile` (alpha_t read as the decimal its repr shows), so without feedback the thresholds are the
calibrator's own. Kernels: `conformal._kernels.online` (NumPy twins in tests/reference/online.py).
"""
from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Mapping

import numpy as np

from conformal import _tensor
from conformal._base import Interval, check_constraints
from conformal._kernels import online as _k
from conformal._validation import as_array, check_is_fitted
from conformal.quantile import conformal_rank, sorted_quantile

__all__ = ["METHODS", "STATISTIC_KINDS", "aci_update", "quantile_tracking_update", "aci_bound", "conformal_pvalue",
           "simple_jumper_update", "OnlineThreshold", "ShiftMartingale", "FrameScorer", "MONITORS", "ShiftMonitor",
           "UnionShiftMonitor", "detection_delay"]

METHODS = ("aci", "quantile", "fixed")
# statistics a frame computes inside the kernel; "set_size" is the set size at the calibrated threshold
STATISTIC_KINDS = {"max_prob": _k.STAT_MAX_PROB, "margin": _k.STAT_MARGIN, "entropy": _k.STAT_ENTROPY,
                   "set_size": _k.STAT_SET_SIZE}
ERROR_MESSAGES = {1: "contains NaN or inf", 2: "has probabilities outside [0, 1]",
                  3: "does not sum to 1 (tolerance 1e-3); pass softmax outputs, or a calibrator fitted with "
                     "inputs='logits'"}
_PROB = [Interval(numbers.Real, 0, 1, closed="neither")]
MONITORS = {"power_mixture": _k.MON_POWER_MIXTURE, "cusum": _k.MON_CUSUM, "jumper": _k.MON_JUMPER}


def aci_update(alpha_t: float, alpha: float, gamma: float, miss: bool) -> float:
    """alpha_t + gamma (alpha - miss): the ACI step after one answered input (miss: its set lacked the label)."""
    return alpha_t + gamma * (alpha - miss)


def quantile_tracking_update(q_t: float, alpha: float, gamma: float, miss: bool) -> float:
    """q_t + gamma (miss - alpha): the quantile-tracking step on the score scale."""
    return q_t + gamma * (miss - alpha)


def aci_bound(alpha: float, gamma: float, n_feedback: int) -> float:
    """ACI's deterministic long-run bound on |miss rate - alpha| after n_feedback answered inputs."""
    if n_feedback == 0:
        return math.inf
    return (max(alpha, 1 - alpha) + gamma) / (gamma * n_feedback)


def conformal_pvalue(reference_sorted, statistic: float, u: float) -> float:
    """Smoothed conformal p-value of `statistic` among ascending reference statistics, u ~ U[0, 1] breaking ties:
    (#{r > s} + u (#{r = s} + 1)) / (n + 1). Uniform when s is exchangeable with the reference; small when s
    is larger (more uncertain) than the reference."""
    ref = _sorted_reference(reference_sorted)
    return float(_k.smoothed_pvalue(ref, float(statistic), float(u)))


def simple_jumper_update(state: np.ndarray, pvalue: float, jump: float) -> None:
    """One Simple Jumper step on `pvalue`, in place on state = [w_-1, w_0, w_+1, log10 M] (weights sum to 1)."""
    if not isinstance(state, np.ndarray) or state.dtype != np.float64 or state.shape != (4,):
        raise TypeError(f"`state` must be a float64 array of shape (4,); got {type(state).__name__}")
    check_constraints("jump", jump, _PROB)
    _k.jumper_step(float(pvalue), float(jump), state)


def _sorted_reference(reference) -> np.ndarray:
    ref = as_array(reference, "reference_sorted")
    if ref.dtype != np.float64 or ref.ndim != 1 or ref.size == 0 or np.any(np.diff(ref) < 0):
        raise ValueError("`reference_sorted` must be a non-empty ascending float64 array")
    return ref


class OnlineThreshold:
    """The set threshold q_t of one stream, moved by feedback.

    Parameters
    ----------
    calibration_scores : ascending float64 array (n,), the calibrator's sorted scores (`calibration_scores_`).
    alpha : float in (0, 1)   Target miscoverage.
    method : "aci", "quantile" or "fixed"
    gamma : float > 0         Step size (on alpha for "aci", on the score scale for "quantile").
    window : int >= 2 or None "aci" only: the quantile is taken over the `window` most recent fed-back scores,
                              started with `window` evenly spaced calibration scores in a random ring order.
    q_calibrated : float      The threshold before any feedback (the calibrator's qhat_).

    Attributes: alpha_t (float), q_t (float).
    """

    def __init__(self, calibration_scores: np.ndarray, *, alpha: float, method: str = "aci", gamma: float = 0.005,
                 window: int | None = None, q_calibrated: float | None = None):
        self.calibration_scores = np.ascontiguousarray(calibration_scores, dtype=np.float64)
        self.alpha = float(alpha)
        self.method = method
        self.gamma = float(gamma)
        self.window = window
        self.q_calibrated = (sorted_quantile(self.calibration_scores, self.alpha) if q_calibrated is None
                             else float(q_calibrated))

    def reset(self, rng: np.random.Generator) -> None:
        """Back to the calibrated state; `rng` orders the window's starting ring."""
        self.alpha_t = self.alpha
        if self.window is not None:
            n = self.calibration_scores.shape[0]
            idx = np.minimum(((np.arange(self.window) + 0.5) * n / self.window).astype(np.int64), n - 1)
            self.win_sorted = self.calibration_scores[idx].copy()
            self.win_ring = rng.permutation(self.win_sorted)
            self.win_head = 0
            self.q_t = sorted_quantile(self.win_sorted, self.alpha)
        else:
            self.q_t = self.q_calibrated

    def update(self, score: float, q_used: float, miss: bool | None = None) -> bool:
        """Feedback for one input: its true label's score and the threshold its set used. Returns the miss
        (`miss`, when given, is the published set's: e.g. a set that allow_empty=False filled with the top-1)."""
        err = score > q_used if miss is None else bool(miss)
        if self.method == "aci":
            # aci_update and sorted_quantile, inlined: this runs once per feedback
            alpha_t = self.alpha_t = self.alpha_t + self.gamma * (self.alpha - err)
            if self.window is not None:
                _k.sorted_replace(self.win_sorted, float(self.win_ring[self.win_head]), score)
                self.win_ring[self.win_head] = score
                self.win_head = (self.win_head + 1) % self.window
                scores = self.win_sorted
            else:
                scores = self.calibration_scores
            n = scores.shape[0]
            k = conformal_rank(n, alpha_t)
            self.q_t = math.inf if k > n else (-math.inf if k <= 0 else float(scores[k - 1]))
        elif self.method == "quantile":
            q = self.q_t if math.isfinite(self.q_t) else float(self.calibration_scores[-1])
            self.q_t = quantile_tracking_update(q, self.alpha, self.gamma, err)
        return bool(err)

    def state(self) -> dict:
        out = {"alpha_t": self.alpha_t, "q_t": self.q_t}
        if self.window is not None:  # the ring rotated so that its head is at 0
            out.update(win_sorted=self.win_sorted.copy(), win_ring=np.roll(self.win_ring, -self.win_head).copy())
        return out

    def set_state(self, state: dict) -> None:
        """Restore `state()` output; values that no run of `update` could reach are refused (ValueError)."""
        self.alpha_t, self.q_t = float(state["alpha_t"]), float(state["q_t"])
        if self.method != "aci" and self.alpha_t != self.alpha:
            raise ValueError(f"saved field `alpha_t` must equal alpha={self.alpha!r} for method={self.method!r}; "
                             f"got {self.alpha_t!r}")
        if self.window is not None:
            for name in ("win_sorted", "win_ring"):
                arr = np.asarray(state[name], dtype=np.float64)
                if arr.shape != (self.window,):
                    raise ValueError(f"saved field `{name}` must have shape ({self.window},); got {arr.shape}")
                setattr(self, name, arr.copy())
            if np.any(np.diff(self.win_sorted) < 0) or not np.array_equal(np.sort(self.win_ring), self.win_sorted):
                raise ValueError("saved fields `win_sorted` / `win_ring` must hold the same scores, sorted / in ring "
                                 "order")
            self.win_head = 0
        expected = self._expected_q()
        if expected is not None and not (self.q_t == expected or (math.isnan(self.q_t) and math.isnan(expected))):
            raise ValueError(f"saved field `q_t` ({self.q_t!r}) does not match `alpha_t` ({self.alpha_t!r}): "
                             f"method={self.method!r} gives {expected!r}")

    def _expected_q(self):
        """The threshold that alpha_t (and the window) determine, or None where q_t is free (quantile tracking)."""
        if self.method == "quantile":
            return None
        if self.method == "fixed":
            return self.q_calibrated if self.window is None else sorted_quantile(self.win_sorted, self.alpha)
        if self.alpha_t == self.alpha:  # never moved: the calibrated threshold
            return self.q_calibrated if self.window is None else sorted_quantile(self.win_sorted, self.alpha)
        scores = self.win_sorted if self.window is not None else self.calibration_scores
        n, k = scores.shape[0], conformal_rank(scores.shape[0], self.alpha_t)
        return math.inf if k > n else (-math.inf if k <= 0 else float(scores[k - 1]))


class ShiftMartingale:
    """A conformal test martingale on a label-free statistic: alarm when it reaches 1 / level.

    Each frame's statistic gets a smoothed conformal p-value against the reference statistics (in-distribution
    data, e.g. the calibration inputs); the p-values bet through the Simple Jumper (switching rate `jump`).
    Given the reference, the p-values are i.i.d. under no shift and uniform on average over reference draws; the
    martingale is exact in the limit of a large reference, so Ville's inequality bounds the false-alarm
    probability over an unbounded exchangeable stream by `level` (tests check it with 2000 reference frames).

    Attributes: state (float64 (4,): weights and log10 M), log10_value, alarm (bool).
    """

    def __init__(self, reference_statistics, *, jump: float = 0.01, level: float = 0.01):
        check_constraints("jump", jump, _PROB)
        check_constraints("level", level, _PROB)
        stats = np.sort(np.asarray(reference_statistics, dtype=np.float64))
        if stats.ndim != 1 or stats.shape[0] < 20 or not np.isfinite(stats).all():
            raise ValueError(f"`reference` needs at least 20 frames with finite statistics for the shift monitor; "
                             f"got {stats.shape[0] if stats.ndim == 1 else stats.shape}")
        self.reference = stats
        self.jump = float(jump)
        self.level = float(level)
        self.log10_threshold = math.log10(1.0 / self.level)
        self.state = np.empty(4)
        self.reset()

    def reset(self) -> None:
        """Restart at M = 1 with equal weights, no alarm."""
        self.state[:] = (1 / 3, 1 / 3, 1 / 3, 0.0)
        self.alarm = False

    @property
    def log10_value(self) -> float:
        return float(self.state[3])

    def update(self, statistic: float, u: float) -> float:
        """One frame's statistic and its tie-breaking uniform; returns the p-value (sets `alarm` once reached)."""
        pv = _k.martingale_step(self.reference, statistic, u, self.jump, self.state)
        self.note(self.state[3])
        return pv

    def note(self, log10_value: float) -> bool:
        """Record the martingale's current log10 value (from `update` or a bound frame kernel): the alarm, once
        1 / level is reached, stays until `reset`. Returns `alarm`."""
        if not self.alarm and log10_value >= self.log10_threshold:
            self.alarm = True
        return self.alarm

    def quantile(self, level: float) -> float:
        """The conformal (1 - level) quantile of the reference statistics (the conservative abstention tau)."""
        return sorted_quantile(self.reference, level)


class FrameScorer:
    """Per-frame scores, set and statistic of a fitted, non-randomized marginal calibrator.

    Reads only the calibrator's public fitted state (`score_.kernel_params()`, `inputs`, `temperature`,
    `randomized_`, `allow_empty_`, `qhat_`, `n_classes_`). `statistic` is one of `STATISTIC_KINDS` (computed in
    the same kernel call) or None (the caller computes it; the kernel returns NaN).
    """

    def __init__(self, calibrator, statistic: str | None = "entropy"):
        check_is_fitted(calibrator)
        if np.ndim(calibrator.qhat_) != 0:
            raise TypeError(f"`calibrator` must be a marginal calibrator (one threshold); got "
                            f"{type(calibrator).__name__}")
        if calibrator.randomized_:
            raise ValueError(f"`calibrator` makes randomized sets (randomized={calibrator.randomized!r}, the default "
                             f"for APS, RAPS and SAPS); per-frame sets need a non-randomized calibrator: refit "
                             f"with randomized=False (or use score='lac')")
        if statistic is not None and statistic not in STATISTIC_KINDS:
            raise ValueError(f"`statistic` must be one of {sorted(STATISTIC_KINDS)} or None; got {statistic!r}")
        self.kind, self.lam, self.k_reg, self.weight = calibrator.score_.kernel_params()
        self.logits = calibrator.inputs == "logits"
        self.temperature = float(calibrator.temperature)
        self.allow_empty = bool(calibrator.allow_empty_)
        self.q_calibrated = float(calibrator.qhat_)
        self.n_classes = int(calibrator.n_classes_)
        self.statistic = statistic
        self.stat_kind = _k.STAT_NONE if statistic is None else STATISTIC_KINDS[statistic]
        # the kernel's constant arguments, gathered once (this is the per-frame path)
        self._constants = (self.logits, self.temperature, self.kind, self.lam, self.k_reg, self.weight,
                           self.allow_empty, self.q_calibrated, self.stat_kind)

    def __call__(self, src: np.ndarray, q: float, probs: np.ndarray, scores: np.ndarray, row: int,
                 order: np.ndarray):
        """One (1, K) float32/float64 row at threshold q. Writes its probabilities into probs (1, K), every
        label's score into row `row` of the float64 (n, K) buffer `scores` (a ring of frames awaiting feedback;
        n = 1 for one frame) and the set's labels, by decreasing probability, into order[:m].
        Returns (error code: 0 or a key of ERROR_MESSAGES, m, statistic)."""
        return _k.frame_step(*self._constants, probs, scores, order, src, q, row)

    def tensor_frame(self, x, q: float):
        """One validated (1, K) torch tensor row at threshold q, computed on its device with the tensor's methods
        (conformal/_tensor.py): (probabilities (1, K) float64 and scores (K,) float64 as device tensors, the set's
        labels by decreasing probability and their probabilities as lists, top-1 label, its probability, whether
        allow_empty=False filled an empty set, the statistic). Same numbers as `__call__` on CPU tensors."""
        kind, q_cal = self.stat_kind, self.q_calibrated
        if kind == _k.STAT_NONE:
            stat = None
        elif kind == _k.STAT_SET_SIZE:
            def stat(p, scores):
                return (scores <= q_cal).sum(dim=1).double()
        else:
            fn = {_k.STAT_MAX_PROB: _tensor.max_prob, _k.STAT_MARGIN: _tensor.margin,
                  _k.STAT_ENTROPY: _tensor.entropy}[kind]

            def stat(p, scores):
                return fn(p)
        return _tensor.frame(self, x, q, stat)

    def bind(self, probs: np.ndarray, scores: np.ndarray, order: np.ndarray, martingale: "ShiftMartingale" = None):
        """A per-frame callable with the output buffers (and a monitor) bound once: one kernel call per frame and
        no Python frame in between. Without `martingale`: ``f(src, q, row) -> (code, m, statistic)`` as
        `__call__`. With it (the statistic must be one of STATISTIC_KINDS): ``f(src, q, row, u) -> (code, m,
        statistic, p-value, log10 M)``, the martingale updated in place for a valid row; the caller sets
        ``martingale.alarm`` when log10 M reaches ``martingale.log10_threshold`` (`ShiftMartingale.note`)."""
        if martingale is None:
            return functools.partial(_k.frame_step, *self._constants, probs, scores, order)
        if self.stat_kind == _k.STAT_NONE:
            raise ValueError("a monitored frame needs a statistic computed in the kernel (`statistic` is None)")
        return functools.partial(_k.monitored_frame_step, *self._constants, probs, scores, order,
                                 martingale.reference, martingale.jump, martingale.state)


class ShiftMonitor:
    """A one-sided sequential test of "the stream is exchangeable with the reference", on conformal p-values.

    Each input's label-free statistic (larger = more suspicious: entropy, a kNN feature distance, an input-quality
    distance, ...) gets the smoothed conformal p-value p_t against the reference statistics (the same statistic on
    clean calibration inputs that the stream's are compared with); the monitor alarms when its value reaches
    1 / level.

    Parameters
    ----------
    reference_statistics : 1-D array (n >= 20) of the statistic on clean reference inputs.
    method : "power_mixture" (default), "cusum" or "jumper"
        * "power_mixture": M_t = mean over a grid eps_g = (g + 1/2) / n_grid of prod_i eps_g p_i^(eps_g - 1)
          (Vovk et al. 2021's power martingales, mixed). Every factor is decreasing in p, so it bets only on
          small p-values: p-values that are uniform or conservative (stochastically larger) keep E[M_t] <= 1.
          Ville's inequality: P(sup_t M_t >= 1 / level) <= level, over an unbounded stream.
        * "cusum": the CUSUM e-detector C_t = max(C_{t-1}, 1) f(p_t) with the mixture calibrator
          f(p) = (1 - p + p log p) / (p log^2 p) (Shin, Ramdas & Rinaldo 2022). It does not accumulate evidence
          from before a change point, so it reacts faster after a long clean prefix. No Ville bound: under no shift
          its average run length to a false alarm is >= 1 / level (so pick a small level, e.g. 1e-4).
        * "jumper": the Simple Jumper of `ShiftMartingale` (two-sided: it also bets on large p-values, which makes
          it alarm on conservative p-values; kept for comparison).
    level : float in (0, 1)   Alarm at 1 / level.
    jump : float in (0, 1)    "jumper" only: its switching rate.
    n_grid : int >= 1         "power_mixture" only: grid points of the mixture.

    Attributes: state (float64; state[-1] is log10 of the monitor), log10_value, alarm, n_steps, alarm_step (the
    1-based number of updates at the first alarm, None before).

    Notes
    -----
    The bound is exact when the p-values are i.i.d. uniform, which they are given an infinitely large reference.
    Against a fixed reference of n inputs the p-values are i.i.d. *given the reference* with a distribution that
    is uniform only on average over reference draws (they are exchangeable with it only conditionally): a stream
    of T inputs sees the reference's own sampling error, of order 1 / sqrt(n) in each quantile, T times, so the
    false-alarm rate over T inputs grows with T / n. Measured in benchmarks/bench_shift.py (docs/benchmarks.md):
    keep the reference at least as long as the horizon between resets, or refresh it. Detection delay: the number
    of shifted inputs until the alarm (`alarm_step` minus the clean prefix; `detection_delay` on a path).
    """

    def __init__(self, reference_statistics, *, method: str = "power_mixture", level: float = 0.01,
                 jump: float = 0.01, n_grid: int = 50):
        if method not in MONITORS:
            raise ValueError(f"`method` must be one of {sorted(MONITORS)}; got {method!r}")
        check_constraints("level", level, _PROB)
        check_constraints("jump", jump, _PROB)
        check_constraints("n_grid", n_grid, [Interval(numbers.Integral, 1, None, closed="left")])
        stats = np.asarray(reference_statistics)
        if stats.ndim != 1 or stats.shape[0] < 20 or not np.issubdtype(stats.dtype, np.number) \
                or not np.isfinite(stats).all():
            raise ValueError(f"`reference_statistics` must be a 1-D array of at least 20 finite numbers; got shape "
                             f"{stats.shape}")
        self.reference = np.sort(stats.astype(np.float64))
        self.method, self.level, self.jump, self.n_grid = method, float(level), float(jump), int(n_grid)
        self._code = MONITORS[method]
        self.log10_threshold = math.log10(1.0 / self.level)
        self.eps = (np.arange(self.n_grid) + 0.5) / self.n_grid
        self.log_eps = np.log(self.eps)
        self.state = np.empty({"jumper": 4, "power_mixture": self.n_grid + 1, "cusum": 1}[method])
        self.reset()

    def reset(self) -> None:
        """Back to M = 1 (C = 1 for CUSUM), no alarm."""
        if self.method == "jumper":
            self.state[:] = (1 / 3, 1 / 3, 1 / 3, 0.0)
        else:
            self.state[:] = 0.0
        self.alarm, self.n_steps, self.alarm_step = False, 0, None

    @property
    def log10_value(self) -> float:
        return float(self.state[-1])

    def note(self, log10_value: float) -> bool:
        """Record the monitor's current log10 value: the alarm, once 1 / level is reached, stays until `reset`."""
        if not self.alarm and log10_value >= self.log10_threshold:
            self.alarm, self.alarm_step = True, self.n_steps
        return self.alarm

    def quantile(self, level: float) -> float:
        """The conformal (1 - level) quantile of the reference statistics."""
        return sorted_quantile(self.reference, level)

    def pvalue(self, statistic: float, u: float) -> float:
        """The smoothed conformal p-value of one statistic (no state change)."""
        return float(_k.smoothed_pvalue(self.reference, float(statistic), float(u)))

    def update(self, statistic: float, u: float) -> float:
        """One input's statistic and its tie-breaking uniform u ~ U[0, 1]; returns its p-value."""
        pv = _k.monitor_step(self.reference, float(statistic), float(u), self._code, self.jump, self.eps,
                             self.log_eps, self.state)
        self.n_steps += 1
        if not self.alarm and self.state[-1] >= self.log10_threshold:
            self.alarm, self.alarm_step = True, self.n_steps
        return float(pv)

    def run(self, statistics, rng=None) -> np.ndarray:
        """Feed a whole stream (1-D statistics, uniforms drawn from `rng`); returns log10 of the monitor after each
        input (the state, `alarm` and `alarm_step` continue from where they were)."""
        x = np.ascontiguousarray(statistics, dtype=np.float64)
        if x.ndim != 1 or not np.isfinite(x).all():
            raise ValueError(f"`statistics` must be a 1-D array of finite numbers; got shape {x.shape}")
        u = np.random.default_rng(rng).random(x.shape[0])
        out = np.empty(x.shape[0])
        _k.monitor_path(self.reference, x, u, self._code, self.jump, self.eps, self.log_eps, self.state, out)
        if not self.alarm:
            hit = np.flatnonzero(out >= self.log10_threshold)
            if hit.size:
                self.alarm, self.alarm_step = True, self.n_steps + int(hit[0]) + 1
        self.n_steps += x.shape[0]
        return out


class UnionShiftMonitor:
    """Several label-free statistics monitored at once: one `ShiftMonitor` per statistic at level / m, alarm when
    any of them reaches its threshold m / level, and say which statistic fired.

    Different statistics see different shifts (a kNN feature distance catches fog and contrast in a few inputs,
    an input-quality distance catches blur); running both costs one martingale each.

    Parameters
    ----------
    reference_statistics : mapping name -> 1-D array (n >= 20 each)
        Each statistic on clean reference inputs (the lengths may differ). The order of the mapping is the order
        of the statistics everywhere (sequences passed to `update`, columns of `run`).
    method, level, jump, n_grid : as `ShiftMonitor`; `level` is the level of the whole union.

    Attributes: names (tuple), monitors (dict name -> ShiftMonitor at level / m), level_each (level / m),
    log10_threshold (log10(m / level)), alarm, alarm_step (1-based update count at the first alarm, None
    before), alarm_statistic (the name that fired first; on a tie, the first in `names`), n_steps.

    Notes
    -----
    Union bound: P(any monitor ever alarms) <= sum_j level / m = level, for any dependence between the
    statistics, under the assumptions of `ShiftMonitor` (p-values i.i.d. uniform or conservative per statistic,
    given a large reference). It does not assume the statistics independent, so it is conservative when they
    are strongly correlated; the price of m statistics is log10(m) more evidence per alarm.
    """

    def __init__(self, reference_statistics, *, method: str = "power_mixture", level: float = 0.01,
                 jump: float = 0.01, n_grid: int = 50):
        if not isinstance(reference_statistics, Mapping) or len(reference_statistics) == 0:
            raise TypeError(f"`reference_statistics` must be a non-empty mapping of statistic name -> 1-D array of "
                            f"its values on clean reference inputs; got {type(reference_statistics).__name__}")
        check_constraints("level", level, _PROB)
        names = tuple(reference_statistics)
        if not all(isinstance(n, str) for n in names):
            raise TypeError(f"`reference_statistics` keys must be statistic names (str); got {names!r}")
        self.names, self.method, self.level = names, method, float(level)
        self.level_each = self.level / len(names)
        self.monitors = {}
        for name in names:
            try:
                self.monitors[name] = ShiftMonitor(reference_statistics[name], method=method, level=self.level_each,
                                                   jump=jump, n_grid=n_grid)
            except ValueError as exc:
                raise ValueError(f"`reference_statistics[{name!r}]`: {exc}") from None
        self._list = [self.monitors[n] for n in names]
        self.log10_threshold = math.log10(1.0 / self.level_each)
        self.reset()

    def reset(self) -> None:
        """Every monitor back to 1, no alarm."""
        for mon in self._list:
            mon.reset()
        self.alarm, self.alarm_step, self.alarm_statistic, self.n_steps = False, None, None, 0

    @property
    def log10_value(self) -> float:
        """The largest log10 value among the statistics' monitors (compare with `log10_threshold`)."""
        return max(mon.log10_value for mon in self._list)

    def _values(self, values, what: str) -> list:
        m = len(self.names)
        if isinstance(values, Mapping):
            if set(values) != set(self.names):
                raise ValueError(f"`{what}` must have the keys {list(self.names)}; got {list(values)}")
            return [values[n] for n in self.names]
        if isinstance(values, (tuple, list)) or (isinstance(values, np.ndarray) and values.ndim >= 1):
            if len(values) != m:
                raise ValueError(f"`{what}` must hold {m} values, one per statistic {list(self.names)}; got "
                                 f"{len(values)}")
            return list(values)
        raise TypeError(f"`{what}` must be a mapping {{name: value}} or a sequence of {m} values in the order "
                        f"{list(self.names)}; got {type(values).__name__}")

    def update(self, values, u) -> dict:
        """One input's statistics (a mapping name -> value, or a sequence in `names` order) and tie-breaking
        uniform(s) u ~ U[0, 1] (one float for all, or one per statistic); returns {name: p-value}."""
        vals = self._values(values, "values")
        for v in vals:
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise TypeError(f"`values` must be finite real numbers; got {v!r}")
        us = self._values(u, "u") if not isinstance(u, numbers.Real) else [u] * len(vals)
        out = {}
        for name, mon, v, ui in zip(self.names, self._list, vals, us):
            out[name] = mon.update(v, ui)
        self.n_steps += 1
        if not self.alarm:
            for name, mon in zip(self.names, self._list):
                if mon.alarm:
                    self.alarm, self.alarm_step, self.alarm_statistic = True, self.n_steps, name
                    break
        return out

    def run(self, statistics, rng=None) -> np.ndarray:
        """Feed a whole stream: a mapping name -> 1-D array (or a sequence of arrays in `names` order), all of one
        length T; independent uniforms per statistic from `rng`. Returns float64 (T, m): log10 of each monitor
        after each input (column j is `names[j]`); its row maximum against `log10_threshold` is the union's path
        (`detection_delay(path.max(1), level_each)`)."""
        cols = self._values(statistics, "statistics")
        lengths = {np.shape(c)[0] if np.ndim(c) == 1 else None for c in cols}
        if len(lengths) != 1 or None in lengths:
            raise ValueError(f"`statistics` must be 1-D arrays of one common length; got shapes "
                             f"{[np.shape(c) for c in cols]}")
        gen = np.random.default_rng(rng)
        out = np.column_stack([mon.run(c, rng=gen) for mon, c in zip(self._list, cols)])
        if not self.alarm:
            hit = np.flatnonzero((out >= self.log10_threshold).any(axis=1))
            if hit.size:
                t = int(hit[0])
                self.alarm, self.alarm_step = True, self.n_steps + t + 1
                self.alarm_statistic = self.names[int(np.flatnonzero(out[t] >= self.log10_threshold)[0])]
        self.n_steps += out.shape[0]
        return out


def detection_delay(log10_path, level: float, start: int = 0):
    """Inputs after `start` (the change point, 0-based) until the path first reaches log10(1 / level): 1 when the
    first shifted input alarms; None if it never does. An alarm before `start` is a false alarm: returns 0."""
    path = np.asarray(log10_path, dtype=np.float64)
    hit = np.flatnonzero(path >= math.log10(1.0 / level))
    if hit.size == 0:
        return None
    return max(int(hit[0]) - start + 1, 0)
