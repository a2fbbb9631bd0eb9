"""Plain NumPy/Python twins of the Numba kernels in conformal/_kernels/scores.py.

Written for clarity, one label at a time, following the definitions in the score modules' docstrings. They use
the same fixed-point mass and the same float expressions, so a kernel must match its twin exactly (==).
"""
from __future__ import annotations

import math

import numpy as np

SCALE = float(2 ** 60)


def softmax_row(z):
    z = np.asarray(z, dtype=np.float64)
    m = max(z)
    e = [math.exp(v - m) for v in z]
    s = 0.0
    for v in e:  # left-to-right, as the kernel sums
        s += v
    return np.array([v / s for v in e])


def fixed(p):
    return int(math.floor(p * SCALE + 0.5))


def fixed_row(p):
    """`fixed` of every value of the row, as exact Python ints (an object array, so the sums below are exact)."""
    return np.array([fixed(q) for q in np.asarray(p, dtype=np.float64)], dtype=object)


def score_of(name, p, y, u=None, lam=0.01, k_reg=5, weight=0.2, fx=None):
    """Nonconformity of label y for the probability row p (u=None: non-randomized); `fx` is `fixed_row(p)` when
    the caller has it (all_scores computes it once per row)."""
    p = np.asarray(p, dtype=np.float64)
    py = p[y]
    if name == "lac":
        return 1.0 - py
    fx = fixed_row(p) if fx is None else fx
    above = p > py
    group = p == py
    m_above = int(fx[above].sum())
    m_group = int(fx[group].sum())
    rank = int(above.sum()) + int(group.sum())
    pmax = float(p.max())
    if name in ("aps", "raps"):
        if u is None:
            s = np.float64(m_above + m_group) / SCALE
        else:
            s = (np.float64(m_above) + u * np.float64(m_group)) * (1.0 / SCALE)
        if name == "raps" and rank - k_reg > 0:
            s = s + lam * (rank - k_reg)
        return float(s)
    if name == "saps":
        v = 1.0 if u is None else u
        return v * pmax if rank == 1 else pmax + (rank - 2 + v) * weight
    if name == "topk":
        return float(rank) if u is None else rank - 1 + u
    raise ValueError(name)


def all_scores(name, probs, u=None, **params):
    n, k = probs.shape
    out = np.empty((n, k))
    for i in range(n):
        fx = fixed_row(probs[i]) if name != "lac" else None
        for y in range(k):
            out[i, y] = score_of(name, probs[i], y, None if u is None else u[i], fx=fx, **params)
    return out


def sets(name, probs, qhat, u=None, allow_empty=True, **params):
    return sets_from_scores(all_scores(name, probs, u, **params), probs, qhat, allow_empty)


def sets_from_scores(scores, probs, qhat, allow_empty=True):
    """`sets` from `all_scores` computed once (a test that tries many qhat on the same rows)."""
    s = scores <= qhat
    if not allow_empty:
        for i in range(s.shape[0]):
            if not s[i].any():
                s[i] = probs[i] == probs[i].max()
    return s


def conformal_quantile(scores, alpha):
    from fractions import Fraction
    n = len(scores)
    k = math.ceil((n + 1) * (1 - Fraction(repr(alpha))))
    return float("inf") if k > n else float(sorted(scores)[k - 1])


def row_errors(p, logits=False):
    """Error code per row as the row checks define it: 1 NaN/inf, then (probabilities only) 2 outside [0, 1],
    3 sum off 1 by more than 1e-3. The sum is taken in four lanes (j mod 4), then the tail, as the kernel does."""
    out = np.zeros(p.shape[0], dtype=np.int8)
    k = p.shape[1]
    k4 = k - k % 4
    for i, row in enumerate(np.asarray(p, dtype=np.float64)):
        if not np.isfinite(row).all():
            out[i] = 1
        elif logits:
            out[i] = 0
        elif (row < 0).any() or (row > 1).any():
            out[i] = 2
        else:
            lanes = [0.0, 0.0, 0.0, 0.0]
            for j in range(k4):
                lanes[j % 4] += row[j]
            s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
            for j in range(k4, k):
                s += row[j]
            out[i] = 3 if abs(s - 1.0) > 1e-3 else 0
    return out
