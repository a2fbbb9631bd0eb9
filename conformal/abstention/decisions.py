"""Decisions: what the dual-threshold predictor outputs for a batch of inputs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from conformal import _tensor
from conformal._base import Record
from conformal._validation import as_array
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

    For a torch tensor input every array is a torch tensor on the input's device (bool, int64, float64; not
    read-only: tensors have no such flag); `to_host()` gives the NumPy decisions, `to_dicts`/`to_dict` copy once.
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
        if _tensor.is_tensor(sets):
            return self._check_tensors()
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

    def _check_tensors(self) -> None:
        """Decisions of a tensor input: every array a torch tensor on the sets' device, with the dtypes of the
        NumPy fields (bool, int64, float64) and the same shapes."""
        dev = self.sets.device
        n = self.sets.shape[0] if self.sets.dim() == 2 else None
        if n is None:
            raise ValueError(f"`sets` must be 2-D (n, K); got shape {tuple(self.sets.shape)}")
        m = None if self.reason_names is None else len(self.reason_names)
        fields = [("sets", self.sets, "torch.bool", None), ("abstain", self.abstain, "torch.bool", (n,)),
                  ("prediction", self.prediction, "torch.int64", (n,)),
                  ("statistic", self.statistic, "torch.float64", (n,))]
        if (self.reasons is None) != (self.statistics is None) or (self.reasons is None) != (m is None):
            raise ValueError("`reasons`, `reason_names` and `statistics` must be given together (or all None)")
        if m is not None:
            fields += [("reasons", self.reasons, "torch.bool", (n, m)),
                       ("statistics", self.statistics, "torch.float64", (n, m))]
        for name, arr, dtype, shape in fields:
            if not _tensor.is_tensor(arr) or str(arr.dtype) != dtype or arr.device != dev:
                raise TypeError(f"`{name}` must be a {dtype} tensor on {dev} (as `sets`); got "
                                f"{type(arr).__name__}{' of dtype ' + str(arr.dtype) if hasattr(arr, 'dtype') else ''}")
            if shape is not None and tuple(arr.shape) != shape:
                raise ValueError(f"`{name}` must have shape {shape}; got {tuple(arr.shape)}")

    def to_host(self) -> "Decisions":
        """These decisions with NumPy arrays (a tensor input's decisions are copied from their device once)."""
        if not _tensor.is_tensor(self.sets):
            return self
        conv = {f: (None if getattr(self, f) is None else as_array(getattr(self, f), f))
                for f in ("sets", "abstain", "prediction", "statistic", "reasons", "statistics")}
        return Decisions(**conv, reason_names=self.reason_names)

    def to_dict(self) -> dict:
        return super(Decisions, self.to_host()).to_dict() if _tensor.is_tensor(self.sets) else super().to_dict()

    def __len__(self) -> int:
        return int(self.sets.shape[0])

    @property
    def abstention_rate(self) -> float:
        if not len(self):
            return float("nan")
        return float(self.abstain.double().mean()) if _tensor.is_tensor(self.abstain) else float(self.abstain.mean())

    def to_dicts(self, probs=None, frame_ids=None) -> list[dict]:
        """One plain dict per input (JSON-ready, plain Python values only), in the schema of
        `adapters.StreamingConformal.step`: "frame_id" (with `frame_ids` only), "set" (labels; by
        decreasing probability, ties by label, when `probs` is given, as `step` lists them; else ascending),
        "prediction", "abstain", "statistic" and, with `probs` (n, K), "set_probs" and "confidence"; with several
        statistics also "reasons" (names of the statistics that triggered abstention) and "statistics" (name ->
        value). `step` adds its online keys (alpha, qhat, tau, monitor) to the same schema."""
        if _tensor.is_tensor(self.sets):  # plain Python values: the host copy is the point
            return self.to_host().to_dicts(None if probs is None else as_array(probs, "probs"), frame_ids)
        n = len(self)
        ids = [None] * n if frame_ids is None else list(frame_ids)
        if len(ids) != n:
            raise ValueError(f"`frame_ids` must have {n} entries (one per input); got {len(ids)}")
        ids = [i.item() if isinstance(i, np.generic) else i for i in ids]
        if probs is not None:
            p = np.asarray(probs, dtype=np.float64)
            if p.shape != self.sets.shape:
                raise ValueError(f"`probs` must have shape {self.sets.shape} (as the sets); got {p.shape}")
            order = np.argsort(-p, axis=1, kind="mergesort")
        out = []
        for i in range(n):
            d = {} if frame_ids is None else {"frame_id": ids[i]}
            if probs is None:
                d["set"] = np.flatnonzero(self.sets[i]).tolist()
            else:
                members = order[i][self.sets[i][order[i]]]
                d["set"] = members.tolist()
                d["set_probs"] = p[i, members].tolist()
            d["prediction"] = int(self.prediction[i])
            if probs is not None:
                d["confidence"] = float(p[i].max())
            d["abstain"] = bool(self.abstain[i])
            d["statistic"] = float(self.statistic[i])
            out.append(d)
        if self.reasons is not None:
            names = self.reason_names
            for row, why, vals in zip(out, self.reasons.tolist(), self.statistics.tolist()):
                row["reasons"] = [nm for nm, hit in zip(names, why) if hit]
                row["statistics"] = dict(zip(names, vals))
        return out
