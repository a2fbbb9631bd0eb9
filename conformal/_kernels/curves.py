"""Numba kernels of the curve metrics (conformal.metrics): tie-aware counting over sorted statistics.

Private; the NumPy twins (direct pair counting, per-threshold counts) are in tests/conformal/abstention/_naive.py.
"""
from __future__ import annotations

import numpy as np
from numba import njit


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
