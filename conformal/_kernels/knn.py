"""Numba kernel of the exact k-nearest-neighbour distance of query rows to a feature bank.

The bank is stored transposed, float32 (d, m), so the inner loop runs over bank rows with one independent
accumulator each: LLVM vectorises it without reassociating any sum (no fastmath), and every squared distance is
``sum_j (q_j - b_j)^2`` accumulated in float32 in the order j = 0 .. d-1, exactly as the NumPy twin
(tests/reference/knn.py) does. The bank is read in blocks of `_BLOCK` rows so the accumulators stay in L1.
The k smallest squared distances are kept by insertion into a sorted buffer (k is small), then square-rooted in
float64; "mean" averages the k distances in ascending order. Queries are independent: `prange` over them gives
results that do not depend on the thread count.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

_BLOCK = 512


@njit(cache=True, nogil=True)
def _knn_row(q, bank_t, k, mean, acc, top):
    d, m = bank_t.shape
    for t in range(k):
        top[t] = np.inf
    for c0 in range(0, m, _BLOCK):
        w = min(_BLOCK, m - c0)
        blk = acc[:w]  # contiguous views: LLVM then vectorises the loop over bank rows
        for t in range(w):
            blk[t] = np.float32(0.0)
        for j in range(d):
            qj = q[j]
            row = bank_t[j, c0:c0 + w]
            for t in range(w):
                diff = qj - row[t]
                blk[t] += diff * diff
        worst = top[k - 1]
        for t in range(w):
            v = blk[t]
            if v < worst:  # insert into the sorted top-k (ties keep the earlier bank row first)
                pos = k - 1
                while pos > 0 and top[pos - 1] > v:
                    top[pos] = top[pos - 1]
                    pos -= 1
                top[pos] = v
                worst = top[k - 1]
    if mean:
        s = 0.0
        for t in range(k):
            s += np.sqrt(np.float64(top[t]))
        return s / k
    return np.sqrt(np.float64(top[k - 1]))


@njit(cache=True, nogil=True, parallel=True)
def knn_distances(queries, bank_t, k, mean):
    """(n,) float64: the k-th smallest (or the mean of the k smallest) L2 distances of each float32 query row
    (n, d) to the columns of the float32 bank (d, m); 1 <= k <= m."""
    n = queries.shape[0]
    out = np.empty(n, np.float64)
    for i in prange(n):
        acc = np.empty(_BLOCK, np.float32)
        top = np.empty(k, np.float32)
        out[i] = _knn_row(queries[i], bank_t, k, mean, acc, top)
    return out


@njit(cache=True, nogil=True)
def knn_distance_one(query, bank_t, k, mean, acc, top):
    """One query (d,) with caller-owned scratch (acc: float32 (_BLOCK,), top: float32 (k,)): the per-frame path."""
    return _knn_row(query, bank_t, k, mean, acc, top)
