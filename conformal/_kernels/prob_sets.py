"""APS / RAPS prediction sets for probability inputs at any K, by bisection on the cut (issue 20).

A set is a prefix of the labels in descending p (scores are rank-monotone), so it is {y : p_y >= v*} for the
smallest probability v* still in it. Above K = _PAIR_MAX no row is sorted. Per row:
1. One pass checks the row (finite and in [0, 1] from the bit patterns, an integer max that also gives p_max;
   the sum in the four lanes of `_row_check`), so a row fails here exactly when it fails there.
2. The row's fixed-point masses are computed once (`_fixed_vec`: vectorised, bit for bit `_fixed`). For a cut c,
   F(c) = fixed-point mass of the labels with p >= c and N(c) their count, one vectorised pass over the row.
   The non-randomized score of the smallest tie group at or above c is exactly score(F(c), N(c)): if it is
   <= qhat every label >= c is in the set (hi = c); if it is > qhat no label below c is (lo = c). Randomized
   scores are bounded by the same number, so there the decisions keep a margin (as the bucket kernel's do).
   The bracket [lo, hi) starts at lo = (1 - qhat) / K (labels below it hold < 1 - qhat of the mass, so the set
   almost always ends above it) and shrinks by bisection (in log p) until it holds <= _PAIR_MAX labels.
3. The labels of the bracket are copied out (`_gather`: 8-lane masks, no branch per label) and their tie groups scored
   exactly in descending p with the mass and count above them, one pass over the bracket per group (or a sort
   for a bracket that would not shrink: ties), down to the first rejected group, as the bucket kernel's walk.
   If every label of the bracket is in, the walk continues below lo (exact: nothing is assumed about the labels
   below).
Rows of K <= _PAIR_MAX skip 2-3. Non-randomized ones go in blocks of 8 rows, one row per vector lane
(`_lane_block`, `lanes`): the block is transposed, checked, each lane sorted by a sorting network held in registers,
and walked once in descending p. The scores grow along the tie groups, so the set is the groups whose cumulative
fixed-point mass is at most the group's integer threshold (`_mass_thresholds`: exact, from qhat and the rank); the
walk compares the float64 running sum against those thresholds with a margin that makes the test exact
(`_walk_bounds`), and a row whose sum falls inside the margin goes one by one. So do randomized rows, the rows of
a block with a NaN, inf, negative or -0.0, and the last rows of a chunk: their tie groups are taken in descending
p, one pass each (the count of the group's ties and the largest value below it, `_select_v_star`), down to the
first rejected one; a group whose score with a single label already exceeds qhat is rejected without its pass
(scores only grow with the group's size), which spares most rows the pass after their set's last group.
The same integers and float expressions as `scores.set_rows` give the same sets bit for bit (the twin tests).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from conformal._kernels.bits import cttz64, f64_bits, range_mask8, uint_float
from conformal._kernels.lanes import LANES, add8, ge_row, load_block, sort8, umax8, walk8
from conformal._kernels.scores import (
    APS,
    BAD_SUM,
    INV_SCALE,
    OK,
    RAPS,
    ROW_SUM_TOL,
    SCALE,
    _fixed,
    _row_check,
    _score,
    row_sum,
)

_PAIR_MAX = 16  # bracket size walked in tie groups (padded to a multiple of 8 so each group's pass vectorises)
_M52 = 4503599627370496.0  # 2**52
_M52_BITS = 0x4330000000000000  # its bit pattern


@njit(cache=True, nogil=True)
def _odd_row(src, i):
    """(error code, p_max) of a row with a bit pattern above that of 1.0: an error (which one, for the message),
    or a -0.0 (sign bit set, yet a valid probability). Out of line: the common path stays small."""
    code = _row_check(src, i, False)
    pmax = 0.0
    if code == OK:
        for j in range(src.shape[1]):
            pmax = max(pmax, np.float64(src[i, j]))
    return code, pmax


@njit(cache=True, nogil=True, inline="always")
def _prob_row_check(src, bits, one_bits, i):
    """(error code, p_max) of probability row i. `bits` is `src` viewed as unsigned integers of its width and
    `one_bits` the pattern of 1.0: a value is finite and in [0, 1] exactly when its pattern is <= one_bits (NaN,
    inf and negatives are larger), and the largest pattern is that of p_max. Codes as `_row_check`."""
    k = src.shape[1]
    bmax = bits[i, 0]
    for j in range(k):
        b = bits[i, j]
        bmax = b if b > bmax else bmax
    s = row_sum(src, i)
    code = OK
    pmax = np.float64(uint_float(bmax))
    if bmax > one_bits:
        code, pmax = _odd_row(src, i)
    if code == OK and abs(s - 1.0) > ROW_SUM_TOL:
        code = BAD_SUM
    if code != OK:
        pmax = 0.0
    return code, pmax


@njit(cache=True, nogil=True, inline="always")
def _select_v_star(src, i, v, m_above, count, v_star, pmax, u, qhat, kind, randomized, lam, k_reg, weight):
    """`_row_v_star` for K <= _PAIR_MAX, without scratch or bisection: the tie groups in
    descending p from the group of value `v` on (`m_above` and `count` the fixed-point mass and number of the
    labels above it, all in the set, the smallest of them `v_star`), one pass per group (the count of its ties
    and the largest value below it), each scored with the exact mass above it, down to the first rejected group,
    as the bucket kernel's walk does; a group is rejected before its pass when one label of it would already
    score above qhat (exact: the score only grows with the group's mass and rank, for u >= 0 and lam >= 0).
    O(K x the number of groups in the set)."""
    k = src.shape[1]
    # A group scores at least what it would with one label (scores grow with its mass and rank when u, lam >= 0):
    # if that already exceeds qhat, the group's pass is skipped (most rows: the group after the set's last).
    monotone = u >= 0.0 and lam >= 0.0
    while True:
        fv = _fixed(v)
        if monotone and _score(kind, m_above, fv, count + 1, pmax, u, randomized, lam, k_reg, weight) > qhat:
            return v_star
        g = 0
        nxt = -1.0  # below every probability
        for j in range(k):
            x = np.float64(src[i, j])
            g += 1 if x == v else 0
            nxt = x if (x < v) & (x > nxt) else nxt
        m_group = g * fv
        if _score(kind, m_above, m_group, count + g, pmax, u, randomized, lam, k_reg, weight) > qhat:
            return v_star
        v_star = v
        m_above += m_group
        count += g
        if count == k:
            return v_star
        v = nxt


@njit(cache=True, nogil=True, inline="always")
def _fixed_vec(v):
    """`_fixed(v)` for 0 <= v < 2**23 (and -0.0), bit for bit, without a float -> int64 conversion (AVX2 has
    none, so `_fixed` runs one scalar conversion per value): the same rounded value r, split into 32-bit halves
    that are each exact in a float64 and read off the bits of r_half + 2**52."""
    r = np.floor(v * SCALE + 0.5)
    hi = np.floor(r * 2.3283064365386963e-10)  # 2**-32: exact
    lo = r - hi * 4294967296.0  # exact, in [0, 2**32)
    return ((f64_bits(hi + _M52) - _M52_BITS) << 32) + (f64_bits(lo + _M52) - _M52_BITS)


@njit(cache=True, nogil=True)
def _mass_ge(src, fx, i, c):
    """(fixed-point mass, count) of the labels of row i with p >= c, fx the row's fixed-point masses: one
    branch-free pass (integer sums are exact in any order; the loads are unconditional, so LLVM vectorises it
    without masked loads)."""
    f = np.int64(0)
    m = 0
    for j in range(src.shape[1]):
        x = fx[j]
        ge = np.float64(src[i, j]) >= c
        f += x if ge else 0
        m += 1 if ge else 0
    return f, m


@njit(cache=True, nogil=True)
def _walk_groups(bv, nb, a_mass, a_count, pmax, u, qhat, kind, randomized, lam, k_reg, weight):
    """Score the tie groups of the nb values bv in descending p, with mass a_mass and a_count labels above them,
    down to the first rejected group (as `_select_v_star` on the bracket; a group whose score with one label
    already exceeds qhat is rejected without its pass). Returns (the smallest accepted value or inf, whether a
    group was rejected, the mass and count of the labels >= the smallest accepted one)."""
    n8 = (nb + 7) & ~7
    for t in range(nb, n8):
        bv[t] = -1.0  # below every probability
    v_star = np.inf
    if nb == 0:
        return v_star, False, a_mass, a_count
    monotone = u >= 0.0 and lam >= 0.0
    v = -1.0
    for t in range(n8):
        v = max(v, bv[t])
    m_above = a_mass
    count = a_count
    left = nb
    while True:
        fv = _fixed(v)
        if monotone and _score(kind, m_above, fv, count + 1, pmax, u, randomized, lam, k_reg, weight) > qhat:
            return v_star, True, m_above, count
        g = 0
        nxt = -1.0
        for t in range(n8):
            x = bv[t]
            g += 1 if x == v else 0
            nxt = x if (x < v) & (x > nxt) else nxt
        m_group = g * fv
        if _score(kind, m_above, m_group, count + g, pmax, u, randomized, lam, k_reg, weight) > qhat:
            return v_star, True, m_above, count
        v_star = v
        m_above += m_group
        count += g
        left -= g
        if left == 0:
            return v_star, False, m_above, count
        v = nxt


@njit(cache=True, nogil=True)
def _walk_sorted(bv, nb, a_mass, a_count, pmax, u, qhat, kind, randomized, lam, k_reg, weight):
    """As `_walk_groups` for a large bracket (ties that bisection cannot split): sort it, walk its tie groups
    down to the first rejected one."""
    for a in range(nb):
        bv[a] = -bv[a]
    vals = bv[:nb]
    vals.sort()
    v_star = np.inf
    m_above = a_mass
    start = 0
    while start < nb:
        v = -vals[start]
        stop = start
        m_group = np.int64(0)
        fv = _fixed(v)
        while stop < nb and -vals[stop] == v:
            m_group += fv
            stop += 1
        if _score(kind, m_above, m_group, a_count + stop, pmax, u, randomized, lam, k_reg, weight) > qhat:
            return v_star, True, m_above, a_count + start
        v_star = v
        m_above += m_group
        start = stop
    return v_star, False, m_above, a_count + nb


@njit(cache=True, nogil=True, inline="always")
def _gather(src, i, lo, hi, bv):
    """Values of row i with lo <= p < hi into bv (as float64), in row order; returns their count. Blocks of 8
    labels give 8-bit masks (`range_mask8`), 8 of them one 64-bit word, whose set bits are read off with `cttz64`:
    no branch per label and no store for the labels outside the bracket (a store per label at a moving index
    cost ~10 cycles a label on the AMD CPU of docs/benchmarks.md)."""
    k = src.shape[1]
    k8 = k - k % 8
    nb = 0
    j0 = 0
    while j0 < k8:
        nblk = min(8, (k8 - j0) >> 3)
        word = np.int64(0)
        for b in range(nblk):
            word |= range_mask8(src, i, j0 + 8 * b, lo, hi) << (8 * b)
        while word != 0:
            t = cttz64(word)
            bv[nb] = np.float64(src[i, j0 + t])
            nb += 1
            word &= word - 1
        j0 += 8 * nblk
    for j in range(k8, k):
        v = np.float64(src[i, j])
        bv[nb] = v
        nb += 1 if (v >= lo) & (v < hi) else 0
    return nb


@njit(cache=True, nogil=True)
def _min_ge(src, i, c):
    """The smallest p >= c in row i, or inf."""
    m = np.inf
    for j in range(src.shape[1]):
        v = np.float64(src[i, j])
        m = v if (v >= c) & (v < m) else m
    return m


@njit(cache=True, nogil=True)
def _prune_cut(qhat, kind, k):
    """The first guess for lo: labels below (1 - qhat) / K hold < 1 - qhat of a row's mass (APS/RAPS)."""
    if (kind == APS or kind == RAPS) and qhat < 1.0:
        return max((1.0 - qhat) / k, 0.0)
    return 0.0


@njit(cache=True, nogil=True, inline="always")
def _row_v_star(src, fx, n_cut, i, pmax, cut, u, qhat, kind, randomized, lam, k_reg, weight, bv):
    """The smallest probability in the set of row i (inf for an empty set); see the module docstring. fx: the
    row's fixed-point masses; n_cut: its number of labels >= cut."""
    k = src.shape[1]
    margin = 1e-9 * max(1.0, abs(qhat))
    hi = np.inf
    a_mass = np.int64(0)  # mass and count of the labels >= hi (all in the set)
    a_count = 0
    v_acc = np.inf  # smallest value known to be in the set
    lo = min(cut, pmax)
    n_lo = n_cut if lo == cut else _mass_ge(src, fx, i, lo)[1]
    rounds = 0
    while True:
        if rounds > 0:
            n_lo = _mass_ge(src, fx, i, lo)[1] if lo > 0.0 else k
        for _ in range(16):
            if n_lo - a_count <= _PAIR_MAX:
                break
            top = min(hi, pmax)
            # bisection in log p (probabilities span decades)
            c = np.sqrt(lo * top) if lo > 0.0 else top * 0.00390625
            if not (c > lo and c < top):
                break
            f, m = _mass_ge(src, fx, i, c)
            s = _score(kind, f, np.int64(0), m, pmax, 0.0, False, lam, k_reg, weight)
            if randomized:  # s bounds the scores >= c from above only
                accept = s + margin < qhat
                reject = s - margin > qhat  # a guess: checked by the walk below
            else:  # s is the exact score of the last tie group >= c
                accept = s <= qhat
                reject = not accept
            if accept:
                hi = c
                a_mass = f
                a_count = m
            elif reject:
                lo = c
                n_lo = m
            else:
                break
        nb = _gather(src, i, lo, hi, bv)
        if nb <= _PAIR_MAX:
            v_b, rejected, a_mass, a_count = _walk_groups(bv, nb, a_mass, a_count, pmax, u, qhat, kind,
                                                          randomized, lam, k_reg, weight)
        else:
            v_b, rejected, a_mass, a_count = _walk_sorted(bv, nb, a_mass, a_count, pmax, u, qhat, kind, randomized,
                                                          lam, k_reg, weight)
        v_acc = min(v_acc, v_b)
        if rejected or a_count == k:
            if v_acc == np.inf:  # nothing of the brackets is in: the set is the labels >= hi
                v_acc = _min_ge(src, i, hi)
            return v_acc
        # every label >= lo is in the set (randomized scores, rows summing below 1): continue below lo
        hi = lo
        lo = lo * 0.00390625 if rounds == 0 else 0.0
        rounds += 1


_MASS_TOP = 1 << 62  # above the fixed-point mass of any row that passes the check (sum within 1e-3 of 1)
_WALK_MARGIN = 16384.0  # fixed-point units (2**-46 of probability) around each threshold: see `_walk_bounds`


@njit(cache=True, nogil=True)
def _mass_thresholds(qhat, kind, lam, k_reg, k):
    """thr[r], r = 1..k: the largest fixed-point mass m <= 2**62 whose non-randomized APS/RAPS score at rank r,
    `_score(kind, m, 0, r, ...)`, is not above qhat; -1 if there is none. The score is non-decreasing in m
    (float64(m) * 2**-60, plus the RAPS penalty of rank r), so `m <= thr[r]` is exactly its test."""
    thr = np.full(k + 1, -1, dtype=np.int64)
    top = np.int64(_MASS_TOP)
    for r in range(1, k + 1):
        if _score(kind, np.int64(0), np.int64(0), r, 0.0, 0.0, False, lam, k_reg, 0.0) > qhat:
            continue
        if not (_score(kind, top, np.int64(0), r, 0.0, 0.0, False, lam, k_reg, 0.0) > qhat):
            thr[r] = top
            continue
        lo = np.int64(0)  # score(lo) <= qhat < score(hi)
        hi = top
        while hi - lo > 1:
            mid = lo + (hi - lo) // 2
            if _score(kind, mid, np.int64(0), r, 0.0, 0.0, False, lam, k_reg, 0.0) > qhat:
                hi = mid
            else:
                lo = mid
        thr[r] = lo
    return thr


@njit(cache=True, nogil=True)
def _walk_bounds(thr):
    """(2, k + 1) float64 bounds for `lanes.walk8`: a tie group ending at place r - 1 (rank r) with float64 sum S
    of the values down to it is surely in when S <= bounds[0, r], surely out when S > bounds[1, r].
    Why this is exact: the group's test is cm <= thr[r], cm the fixed-point mass. With X the exact sum,
    |S - X| <= 15 u X (recursive summation of <= 16 non-negative terms, u = 2**-53, X <= 1.0011 for a row that
    passes the check), under 2**11 fixed-point units, and |cm - X 2**60| <= 16 (each `_fixed` within 1 of
    p 2**60); the bounds are float64(thr[r] -/+ 2**14) 2**-60, off by at most 2**9 units. So S 2**60 and cm differ by
    less than the margin left: S <= bounds[0, r] gives cm < thr[r] and S > bounds[1, r] gives cm > thr[r]."""
    k1 = thr.shape[0]
    b = np.empty((2, k1))
    for r in range(k1):
        if thr[r] < 0:
            b[0, r] = -np.inf
            b[1, r] = -np.inf
        elif thr[r] >= _MASS_TOP:
            b[0, r] = np.inf
            b[1, r] = np.inf
        else:
            b[0, r] = (np.float64(thr[r]) - _WALK_MARGIN) * INV_SCALE
            b[1, r] = (np.float64(thr[r]) + _WALK_MARGIN) * INV_SCALE
    return b


@njit(cache=True, nogil=True, inline="always")
def _lane_block(src, bits, one_bits, i0, bounds, allow_empty, t, sc, bm, n_in, out, errs):
    """Rows i0..i0+7 at K <= _PAIR_MAX, non-randomized APS/RAPS, one row per vector lane (`lanes`):
    1. t[j, w] = p of label j in row i0 + w; the row check of `_prob_row_check` in lanes (the same max of the bit
       patterns and the same four-lane `row_sum` order, so the same codes).
    2. Each lane sorted in descending p by a sorting network (`lanes.sort8`; values only: a set is
       {y : p_y >= v*}).
    3. One pass down the sorted places (`lanes.walk8`): at the end of each tie group, the group is in when its
       cumulative mass passes `_mass_thresholds` (non-randomized scores grow along the groups, so the groups in are a
       prefix and v* is the value at the last one). The test runs on the float64 sum with a margin that makes it
       exact (`_walk_bounds`); a group end inside the margin leaves its row undecided.
    Returns a mask of the rows still to do one by one: 0xFF if the block holds a value whose bit pattern is above
    1.0 (NaN, inf, negative, -0.0: the network assumes no NaN), else the undecided rows."""
    k = src.shape[1]
    k4 = k - k % 4
    for w in range(LANES):
        bm[w] = 0
        sc[0, w] = 0.0
        sc[1, w] = 0.0
        sc[2, w] = 0.0
        sc[3, w] = 0.0
    if k >= LANES:
        load_block(src, i0, t)
    else:
        for j in range(k):
            for w in range(LANES):
                t[j, w] = src[i0 + w, j]
    for j in range(k):
        umax8(bm, t, j)
    odd = False
    for w in range(LANES):
        odd |= bm[w] > one_bits
    if odd:
        return np.int64(0xFF)
    for j in range(0, k4, 4):
        add8(sc, 0, t, j)
        add8(sc, 1, t, j + 1)
        add8(sc, 2, t, j + 2)
        add8(sc, 3, t, j + 3)
    for w in range(LANES):
        sc[0, w] = (sc[0, w] + sc[1, w]) + (sc[2, w] + sc[3, w])
    for j in range(k4, k):
        add8(sc, 0, t, j)
    sort8(t, k)
    undecided = walk8(t, k, bounds, n_in)
    for w in range(LANES):
        i = i0 + w
        if abs(sc[0, w] - 1.0) > ROW_SUM_TOL:
            errs[i] = BAD_SUM
            continue
        errs[i] = OK
        if (undecided >> w) & 1:
            continue
        m = n_in[w]
        if m == 0:
            if allow_empty:
                for j in range(k):
                    out[i, j] = False
                continue
            m = 1  # the top group
        c = t[m - 1, w]
        if k >= LANES:
            ge_row(src, i, c, out)
        else:
            for j in range(k):
                out[i, j] = src[i, j] >= c
    return undecided


@njit(cache=True, nogil=True, inline="always")
def _small_row(src, bits, one_bits, u, qhat, kind, randomized, lam, k_reg, weight, allow_empty, i, out, errs):
    """Row i for K <= _PAIR_MAX: the row check of `_prob_row_check` written out here (same code and codes;
    inlined, it made this loop ~1.06x slower at K = 10), then `_select_v_star`."""
    k = src.shape[1]
    bmax = bits[i, 0]
    for j in range(k):
        b = bits[i, j]
        bmax = b if b > bmax else bmax
    s = row_sum(src, i)
    code = OK
    pmax = np.float64(uint_float(bmax))
    if bmax > one_bits:
        code, pmax = _odd_row(src, i)
    if code == OK and abs(s - 1.0) > ROW_SUM_TOL:
        code = BAD_SUM
    errs[i] = code
    if code != OK:
        return
    if qhat == np.inf:  # every score is <= inf
        for j in range(k):
            out[i, j] = True
        return
    ui = u[i] if randomized else 0.0
    v_star = _select_v_star(src, i, pmax, np.int64(0), 0, np.inf, pmax, ui, qhat, kind, randomized, lam, k_reg,
                            weight)
    if v_star == np.inf and not allow_empty:
        v_star = pmax
    c = src.dtype.type(v_star) if v_star <= 1.0 else src.dtype.type(2.0)  # v* is a value of the row: exact
    for j in range(k):
        out[i, j] = src[i, j] >= c


@njit(cache=True, nogil=True)
def _lane_bounds(qhat, kind, randomized, lam, k_reg, k):
    """`_walk_bounds` of the lane blocks, or a (2, 0) array where they do not apply (randomized, qhat = inf).
    Computed once per call (about 4 us at K = 10), not once per chunk of rows."""
    if randomized or qhat == np.inf:
        return np.empty((2, 0))
    return _walk_bounds(_mass_thresholds(qhat, kind, lam, k_reg, k))


@njit(cache=True, nogil=True)
def _small_set_rows(src, bits, one_bits, u, qhat, kind, randomized, lam, k_reg, weight, allow_empty, bounds, lo, hi,
                    out, errs):
    """Rows lo..hi-1 for K <= _PAIR_MAX: non-randomized sets in blocks of 8 rows (`_lane_block`, with `bounds`
    from `_lane_bounds`), the rest, and the rows a block leaves, one by one (`_small_row`)."""
    k = src.shape[1]
    i = lo
    if bounds.shape[1] > 0 and hi - lo >= LANES:
        t = np.empty((k + 1, LANES), dtype=src.dtype)
        for w in range(LANES):
            t[k, w] = -1.0  # below every probability: the last place ends its tie group
        sc = np.empty((4, LANES))
        bm = np.empty(LANES, dtype=bits.dtype)
        n_in = np.empty(LANES, dtype=np.int64)
        while hi - i >= LANES:
            left = _lane_block(src, bits, one_bits, i, bounds, allow_empty, t, sc, bm, n_in, out, errs)
            while left != 0:
                _small_row(src, bits, one_bits, u, qhat, kind, randomized, lam, k_reg, weight, allow_empty,
                           i + cttz64(left), out, errs)
                left &= left - 1
            i += LANES
    for r in range(i, hi):
        _small_row(src, bits, one_bits, u, qhat, kind, randomized, lam, k_reg, weight, allow_empty, r, out, errs)


@njit(cache=True, nogil=True)
def _large_set_rows(src, bits, one_bits, u, qhat, kind, randomized, lam, k_reg, weight, allow_empty, lo, hi, out,
                    errs):
    """Rows lo..hi-1 for K > _PAIR_MAX: `_prob_row_check`, then `_row_v_star` (the module docstring)."""
    k = src.shape[1]
    kp = (k + 7) & ~7
    bv = np.empty(kp, dtype=np.float64)
    fx = np.empty(k, dtype=np.int64)
    cut = _prune_cut(qhat, kind, k)
    for i in range(lo, hi):
        code, pmax = _prob_row_check(src, bits, one_bits, i)
        errs[i] = code
        if code != OK:
            continue
        if qhat == np.inf:  # every score is <= inf
            for j in range(k):
                out[i, j] = True
            continue
        ui = u[i] if randomized else 0.0
        n_cut = 0
        for j in range(k):  # the row's fixed-point masses, once (the bisection's passes only add them up)
            v = np.float64(src[i, j])
            fx[j] = _fixed_vec(v)
            n_cut += 1 if v >= cut else 0
        v_star = _row_v_star(src, fx, n_cut, i, pmax, cut, ui, qhat, kind, randomized, lam, k_reg, weight, bv)
        if v_star == np.inf and not allow_empty:
            v_star = pmax
        c = src.dtype.type(v_star) if v_star <= 1.0 else src.dtype.type(2.0)  # v* is a value of the row: exact
        for j in range(k):
            out[i, j] = src[i, j] >= c


@njit(cache=True, nogil=True)
def prob_set_rows(src, bits, one_bits, u, qhat, kind, randomized, lam, k_reg, weight, allow_empty, lo, hi, out,
                  errs):
    """Boolean APS/RAPS sets for probability rows lo..hi-1 (C-contiguous `src`, `bits` its unsigned view), as
    `scores.set_rows` bit for bit; the output row is written as `src >= v*` in the input's dtype. Rows of at most
    _PAIR_MAX labels skip the bisection (one loop each, so neither carries the other's code)."""
    k = src.shape[1]
    if k <= _PAIR_MAX:
        bounds = _lane_bounds(qhat, kind, randomized, lam, k_reg, k)
        _small_set_rows(src, bits, one_bits, u, qhat, kind, randomized, lam, k_reg, weight, allow_empty, bounds, lo,
                        hi, out, errs)
    else:
        _large_set_rows(src, bits, one_bits, u, qhat, kind, randomized, lam, k_reg, weight, allow_empty, lo, hi, out,
                        errs)


@njit(cache=True, nogil=True, parallel=True)
def prob_predict_sets(src, bits, one_bits, u, qhat, kind, randomized, lam, k_reg, weight, allow_empty, chunk, out,
                      errs):
    """`prob_set_rows` over chunks of rows in parallel; at K <= _PAIR_MAX the lane bounds are computed once."""
    n, k = src.shape
    if k <= _PAIR_MAX:
        bounds = _lane_bounds(qhat, kind, randomized, lam, k_reg, k)
        for c in prange((n + chunk - 1) // chunk):
            _small_set_rows(src, bits, one_bits, u, qhat, kind, randomized, lam, k_reg, weight, allow_empty, bounds,
                            c * chunk, min(n, (c + 1) * chunk), out, errs)
    else:
        for c in prange((n + chunk - 1) // chunk):
            _large_set_rows(src, bits, one_bits, u, qhat, kind, randomized, lam, k_reg, weight, allow_empty,
                            c * chunk, min(n, (c + 1) * chunk), out, errs)
