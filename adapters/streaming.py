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
from collections.abc import Mapping

import numpy as np

from conformal import _tensor, online
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
    reference_statistics : 1-D array, mapping name -> 1-D array, or None
        Monitor a statistic the caller computes per frame instead (any fitted label-free statistic, e.g. the kNN
        feature distance of `conformal.abstention`): its values on clean reference inputs. Each `step` then takes
        the frame's value as ``monitor_value=``. A mapping monitors several statistics at once
        (`conformal.online.UnionShiftMonitor`: one monitor each at monitor_level / m, alarm when any fires; P(false
        alarm) <= monitor_level by the union bound): ``monitor_value=`` is then a mapping with the same names (or a
        tuple in their order), outputs add "monitor_pvalues" ({name: p-value}; "monitor_pvalue" is their minimum)
        and "alarm_statistic" (the name that fired first, None before an alarm). After an alarm the abstention tau
        becomes the conservative one of `reference` when that is given too, else -inf (abstain on every frame until
        `reset_monitor()`).
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
        self._multi = isinstance(reference_statistics, Mapping)
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

    # tensors on a device (CUDA, ...) compute their frame there; CPU tensors take the host kernel through a shared
    # view unless this is True (the tests set it per stream to run the device path on CPU tensors) or the core's
    # switch `conformal._tensor._device_path_on_cpu` is
    _device_path_on_cpu = False

    def _bind_calibrator(self, conformal) -> None:
        """The per-frame scorer, the abstention threshold and statistic, from the calibrator's public state."""
        if not isinstance(conformal, (DualThresholdConformal, SplitConformalClassifier)):
            raise TypeError(f"`conformal` must be a fitted SplitConformalClassifier or DualThresholdConformal; got "
                            f"{type(conformal).__name__} (class-conditional calibrators have one threshold per "
                            f"class and are not supported by the streaming wrapper)")
        if not conformal.__sklearn_is_fitted__():
            raise NotFittedError("`conformal` is not fitted; call conformal.fit(probs, labels) first")
        self._frame_statistic = None  # a statistic the kernel cannot compute: the calibrator's own, per frame
        self._combined, self._side, self._names, self._taus = False, (), None, None
        if isinstance(conformal, DualThresholdConformal) and conformal.statistics_ is not None:
            # fitted and/or several statistics (conformal.abstention.combined): per frame through statistic_of,
            # with the side inputs (features, logits, inputs) that `step` takes
            cal, name = conformal.calibrator_, conformal.statistic_name_
            self._combined, self._side = True, conformal.required_side_inputs()
            if isinstance(conformal.statistic, tuple):
                self._names = conformal.statistic_names_
            self._taus = np.atleast_1d(np.asarray(conformal.tau_, dtype=np.float64)).copy()
            self._tau, kernel = float(self._taus[0]), None
        elif isinstance(conformal, DualThresholdConformal):
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
        if reference is not None and self._combined:
            raise ValueError(f"`reference` (model outputs) cannot feed the monitor of a calibrator with fitted or "
                             f"several statistics ({self.statistic!r}); pass `reference_statistics=` (e.g. the kNN "
                             f"statistic on clean inputs, or a mapping of several) and `monitor_value=` per step")
        if isinstance(statistics, Mapping):
            self._monitor = online.UnionShiftMonitor(statistics, method=self.martingale, level=self.monitor_level,
                                                     jump=self.jump)
            self._tau_alarm = -math.inf
            if reference is not None:
                own = np.sort(self._reference_statistics(reference))
                self._tau_alarm = min(self._tau, sorted_quantile(own, self.conservative_abstain))
            self._log10_alarm = self._monitor.log10_threshold
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
        self._fused = self._frame_statistic is None and self.martingale == "jumper" and not self._external \
            and not self._combined
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
        if est.shift_reference_ is not None and self._multi:
            raise ValueError("`shift_abstention` fitted with a shift statistic reads one `monitor_value` per frame; "
                             "give `reference_statistics` as one 1-D array, not a mapping")
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
        # one scratch row after the ring: a frame is scored there and copied into its slot only once nothing can
        # fail, so a failed step never overwrites a pending frame's scores
        self._scores = np.empty((self.max_pending + 1, k))
        self._q_used = np.empty(self.max_pending)
        self._slot_ids = [None] * self.max_pending
        self._filled = {}  # slot -> labels of a published set that allow_empty=False filled with the top-1 group
        self._dev_rows = {}  # slot -> scores (K,) of a frame computed on a tensor's device, kept there
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
        self._filled = {}
        self._dev_rows = {}
        self._slot_ids = [None] * self.max_pending
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
    def step(self, probs, frame_id=None, *, monitor_value=None, features=None, logits=None, inputs=None) -> dict:
        """Decision for one frame from its (K,) probabilities (or logits, if the calibrator takes logits).

        `probs`: a float32/float64 NumPy array or a torch tensor (a CPU tensor is read through a shared view; a
        tensor on another device, e.g. CUDA, has its probabilities, scores, set and statistic computed there, and
        only the set's labels and probabilities and a few scalars come to the host; its scores stay there for
        `feedback`. A window rule (`shift_abstention`) or fitted statistics read host copies of what they need).
        `frame_id`: names the frame for later `feedback`: an int, a str, a finite float or a ROS stamp ``(sec,
        nanosec)`` (returned as that tuple of ints); default: a running integer, the next one not waiting for
        feedback (automatic ids skip explicit ones, so two pending frames never share an id). `monitor_value`: the
        frame's value of the caller's monitored statistic (required with `reference_statistics`, refused otherwise).
        `features`, `logits`, `inputs`: the frame's side inputs (a (D,) feature vector, (K,) logits, one raw image /
        point cloud) that a DualThresholdConformal with fitted or several statistics needs
        (`required_side_inputs()`; refused when not needed); with several statistics the output adds "statistics"
        and "taus" ({name: value}) and "reasons" (the names that exceeded their tau; "statistic" and "tau" are the
        first statistic's). Returns a new dict of plain Python values (see docs/streaming.md). Never sees a label. A
        call that raises leaves the state as it was.
        """
        side = self._side_inputs(features, logits, inputs)
        if self._multi:
            if not isinstance(monitor_value, (Mapping, tuple, list)):
                raise TypeError(f"`monitor_value` must be a mapping {{name: value}} (or a tuple in the order "
                                f"{list(self._monitor.names)}) of the statistics given as `reference_statistics`; "
                                f"got {type(monitor_value).__name__}")
            monitor_value = self._monitor._values(monitor_value, "monitor_value")
            for v in monitor_value:
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                    raise TypeError(f"`monitor_value` must hold finite real numbers; got {v!r}")
        elif self._external:
            if monitor_value is None or isinstance(monitor_value, bool) or \
                    not isinstance(monitor_value, numbers.Real) or not math.isfinite(monitor_value):
                raise TypeError(f"`monitor_value` must be a finite real number (the frame's value of the statistic "
                                f"given as `reference_statistics`); got {monitor_value!r}")
        elif monitor_value is not None:
            raise ValueError("`monitor_value` is only taken when the wrapper was built with `reference_statistics`")
        k = self.n_classes_
        # a tensor whose frame is computed on its device, or None
        dev = _device_row(probs, k, self._device_path_on_cpu or _tensor._device_path_on_cpu)
        if dev is None:
            probs = _host_array(probs)
            if probs.shape != (k,) and probs.shape != (1, k):
                raise ValueError(f"`probs` must have shape ({k},) (one frame, K = {k} classes); got {probs.shape}")
            if probs.dtype != np.float64 and probs.dtype != np.float32:
                raise TypeError(f"`probs` must be float32 or float64; got dtype {probs.dtype}")
            src = probs.reshape(1, k)
        explicit = None if frame_id is None else _frame_key(frame_id)
        with self._lock:
            if explicit is None:
                fid = self._next_id
                while fid in self._pending:  # an explicit id took it: skip (ids stay unique among pending frames)
                    fid += 1
            else:
                if explicit in self._pending:
                    raise ValueError(f"`frame_id` {frame_id!r} is already waiting for feedback; frame ids must be "
                                     f"unique among pending frames")
                fid = explicit
            slot = self._head
            row = self.max_pending  # the scratch row
            thr = self._threshold
            q = thr.q_t
            mon = self._monitor
            fused = self._fused and dev is None
            if dev is not None:  # on the tensor's device: only the set's labels and scalars come back
                code = _tensor.frame_code(dev, self._scorer.logits)
                if code == 0:
                    p_dev, row_dev, members, set_probs, top1, conf, filled, stat = self._scorer.tensor_frame(dev, q)
                    p_stat = p_dev
            elif fused:  # set, statistic and monitor in one kernel call (the monitor moves on valid rows only)
                code, m, stat, pval, log10_m = self._frame(src, q, row, self._u[self._u_i])
            else:
                code, m, stat = self._frame(src, q, row)
            if code != 0:
                raise ValueError(f"`probs` {online.ERROR_MESSAGES.get(code, 'is invalid')}")
            if dev is None:
                p_stat = self._p2d.copy()
            if self._combined:
                row_stats = as_array(self.conformal.statistic_of(p_stat, **side), "statistics")
                row_stats = np.asarray(row_stats, dtype=np.float64).reshape(-1)
                if not np.isfinite(row_stats).all():
                    raise ValueError(f"the calibrator's statistics are not finite on this frame: {row_stats!r}")
                stat = float(row_stats[0])
            elif self._frame_statistic is not None:
                stat = _checked_statistic(self._frame_statistic, p_stat)
            # commit: from here on nothing can fail
            old = self._slot_ids[slot]
            if old is not None:
                del self._pending[old]
                self._filled.pop(slot, None)
                self.n_expired_ += 1
            if dev is None:
                self._dev_rows.pop(slot, None)
                self._scores[slot] = self._scores[row]
                members = self._order[:m]
                filled = bool(m and self._scores[slot, members[0]] > q)
                p = self._p2d[0]
                top1, conf, set_probs, members = int(np.argmax(p)), float(p.max()), p[members].tolist(), \
                    members.tolist()
            else:
                self._dev_rows[slot] = row_dev  # the scores stay on the device; feedback reads one
            if filled:  # allow_empty=False published the top-1 group
                self._filled[slot] = members
            self._slot_ids[slot] = fid
            self._pending[fid] = slot
            self._q_used[slot] = q
            self._head = slot + 1 if slot + 1 < self.max_pending else 0
            if explicit is None:
                self._next_id = fid + 1
            self.n_steps_ += 1
            if mon is not None:
                if self._multi:
                    pvals = mon.update(monitor_value, self._u[self._u_i])
                    pval, log10_m = min(pvals.values()), mon.log10_value
                elif not fused:
                    pval = mon.update(monitor_value if self._external else stat, self._u[self._u_i])
                    log10_m = float(mon.state[-1])
                self._u_i += 1
                if self._u_i == _N_UNIFORMS:  # refill after use, so a frame never starts with an empty buffer
                    self._u = self._rng.random(_N_UNIFORMS)
                    self._u_i = 0
                if log10_m >= self._log10_alarm and not self.alarm_:
                    self.alarm_ = mon.alarm if self._multi else mon.note(log10_m)
                    self.alarm_frame_ = fid
            else:
                pval, log10_m = math.nan, 0.0
            alarm = self.alarm_
            tau = self._tau_alarm if alarm else self._tau
            abstain = bool(stat > tau)
            if self._names is not None:  # several statistics: abstain when any exceeds its own tau
                taus = np.full(len(self._names), tau) if alarm else self._taus
                hits = row_stats > taus
                abstain = bool(hits.any())
            if self._window is not None:  # the window rule's regressor reads host probabilities (K values)
                p_host = self._p2d[0] if dev is None else as_array(p_dev, "probs")[0]
                extra, r_hat = self._window.update(p_host, monitor_value if self._external else None)
                abstain = bool(abstain or extra)
            out = {"frame_id": fid, "set": members, "set_probs": set_probs,
                   "prediction": top1, "confidence": conf, "abstain": abstain,
                   "statistic": float(stat), "alpha": float(thr.alpha_t), "qhat": float(q), "tau": float(tau),
                   "shift_alarm": bool(alarm), "mode": "conservative" if alarm else "normal",
                   "monitor_pvalue": float(pval), "log10_martingale": float(log10_m),
                   "calibration_version": self.calibration_version, "n_feedback": int(self.n_feedback_)}
            if self._window is not None:
                out["window_abstention"] = float(r_hat)
            if self._multi:
                out["monitor_pvalues"], out["alarm_statistic"] = pvals, mon.alarm_statistic
            if self._names is not None:
                out["statistics"] = dict(zip(self._names, row_stats.tolist()))
                out["taus"] = dict(zip(self._names, taus.tolist()))
                out["reasons"] = [n for n, hit in zip(self._names, hits.tolist()) if hit]
            return out

    def _host_scores(self, idx) -> np.ndarray:
        """The scores of ring slots `idx` on the host (rows kept on a device are copied: snapshots only)."""
        out = self._scores[idx].copy()
        for i, s in enumerate(idx.tolist()):
            if s in self._dev_rows:
                out[i] = as_array(self._dev_rows[s], "scores")
        return out

    def _side_inputs(self, features, logits, inputs) -> dict:
        """One frame's side inputs as the one-row batch `statistic_of` takes; each is required exactly when the
        calibrator's statistics need it."""
        given = {"features": features, "logits": logits, "inputs": inputs}
        side = {}
        for name, value in given.items():
            if name not in self._side:
                if value is not None:
                    need = ", ".join(f"`{s}=`" for s in self._side) or "none"
                    raise ValueError(f"`{name}` is not used by this calibrator's statistic {self.statistic!r} "
                                     f"(side inputs it needs: {need})")
                continue
            if value is None:
                raise ValueError(f"statistic {self.statistic!r} needs `{name}=` in step (the frame's "
                                 f"{'raw image or point cloud' if name == 'inputs' else name}); got None")
            if name == "inputs":
                side[name] = [value]
                continue
            if type(value) is not np.ndarray:
                raise TypeError(f"`{name}` must be a numpy array of shape (D,) (one frame); got "
                                f"{type(value).__name__}")
            if value.ndim not in (1, 2) or (value.ndim == 2 and value.shape[0] != 1):
                raise ValueError(f"`{name}` must have shape (D,) or (1, D) (one frame); got {value.shape}")
            side[name] = value.reshape(1, -1)
        return side

    # --- feedback --------------------------------------------------------------------------------------------
    def feedback(self, frame_id, label) -> bool:
        """Ground truth for an earlier frame (any delay, any order). Returns True if that frame's published set
        missed the label. Unknown, already answered or expired frame ids and bad labels raise, leaving the state
        unchanged."""
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, numbers.Integral):
            raise TypeError(f"`label` must be an int class index; got {type(label).__name__}")
        if not 0 <= label < self.n_classes_:
            raise ValueError(f"`label` must be in 0..{self.n_classes_ - 1}; got {label}")
        label = int(label)
        try:
            key = _frame_key(frame_id)
        except (TypeError, ValueError):
            key = None
        with self._lock:
            slot = self._pending.get(key) if key is not None else None
            if slot is None:
                raise ValueError(f"`frame_id` {frame_id!r} is not waiting for feedback (unknown, already answered, "
                                 f"or expired after {self.max_pending} newer frames)")
            filled = self._filled.get(slot)
            # the published set is judged: with allow_empty=False a set filled with the top-1 group holds its labels
            miss = None if filled is None else label not in filled
            on_dev = self._dev_rows.get(slot)
            score = float(self._scores[slot, label] if on_dev is None else on_dev[label])
            err = self._update(score, self._q_used[slot], miss)
            del self._pending[key]
            self._dev_rows.pop(slot, None)
            self._filled.pop(slot, None)
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
            if self._multi:  # several statistics: one state and reference each, by name
                mon_state = {n: m.state.copy() for n, m in mon.monitors.items()}
                ref_stats = {n: m.reference for n, m in mon.monitors.items()}
            else:
                mon_state = mon.state.copy() if mon is not None else np.array([1 / 3, 1 / 3, 1 / 3, 0.0])
                ref_stats = None if mon is None else mon.reference
            state = {**self._threshold.state(), "monitor": mon_state,
                     "alarm": self.alarm_, "alarm_frame": self.alarm_frame_, "n_steps": self.n_steps_,
                     "n_feedback": self.n_feedback_, "n_miss": self.n_miss_, "n_expired": self.n_expired_,
                     "next_id": self._next_id, "pending_ids": [fid for fid, _ in slots],
                     # the ring as it is (slots, head, filled sets), so a restored stream expires the same frames
                     "pending_slots": idx.copy(), "head": self._head,
                     "pending_filled": [self._filled.get(int(s), []) for s in idx],
                     "pending_scores": self._host_scores(idx), "pending_q": self._q_used[idx].copy(),
                     "reference_stats": ref_stats, "tau_alarm": self._tau_alarm,
                     "rng_state": json.dumps(self._rng.bit_generator.state), "uniforms": self._u.copy(),
                     "uniforms_used": self._u_i}
            if self._window is not None:
                state["window"] = self._window.state()
            if self._multi:
                state["alarm_statistic"] = mon.alarm_statistic
                state["monitor_steps"] = mon.n_steps
                state["monitor_names"] = list(mon.names)  # the JSON keeps keys sorted; tuples follow this order
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
        self._multi = isinstance(ref, dict)
        if self._multi:
            self._restore_union(st)
            return
        if ref is not None:
            ref = Array("f", 1, finite=True)(ref, "state.reference_stats")
            if np.any(np.diff(ref) < 0):
                raise StateError("saved field `state.reference_stats` must be sorted ascending")
        if self._external and ref is None:
            raise StateError("saved field `state.reference_stats` is missing for a wrapper with an external monitor")
        self._bind_reference(None, ref)
        if self._external:
            self._tau_alarm = Float()(st["tau_alarm"], "state.tau_alarm")
        self._restore_common(st)
        monitor = Array("f", 1, finite=True)(st["monitor"], "state.monitor")
        want = (4,) if self._monitor is None else self._monitor.state.shape
        if monitor.shape != want:
            raise StateError(f"saved field `state.monitor` must have shape {want}; got {monitor.shape}")
        if self._monitor is not None:
            self._monitor.state[:] = monitor
            self._monitor.alarm = Bool()(st["alarm"], "state.alarm")

    def _restore_union(self, st: dict) -> None:
        """The several-statistics monitor of a snapshot: references and states by name, the alarm and its name."""
        if not self._external:
            raise StateError("saved field `state.reference_stats` is a mapping for a wrapper without an external "
                             "monitor")
        refs, states, names = st["reference_stats"], st["monitor"], st["monitor_names"]
        if not isinstance(names, list) or len(set(names)) != len(names) or set(names) != set(refs):
            raise StateError(f"saved field `state.monitor_names` must list the names of `state.reference_stats` "
                             f"({sorted(refs)}) once each; got {names!r}")
        if not isinstance(states, dict) or set(states) != set(refs):
            raise StateError(f"saved field `state.monitor` must map the names {sorted(refs)} to monitor states")
        ref = {}
        for name in names:
            values = refs[name]
            ref[name] = Array("f", 1, finite=True)(values, f"state.reference_stats.{name}")
            if np.any(np.diff(ref[name]) < 0):
                raise StateError(f"saved field `state.reference_stats.{name}` must be sorted ascending")
        self._bind_reference(None, ref)
        self._tau_alarm = Float()(st["tau_alarm"], "state.tau_alarm")
        self._restore_common(st)
        mon = self._monitor
        for name, sub in mon.monitors.items():
            values = Array("f", 1, finite=True)(states[name], f"state.monitor.{name}")
            if values.shape != sub.state.shape:
                raise StateError(f"saved field `state.monitor.{name}` must have shape {sub.state.shape}; got "
                                 f"{values.shape}")
            sub.state[:] = values
        fired = st["alarm_statistic"]
        if fired is not None and fired not in mon.monitors:
            raise StateError(f"saved field `state.alarm_statistic` must be one of {list(mon.names)} or None; got "
                             f"{fired!r}")
        mon.alarm, mon.alarm_statistic = self.alarm_, fired
        mon.n_steps = Int(0)(st["monitor_steps"], "state.monitor_steps")
        if fired is not None:
            mon.monitors[fired].alarm = True

    def _restore_common(self, st: dict) -> None:
        """Everything of a snapshot but the monitor's own state."""
        self._bind_frame()
        try:
            self._threshold.set_state({**st, "alpha_t": Float(finite=True)(st["alpha_t"], "state.alpha_t"),
                                       "q_t": Float()(st["q_t"], "state.q_t")})
        except StateError:
            raise
        except ValueError as exc:  # OnlineThreshold names its own fields
            raise StateError(str(exc).replace("saved field `", "saved field `state.")) from None
        self.alarm_, self.alarm_frame_ = Bool()(st["alarm"], "state.alarm"), st["alarm_frame"]
        # the counters as the specs relate them: misses <= answers; answered + expired + pending <= steps
        specs = {"n_steps": Int(0), "n_feedback": Int(0, maximum="n_steps"), "n_miss": Int(0, maximum="n_feedback"),
                 "n_expired": Int(0, maximum="n_steps"), "next_id": Int(0, maximum="n_steps")}
        counters = {name: spec(st[name], f"state.{name}") for name, spec in specs.items()}
        for name, spec in specs.items():
            spec.check_relations(counters[name], counters, f"state.{name}")
        n_open = counters["n_feedback"] + counters["n_expired"] + len(st["pending_ids"])
        if n_open > counters["n_steps"]:
            raise StateError(f"saved fields `state.n_feedback` + `state.n_expired` + len(`state.pending_ids`) = "
                             f"{n_open} must be <= `state.n_steps` = {counters['n_steps']}")
        for name in ("n_steps", "n_feedback", "n_miss", "n_expired"):
            setattr(self, name + "_", counters[name])
        self._next_id = counters["next_id"]
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
        try:
            ids = [_frame_key(tuple(f) if isinstance(f, list) else f) for f in st["pending_ids"]]
        except (TypeError, ValueError) as exc:
            raise StateError(f"saved field `state.pending_ids` holds an invalid frame id: {exc}") from None
        if len(ids) > self.max_pending or len(set(ids)) != len(ids):
            raise StateError(f"saved field `state.pending_ids` must hold at most max_pending={self.max_pending} "
                             f"distinct ids; got {len(ids)}")
        scores = Array("f", 2)(st["pending_scores"], "state.pending_scores")
        q_used = Array("f", 1)(st["pending_q"], "state.pending_q")
        if scores.shape != (len(ids), self.n_classes_) or q_used.shape != (len(ids),):
            raise StateError(f"saved fields `state.pending_scores` / `state.pending_q` must have shapes "
                             f"({len(ids)}, {self.n_classes_}) / ({len(ids)},); got {scores.shape} / {q_used.shape}")
        if "pending_slots" in st:  # the ring as saved
            slots = Array("i", 1, low=0, high=self.max_pending - 1)(st["pending_slots"], "state.pending_slots")
            Array("i", 1, low=0, high=self.max_pending - 1).check_relations(slots, {}, "state.pending_slots")
            if slots.shape != (len(ids),) or np.unique(slots).size != slots.size:
                raise StateError(f"saved field `state.pending_slots` must hold {len(ids)} distinct slots")
            head = Int(0, maximum=self.max_pending - 1)(st["head"], "state.head")
            filled = st["pending_filled"]
            if not isinstance(filled, list) or len(filled) != len(ids) or not all(
                    isinstance(f, list) and all(isinstance(c, int) and 0 <= c < self.n_classes_ for c in f)
                    for f in filled):
                raise StateError(f"saved field `state.pending_filled` must hold {len(ids)} lists of class indices")
        else:  # snapshots of 0.1: compact layout, oldest first
            slots, head, filled = np.arange(len(ids)), len(ids) % self.max_pending, [[]] * len(ids)
        for i, fid in enumerate(ids):
            s = int(slots[i])
            self._scores[s] = scores[i]
            self._q_used[s] = q_used[i]
            self._slot_ids[s] = fid
            self._pending[fid] = s
            if filled[i]:
                self._filled[s] = list(filled[i])
        self._head = head
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


