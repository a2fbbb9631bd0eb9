"""The base class of the fitted statistics and their input check (private: import from conformal.abstention)."""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from conformal._base import BaseEstimator
from conformal._validation import as_array

__all__ = ["FittedStatistic", "check_matrix", "SIDE_INPUTS"]

SIDE_INPUTS = ("features", "logits", "inputs")


def check_matrix(x, name: str, *, n_columns: int | None = None, what: str = "features") -> np.ndarray:
    """A finite float32/float64 (n, d) array, returned unchanged."""
    arr = as_array(x, name)
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"`{name}` must be a float32 or float64 array of {what}; got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"`{name}` must be a 2-D (n_samples, n_{what}) array with at least one row; got shape "
                         f"{arr.shape}" + (" (use x[None, :] for a single row)" if arr.ndim == 1 else ""))
    if n_columns is not None and arr.shape[1] != n_columns:
        raise ValueError(f"`{name}` has {arr.shape[1]} columns but the statistic was fitted with {n_columns}")
    if not np.isfinite(arr).all():
        raise ValueError(f"`{name}` holds NaN or inf")
    return arr


class FittedStatistic(BaseEstimator):
    """Base class of the fitted label-free statistics.

    Subclasses set `name` (the registry name), `requires` (the side input they read: "features", "logits" or
    "inputs") and `fit_uses_labels`, and implement ``fit(X, labels=None)`` and ``statistic(X)``.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[str] = ""
    fit_uses_labels: ClassVar[bool] = False

    def fit(self, X, labels=None):  # pragma: no cover - interface
        raise NotImplementedError

    def statistic(self, X) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError
