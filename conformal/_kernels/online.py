"""Numba kernels of conformal.online (private): one frame's scores, set and statistic; the shift monitor's
p-value and martingale step; the sorted window of adaptive conformal inference.

Serial, no randomness (uniforms come in as arguments), no allocation beyond O(K) per frame. Scores reuse the
core's row helpers (`_row_check`, `_row_probs`, `tie_group_scores`, `lac_row_scores`) and statistics the
abstention row kernels, so a frame's numbers are bit-identical to what the batch calibrators compute.
NumPy twins: tests/reference/online.py.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from conformal._kernels.scores import OK, _row_check, _row_probs, lac_row_scores, tie_group_scores
from conformal._kernels.statistics import _entropy_row, _margin_row, _max_prob_row

LAC_KIND = 0
STAT_MAX_PROB, STAT_MARGIN, STAT_ENTROPY, STAT_SET_SIZE, STAT_NONE = 0, 1, 2, 3, 4


@njit(cache=True, nogil=True)
def frame_scores(src, logits, temp, kind, lam, k_reg, weight, p2d, scores, row):
    """Check the (1, K) input row, write its probabilities into p2d[0] and every label's non-randomized score
    into scores[row] (scores is (n, K), e.g. a ring of pending frames). Returns (error code, labels by decreasing
    probability, stable among ties)."""
    code = _row_check(src, 0, logits)
    if code != OK:
        return code, np.empty(0, np.int64)
    p = p2d[0]
    _row_probs(src, 0, logits, temp, p)
    srt = np.argsort(-p, kind="mergesort")
    if kind == LAC_KIND:
        lac_row_scores(p, scores, row)
    else:
        tie_group_scores(p, srt, 0.0, kind, False, lam, k_reg, weight, scores, row)
    return OK, srt


@njit(cache=True, nogil=True)
def set_members(p, scores, row, srt, q, q_cal, allow_empty, order):
    """Labels with score scores[row, j] <= q into order[:m], by decreasing probability; with allow_empty=False an
    empty set becomes the top-1 tie group (as the calibrators do). Returns (m, size of the set at q_cal)."""
    k = p.shape[0]
    m = 0
    m_cal = 0
    for t in range(k):
        j = srt[t]
        if scores[row, j] <= q:
            order[m] = j
            m += 1
        if scores[row, j] <= q_cal:
            m_cal += 1
    if m == 0 and not allow_empty:
        pmax = p[srt[0]]
        while m < k and p[srt[m]] == pmax:
            order[m] = srt[m]
            m += 1
    return m, m_cal


@njit(cache=True, nogil=True)
def row_statistic(p2d, stat_kind, m_cal):
    """The label-free statistic of row 0 of p2d (STAT_SET_SIZE: the calibrated set size; STAT_NONE: NaN)."""
    if stat_kind == STAT_MAX_PROB:
        return _max_prob_row(p2d, 0)
    if stat_kind == STAT_MARGIN:
        return _margin_row(p2d, 0)
    if stat_kind == STAT_ENTROPY:
        return _entropy_row(p2d, 0)
    if stat_kind == STAT_SET_SIZE:
        return np.float64(m_cal)
    return np.nan


@njit(cache=True, nogil=True)
def frame_step(logits, temp, kind, lam, k_reg, weight, allow_empty, q_cal, stat_kind, p2d, scores, order, src, q,
               row):
    """One frame: scores (into scores[row]), set at q (labels in order[:m]) and statistic.
    Returns (error code, m, statistic). The per-frame arguments come last, so a caller can bind the rest once."""
    code, srt = frame_scores(src, logits, temp, kind, lam, k_reg, weight, p2d, scores, row)
    if code != OK:
        return code, 0, 0.0
    m, m_cal = set_members(p2d[0], scores, row, srt, q, q_cal, allow_empty, order)
    return OK, m, row_statistic(p2d, stat_kind, m_cal)


@njit(cache=True, nogil=True)
def smoothed_pvalue(ref_sorted, stat, u):
    """((#{r > stat}) + u (#{r = stat} + 1)) / (n + 1) against the ascending reference statistics: small p =
    more uncertain than the reference."""
    n = ref_sorted.shape[0]
    lo = np.searchsorted(ref_sorted, stat, side="left")
    hi = np.searchsorted(ref_sorted, stat, side="right")
    return ((n - hi) + u * (hi - lo + 1)) / (n + 1.0)


@njit(cache=True, nogil=True)
def jumper_step(pv, jump, state):
    """One Simple Jumper step (Vovk, Nouretdinov & Gammerman 2021) on p-value pv. state = [w_-1, w_0, w_+1,
    log10 M]: the weights of the betting functions 1 + eps (p - 1/2), kept normalised to sum 1, with M's size
    carried in its log."""
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


@njit(cache=True, nogil=True)
def martingale_step(ref_sorted, stat, u, jump, state):
    """smoothed_pvalue then jumper_step, in one call (the per-frame path). Returns the p-value."""
    pv = smoothed_pvalue(ref_sorted, stat, u)
    jumper_step(pv, jump, state)
    return pv


@njit(cache=True, nogil=True)
def monitored_frame_step(logits, temp, kind, lam, k_reg, weight, allow_empty, q_cal, stat_kind, p2d, scores, order,
                         ref_sorted, jump, state, src, q, row, u):
    """frame_step, then (valid rows only) martingale_step on its statistic: one call per monitored frame.
    Returns (error code, m, statistic, p-value, log10 of the martingale)."""
    code, m, stat = frame_step(logits, temp, kind, lam, k_reg, weight, allow_empty, q_cal, stat_kind, p2d, scores,
                               order, src, q, row)
    if code != OK:
        return code, m, stat, np.nan, state[3]
    pv = martingale_step(ref_sorted, stat, u, jump, state)
    return OK, m, stat, pv, state[3]


@njit(cache=True, nogil=True)
def sorted_replace(arr, old, new):
    """In a sorted array, replace one occurrence of `old` by `new`, keeping it sorted (O(len) shifts).
    Returns False (array unchanged) when `old` is absent."""
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


# --- one-sided monitors: power mixture and CUSUM ------------------------------------------------------------
MON_JUMPER, MON_POWER_MIXTURE, MON_CUSUM = 0, 1, 2
_LN10 = np.log(10.0)
_P_FLOOR = 1e-300  # a smoothed p-value is > 0 unless its uniform is exactly 0


@njit(cache=True, nogil=True)
def power_mixture_step(pv, eps, log_eps, state):
    """One step of the mixture over the grid `eps` (in (0, 1)) of power martingales prod eps p_i^(eps - 1).
    state = [log M_eps for each grid point..., log10 of their mean]. Each factor eps p^(eps - 1) is decreasing in
    p: the test bets only on small p-values."""
    lp = np.log(max(pv, _P_FLOOR))
    g = eps.shape[0]
    mx = -np.inf
    for i in range(g):
        v = state[i] + log_eps[i] + (eps[i] - 1.0) * lp
        state[i] = v
        if v > mx:
            mx = v
    s = 0.0
    for i in range(g):
        s += np.exp(state[i] - mx)
    state[g] = (mx + np.log(s / g)) / _LN10


@njit(cache=True, nogil=True)
def mixture_calibrator(pv):
    """The p-to-e calibrator integral_0^1 eps p^(eps - 1) d eps = (1 - p + p log p) / (p log^2 p) (its mean is 1
    for a uniform p; decreasing in p; 1/2 at p = 1)."""
    p = max(pv, _P_FLOOR)
    lp = np.log(p)
    if lp > -1e-6:
        return 0.5
    return (1.0 - p + p * lp) / (p * lp * lp)


@njit(cache=True, nogil=True)
def cusum_step(pv, state):
    """CUSUM e-detector (Shin, Ramdas & Rinaldo 2022): C_t = max(C_{t-1}, 1) * f(p_t), f the mixture calibrator;
    state = [log10 C_t]."""
    state[0] = max(state[0], 0.0) + np.log10(mixture_calibrator(pv))


@njit(cache=True, nogil=True)
def monitor_step(ref_sorted, stat, u, method, jump, eps, log_eps, state):
    """The smoothed p-value of `stat`, then one step of the monitor `method` (MON_*); state[-1] is log10 of the
    monitor's value. Returns the p-value."""
    pv = smoothed_pvalue(ref_sorted, stat, u)
    if method == MON_JUMPER:
        jumper_step(pv, jump, state)
    elif method == MON_POWER_MIXTURE:
        power_mixture_step(pv, eps, log_eps, state)
    else:
        cusum_step(pv, state)
    return pv


@njit(cache=True, nogil=True)
def monitor_path(ref_sorted, stats, us, method, jump, eps, log_eps, state, out):
    """monitor_step over a whole stream: out[t] = log10 of the monitor after input t (state updated in place)."""
    last = state.shape[0] - 1
    for t in range(stats.shape[0]):
        monitor_step(ref_sorted, stats[t], us[t], method, jump, eps, log_eps, state)
        out[t] = state[last]
