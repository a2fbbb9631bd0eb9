"""The finite-sample conformal rank and quantile: the one home of ceil((n + 1)(1 - alpha)).

Every threshold of the library (split and class-conditional sets, box intervals, the abstention rules, the
online thresholds of `conformal.online`) takes its rank from `conformal_rank`, so they agree to the integer.

Semantics of alpha: a float alpha is read as the decimal its ``repr`` shows (0.1 is exactly 1/10), and the rank
is the exact ceiling of (n + 1)(1 - alpha) in rational arithmetic. So n = 9, alpha = 0.1 gives rank 9, not the 10
that float arithmetic gives (10 * 0.9 = 9.000000000000002). The same rule holds for an arbitrary float such as
the running alpha_t of adaptive conformal inference: 0.09099999999999998 is that decimal, slightly below 0.091.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from conformal._validation import as_array, check_alpha

__all__ = ["conformal_rank", "conformal_quantile", "sorted_quantile", "min_calibration_size"]

# Relative distance to the nearest integer below which the float product (n + 1)(1 - alpha) cannot be trusted
# to round the right way. Its error is below 1e-15 (n + 1) max(1, |alpha|) (repr is within half an ulp of
# alpha, then two roundings), so this margin is 1,000 times the error; only values this close take the exact
# rational path.
_EXACT_MARGIN = 1e-12


def conformal_rank(n: int, alpha: float) -> int:
    """ceil((n + 1)(1 - alpha)), exact, for any integer n >= 0 and any finite float alpha.

    alpha is read as the decimal its float repr shows (see the module docstring). Values of alpha outside (0, 1)
    are allowed (the online thresholds need them): alpha >= 1 gives a rank <= 0, alpha <= 0 a rank > n.
    The float product decides unless it lies within a relative 1e-12 of an integer; only then is the rank
    recomputed in rational arithmetic, so the per-call cost stays that of a few float operations.

    Examples
    --------
    >>> conformal_rank(9, 0.1), conformal_rank(8, 0.1), conformal_rank(99, 0.05)
    (9, 9, 95)
    """
    if type(alpha) is not float:
        alpha = float(alpha)
    v = (n + 1) * (1.0 - alpha)
    k = math.ceil(v)
    margin = _EXACT_MARGIN * (n + 1) * (1.0 if -1.0 <= alpha <= 1.0 else abs(alpha))
    if k - v > margin and v - (k - 1) > margin:  # v in (k - 1, k], not within the margin of either end
        return k
    value = (n + 1) * (1 - Fraction(repr(alpha)))
    return -((-value.numerator) // value.denominator)


def min_calibration_size(alpha: float) -> int:
    """Smallest n for which conformal_rank(n, alpha) <= n (a finite threshold exists)."""
    n = 1
    while conformal_rank(n, alpha) > n:
        n += 1
    return n


def sorted_quantile(sorted_scores: np.ndarray, alpha: float) -> float:
    """The conformal_rank(n, alpha)-th smallest of an ascending float64 array; +inf past n, -inf at rank <= 0.

    No validation (the caller owns a sorted array): this is the per-feedback path of the online thresholds,
    where alpha is any float (alpha_t of adaptive conformal inference can leave (0, 1)).
    """
    n = sorted_scores.shape[0]
    k = conformal_rank(n, alpha)
    if k > n:
        return math.inf
    if k <= 0:
        return -math.inf
    return float(sorted_scores[k - 1])


def conformal_quantile(scores, alpha: float) -> float:
    """The finite-sample conformal quantile: the k-th smallest of `scores`, k = ceil((n + 1)(1 - alpha)).

    Returns +inf when k > n (the calibration set is too small for this alpha: n < 1/alpha - 1).
    k is computed exactly (alpha read as the decimal it prints as), never as a float product.

    Examples
    --------
    >>> conformal_quantile(np.arange(1.0, 10.0), 0.1)   # n = 9: k = ceil(10 * 0.9) = 9
    9.0
    >>> conformal_quantile(np.arange(1.0, 9.0), 0.1)    # n = 8: k = 9 > 8
    inf
    """
    alpha = check_alpha(alpha)
    s = as_array(scores, "scores")
    if s.ndim != 1 or s.shape[0] < 1:
        raise ValueError(f"`scores` must be a non-empty 1-D array; got shape {s.shape}")
    if s.dtype.kind != "f":
        raise TypeError(f"`scores` must be a float array; got dtype {s.dtype}")
    if np.isnan(s).any():
        raise ValueError("`scores` must not contain NaN")
    n = s.shape[0]
    k = conformal_rank(n, alpha)
    if k > n:
        return float("inf")
    return float(np.partition(s, k - 1)[k - 1])