def _host_array(probs) -> np.ndarray:
    """`probs` as a NumPy array: arrays as they are (the hot path); torch tensors (CPU shared, CUDA copied to the
    host: one synchronising device-to-host copy of K values) and lists of numbers through the core's `as_array`."""
    if type(probs) is np.ndarray:
        return probs
    return as_array(probs, "probs")


def _frame_key(frame_id):
    """A frame id as a hashable plain Python value: int, str, finite float, or a (sec, nanosec) stamp."""
    if isinstance(frame_id, (bool, np.bool_)):
        raise TypeError("`frame_id` must be an int, a str, a float or a (sec, nanosec) stamp; got bool")
    if isinstance(frame_id, (numbers.Integral,)):
        return int(frame_id)
    if isinstance(frame_id, str):
        return frame_id
    if isinstance(frame_id, numbers.Real):
        if not math.isfinite(frame_id):
            raise ValueError(f"`frame_id` must be finite; got {frame_id!r}")
        return float(frame_id)
    if isinstance(frame_id, (tuple, list)) or hasattr(frame_id, "sec") and hasattr(frame_id, "nanosec"):
        stamp = (frame_id.sec, frame_id.nanosec) if hasattr(frame_id, "sec") else tuple(frame_id)
        if (len(stamp) != 2 or any(isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral)
                                   for v in stamp) or not 0 <= stamp[1] < 10 ** 9 or stamp[0] < 0):
            raise ValueError(f"a stamp `frame_id` must be (sec >= 0, 0 <= nanosec < 1e9) ints; got {frame_id!r}")
        return (int(stamp[0]), int(stamp[1]))
    raise TypeError(f"`frame_id` must be an int, a str, a float or a (sec, nanosec) stamp; got "
                    f"{type(frame_id).__name__}")


