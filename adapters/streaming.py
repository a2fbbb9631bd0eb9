"""StreamingConformal: per-frame conformal decisions for robotics stacks, with delayed feedback (adaptive conformal
inference) and a label-free shift monitor (a conformal test martingale). numpy + numba only (no torch).

A thin wrapper over `conformal.online`, which holds the math (`FrameScorer`: one frame's scores, set and statistic;
`OnlineThreshold`: ACI / quantile tracking; `ShiftMartingale`: the monitor) and its guarantees. This module adds
what a deployment needs around it: frame ids and a ring of frames awaiting feedback (any delay, any order), the
abstention decision, one lock for a producer and a feedback thread, the output dict (see docs/streaming.md for
its mapping to ROS 2 vision_msgs) and checksummed snapshots. Methods:

* ``method="aci"`` -- adaptive conformal inference: alpha_t moves with the misses, the threshold is the exact
  conformal rank of alpha_t among the calibration scores (or a window of recent fed-back scores);
* ``method="quantile"`` -- quantile tracking on the score scale;
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

from conformal import online
from conformal._base import Array, Bool, Float, InstanceOf, Int, Interval, Options, check_constraints
from conformal._validation import NotFittedError, as_array, check_scores_matrix
from conformal.abstention import STATISTICS, DualThresholdConformal, ShiftAwareAbstention
from conformal.abstention.shift import WindowState
from conformal.calibrators import SplitConformalClassifier
from conformal.io import StateError, dumps_state, load_state, register_kind, save_state
from conformal.quantile import sorted_quantile
from conformal.utils import check_random_state, softmax

__all__ = ["StreamingConformal", "METHODS"]

METHODS = online.METHODS
_N_UNIFORMS = 4096  # monitor tie-breaking uniforms drawn per refill
_PROB = [Interval(numbers.Real, 0, 1, closed="neither")]
_PARAMETER_CONSTRAINTS = {
    "method": [Options(METHODS)],
    "gamma": [Interval(numbers.Real, 0, None, closed="neither")],
    "window": [None, Interval(numbers.Integral, 2, None, closed="left")],
    "statistic": [InstanceOf(str)],
    "monitor_level": _PROB, "jump": _PROB, "conservative_abstain": _PROB,
    "martingale": [Options(tuple(online.MONITORS))],
    "max_pending": [Interval(numbers.Integral, 1, None, closed="left")],
    "random_state": [None, Interval(numbers.Integral, 0, None, closed="left")],
    "calibration_version": [None, InstanceOf(str)],
}
_KINDS = {"SplitConformalClassifier": SplitConformalClassifier, "DualThresholdConformal": DualThresholdConformal}


@register_kind
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
    reference_statistics : 1-D array or None
        Monitor a statistic the caller computes per frame instead (any fitted label-free statistic, e.g. the kNN
        feature distance of `conformal.abstention`): its values on clean reference inputs. Each `step` then takes
        the frame's value as ``monitor_value=``. After an alarm the abstention tau becomes the conservative one of
        `reference` when that is given too, else -inf (abstain on every frame until `reset_monitor()`).
    monitor_level : float in (0, 1)
        Alarm when the monitor reaches 1 / monitor_level (`conformal.online.ShiftMartingale` /
        `conformal.online.ShiftMonitor`).
    martingale : "jumper" (default), "power_mixture" or "cusum"
        The monitor: today's Simple Jumper (fused into the frame kernel), or `conformal.online.ShiftMonitor`'s
        one-sided power-mixture martingale (recommended: valid with conservative p-values, alarms in a few inputs
        on strong shifts) or CUSUM e-detector (faster after a long clean prefix; average run length to a false
        alarm >= 1 / monitor_level, no Ville bound).
    jump : float in (0, 1)
        Simple Jumper's switching rate.
    shift_abstention : fitted conformal.ShiftAwareAbstention or None
        Also abstain by its window rule over the trailing window of frames (`conformal.abstention.shift.
        WindowState`); a rule fitted with a shift statistic reads each frame's `monitor_value` (so it needs
        `reference_statistics`). No guarantee under shift (docs/abstention.md). Outputs gain "window_abstention"
        (the window's estimated abstention level, NaN until min_window frames).
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
    Guarantees and assumptions are those of `conformal.online` (ACI's deterministic long-run bound, the
    martingale's false-alarm bound given a large reference). After an alarm the wrapper stays conservative until
    `reset_monitor()` (e.g. after recalibration). One producer thread (`step`) and one feedback thread may share
    the object: every state change happens under one lock.
    """

    def __init__(self, conformal, method: str = "aci", gamma: float = 0.005, window: int | None = None, *,
                 statistic: str = "entropy", reference=None, monitor_level: float = 0.01, jump: float = 0.01,
                 conservative_abstain: float = 0.5, max_pending: int = 10000, random_state: int | None = 0,
                 calibration_version: str | None = None, martingale: str = "jumper", reference_statistics=None,
                 shift_abstention=None):
        self._set_params(method=method, gamma=gamma, window=window, statistic=statistic,
                         monitor_level=monitor_level, jump=jump, conservative_abstain=conservative_abstain,
                         max_pending=max_pending, random_state=random_state, calibration_version=calibration_version,
                         martingale=martingale)
        self._bind_calibrator(conformal)
        self.calibration_version = self._version(calibration_version)
        self._external = reference_statistics is not None
        self._bind_reference(reference, reference_statistics)
        self._bind_window(shift_abstention)
        self._allocate()
        self._reset_state()

    # --- construction ----------------------------------------------------------------------------------------
    def _set_params(self, **params) -> None:
        for name, value in params.items():
            check_constraints(name, value, _PARAMETER_CONSTRAINTS[name])
        if params["window"] is not None and params["method"] != "aci":
            raise ValueError(f"`window` applies to method='aci' only; got method={params['method']!r}")
        self.method, self.gamma, self.window = params["method"], float(params["gamma"]), params["window"]
        self.monitor_level, self.jump = float(params["monitor_level"]), float(params["jump"])
        self.conservative_abstain = float(params["conservative_abstain"])
        self.max_pending, self.random_state = int(params["max_pending"]), params["random_state"]
        self.martingale = params["martingale"]
        self._statistic_param = params["statistic"]

    def _bind_calibrator(self, conformal) -> None:
        """The per-frame scorer, the abstention threshold and statistic, from the calibrator's public state."""
        if not isinstance(conformal, (DualThresholdConformal, SplitConformalClassifier)):
            raise TypeError(f"`conformal` must be a fitted SplitConformalClassifier or DualThresholdConformal; got "
                            f"{type(conformal).__name__} (class-conditional calibrators have one threshold per "
                            f"class and are not supported by the streaming wrapper)")
        if not conformal.__sklearn_is_fitted__():
            raise NotFittedError("`conformal` is not fitted; call conformal.fit(probs, labels) first")
        self._frame_statistic = None  # a statistic the kernel cannot compute: the calibrator's own, per frame
        if isinstance(conformal, DualThresholdConformal):
            cal, self._tau, name = conformal.calibrator_, float(conformal.tau_), conformal.statistic_name_
            registered = isinstance(conformal.statistic, str)
            if registered and name in online.STATISTIC_KINDS and name != "set_size":
                kernel = name
            elif registered and name == "set_size" and conformal.statistic_calibrator_ is cal:
                kernel = name  # the set size at the calibrated threshold, from the same kernel call
            else:
                kernel, self._frame_statistic = None, conformal.statistic_of
        else:
            cal, self._tau, name = conformal, math.inf, self._statistic_param
            if name not in ("max_prob", "margin", "entropy"):
                raise ValueError(f"`statistic` must be one of ['entropy', 'margin', 'max_prob']; got {name!r}")
            kernel = name
        self.conformal, self.statistic = conformal, name
        self._scorer = online.FrameScorer(cal, kernel)
        self._cal = cal
        self.alpha = float(cal.alpha)
        self.n_classes_ = self._scorer.n_classes
        self._threshold = online.OnlineThreshold(cal.calibration_scores_, alpha=self.alpha, method=self.method,
                                                 gamma=self.gamma, window=self.window,
                                                 q_calibrated=self._scorer.q_calibrated)
        self._update = self._threshold.update

    def _version(self, calibration_version):
        if calibration_version is not None:
            return calibration_version
        state = dumps_state(type(self.conformal).__name__, self.conformal.to_dict())
        return hashlib.sha256(state.encode()).hexdigest()[:12]

    def _reference_statistics(self, reference) -> np.ndarray:
        cal = self._cal
        ref = check_scores_matrix(reference, "reference", inputs=cal.inputs, n_classes=self.n_classes_)
        if isinstance(self.conformal, DualThresholdConformal):
            return self.conformal.statistic_of(ref)
        return STATISTICS[self.statistic](ref if cal.inputs != "logits" else softmax(ref, cal.temperature))

    def _bind_reference(self, reference, statistics=None) -> None:
        """The shift monitor on the reference outputs (or on reference `statistics`: saved, or the caller's own
        statistic when `self._external`); None: no monitor."""
        self._monitor, self._tau_alarm, self._fused, self._log10_alarm = None, self._tau, False, math.inf
        if reference is None and statistics is None:
            return
        if statistics is None:
            stats = self._reference_statistics(reference)
        else:
            stats = as_array(statistics, "reference_statistics")
            if stats.ndim != 1 or not np.issubdtype(stats.dtype, np.number):
                raise ValueError(f"`reference_statistics` must be a 1-D numeric array; got shape {stats.shape}")
        if self.martingale == "jumper":
            self._monitor = online.ShiftMartingale(stats, jump=self.jump, level=self.monitor_level)
        else:
            self._monitor = online.ShiftMonitor(stats, method=self.martingale, level=self.monitor_level,
                                                jump=self.jump)
        if not self._external:
            self._tau_alarm = min(self._tau, sorted_quantile(self._monitor.reference, self.conservative_abstain))
        elif reference is not None:
            own = np.sort(self._reference_statistics(reference))
            self._tau_alarm = min(self._tau, sorted_quantile(own, self.conservative_abstain))
        else:
            self._tau_alarm = -math.inf
        self._fused = self._frame_statistic is None and self.martingale == "jumper" and not self._external
        self._log10_alarm = self._monitor.log10_threshold

    def _bind_window(self, est) -> None:
        self.shift_abstention, self._window = est, None
        if est is None:
            return
        if not isinstance(est, ShiftAwareAbstention) or not est.__sklearn_is_fitted__():
            raise TypeError(f"`shift_abstention` must be a fitted ShiftAwareAbstention; got {type(est).__name__}")
        if est.calibrator_.n_classes_ != self.n_classes_:
            raise ValueError(f"`shift_abstention` was fitted on {est.calibrator_.n_classes_} classes; the calibrator "
                             f"has {self.n_classes_}")
        if est.shift_reference_ is not None and not self._external:
            raise ValueError("`shift_abstention` was fitted with a shift statistic: build the wrapper with "
                             "`reference_statistics=` (that statistic on clean inputs) and pass `monitor_value=`")
        if self._cal.inputs == "logits":
            raise ValueError("`shift_abstention` takes probabilities; the calibrator takes logits")
        self._window = WindowState(est)

    def _allocate(self) -> None:
        """Scratch and ring buffers, allocated once; the hot path only writes into them."""
        k = self.n_classes_
        self._p2d = np.empty((1, k))
        self._order = np.empty(k, dtype=np.int64)
        self._scores = np.empty((self.max_pending, k))
        self._q_used = np.empty(self.max_pending)
        self._slot_ids = [None] * self.max_pending
        self._lock = threading.Lock()
        self._bind_frame()

    def _bind_frame(self) -> None:
        """The per-frame kernel call with the buffers (and, when it computes the statistic, the monitor) bound."""
        self._frame = self._scorer.bind(self._p2d, self._scores, self._order, self._monitor if self._fused else None)

    # --- state -----------------------------------------------------------------------------------------------
    def _reset_state(self):
        rng = check_random_state(self.random_state, "random_state")
        self._rng = rng
        self._u = rng.random(_N_UNIFORMS)
        self._u_i = 0
        self._pending = {}
        self._head = 0
        self._next_id = 0
        self._threshold.reset(rng)
        if self._monitor is not None:
            self._monitor.reset()
        self.alarm_ = False
        self.alarm_frame_ = None
        if self._window is not None:
            self._window.reset()
        self.n_steps_ = 0
        self.n_feedback_ = 0
        self.n_miss_ = 0
        self.n_expired_ = 0

    @property
    def alpha_t_(self) -> float:
        """Current miscoverage level (moves with feedback for method="aci")."""
        return self._threshold.alpha_t

    @property
    def q_t_(self) -> float:
        """Current set threshold."""
        return self._threshold.q_t

    def reset_monitor(self) -> None:
        """Clear an alarm and restart the martingale at 1 (e.g. after the model or calibration was updated)."""
        with self._lock:
            if self._monitor is not None:
                self._monitor.reset()
            self.alarm_ = False
            self.alarm_frame_ = None

    # --- hot path --------------------------------------------------------------------------------------------
    def step(self, probs, frame_id=None, *, monitor_value=None) -> dict:
        """Decision for one frame from its (K,) probabilities (or logits, if the calibrator takes logits).

        `frame_id`: an int or str naming the frame for later `feedback` (default: a running integer).
        `monitor_value`: the frame's value of the caller's monitored statistic (required with
        `reference_statistics`, refused otherwise). Returns a new dict; see docs/streaming.md. Never sees a label.
        """
        if self._external:
            if monitor_value is None or isinstance(monitor_value, bool) or \
                    not isinstance(monitor_value, numbers.Real) or not math.isfinite(monitor_value):
                raise TypeError(f"`monitor_value` must be a finite real number (the frame's value of the statistic "
                                f"given as `reference_statistics`); got {monitor_value!r}")
        elif monitor_value is not None:
            raise ValueError("`monitor_value` is only taken when the wrapper was built with `reference_statistics`")
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
            thr = self._threshold
            q = thr.q_t
            mon = self._monitor
            if self._fused:  # set, statistic and monitor in one kernel call
                code, m, stat, pval, log10_m = self._frame(src, q, slot, self._u[self._u_i])
            else:
                code, m, stat = self._frame(src, q, slot)
            if code != 0:
                raise ValueError(f"`probs` {online.ERROR_MESSAGES.get(code, 'is invalid')}")
            if self._frame_statistic is not None:
                stat = float(self._frame_statistic(self._p2d.copy())[0])
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
            if mon is not None:
                if not self._fused:
                    pval = mon.update(monitor_value if self._external else stat, self._u[self._u_i])
                    log10_m = float(mon.state[-1])
                self._u_i += 1
                if self._u_i == _N_UNIFORMS:  # refill after use, so a frame never starts with an empty buffer
                    self._u = self._rng.random(_N_UNIFORMS)
                    self._u_i = 0
                if log10_m >= self._log10_alarm and not self.alarm_:
                    self.alarm_ = mon.note(log10_m)
                    self.alarm_frame_ = fid
            else:
                pval, log10_m = math.nan, 0.0
            alarm = self.alarm_
            tau = self._tau_alarm if alarm else self._tau
            members = self._order[:m]
            p = self._p2d[0]
            abstain = bool(stat > tau)
            if self._window is not None:
                extra, r_hat = self._window.update(p, monitor_value if self._external else None)
                abstain = abstain or extra
            out = {"frame_id": fid, "set": members.tolist(), "set_probs": p[members].tolist(),
                    "prediction": int(np.argmax(p)), "confidence": float(p.max()), "abstain": abstain,
                    "statistic": float(stat), "alpha": thr.alpha_t, "qhat": q, "tau": tau,
                    "shift_alarm": alarm, "mode": "conservative" if alarm else "normal", "monitor_pvalue": pval,
                    "log10_martingale": log10_m, "calibration_version": self.calibration_version,
                    "n_feedback": self.n_feedback_}
            if self._window is not None:
                out["window_abstention"] = r_hat
            return out

    # --- feedback --------------------------------------------------------------------------------------------
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
            err = self._update(float(self._scores[slot, label]), self._q_used[slot])
            del self._pending[frame_id]
            self._slot_ids[slot] = None
            self.n_feedback_ += 1
            self.n_miss_ += int(err)
            return err

    # --- diagnostics -----------------------------------------------------------------------------------------
    @property
    def coverage_(self) -> float:
        """Fraction of answered frames whose set held the label (nan before any feedback)."""
        return 1.0 - self.n_miss_ / self.n_feedback_ if self.n_feedback_ else math.nan

    def aci_bound(self) -> float:
        """Long-run guarantee of method="aci" after the feedback so far: |miss rate - alpha| <= this."""
        return online.aci_bound(self.alpha, self.gamma, self.n_feedback_)

    @property
    def pending_frames(self) -> list:
        with self._lock:
            return list(self._pending)

    # --- persistence -----------------------------------------------------------------------------------------
    @classmethod
    def _kind_name(cls) -> str:
        return cls.__name__

    def to_dict(self) -> dict:
        """Parameters, the calibrator's state and the online state (pending frames included), JSON-ready."""
        with self._lock:
            slots = list(self._pending.items())
            idx = np.array([s for _, s in slots], dtype=np.int64)
            mon = self._monitor
            state = {**self._threshold.state(),
                     "monitor": (mon.state.copy() if mon is not None else np.array([1 / 3, 1 / 3, 1 / 3, 0.0])),
                     "alarm": self.alarm_, "alarm_frame": self.alarm_frame_, "n_steps": self.n_steps_,
                     "n_feedback": self.n_feedback_, "n_miss": self.n_miss_, "n_expired": self.n_expired_,
                     "next_id": self._next_id, "pending_ids": [fid for fid, _ in slots],
                     "pending_scores": self._scores[idx].copy(), "pending_q": self._q_used[idx].copy(),
                     "reference_stats": None if mon is None else mon.reference, "tau_alarm": self._tau_alarm,
                     "rng_state": json.dumps(self._rng.bit_generator.state), "uniforms": self._u.copy(),
                     "uniforms_used": self._u_i}
            if self._window is not None:
                state["window"] = self._window.state()
        params = {"method": self.method, "gamma": self.gamma, "window": self.window, "statistic": self.statistic,
                  "monitor_level": self.monitor_level, "jump": self.jump,
                  "conservative_abstain": self.conservative_abstain, "max_pending": self.max_pending,
                  "random_state": self.random_state, "calibration_version": self.calibration_version,
                  "martingale": self.martingale, "external_monitor": self._external}
        out = {"params": params, "calibrator_kind": type(self.conformal).__name__,
               "calibrator": self.conformal.to_dict(), "state": state}
        if self._window is not None:
            out["shift_abstention"] = self.shift_abstention.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "StreamingConformal":
        """Rebuild a snapshot of `to_dict`; every field of the online state is checked (errors name it)."""
        try:
            kind = d["calibrator_kind"]
            if kind not in _KINDS:
                raise StateError(f"saved field `calibrator_kind` is {kind!r}; expected one of {sorted(_KINDS)}")
            conf = _KINDS[kind].from_dict(d["calibrator"])
            p, st = dict(d["params"]), d["state"]
            stat = p.pop("statistic")
            external = Bool()(p.pop("external_monitor", False), "params.external_monitor")
            obj = cls(conf, **p, statistic=stat if kind == "SplitConformalClassifier" else "entropy")
            obj._external = external
            if d.get("shift_abstention") is not None:
                obj._bind_window(ShiftAwareAbstention.from_dict(d["shift_abstention"]))
            obj._restore(st)
        except StateError:
            raise
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise StateError(f"saved StreamingConformal state is missing or has a malformed field: {exc}") from None
        return obj

    def _restore(self, st: dict) -> None:
        """Set the online state from a snapshot, checking each field (errors name it)."""
        ref = st["reference_stats"]
        if ref is not None:
            ref = Array("f", 1, finite=True)(ref, "state.reference_stats")
            if np.any(np.diff(ref) < 0):
                raise StateError("saved field `state.reference_stats` must be sorted ascending")
        if self._external and ref is None:
            raise StateError("saved field `state.reference_stats` is missing for a wrapper with an external monitor")
        self._bind_reference(None, ref)
        if self._external:
            self._tau_alarm = Float()(st["tau_alarm"], "state.tau_alarm")
        self._bind_frame()
        self._threshold.set_state({**st, "alpha_t": Float(finite=True)(st["alpha_t"], "state.alpha_t"),
                                   "q_t": Float()(st["q_t"], "state.q_t")})
        monitor = Array("f", 1, finite=True)(st["monitor"], "state.monitor")
        want = (4,) if self._monitor is None else self._monitor.state.shape
        if monitor.shape != want:
            raise StateError(f"saved field `state.monitor` must have shape {want}; got {monitor.shape}")
        if self._monitor is not None:
            self._monitor.state[:] = monitor
            self._monitor.alarm = Bool()(st["alarm"], "state.alarm")
        self.alarm_, self.alarm_frame_ = Bool()(st["alarm"], "state.alarm"), st["alarm_frame"]
        for name in ("n_steps", "n_feedback", "n_miss", "n_expired"):
            setattr(self, name + "_", Int(0)(st[name], f"state.{name}"))
        self._next_id = Int(0)(st["next_id"], "state.next_id")
        self._rng.bit_generator.state = json.loads(st["rng_state"])
        self._u = Array("f", 1, finite=True)(st["uniforms"], "state.uniforms").copy()
        if self._u.shape != (_N_UNIFORMS,) or (self._u < 0).any() or (self._u > 1).any():
            raise StateError(f"saved field `state.uniforms` must hold {_N_UNIFORMS} uniforms in [0, 1]")
        self._u_i = Int(0)(st["uniforms_used"], "state.uniforms_used")
        if self._u_i > _N_UNIFORMS:
            raise StateError(f"saved field `state.uniforms_used` must be <= {_N_UNIFORMS}; got {self._u_i}")
        if self._u_i == _N_UNIFORMS:  # schema-1 snapshots refilled lazily, before the next frame
            self._u = self._rng.random(_N_UNIFORMS)
            self._u_i = 0
        ids = list(st["pending_ids"])
        if len(ids) > self.max_pending or len(set(ids)) != len(ids):
            raise StateError(f"saved field `state.pending_ids` must hold at most max_pending={self.max_pending} "
                             f"distinct ids; got {len(ids)}")
        scores = Array("f", 2)(st["pending_scores"], "state.pending_scores")
        q_used = Array("f", 1)(st["pending_q"], "state.pending_q")
        if scores.shape != (len(ids), self.n_classes_) or q_used.shape != (len(ids),):
            raise StateError(f"saved fields `state.pending_scores` / `state.pending_q` must have shapes "
                             f"({len(ids)}, {self.n_classes_}) / ({len(ids)},); got {scores.shape} / {q_used.shape}")
        for i, fid in enumerate(ids):
            self._scores[i] = scores[i]
            self._q_used[i] = q_used[i]
            self._slot_ids[i] = fid
            self._pending[fid] = i
        self._head = len(ids) % self.max_pending
        if self._window is not None:
            if "window" not in st:
                raise StateError("saved field `state.window` is missing for a wrapper with `shift_abstention`")
            self._window.set_state(st["window"])

    @classmethod
    def _upgrade_state(cls, version: int, payload: dict) -> dict:
        """Schema 1 snapshots held the calibrator in its schema-1 form."""
        if version != 1:
            raise StateError(f"StreamingConformal has no saved format of schema_version {version}")
        kind = payload.get("calibrator_kind")
        if kind not in _KINDS:
            raise StateError(f"saved field `calibrator_kind` is {kind!r}; expected one of {sorted(_KINDS)}")
        return {**payload, "calibrator": _KINDS[kind]._upgrade_state(1, payload["calibrator"])}

    def save(self, path) -> None:
        """Snapshot to checksummed JSON (conformal.io); never pickle."""
        save_state(os.fspath(path), "StreamingConformal", self.to_dict())

    @classmethod
    def load(cls, path) -> "StreamingConformal":
        """Load a snapshot written by `save` (schema 1 snapshots are upgraded)."""
        return cls.from_dict(load_state(os.fspath(path), "StreamingConformal"))

    def __repr__(self) -> str:
        return (f"StreamingConformal({type(self.conformal).__name__}, method={self.method!r}, gamma={self.gamma!r}, "
                f"window={self.window!r})")
