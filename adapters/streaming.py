"""StreamingConformal: per-frame conformal decisions for robotics stacks, with delayed feedback (adaptive conformal
inference) and a label-free shift monitor (a conformal test martingale). numpy + numba only (no torch).

Per frame, `step(probs)` returns a small dict (see docs/streaming.md for its mapping to ROS 2 vision_msgs):
the conformal set, the abstain flag, the label-free statistic, the current alpha and thresholds, the monitor's
state and the calibration version. Ground truth, when it arrives (any delay, any order), goes to
`feedback(frame_id, label)`, which moves the operating point:

* ``method="aci"`` -- adaptive conformal inference (Gibbs & Candes, NeurIPS 2021): alpha_{t+1} = alpha_t +
  gamma (alpha - err_t) and the threshold is the ceil((n+1)(1-alpha_t))-th smallest calibration score (or, with
  `window`, of the last `window` fed-back scores). For ANY sequence of frames and labels,
  |(1/T) sum err_t - alpha| <= (max(alpha, 1 - alpha) + gamma) / (gamma T) over T answered frames (feedback
  applied in frame order; with delays the bound gains a term of order gamma * delay).
* ``method="quantile"`` -- quantile tracking (Angelopoulos, Candes & Tibshirani, NeurIPS 2023):
  q_{t+1} = q_t + gamma (err_t - alpha), on the score scale; same long-run guarantee for scores in [0, B]
  with bound (B + gamma) / (gamma T).
* ``method="fixed"`` -- never adapts (the calibrated thresholds; the exchangeable-data guarantee only).

Without feedback the calibrated thresholds are kept (they are exactly the calibrator's qhat_ and tau_).
"""
from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import threading

import numpy as np

from adapters import _stream_kernels as _k

__all__ = ["StreamingConformal", "METHODS"]

METHODS = ("aci", "quantile", "fixed")
_KERNEL_STATS = {"max_prob": _k.STAT_MAX_PROB, "margin": _k.STAT_MARGIN, "entropy": _k.STAT_ENTROPY}
_ROW_ERRORS = {1: "contains NaN or inf", 2: "has probabilities outside [0, 1]",
               3: "does not sum to 1 (tolerance 1e-3); pass softmax outputs, or a calibrator fitted with "
                  "inputs='logits'"}


def _real(v, name, lo=None, hi=None, lo_open=False, hi_open=False):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
        raise TypeError(f"`{name}` must be a finite float; got {v!r}")
    v = float(v)
    if lo is not None and (v < lo or (lo_open and v == lo)) or hi is not None and (v > hi or (hi_open and v == hi)):
        raise ValueError(f"`{name}` must be in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}; "
                         f"got {v}")
    return v


def _rank_quantile(sorted_scores: np.ndarray, alpha_t: float) -> float:
    """The ceil((n+1)(1-alpha_t))-th smallest score; +inf past n (full set), -inf at or below 0 (empty set)."""
    n = sorted_scores.shape[0]
    k = math.ceil((n + 1) * (1.0 - alpha_t) - 1e-9)
    if k > n:
        return math.inf
    if k <= 0:
        return -math.inf
    return float(sorted_scores[k - 1])


