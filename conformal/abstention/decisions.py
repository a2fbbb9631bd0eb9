"""Decisions: what the dual-threshold predictor outputs for a batch of inputs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from conformal._base import Record
from conformal.io import register_kind

__all__ = ["Decisions"]


@register_kind
@dataclass(frozen=True)
class Decisions(Record):
    """Per-input decisions of `DualThresholdConformal.predict` (whose arrays it returns read-only).

    Attributes
    ----------
    sets : bool (n, K)      Conformal prediction sets (computed for every input, abstained or not).
    abstain : bool (n,)     True where the statistic exceeds tau: hand the input to a fallback.
    prediction : int64 (n,) Top-1 label (argmax of the probabilities; the first on ties), also where abstaining.
    statistic : float64 (n,) The label-free uncertainty statistic that was compared with tau (with several
                             statistics: the first one; all of them are in `statistics`).
    reasons : bool (n, m) or None    With several statistics (``statistic=(...)``): which statistic(s) exceeded
                             their threshold, one column per name in `reason_names`; None for one statistic.
    reason_names : tuple of str or None
    statistics : float64 (n, m) or None   Every statistic's value, columns as `reason_names`.
    """

    sets: np.ndarray
    abstain: np.ndarray
    prediction: np.ndarray
    statistic: np.ndarray
    reasons: np.ndarray | None = None
    reason_names: tuple | None = None
    statistics: np.ndarray | None = None

    @classmethod
    def from_dict(cls, d: dict, where: str = ""):
        if isinstance(d, dict) and "reasons" not in d:  # saved before the union rule existed
            d = {**d, "reasons": None, "reason_names": None, "statistics": None}
        return super().from_dict(d, where)

    def __post_init__(self):
        sets, ab, pred, stat = self.sets, self.abstain, self.prediction, self.statistic
        for name, arr, kind in (("sets", sets, "b"), ("abstain", ab, "b"), ("prediction", pred, "i"),
                                ("statistic", stat, "f")):
            if not isinstance(arr, np.ndarray) or arr.dtype.kind != kind:
                raise TypeError(f"`{name}` must be a numpy array of kind {kind!r}; got {type(arr).__name__}"
                                f"{'' if not isinstance(arr, np.ndarray) else ' of dtype ' + str(arr.dtype)}")
        if sets.ndim != 2:
            raise ValueError(f"`sets` must be 2-D (n, K); got shape {sets.shape}")
        n = sets.shape[0]
        for name, arr in (("abstain", ab), ("prediction", pred), ("statistic", stat)):
            if arr.shape != (n,):
                raise ValueError(f"`{name}` must have shape ({n},); got {arr.shape}")
        if self.reasons is None and self.reason_names is None and self.statistics is None:
            return  # one statistic (the per-frame common case): nothing more to check
        if self.reasons is None or self.reason_names is None or self.statistics is None:
            raise ValueError("`reasons`, `reason_names` and `statistics` must be given together (or all None)")
        if self.reasons is not None:
            names = self.reason_names
            if not isinstance(names, tuple) or not names or not all(isinstance(x, str) for x in names):
                raise TypeError(f"`reason_names` must be a non-empty tuple of str; got {names!r}")
            for name, arr, kind in (("reasons", self.reasons, "b"), ("statistics", self.statistics, "f")):
                if not isinstance(arr, np.ndarray) or arr.dtype.kind != kind:
                    raise TypeError(f"`{name}` must be a numpy array of kind {kind!r}")
                if arr.shape != (n, len(names)):
                    raise ValueError(f"`{name}` must have shape ({n}, {len(names)}); got {arr.shape}")

    def __len__(self) -> int:
        return int(self.sets.shape[0])

    @property
    def abstention_rate(self) -> float:
        return float(self.abstain.mean()) if len(self) else float("nan")

    def to_dicts(self) -> list[dict]:
        """One plain dict per input (JSON-ready): prediction, set (list of labels), abstain, statistic; with
        several statistics also ``reasons`` (names of the statistics that triggered abstention) and
        ``statistics`` (name -> value)."""
        labels = [np.flatnonzero(row).tolist() for row in self.sets]
        rows = [{"prediction": int(p), "set": s, "abstain": bool(a), "statistic": float(t)}
                for p, s, a, t in zip(self.prediction.tolist(), labels, self.abstain.tolist(),
                                      self.statistic.tolist())]
        if self.reasons is not None:
            names = self.reason_names
            for row, why, vals in zip(rows, self.reasons.tolist(), self.statistics.tolist()):
                row["reasons"] = [nm for nm, hit in zip(names, why) if hit]
                row["statistics"] = dict(zip(names, vals))
        return rows
