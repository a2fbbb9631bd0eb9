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


def score_of(name, p, y, u=None, lam=0.01, k_reg=5, weight=0.2):
    """Nonconformity of label y for the probability row p (u=None: non-randomized)."""
    p = np.asarray(p, dtype=np.float64)
    py = p[y]
    if name == "lac":
        return 1.0 - py
    above = [q for q in p if q > py]
    group = [q for q in p if q == py]
    m_above = sum(fixed(q) for q in above)
    m_group = sum(fixed(q) for q in group)
    rank = len(above) + len(group)
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
    return np.array([[score_of(name, probs[i], y, None if u is None else u[i], **params) for y in range(k)]
                     for i in range(n)])


def sets(name, probs, qhat, u=None, allow_empty=True, **params):
    s = all_scores(name, probs, u, **params) <= qhat
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