class StreamingConformal:
    """Per-frame conformal sets and abstention with online adaptation and a shift monitor.

    Parameters
    ----------
    conformal : SplitConformalClassifier or DualThresholdConformal, fitted
        Gives the score, the calibration scores and alpha; a DualThresholdConformal also gives the abstention
        statistic and tau (abstain iff statistic > tau). Randomized and class-conditional calibrators are not
        supported here (their per-frame thresholds are not one number).
    method : "aci", "quantile" or "fixed"
    gamma : float > 0
        Step size: on alpha for "aci" (typical 0.001-0.05), on the score scale for "quantile".
    window : int or None
        "aci" only: take the quantile over the `window` most recent fed-back true-label scores (started with
        `window` evenly spaced calibration scores) instead of the fixed calibration scores.
    statistic : str
        SplitConformalClassifier only: the label-free statistic for the monitor ("max_prob", "margin",
        "entropy"); a plain calibrator never abstains unless the monitor alarms.
    reference : array (n, K) or None
        Label-free model outputs on in-distribution data (e.g. the calibration probabilities) for the shift
        monitor. None: no monitor.
    monitor_level : float in (0, 1)
        Alarm when the martingale reaches 1 / monitor_level (Ville: false-alarm probability <= level over an
        unbounded exchangeable stream, given the reference; see Notes).
    jump : float in (0, 1)
        Simple Jumper's switching rate.
    conservative_abstain : float in (0, 1)
        After an alarm, also abstain when the statistic exceeds its (1 - conservative_abstain) reference quantile.
    max_pending : int
        Frames awaiting feedback kept in a ring; the oldest unanswered frame is dropped (counted in
        `n_expired_`) when it is full.
    random_state : int or None
        Seed of the monitor's tie-breaking uniforms and of the window's start order.
    calibration_version : str or None
        Reported in every output; default: the first 12 hex digits of the sha256 of the calibrator's state.

    Notes
    -----
    The monitor's p-values rank each frame's statistic among the reference statistics: given the reference they
    are i.i.d. under no shift, and uniform on average over reference draws; the martingale is exact only in the
    limit of a large reference (tests check the false-alarm rate with 2000 reference frames). After an alarm the
    wrapper stays conservative until `reset_monitor()` (e.g. after recalibration).
    One producer thread (`step`) and one feedback thread may share the object: every state change happens under
    one lock.
    """

    def __init__(self, conformal, method: str = "aci", gamma: float = 0.005, window: int | None = None, *,
                 statistic: str = "entropy", reference=None, monitor_level: float = 0.01, jump: float = 0.01,
                 conservative_abstain: float = 0.5, max_pending: int = 10000, random_state: int | None = 0,
                 calibration_version: str | None = None):
        from conformal.abstention import DualThresholdConformal
        from conformal.calibrators import SplitConformalClassifier

        if method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}; got {method!r}")
        self.method = method
        self.gamma = _real(gamma, "gamma", 0.0, None, lo_open=True)
        if window is not None:
            if isinstance(window, bool) or not isinstance(window, numbers.Integral) or window < 2:
                raise ValueError(f"`window` must be None or an int >= 2; got {window!r}")
            if method != "aci":
                raise ValueError(f"`window` applies to method='aci' only; got method={method!r}")
            window = int(window)
        self.window = window
        self.monitor_level = _real(monitor_level, "monitor_level", 0.0, 1.0, True, True)
        self.jump = _real(jump, "jump", 0.0, 1.0, True, True)
        self.conservative_abstain = _real(conservative_abstain, "conservative_abstain", 0.0, 1.0, True, True)
        if isinstance(max_pending, bool) or not isinstance(max_pending, numbers.Integral) or max_pending < 1:
            raise ValueError(f"`max_pending` must be a positive int; got {max_pending!r}")
        self.max_pending = int(max_pending)
        if random_state is not None and (isinstance(random_state, bool) or not isinstance(random_state,
                                                                                            numbers.Integral)):
            raise TypeError(f"`random_state` must be None or an int; got {type(random_state).__name__}")
        self.random_state = random_state

        if isinstance(conformal, DualThresholdConformal):
            if not hasattr(conformal, "tau_"):
                raise ValueError("`conformal` is not fitted; call conformal.fit(probs, labels) first")
            cal = conformal.calibrator_
            self._tau = float(conformal.tau_)
            stat_name, stat_fn, stat_cal = conformal.statistic_name_, conformal._stat_fn, conformal._stat_cal
        elif isinstance(conformal, SplitConformalClassifier):
            if not hasattr(conformal, "qhat_"):
                raise ValueError("`conformal` is not fitted; call conformal.fit(probs, labels) first")
            cal = conformal
            self._tau = math.inf
            if statistic not in _KERNEL_STATS:
                raise ValueError(f"`statistic` must be one of {sorted(_KERNEL_STATS)}; got {statistic!r}")
            from conformal.abstention.statistics import STATISTICS

            stat_name, stat_fn, stat_cal = statistic, STATISTICS[statistic], None
        else:
            raise TypeError(f"`conformal` must be a fitted SplitConformalClassifier or DualThresholdConformal; got "
                            f"{type(conformal).__name__} (class-conditional calibrators have one threshold per "
                            f"class and are not supported by the streaming wrapper)")
        if cal.randomized:
            raise ValueError("`conformal` was fitted with randomized=True; the streaming wrapper needs a "
                             "non-randomized calibrator (refit with randomized=False)")
        self.conformal = conformal
        self.statistic = stat_name
        self._cal, self._stat_fn, self._stat_cal = cal, stat_fn, stat_cal
        from conformal.abstention import STATISTICS

        if stat_name in _KERNEL_STATS and stat_fn is STATISTICS.get(stat_name):
            self._stat_kind = _KERNEL_STATS[stat_name]
        elif stat_name == "set_size" and stat_fn is STATISTICS["set_size"] and stat_cal is cal:
            self._stat_kind = _k.STAT_SET_SIZE
        else:
            self._stat_kind = _k.STAT_OTHER
        score = cal.score_
        self._kind = 0 if score.name == "lac" else int(score.kind)
        lam, k_reg, weight = (0.0, 0, 0.0) if score.name == "lac" else score._params()
        self._score_params = (float(lam), int(k_reg), float(weight))
        self._logits = cal.inputs == "logits"
        self._temp = float(cal.temperature)
        self._allow_empty = bool(cal.allow_empty)
        self.alpha = float(cal.alpha)
        self.n_classes_ = k = int(cal.n_classes_)
        self._cal_scores = np.ascontiguousarray(cal.calibration_scores_, dtype=np.float64)
        self._qhat_cal = float(cal.qhat_)
        if calibration_version is None:
            from conformal.io import dumps_state

            calibration_version = hashlib.sha256(dumps_state(type(conformal).__name__, conformal.to_dict())
                                                 .encode()).hexdigest()[:12]
        elif not isinstance(calibration_version, str):
            raise TypeError(f"`calibration_version` must be a string or None; got {type(calibration_version).__name__}")
        self.calibration_version = calibration_version

        # monitor reference
        self._ref = None
        self._tau_alarm = self._tau
        if reference is not None:
            from conformal._validation import check_scores_matrix
            from conformal.abstention.statistics import compute_statistic

            ref = check_scores_matrix(reference, "reference", inputs=cal.inputs, n_classes=k)
            ref_p = ref if not self._logits else _softmax(ref, self._temp)
            if self._stat_kind == _k.STAT_SET_SIZE:
                stats = cal.predict_sets(ref).sum(axis=1).astype(np.float64)
            else:
                stats = compute_statistic(stat_fn, stat_name, ref_p, stat_cal)
            if stats.shape[0] < 20:
                raise ValueError(f"`reference` needs at least 20 frames for the shift monitor; got {stats.shape[0]}")
            self._ref = np.sort(np.asarray(stats, dtype=np.float64))
            self._tau_alarm = min(self._tau, _rank_quantile(self._ref, self.conservative_abstain))
        self._log10_level = math.log10(1.0 / self.monitor_level)

        # scratch and ring buffers (allocated once; the hot path only writes into them)
        self._p2d = np.empty((1, k))
        self._order = np.empty(k, dtype=np.int64)
        self._scores = np.empty((self.max_pending, k))
        self._q_used = np.empty(self.max_pending)
        self._slot_ids = [None] * self.max_pending
        self._lock = threading.Lock()
        self._reset_state()

    # --- state ---------------------------------------------------------------------------------------------
    def _reset_state(self):
        rng = np.random.default_rng(self.random_state)
        self._rng = rng
        self._u = rng.random(4096)
        self._u_i = 0
        self._pending = {}
        self._head = 0
        self._next_id = 0
        self.alpha_t_ = self.alpha
        if self.window is not None:
            n = self._cal_scores.shape[0]
            idx = np.minimum(((np.arange(self.window) + 0.5) * n / self.window).astype(np.int64), n - 1)
            self._win_sorted = self._cal_scores[idx].copy()
            self._win_ring = rng.permutation(self._win_sorted)
            self._win_head = 0
            self.q_t_ = _rank_quantile(self._win_sorted, self.alpha)
        else:
            self.q_t_ = self._qhat_cal
        self._mon = np.array([1 / 3, 1 / 3, 1 / 3, 0.0])
        self.alarm_ = False
        self.alarm_frame_ = None
        self.n_steps_ = 0
        self.n_feedback_ = 0
        self.n_miss_ = 0
        self.n_expired_ = 0

    def reset_monitor(self) -> None:
        """Clear an alarm and restart the martingale at 1 (e.g. after the model or calibration was updated)."""
        with self._lock:
            self._mon[:] = (1 / 3, 1 / 3, 1 / 3, 0.0)
            self.alarm_ = False
            self.alarm_frame_ = None

    # --- hot path ------------------------------------------------------------------------------------------
    def step(self, probs, frame_id=None) -> dict:
        """Decision for one frame from its (K,) probabilities (or logits, if the calibrator takes logits).

        `frame_id`: an int or str naming the frame for later `feedback` (default: a running integer). Returns a
        new dict; see docs/streaming.md. Never sees a label.
        """
        if type(probs) is not np.ndarray:
            raise TypeError(f"`probs` must be a numpy array of shape ({self.n_classes_},); got {type(probs).__name__}")
        k = self.n_classes_
        if probs.shape != (k,) and probs.shape != (1, k):
            raise ValueError(f"`probs` must have shape ({k},) (one frame, K = {k} classes); got {probs.shape}")
        if probs.dtype != np.float64 and probs.dtype != np.float32:
            raise TypeError(f"`probs` must be float32 or float64; got dtype {probs.dtype}")
        src = probs.reshape(1, k)
        with self._lock:
            if frame_id is None:
                fid = self._next_id
            else:
                if isinstance(frame_id, bool) or not isinstance(frame_id, (int, str)):
                    raise TypeError(f"`frame_id` must be an int or a str; got {type(frame_id).__name__}")
                if frame_id in self._pending:
                    raise ValueError(f"`frame_id` {frame_id!r} is already waiting for feedback; frame ids must be "
                                     f"unique among pending frames")
                fid = frame_id
            slot = self._head
            q = self.q_t_
            lam, k_reg, weight = self._score_params
            code, m, stat, m_cal = _k.step_row(src, self._logits, self._temp, self._kind, lam, k_reg, weight,
                                               self._allow_empty, q, self._qhat_cal, self._stat_kind, self._p2d,
                                               self._scores[slot], self._order)
            if code != 0:
                raise ValueError(f"`probs` {_ROW_ERRORS.get(code, 'is invalid')}")
            if self._stat_kind == _k.STAT_OTHER:
                from conformal.abstention.statistics import compute_statistic

                stat = float(compute_statistic(self._stat_fn, self.statistic, self._p2d.copy(), self._stat_cal)[0])
            # commit: from here on nothing can fail
            old = self._slot_ids[slot]
            if old is not None:
                del self._pending[old]
                self.n_expired_ += 1
            self._slot_ids[slot] = fid
            self._pending[fid] = slot
            self._q_used[slot] = q
            self._head = slot + 1 if slot + 1 < self.max_pending else 0
            if frame_id is None:
                self._next_id += 1
            self.n_steps_ += 1
            mon = self._mon
            if self._ref is not None:
                if self._u_i == 4096:
                    self._u = self._rng.random(4096)
                    self._u_i = 0
                pval = _k.monitor_update(self._ref, stat, self._u[self._u_i], self.jump, mon)
                self._u_i += 1
                if not self.alarm_ and mon[3] >= self._log10_level:
                    self.alarm_ = True
                    self.alarm_frame_ = fid
            else:
                pval = math.nan
            alarm = self.alarm_
            tau = self._tau_alarm if alarm else self._tau
            members = self._order[:m]
            p = self._p2d[0]
            return {"frame_id": fid, "set": members.tolist(), "set_probs": p[members].tolist(),
                    "prediction": int(np.argmax(p)), "confidence": float(p.max()), "abstain": bool(stat > tau),
                    "statistic": float(stat), "alpha": self.alpha_t_, "qhat": q, "tau": tau,
                    "shift_alarm": alarm, "mode": "conservative" if alarm else "normal", "monitor_pvalue": pval,
                    "log10_martingale": float(mon[3]), "calibration_version": self.calibration_version,
                    "n_feedback": self.n_feedback_}

    # --- feedback ------------------------------------------------------------------------------------------
    def feedback(self, frame_id, label) -> bool:
        """Ground truth for an earlier frame (any delay, any order). Returns True if that frame's set missed the
        label. Unknown, already answered or expired frame ids and bad labels raise, leaving the state unchanged."""
        if isinstance(label, bool) or not isinstance(label, numbers.Integral):
            raise TypeError(f"`label` must be an int class index; got {type(label).__name__}")
        if not 0 <= label < self.n_classes_:
            raise ValueError(f"`label` must be in 0..{self.n_classes_ - 1}; got {label}")
        with self._lock:
            slot = self._pending.get(frame_id) if isinstance(frame_id, (int, str)) else None
            if slot is None:
                raise ValueError(f"`frame_id` {frame_id!r} is not waiting for feedback (unknown, already answered, "
                                 f"or expired after {self.max_pending} newer frames)")
            s = float(self._scores[slot, label])
            err = s > self._q_used[slot]
            del self._pending[frame_id]
            self._slot_ids[slot] = None
            self.n_feedback_ += 1
            self.n_miss_ += int(err)
            if self.method == "aci":
                self.alpha_t_ += self.gamma * (self.alpha - err)
                if self.window is not None:
                    old = float(self._win_ring[self._win_head])
                    _k.sorted_replace(self._win_sorted, old, s)
                    self._win_ring[self._win_head] = s
                    self._win_head = (self._win_head + 1) % self.window
                    self.q_t_ = _rank_quantile(self._win_sorted, self.alpha_t_)
                else:
                    self.q_t_ = _rank_quantile(self._cal_scores, self.alpha_t_)
            elif self.method == "quantile":
                q = self.q_t_ if math.isfinite(self.q_t_) else float(self._cal_scores[-1])
                self.q_t_ = q + self.gamma * (err - self.alpha)
            return bool(err)

    # --- diagnostics ---------------------------------------------------------------------------------------
    @property
    def coverage_(self) -> float:
        """Fraction of answered frames whose set held the label (nan before any feedback)."""
        return 1.0 - self.n_miss_ / self.n_feedback_ if self.n_feedback_ else math.nan

    def aci_bound(self) -> float:
        """Long-run guarantee of method="aci" after the feedback so far: |miss rate - alpha| <= this."""
        if self.n_feedback_ == 0:
            return math.inf
        return (max(self.alpha, 1 - self.alpha) + self.gamma) / (self.gamma * self.n_feedback_)

    @property
    def pending_frames(self) -> list:
        with self._lock:
            return list(self._pending)

    # --- persistence ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Parameters, the calibrator's state and the online state (pending frames included), JSON-ready."""
        with self._lock:
            slots = list(self._pending.items())
            ids = [fid for fid, _ in slots]
            idx = np.array([s for _, s in slots], dtype=np.int64)
            state = {"alpha_t": self.alpha_t_, "q_t": self.q_t_, "monitor": self._mon.copy(), "alarm": self.alarm_,
                     "alarm_frame": self.alarm_frame_, "n_steps": self.n_steps_, "n_feedback": self.n_feedback_,
                     "n_miss": self.n_miss_, "n_expired": self.n_expired_, "next_id": self._next_id,
                     "pending_ids": ids, "pending_scores": self._scores[idx].copy(),
                     "pending_q": self._q_used[idx].copy(), "reference_stats": self._ref,
                     "rng_state": json.dumps(self._rng.bit_generator.state), "uniforms": self._u.copy(),
                     "uniforms_used": self._u_i}
            if self.window is not None:
                state.update(win_sorted=self._win_sorted.copy(),
                             win_ring=np.roll(self._win_ring, -self._win_head).copy())
        params = {"method": self.method, "gamma": self.gamma, "window": self.window, "statistic": self.statistic,
                  "monitor_level": self.monitor_level, "jump": self.jump,
                  "conservative_abstain": self.conservative_abstain, "max_pending": self.max_pending,
                  "random_state": self.random_state, "calibration_version": self.calibration_version}
        return {"params": params, "calibrator_kind": type(self.conformal).__name__,
                "calibrator": self.conformal.to_dict(), "state": state}

    @classmethod
    def from_dict(cls, d: dict) -> "StreamingConformal":
        from conformal.abstention import DualThresholdConformal
        from conformal.calibrators import SplitConformalClassifier

        kinds = {"SplitConformalClassifier": SplitConformalClassifier,
                 "DualThresholdConformal": DualThresholdConformal}
        try:
            if d["calibrator_kind"] not in kinds:
                raise ValueError(f"unknown calibrator kind {d['calibrator_kind']!r}")
            conf = kinds[d["calibrator_kind"]].from_dict(d["calibrator"])
            p, st = dict(d["params"]), d["state"]
            stat = p.pop("statistic")
            obj = cls(conf, **p, statistic=stat if d["calibrator_kind"] == "SplitConformalClassifier" else "entropy")
            ref = st["reference_stats"]
            if ref is not None:
                obj._ref = np.asarray(ref, dtype=np.float64)
                obj._tau_alarm = min(obj._tau, _rank_quantile(obj._ref, obj.conservative_abstain))
            obj.alpha_t_, obj.q_t_ = float(st["alpha_t"]), float(st["q_t"])
            obj._mon[:] = np.asarray(st["monitor"], dtype=np.float64)
            obj.alarm_, obj.alarm_frame_ = bool(st["alarm"]), st["alarm_frame"]
            for name in ("n_steps", "n_feedback", "n_miss", "n_expired"):
                setattr(obj, name + "_", int(st[name]))
            obj._next_id = int(st["next_id"])
            obj._rng.bit_generator.state = json.loads(st["rng_state"])
            obj._u = np.asarray(st["uniforms"], dtype=np.float64).copy()
            obj._u_i = int(st["uniforms_used"])
            ids = list(st["pending_ids"])
            if len(ids) > obj.max_pending:
                raise ValueError("more pending frames than max_pending")
            for i, fid in enumerate(ids):
                obj._scores[i] = st["pending_scores"][i]
                obj._q_used[i] = st["pending_q"][i]
                obj._slot_ids[i] = fid
                obj._pending[fid] = i
            obj._head = len(ids) % obj.max_pending
            if obj.window is not None:
                obj._win_sorted = np.asarray(st["win_sorted"], dtype=np.float64).copy()
                obj._win_ring = np.asarray(st["win_ring"], dtype=np.float64).copy()
                obj._win_head = 0
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"saved StreamingConformal state is missing or has a malformed field: {exc}") from None
        return obj

    def save(self, path) -> None:
        """Snapshot to checksummed JSON (conformal.io); never pickle."""
        from conformal.io import save_state

        save_state(os.fspath(path), "StreamingConformal", self.to_dict())

    @classmethod
    def load(cls, path) -> "StreamingConformal":
        from conformal.io import load_state

        return cls.from_dict(load_state(os.fspath(path), "StreamingConformal"))

    def __repr__(self) -> str:
        return (f"StreamingConformal({type(self.conformal).__name__}, method={self.method!r}, gamma={self.gamma!r}, "
                f"window={self.window!r})")


def _softmax(z, temp):
    z = z.astype(np.float64) / temp
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
