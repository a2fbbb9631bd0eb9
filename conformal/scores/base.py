"""The score interface and the name registry.

A score says how non-conforming label y is for input x (larger = stranger). It is stateless: any score plugs
into any calibrator, which owns the threshold. Scores here are *rank-monotone*: within a row, a label's score
never decreases as its probability decreases, so every prediction set {y : s(x, y) <= qhat} is a prefix of the
labels sorted by probability (ties kept together). The set kernels rely on this.
"""
from __future__ import annotations

import numpy as np

from conformal._base import BaseEstimator
from conformal._validation import (
    check_inputs,
    check_labels,
    check_nonneg_float,
    check_qhat,
    check_scores_matrix,
    check_u,
    raise_row_error,
)
from conformal.io import register_kind

_REGISTRY: dict[str, type] = {}

# Rows per parallel work item (large enough to amortise scratch allocation), and the input size (n * K) up to
# which kernels run serially: below it, waking the thread pool costs more than the work (one frame = 1 row).
_CHUNK = 256
_SERIAL_MAX = 1 << 15
# The unsigned view of a float dtype and the bit pattern of 1.0 in it, for the kernels' range checks.
UINT_VIEW = {np.dtype(np.float32): (np.uint32, np.ones(1, np.float32).view(np.uint32)[0]),
             np.dtype(np.float64): (np.uint64, np.ones(1, np.float64).view(np.uint64)[0])}


def run_kernel(serial, parallel, n, k, *args, out, errs):
    """Run `serial(*args, 0, n, out, errs)` for small inputs, else `parallel(*args, _CHUNK, out, errs)`."""
    if n * k <= _SERIAL_MAX or n < 2 * _CHUNK:
        serial(*args, 0, n, out, errs)
    else:
        parallel(*args, _CHUNK, out, errs)
    return out


def register(cls):
    """Class decorator: make a score available by its `name` (get_score, calibrators' `score=`) and loadable."""
    _REGISTRY[cls.name] = cls
    return register_kind(cls)


def score_names() -> list[str]:
    """Names accepted by `get_score` and by the calibrators' `score=` argument."""
    return sorted(_REGISTRY)


def get_score(score, **params):
    """A score object from a name ("lac", "aps", "raps", "saps", "topk") and its parameters, or `score` itself."""
    if isinstance(score, Score):
        if params:
            raise TypeError(f"score parameters {sorted(params)} were given with a score object; set them on the "
                            f"object instead ({type(score).__name__}(...))")
        return score
    if not isinstance(score, str):
        raise TypeError(f"`score` must be a score name or a Score object; got {type(score).__name__}")
    key = score.lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown `score` {score!r}; valid names are: {', '.join(score_names())}")
    return _REGISTRY[key](**params)


class Score(BaseEstimator):
    """Base class. Subclasses set `name` and `kind`, declare their parameters (keyword-only, with
    `_parameter_constraints`) and implement `_label`, `_all` and `_sets` on validated arrays.

    A score is stateless and has no `fit`, so unlike the calibrators it validates its parameters when it is
    constructed (and again in `set_params`): ``RAPS(lam=-1)`` raises at once. Parameters are stored unchanged
    (so `sklearn.base.clone` works); the kernels read the converted `kernel_params()`.
    """

    name = ""
    kind = 0  # kernel score kind (conformal._kernels.scores): 0 LAC, 1 APS, 2 RAPS, 3 SAPS, 4 TopK

    def __init__(self):
        self._setup()

    def _setup(self) -> None:
        self.validate_params()
        self._kernel_params = self._compute_kernel_params()

    def _compute_kernel_params(self) -> tuple:
        return 0.0, 0, 0.0

    def kernel_params(self) -> tuple:
        """(kind, lam, k_reg, weight): the score as the score kernels take it (lam, weight float; k_reg int)."""
        return (int(self.kind), *self._kernel_params)

    def set_params(self, **params):
        super().set_params(**params)
        self._setup()
        return self

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.get_params(deep=False) == other.get_params(deep=False)

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_params(deep=False).items()))))

    # Every public method takes `inputs` ("probs" or "logits") and `temperature` (logits are divided by it
    # before the softmax). Values are validated inside the kernels as rows are read (see _kernels/scores.py).
    def label_scores(self, probs, labels, u=None, inputs: str = "probs", temperature: float = 1.0) -> np.ndarray:
        """Nonconformity of the given labels, float64 (n,). `u`: None (non-randomized) or (n,) uniforms."""
        p, logits, temp, errs = _prepare(probs, inputs, temperature)
        y = check_labels(labels, p.shape[0], p.shape[1])
        out = self._label(p, y, check_u(u, p.shape[0]), logits, temp, errs)
        raise_row_error(errs, p)
        return out

    def all_scores(self, probs, u=None, inputs: str = "probs", temperature: float = 1.0) -> np.ndarray:
        """Nonconformity of every label, float64 (n, K)."""
        p, logits, temp, errs = _prepare(probs, inputs, temperature)
        out = self._all(p, check_u(u, p.shape[0]), logits, temp, errs)
        raise_row_error(errs, p)
        return out

    def sets(self, probs, qhat, u=None, inputs: str = "probs", allow_empty: bool = True,
             temperature: float = 1.0, n_classes: int | None = None) -> np.ndarray:
        """Boolean (n, K) prediction sets {y : s(x, y) <= qhat}; with allow_empty=False an empty set becomes
        the top-1 label (all labels tied at the maximum)."""
        p, logits, temp, errs = _prepare(probs, inputs, temperature, n_classes)
        out = self._sets(p, check_qhat(qhat), check_u(u, p.shape[0]), logits, temp, bool(allow_empty), errs)
        raise_row_error(errs, p)
        return out


def _prepare(probs, inputs, temperature, n_classes=None):
    logits = check_inputs(inputs)
    p = check_scores_matrix(probs, "probs", inputs=inputs, n_classes=n_classes, values=False)
    temp = 1.0 if temperature == 1.0 else check_nonneg_float(temperature, "temperature", strictly_positive=True)
    return p, logits, temp, np.empty(p.shape[0], dtype=np.int8)
