"""Numba kernel of the exact k-nearest-neighbour distance of query rows to a feature bank.

The bank is stored transposed, float32 (d, m), so the inner loop runs over bank rows with one independent
accumulator each: LLVM vectorises it without reassociating any sum (no fastmath), and every squared distance is
``sum_j (q_j - b_j)^2`` accumulated in float32 in the order j = 0 .. d-1, exactly as the NumPy twin
(tests/reference/knn.py) does. The bank is read in blocks of `_BLOCK` rows so the accumulators stay in L1.
The k smallest squared distances are kept by insertion into a sorted buffer (k is small), then square-rooted in
float64; "mean" averages the k distances in ascending order. Batches go four queries per pass over the bank (each
bank value loaded once for four queries: 1.7x faster on 10,000 x 64); queries are independent, so `prange` over
the groups gives results that do not depend on the thread count.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

_BLOCK = 512


@njit(cache=True, nogil=True, inline="always")
def _insert(top, k, v):
    """Insert v into the ascending top-k buffer (its last entry is dropped); equal values keep their order."""
    pos = k - 1
    while pos > 0 and top[pos - 1] > v:
        top[pos] = top[pos - 1]
        pos -= 1
    top[pos] = v


@njit(cache=True, nogil=True, inline="always")
def _finish(top, k, mean):
    if mean:
        s = 0.0
        for t in range(k):
            s += np.sqrt(np.float64(top[t]))
        return s / k
    return np.sqrt(np.float64(top[k - 1]))


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
        j = 0
        while j + 4 <= d:  # four dimensions per pass over the accumulators (same additions, same order)
            q0, q1, q2, q3 = q[j], q[j + 1], q[j + 2], q[j + 3]
            r0 = bank_t[j, c0:c0 + w]
            r1 = bank_t[j + 1, c0:c0 + w]
            r2 = bank_t[j + 2, c0:c0 + w]
            r3 = bank_t[j + 3, c0:c0 + w]
            for t in range(w):
                e0 = q0 - r0[t]
                e1 = q1 - r1[t]
                e2 = q2 - r2[t]
                e3 = q3 - r3[t]
                blk[t] = (((blk[t] + e0 * e0) + e1 * e1) + e2 * e2) + e3 * e3
            j += 4
        while j < d:
            qj = q[j]
            row = bank_t[j, c0:c0 + w]
            for t in range(w):
                diff = qj - row[t]
                blk[t] += diff * diff
            j += 1
        worst = top[k - 1]
        for t in range(w):
            v = blk[t]
            if v < worst:
                _insert(top, k, v)
                worst = top[k - 1]
    return _finish(top, k, mean)


@njit(cache=True, nogil=True)
def _knn_rows4(queries, i0, bank_t, k, mean, acc, top, out):
    """Queries i0 .. i0+3 in one pass over the bank: each bank value is loaded once for four queries (the
    per-query sums are the same operations in the same order as `_knn_row`)."""
    d, m = bank_t.shape
    for r in range(4):
        for t in range(k):
            top[r, t] = np.inf
    for c0 in range(0, m, _BLOCK):
        w = min(_BLOCK, m - c0)
        a0 = acc[0, :w]
        a1 = acc[1, :w]
        a2 = acc[2, :w]
        a3 = acc[3, :w]
        for t in range(w):
            a0[t] = np.float32(0.0)
            a1[t] = np.float32(0.0)
            a2[t] = np.float32(0.0)
            a3[t] = np.float32(0.0)
        for j in range(d):
            q0 = queries[i0, j]
            q1 = queries[i0 + 1, j]
            q2 = queries[i0 + 2, j]
            q3 = queries[i0 + 3, j]
            row = bank_t[j, c0:c0 + w]
            for t in range(w):
                b = row[t]
                e0 = q0 - b
                e1 = q1 - b
                e2 = q2 - b
                e3 = q3 - b
                a0[t] += e0 * e0
                a1[t] += e1 * e1
                a2[t] += e2 * e2
                a3[t] += e3 * e3
        for r in range(4):
            tr = top[r]
            a = acc[r, :w]
            worst = tr[k - 1]
            for t in range(w):
                v = a[t]
                if v < worst:
                    _insert(tr, k, v)
                    worst = tr[k - 1]
    for r in range(4):
        out[i0 + r] = _finish(top[r], k, mean)


@njit(cache=True, nogil=True, parallel=True)
def knn_distances(queries, bank_t, k, mean):
    """(n,) float64: the k-th smallest (or the mean of the k smallest) L2 distances of each float32 query row
    (n, d) to the columns of the float32 bank (d, m); 1 <= k <= m. Queries go in groups of four (one pass over
    the bank each), the last n mod 4 one by one."""
    n = queries.shape[0]
    out = np.empty(n, np.float64)
    n4 = n // 4
    for b in prange(n4):
        acc = np.empty((4, _BLOCK), np.float32)
        top = np.empty((4, k), np.float32)
        _knn_rows4(queries, 4 * b, bank_t, k, mean, acc, top, out)
    acc1 = np.empty(_BLOCK, np.float32)
    top1 = np.empty(k, np.float32)
    for i in range(4 * n4, n):
        out[i] = _knn_row(queries[i], bank_t, k, mean, acc1, top1)
    return out


@njit(cache=True, nogil=True)
def knn_distance_one(query, bank_t, k, mean, acc, top):
    """One query (d,) with caller-owned scratch (acc: float32 (_BLOCK,), top: float32 (k,)): the per-frame path."""
    return _knn_row(query, bank_t, k, mean, acc, top)


@njit(cache=True, nogil=True, inline="always")
def _normalize_row(x, i, out_row):
    d = x.shape[1]
    s = 0.0
    for j in range(d):
        v = np.float64(x[i, j])
        s += v * v
    norm = np.sqrt(s)
    if not norm > 0.0:
        norm = 1.0
    for j in range(d):
        out_row[j] = np.float32(np.float64(x[i, j]) / norm)


@njit(cache=True, nogil=True)
def normalize_rows(x, out):
    """out (n, d) float32: each row of x (float32 or float64) divided by its L2 norm, the norm computed in float64
    as sqrt(sum_j x_j^2) over j = 0 .. d-1 in order, the quotient in float64 and rounded to float32; a zero row
    stays zero."""
    for i in range(x.shape[0]):
        _normalize_row(x, i, out[i])


@njit(cache=True, nogil=True)
def knn_distance_one_raw(x, normalize, bank_t, k, mean, acc, top, qbuf):
    """The per-frame path in one call: row 0 of x (1, d), float32 or float64, normalised as `normalize_rows`
    (or only rounded to float32) into the scratch qbuf (float32 (d,)), then `knn_distance_one`."""
    if normalize:
        _normalize_row(x, 0, qbuf)
    else:
        for j in range(x.shape[1]):
            qbuf[j] = np.float32(x[0, j])
    return _knn_row(qbuf, bank_t, k, mean, acc, top)