def _device_row(probs, k: int, on_cpu: bool):
    """The (1, K) detached tensor of a frame to compute on its device (a non-CPU tensor; a CPU one only when
    `on_cpu`: by default CPU tensors take the host kernel through a shared view, which is faster per frame), or
    None. Shape and dtype are checked here with the host path's messages."""
    if not _tensor.is_tensor(probs) or (probs.device.type == "cpu" and not on_cpu):
        return None
    shape = tuple(probs.shape)
    if shape != (k,) and shape != (1, k):
        raise ValueError(f"`probs` must have shape ({k},) (one frame, K = {k} classes); got {shape}")
    if str(probs.dtype) not in ("torch.float32", "torch.float64"):
        raise TypeError(f"`probs` must be float32 or float64; got dtype {str(probs.dtype).replace('torch.', '')}")
    return probs.detach().reshape(1, k)


def _checked_statistic(fn, p2d) -> float:
    """A custom statistic of one frame: a finite number, or a ValueError naming it (the state is untouched)."""
    try:
        out = fn(p2d)
        out = np.asarray(as_array(out, "statistic") if _tensor.is_tensor(out) else out, dtype=np.float64).reshape(-1)
    except Exception as exc:  # user code: report it as a bad statistic, the stream stays consistent
        raise ValueError(f"the calibrator's statistic raised on this frame: {type(exc).__name__}: {exc}") from exc
    if out.shape != (1,) or not np.isfinite(out[0]):
        raise ValueError(f"the calibrator's statistic must give one finite value per frame; got {out!r}")
    return float(out[0])
