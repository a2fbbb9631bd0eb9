"""Numba kernels for abstention: label-free statistics per row, and tie-aware counting over sorted statistics.

Plain NumPy twins of every kernel live in tests/abstention/_naive.py; tests compare them exactly.
Conventions: rows are read as float64 (float32 inputs are widened exactly); no randomness; no fastmath.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True, parallel=True)
def max_prob(p):
    """1 - max_j p_j per row."""
    n, k = p.shape
    out = np.empty(n)
    for i in prange(n):
        m = np.float64(p[i, 0])
        for j in range(1, k):
            v = np.float64(p[i, j])
            if v > m:
                m = v
        out[i] = 1.0 - m
    return out


@njit(cache=True, nogil=True, parallel=True)
def margin(p):
    """1 - (p_(1) - p_(2)) per row: the two largest probabilities (equal when the top is tied)."""
    n, k = p.shape
    out = np.empty(n)
    for i in prange(n):
        a = -np.inf  # largest
        b = -np.inf  # second largest (counting ties)
        for j in range(k):
            v = np.float64(p[i, j])
            if v > a:
                b = a
                a = v
            elif v > b:
                b = v
        out[i] = 1.0 - (a - b)
    return out


@njit(cache=True, nogil=True, parallel=True)
def entropy(p):
    """Shannon entropy / log K per row, with 0 log 0 = 0; in [0, 1]."""
    n, k = p.shape
    out = np.empty(n)
    scale = 1.0 / np.log(np.float64(k))
    for i in prange(n):
        h = 0.0
        for j in range(k):
            v = np.float64(p[i, j])
            if v > 0.0:
                h -= v * np.log(v)
        out[i] = h * scale
    return out


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
