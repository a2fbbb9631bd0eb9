"""Numba kernels of the per-frame streaming wrapper (private). Serial, no randomness, no allocation of size
beyond O(K) scratch. Scores and statistics reuse the core's row helpers, so a frame's scores are bit-identical to
what `conformal` computes in batch (and to the calibration scores)."""
from __future__ import annotations

import numpy as np
from numba import njit

from conformal._kernels.scores import OK, _fixed, _row_check, _row_probs, _score
from conformal.abstention._kernels import _entropy_row, _margin_row, _max_prob_row

LAC_KIND = 0
STAT_MAX_PROB, STAT_MARGIN, STAT_ENTROPY, STAT_SET_SIZE, STAT_OTHER = 0, 1, 2, 3, 4


@njit(cache=True, nogil=True)
def step_row(src, logits, temp, kind, lam, k_reg, weight, allow_empty, q, q_cal, stat_kind, p2d, scores, order):
    """One frame. src: (1, K) input row; p2d: (1, K) scratch for its probabilities; scores: (K,) out; order: (K,)
    out, its first m entries the set's labels by decreasing probability. Returns (error code, set size, statistic,
    calibrated-threshold set size)."""
    code = _row_check(src, 0, logits)
    if code != OK:
        return code, 0, 0.0, 0
    k = src.shape[1]
    p = p2d[0]
    _row_probs(src, 0, logits, temp, p)
    srt = np.argsort(-p, kind="mergesort")
    pmax = p[srt[0]]
    if kind == LAC_KIND:
        for j in range(k):
            scores[j] = 1.0 - p[j]
    else:  # rank-based: tie groups share one score (same walk as conformal._kernels.scores.all_scores)
        m_above = np.int64(0)
        start = 0
        while start < k:
            v = p[srt[start]]
            stop = start
            m_group = np.int64(0)
            while stop < k and p[srt[stop]] == v:
                m_group += _fixed(v)
                stop += 1
            s = _score(kind, m_above, m_group, stop, pmax, 0.0, False, lam, k_reg, weight)
            for t in range(start, stop):
                scores[srt[t]] = s
            m_above += m_group
            start = stop
    m = 0
    m_cal = 0
    for t in range(k):
        j = srt[t]
        if scores[j] <= q:
            order[m] = j
            m += 1
        if scores[j] <= q_cal:
            m_cal += 1
    if m == 0 and not allow_empty:  # the top-1 tie group, as the calibrators do
        while m < k and p[srt[m]] == pmax:
            order[m] = srt[m]
            m += 1
    if stat_kind == STAT_MAX_PROB:
        stat = _max_prob_row(p2d, 0)
    elif stat_kind == STAT_MARGIN:
        stat = _margin_row(p2d, 0)
    elif stat_kind == STAT_ENTROPY:
        stat = _entropy_row(p2d, 0)
    else:
        stat = np.float64(m_cal)
    return OK, m, stat, m_cal


@njit(cache=True, nogil=True)
def monitor_update(ref_sorted, stat, u, jump, state):
    """Smoothed conformal p-value of `stat` against the sorted reference statistics (small p = more uncertain than
    the reference), then one Simple Jumper step (Vovk, Nouretdinov & Gammerman 2021). state = [w_-1, w_0, w_+1,
    log10 M]; the weights are kept normalised to sum 1 and M's size is carried in its log. Returns the p-value."""
    n = ref_sorted.shape[0]
    lo = np.searchsorted(ref_sorted, stat, side="left")
    hi = np.searchsorted(ref_sorted, stat, side="right")
    pv = ((n - hi) + u * (hi - lo + 1)) / (n + 1.0)
    total = 0.0
    for e in range(3):
        w = (1.0 - jump) * state[e] + jump / 3.0  # weights sum to 1 before the jump, so C = 1 here
        eps = e - 1.0
        w *= 1.0 + eps * (pv - 0.5)
        state[e] = w
        total += w
    for e in range(3):
        state[e] /= total
    state[3] += np.log10(total)
    return pv


@njit(cache=True, nogil=True)
def sorted_replace(arr, old, new):
    """In a sorted array, replace one occurrence of `old` by `new`, keeping it sorted (O(len) shifts)."""
    n = arr.shape[0]
    i = np.searchsorted(arr, old, side="left")
    if i >= n or arr[i] != old:
        return False
    while i + 1 < n and arr[i + 1] < new:
        arr[i] = arr[i + 1]
        i += 1
    while i > 0 and arr[i - 1] > new:
        arr[i] = arr[i - 1]
        i -= 1
    arr[i] = new
    return True
