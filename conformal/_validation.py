"""Every input check of the public API, in one place.

Messages follow one pattern: "`name` must be ...; got ...", plus the fix where there is one.
Nothing here copies or coerces data silently: arrays come back as views of what the caller passed.
"""
from __future__ import annotations

import numbers

import numpy as np

from conformal._kernels import scores as _k

# Row sums of probability inputs may deviate from 1 by this much (float32 softmax outputs are often off by ~1e-7).
ROW_SUM_TOL = 1e-3


class NotFittedError(ValueError, AttributeError):
    """Raised when a calibrator is used before `fit`."""


def check_is_fitted(obj, attribute: str = "qhat_") -> None:
    if not hasattr(obj, attribute):
        raise NotFittedError(f"this {type(obj).__name__} is not fitted yet; call fit first")


def as_array(x, name: str) -> np.ndarray:
    """A NumPy view of `x`: ndarrays pass through, CPU torch tensors are shared without copying.

    torch is never imported here; a tensor is recognised by its type's module, so the core works without torch.
    """
    if isinstance(x, np.ndarray):
        return x
    module = type(x).__module__ or ""
    if module.startswith("torch"):
        device = getattr(getattr(x, "device", None), "type", "cpu")
        if device != "cpu":
            raise ValueError(
                f"`{name}` is a torch tensor on device {device!r}; only CPU tensors are supported for now "
                f"(move it with `.cpu()`)"
            )
        return x.detach().numpy()  # shares memory with the tensor
    if isinstance(x, (list, tuple)):
        raise TypeError(f"`{name}` must be a numpy array or a CPU torch tensor; got {type(x).__name__} "
                        f"(wrap it with numpy.asarray)")
    raise TypeError(f"`{name}` must be a numpy array or a CPU torch tensor; got {type(x).__name__}")


def check_scores_matrix(x, name: str = "probs", *, inputs: str = "probs", n_classes: int | None = None,
                        values: bool = True) -> np.ndarray:
    """Validate an (n, K) matrix of probabilities (or logits) and return it unchanged (float32/float64).

    values=False checks only type and shape; the score kernels check values row by row as they read them
    (`raise_row_error` turns their codes into the same messages).
    """
    arr = as_array(x, name)
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"`{name}` must be a float32 or float64 array; got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D (n_samples, n_classes); got shape {arr.shape}"
                         + (" (use probs[None, :] for a single row)" if arr.ndim == 1 else ""))
    n, k = arr.shape
    if n < 1:
        raise ValueError(f"`{name}` must have at least 1 row; got shape {arr.shape}")
    if k < 2:
        raise ValueError(f"`{name}` must have at least 2 classes (columns); got {k}")
    if n_classes is not None and k != n_classes:
        raise ValueError(f"`{name}` has {k} classes but the calibrator was fitted with {n_classes}")
    if not values:
        return arr
    # one compiled pass over the rows (finite, in [0, 1], sums), no n x K temporaries
    errs = np.empty(n, dtype=np.int8)
    (_k.check_rows_serial if arr.size <= 1 << 15 else _k.check_rows)(arr, inputs != "probs", errs)
    raise_row_error(errs, arr, name)
    return arr


def raise_row_error(errs: np.ndarray, x: np.ndarray, name: str = "probs") -> None:
    """Raise the ValueError for the first row a kernel flagged (codes from conformal._kernels.scores)."""
    bad = np.flatnonzero(errs)
    if bad.size == 0:
        return
    row = int(bad[0])
    code = int(errs[row])
    if code == 1:
        raise ValueError(f"`{name}` must be finite; row {row} holds NaN or inf")
    if code == 2:
        raise ValueError(f"`{name}` must hold probabilities in [0, 1]; row {row} does not "
                         f"(pass inputs='logits' for raw model outputs)")
    total = float(np.sum(x[row], dtype=np.float64))
    raise ValueError(f"`{name}` rows must sum to 1 within {ROW_SUM_TOL:g}; row {row} sums to {total:.6g} "
                     f"(pass inputs='logits' for raw model outputs)")


def check_labels(y, n_samples: int, n_classes: int, name: str = "labels") -> np.ndarray:
    """Integer labels in [0, n_classes), one per row; returned as an int64 view or (for other int widths) copy."""
    arr = as_array(y, name)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D; got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"`{name}` must have one entry per row of probs ({n_samples}); got {arr.shape[0]}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"`{name}` must be an integer array; got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= n_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"`{name}` must lie in [0, {n_classes}); index {i} holds {arr[i]}")
    return arr.astype(np.int64, copy=False)


def check_alpha(alpha, name: str = "alpha") -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"`{name}` must be a float in (0, 1); got {type(alpha).__name__}")
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"`{name}` must be in (0, 1) (the miscoverage level); got {alpha}")
    return alpha


def check_sets(sets, name: str = "sets") -> np.ndarray:
    arr = as_array(sets, name)
    if arr.dtype != np.bool_:
        raise TypeError(f"`{name}` must be a boolean (n, K) array; got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"`{name}` must be a non-empty 2-D (n, K) array; got shape {arr.shape}")
    return arr


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int >= {minimum}; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}")
    return int(value)


def check_nonneg_float(value, name: str, *, strictly_positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a float; got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (strictly_positive and value == 0):
        raise ValueError(f"`{name}` must be a finite float {'> 0' if strictly_positive else '>= 0'}; got {value}")
    return value


def check_statistic(x, name: str = "statistic", n: int | None = None) -> np.ndarray:
    """A finite 1-D real array, returned as float64 (a copy only when the dtype differs)."""
    arr = as_array(x, name)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.float16:
        raise TypeError(f"`{name}` must be a real (float or int) array; got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] < 1:
        raise ValueError(f"`{name}` must be a non-empty 1-D array; got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"`{name}` must have {n} entries (one per sample); got {arr.shape[0]}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"`{name}` must be finite; index {int(np.argmin(np.isfinite(arr)))} is NaN or inf")
    return arr.astype(np.float64, copy=False)


def check_flags(x, name: str, n: int) -> np.ndarray:
    arr = as_array(x, name)
    if arr.dtype != np.bool_:
        raise TypeError(f"`{name}` must be a boolean array (True = event); got dtype {arr.dtype} "
                        f"(use `{name}.astype(bool)` if it holds 0/1)")
    if arr.shape != (n,):
        raise ValueError(f"`{name}` must have shape ({n},), one flag per sample; got {arr.shape}")
    return arr
