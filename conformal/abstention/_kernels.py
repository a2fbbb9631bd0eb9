"""Numba kernels for abstention: label-free statistics per row, and tie-aware counting over sorted statistics.

Plain NumPy twins of every kernel live in tests/abstention/_naive.py; tests compare them exactly.
Conventions: rows are read as float64 (float32 inputs are widened exactly); no randomness; no fastmath.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True)
def _max_prob_row(p, i):
    m = np.float64(p[i, 0])
    for j in range(1, p.shape[1]):
        v = np.float64(p[i, j])
        if v > m:
            m = v
    return 1.0 - m


@njit(cache=True, nogil=True)
def _margin_row(p, i):
    a = -np.inf  # largest
    b = -np.inf  # second largest (a tie with the largest counts)
    for j in range(p.shape[1]):
        v = np.float64(p[i, j])
        if v > a:
            b = a
            a = v
        elif v > b:
            b = v
    return 1.0 - (a - b)


@njit(cache=True, nogil=True)
def _entropy_row(p, i):
    h = 0.0
    for j in range(p.shape[1]):
        v = np.float64(p[i, j])
        if v > 0.0:
            h -= v * np.log(v)
    return h / np.log(np.float64(p.shape[1]))


@njit(cache=True, nogil=True)
def _stat_serial(p, kind):
    n = p.shape[0]
    out = np.empty(n)
    for i in range(n):
        if kind == 0:
            out[i] = _max_prob_row(p, i)
        elif kind == 1:
            out[i] = _margin_row(p, i)
        else:
            out[i] = _entropy_row(p, i)
    return out


@njit(cache=True, nogil=True, parallel=True)
def _stat_parallel(p, kind):
    n = p.shape[0]
    out = np.empty(n)
    for i in prange(n):
        if kind == 0:
            out[i] = _max_prob_row(p, i)
        elif kind == 1:
            out[i] = _margin_row(p, i)
        else:
            out[i] = _entropy_row(p, i)
    return out


# Below this many entries a parallel region costs more than it saves (thread wake-up is ~10-100 us, and far
# more on a loaded machine); per-row results are identical either way.
PARALLEL_MIN_ENTRIES = 1 << 18
MAX_PROB, MARGIN, ENTROPY = 0, 1, 2


def statistic(p, kind):
    if p.shape[0] * p.shape[1] >= PARALLEL_MIN_ENTRIES:
        return _stat_parallel(p, kind)
    return _stat_serial(p, kind)


def max_prob(p):
    """1 - max_j p_j per row."""
    return statistic(p, MAX_PROB)


def margin(p):
    """1 - (p_(1) - p_(2)) per row: the two largest probabilities (equal when the top is tied)."""
    return statistic(p, MARGIN)


def entropy(p):
    """Shannon entropy / log K per row, with 0 log 0 = 0; in [0, 1]."""
    return statistic(p, ENTROPY)


@njit(cache=True, nogil=True)
def group_counts(s_sorted, flags_sorted):
    """Cumulative counts at the end of each run of equal values in a sorted array.

    Returns (cum_n, cum_flag, values): cum_n[0] = cum_flag[0] = 0 and, for the m runs of equal values,
    cum_n[r] = number of items in runs 1..r, cum_flag[r] = number of flagged items among them, values[r-1] the
    value of run r. Works for ascending or descending order; ties always stay in one run.
    """
    n = s_sorted.shape[0]
    cum_n = np.empty(n + 1, np.int64)
    cum_f = np.empty(n + 1, np.int64)
    values = np.empty(n, np.float64)
    cum_n[0] = 0
    cum_f[0] = 0
    m = 0
    f = 0
    for i in range(n):
        if flags_sorted[i]:
            f += 1
        if i == n - 1 or s_sorted[i + 1] != s_sorted[i]:
            m += 1
            cum_n[m] = i + 1
            cum_f[m] = f
            values[m - 1] = s_sorted[i]
    return cum_n[:m + 1], cum_f[:m + 1], values[:m]


@njit(cache=True, nogil=True)
def positive_rank_sum(s_sorted, flags_sorted):
    """Sum of the (1-based, tie-averaged) ranks of flagged items in an ascending array, and the flagged count.

    Average ranks are half-integers, so the sum is exact in float64 for any n below ~1e7.
    """
    n = s_sorted.shape[0]
    total = 0.0
    n_pos = 0
    i = 0
    while i < n:
        j = i
        while j + 1 < n and s_sorted[j + 1] == s_sorted[i]:
            j += 1
        c = 0
        for t in range(i, j + 1):
            if flags_sorted[t]:
                c += 1
        total += c * (0.5 * (i + j) + 1.0)
        n_pos += c
        i = j + 1
    return total, n_pos
