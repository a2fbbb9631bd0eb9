"""Numba kernels for the rank-based scores (APS, RAPS, SAPS, TopK) and LAC.

Conventions shared by every kernel (and by the NumPy twins in tests/reference/naive.py):
- A row is read as float64 (float32 inputs are widened exactly); with ``logits=True`` it is soft-maxed first by
  `_row_probs`, the one softmax every kernel uses, so calibration and prediction see identical numbers.
- Ties: the rank of label y is L(y) = #{j : p_j >= p_y}; tied labels share one score, so they are in or out of
  a set together.
- Probability mass is summed in fixed point, int64(round(p * 2**60)), so sums are exact and independent of the
  order in which labels are visited: the score of a label is bit-identical whether computed at calibration
  (O(K), no sort), in the all-label kernel (sorted) or in the set kernel (bucketed).
- One uniform `u` per row drives the randomized scores; ``randomized=False`` ignores `u`.
Score kinds: 1 APS, 2 RAPS, 3 SAPS, 4 TopK (LAC, kind 0, needs no ranks and is handled by `lac_*`).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from conformal._kernels.bits import f64_bits, uint_float

APS, RAPS, SAPS, TOPK = 1, 2, 3, 4
SCALE = float(2 ** 60)
INV_SCALE = 1.0 / SCALE
# Buckets for the set kernel: 8 per binade (exponent + 3 mantissa bits) over [2**-40, 1]; below that, bucket 0.
_E_TOP = 1023
_N_BINADES = 40
_N_BUCKETS = _N_BINADES * 8 + 2


ROW_SUM_TOL = 1e-3
OK, NONFINITE, OUT_OF_RANGE, BAD_SUM = 0, 1, 2, 3


@njit(cache=True, nogil=True, inline="always")
def row_sum(src, i):
    """Sum of row i in float64, in four lanes (j mod 4) and then the tail, in this fixed order: every kernel's
    row-sum check uses it, so a row passes or fails the same check in each."""
    k = src.shape[1]
    k4 = k - k % 4
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    for j in range(0, k4, 4):
        s0 += np.float64(src[i, j])
        s1 += np.float64(src[i, j + 1])
        s2 += np.float64(src[i, j + 2])
        s3 += np.float64(src[i, j + 3])
    s = (s0 + s1) + (s2 + s3)
    for j in range(k4, k):
        s += np.float64(src[i, j])
    return s


@njit(cache=True, nogil=True)
def _row_check(src, i, logits):
    """0 if row i is valid input, else the code of its problem: NONFINITE before OUT_OF_RANGE before BAD_SUM
    (validation fused into every kernel, so a prediction reads its input once and allocates nothing of size
    n x K besides the output). Branch-free over the row, so LLVM vectorises it; the sum runs in four lanes
    (j mod 4) in a fixed order."""
    k = src.shape[1]
    bad = False
    out = False
    for j in range(k):
        v = np.float64(src[i, j])
        bad |= not (v - v == 0.0)  # NaN or +-inf
        out |= (v < 0.0) | (v > 1.0)
    if bad:
        return NONFINITE
    if logits:
        return OK
    if out:
        return OUT_OF_RANGE
    s = row_sum(src, i)
    if abs(s - 1.0) > ROW_SUM_TOL:
        return BAD_SUM
    return OK


@njit(cache=True, nogil=True)
def _row_probs(src, i, logits, temp, out):
    """Row i of `src` as float64 probabilities in `out` (softmax of logits / temp when `logits`)."""
    k = src.shape[1]
    if logits:
        m = -np.inf
        for j in range(k):
            v = np.float64(src[i, j]) / temp
            if v > m:
                m = v
        s = 0.0
        for j in range(k):
            e = np.exp(np.float64(src[i, j]) / temp - m)
            out[j] = e
            s += e
        for j in range(k):
            out[j] = out[j] / s
    else:
        for j in range(k):
            out[j] = np.float64(src[i, j])


@njit(cache=True, nogil=True)
def _fixed(p):
    return np.int64(np.floor(p * SCALE + 0.5))


@njit(cache=True, nogil=True)
def _score(kind, m_above, m_group, rank, pmax, u, randomized, lam, k_reg, weight):
    """Score of a label whose tie group has fixed-point mass `m_group`, with `m_above` above it and rank L."""
    if kind == APS or kind == RAPS:
        if randomized:
            s = (np.float64(m_above) + u * np.float64(m_group)) * INV_SCALE
        else:
            s = np.float64(m_above + m_group) * INV_SCALE
        if kind == RAPS:
            pen = rank - k_reg
            if pen > 0:
                s = s + lam * pen
        return s
    if kind == SAPS:
        v = u if randomized else 1.0
        if rank == 1:
            return v * pmax
        return pmax + (rank - 2 + v) * weight
    # TOPK
    if randomized:
        return rank - 1 + u
    return np.float64(rank)


# Every kernel comes as `<name>_rows(..., lo, hi, out, errs)`, which handles rows lo..hi-1 serially with its own
# scratch, and `<name>(..., chunk, out, errs)`, which runs it over chunks of rows in parallel. The Python side
# calls the serial one for small inputs (a single frame), where starting the thread pool costs more than the work.


@njit(cache=True, nogil=True)
def _label_mass(row, py):
    """(fixed-point mass above py, mass of py's tie group, count above, count tied) over one row; branch-free
    (integer sums are exact in any order, so LLVM may vectorise)."""
    m_above = np.int64(0)
    m_group = np.int64(0)
    c_above = 0
    c_group = 0
    for j in range(row.shape[0]):
        pj = np.float64(row[j])
        fx = _fixed(pj)
        above = pj > py
        tied = pj == py
        m_above += fx if above else 0
        m_group += fx if tied else 0
        c_above += 1 if above else 0
        c_group += 1 if tied else 0
    return m_above, m_group, c_above, c_group


@njit(cache=True, nogil=True)
def label_rows(src, labels, u, logits, temp, kind, randomized, lam, k_reg, weight, lo, hi, out, errs):
    """Score of labels[i] for rows lo..hi-1: O(K) per row, no sort."""
    k = src.shape[1]
    p = np.empty(k, dtype=np.float64)
    for i in range(lo, hi):
        errs[i] = _row_check(src, i, logits)
        if errs[i] != OK:
            continue
        if logits:
            _row_probs(src, i, logits, temp, p)
            m_above, m_group, c_above, c_group = _label_mass(p, p[labels[i]])
            pmax = p.max() if kind == SAPS else 0.0
        else:
            m_above, m_group, c_above, c_group = _label_mass(src[i], np.float64(src[i, labels[i]]))
            pmax = np.float64(src[i].max()) if kind == SAPS else 0.0
        ui = u[i] if randomized else 0.0
        out[i] = _score(kind, m_above, m_group, c_above + c_group, pmax, ui, randomized, lam, k_reg, weight)


@njit(cache=True, nogil=True, parallel=True)
def label_scores(src, labels, u, logits, temp, kind, randomized, lam, k_reg, weight, chunk, out, errs):
    n = src.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        label_rows(src, labels, u, logits, temp, kind, randomized, lam, k_reg, weight, c * chunk,
                   min(n, (c + 1) * chunk), out, errs)


@njit(cache=True, nogil=True, inline="always")
def tie_group_scores(p, order, u, kind, randomized, lam, k_reg, weight, out, i):
    """Score of every label of one probability row p (K,) into row i of out (n, K), given `order`, the labels by
    decreasing p (any order among ties): one walk over the tie groups, each group's labels sharing one score.
    The one implementation of this walk; the batch kernel and the per-frame kernel of conformal.online use it.
    (Row i of a 2-D out, not a row view, and inlined: either costs measurable time per row otherwise.)"""
    k = p.shape[0]
    pmax = p[order[0]]
    m_above = np.int64(0)
    start = 0
    while start < k:
        v = p[order[start]]
        stop = start
        m_group = np.int64(0)
        while stop < k and p[order[stop]] == v:
            m_group += _fixed(v)
            stop += 1
        s = _score(kind, m_above, m_group, stop, pmax, u, randomized, lam, k_reg, weight)
        for t in range(start, stop):
            out[i, order[t]] = s
        m_above += m_group
        start = stop


@njit(cache=True, nogil=True)
def all_rows(src, u, logits, temp, kind, randomized, lam, k_reg, weight, lo, hi, out, errs):
    """Scores of every label for rows lo..hi-1: one sort per row."""
    k = src.shape[1]
    p = np.empty(k, dtype=np.float64)
    for i in range(lo, hi):
        errs[i] = _row_check(src, i, logits)
        if errs[i] != OK:
            continue
        _row_probs(src, i, logits, temp, p)
        ui = u[i] if randomized else 0.0
        tie_group_scores(p, np.argsort(-p), ui, kind, randomized, lam, k_reg, weight, out, i)


@njit(cache=True, nogil=True, parallel=True)
def all_scores(src, u, logits, temp, kind, randomized, lam, k_reg, weight, chunk, out, errs):
    n = src.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        all_rows(src, u, logits, temp, kind, randomized, lam, k_reg, weight, c * chunk, min(n, (c + 1) * chunk),
                 out, errs)


@njit(cache=True, nogil=True)
def _bucket(bits):
    """Bucket of a float64 in [0, 1] from its bits: 0 below 2**-40, then 8 per binade (exponent and the top three
    mantissa bits). Branch-free; anything above 1 (or NaN, in a row that fails validation) lands in the top."""
    e = np.int64(bits >> 52) & 0x7FF
    mant = np.int64(bits >> 49) & 7
    b = (e - (_E_TOP - _N_BINADES + 1)) * 8 + mant + 1
    return min(max(b, 0), _N_BUCKETS - 1)


@njit(cache=True, nogil=True)
def _load_row(src, i, logits, temp, out):
    """Check row i and copy it into `out` as float64 probabilities in one pass; returns (error code, row sum)."""
    k = src.shape[1]
    if logits:
        code = _row_check(src, i, logits)
        if code != OK:
            return code, 0.0
        _row_probs(src, i, logits, temp, out)
        s = 0.0
        for j in range(k):
            s += out[j]
        return OK, s
    s = 0.0
    for j in range(k):
        v = np.float64(src[i, j])
        if not np.isfinite(v):
            return NONFINITE, 0.0
        if v < 0.0 or v > 1.0:
            return OUT_OF_RANGE, 0.0
        out[j] = v
        s += v
    if abs(s - 1.0) > ROW_SUM_TOL:
        return BAD_SUM, s
    return OK, s


@njit(cache=True, nogil=True)
def _load_bucket_row(src, i, logits, temp, p, bid, b_mass, b_count):
    """Check row i, copy it into `p` as float64 probabilities and bucket its labels (step 1 of `_set_row`) in one
    pass; returns (error code, row sum, max)."""
    k = src.shape[1]
    for b in range(b_mass.shape[0]):
        b_mass[b] = 0
        b_count[b] = 0
    code = _row_check(src, i, logits)
    if code != OK:
        return code, 0.0, 0.0
    if logits:
        _row_probs(src, i, logits, temp, p)
    s = 0.0
    pmax = -np.inf
    for j in range(k):
        v = p[j] if logits else np.float64(src[i, j])
        p[j] = v
        s += v
        pmax = max(pmax, v)
        b = _bucket(f64_bits(v))
        bid[j] = b
        b_count[b] += 1
        b_mass[b] += _fixed(v)
    return OK, s, pmax


@njit(cache=True, nogil=True)
def _bucket_min(p, bid, b):
    """Smallest p among the labels of bucket b."""
    vmin = np.inf
    for j in range(p.shape[0]):
        if bid[j] == b and p[j] < vmin:
            vmin = p[j]
    return vmin


@njit(cache=True, nogil=True)
def _set_row(p, pmax, u, qhat, kind, randomized, lam, k_reg, weight, allow_empty, b_mass, b_count, bid, tmp):
    """Smallest probability v* still in the set of this row (inf for an empty set).

    Scores never decrease as p decreases, so a set is a prefix of tie groups in descending p.
    1. `_load_bucket_row` has put every label in a bucket by the leading bits of p (8 buckets per binade) and
       summed each bucket's count and fixed-point mass.
    2. Walk buckets from the top: accept or reject whole buckets from bounds on their scores (with a margin, so
       no rounding can change the answer). The walk stops at the first bucket whose lower bound exceeds qhat.
    3. Only a bucket the bounds cannot decide is gathered (one compare pass over the row), sorted and scored
       exactly, as `label_scores` does. v* of a bound-accepted bucket is its smallest member, found by one pass
       once it is known that no later label enters the set. No label is ever moved or sorted otherwise.
    """
    nb = b_mass.shape[0]
    margin = 1e-9 * max(1.0, abs(qhat))
    v_star = np.inf
    pending = -1  # last bucket accepted whole by its bound whose smallest member is v* unless a later label enters
    m_above = np.int64(0)
    c_above = 0
    done = False
    for b in range(nb - 1, -1, -1):
        cnt = b_count[b]
        if cnt == 0:
            continue
        # Upper bound on any score in the bucket: all its mass and count taken (u <= 1).
        ub = _score(kind, m_above, b_mass[b], c_above + cnt, pmax, 1.0, False, lam, k_reg, weight)
        if ub + margin < qhat:
            pending = b  # whole bucket in
            m_above += b_mass[b]
            c_above += cnt
            continue
        # Lower bound: nothing of the bucket above, the smallest conceivable group (mass 0, one label, u = 0).
        lb = _score(kind, m_above, np.int64(0), c_above + 1, pmax, 0.0, randomized, lam, k_reg, weight)
        if lb - margin > qhat:
            break
        # Undecided: gather this bucket's labels and score its tie groups exactly, in descending p.
        n = 0
        for j in range(p.shape[0]):
            if bid[j] == b:
                tmp[n] = -p[j]
                n += 1
        vals = tmp[:n]
        vals.sort()
        start = 0
        while start < n:
            v = -vals[start]
            stop = start
            m_group = np.int64(0)
            while stop < n and -vals[stop] == v:
                m_group += _fixed(v)
                stop += 1
            s = _score(kind, m_above, m_group, c_above + stop, pmax, u, randomized, lam, k_reg, weight)
            if s <= qhat:
                v_star = v
                pending = -1
                m_above += m_group
                start = stop
            else:
                done = True
                break
        if done:
            break
        c_above += cnt
    if pending >= 0:
        v_star = _bucket_min(p, bid, pending)
    if v_star == np.inf and not allow_empty:
        v_star = pmax
    return v_star


@njit(cache=True, nogil=True)
def set_rows(src, u, qhat, logits, temp, kind, randomized, lam, k_reg, weight, allow_empty, lo, hi, out, errs):
    """Boolean prediction sets {y : s(x, y) <= qhat} for rows lo..hi-1, O(K) per row plus one small sort."""
    k = src.shape[1]
    p = np.empty(k, dtype=np.float64)
    tmp = np.empty(k, dtype=np.float64)
    bid = np.empty(k, dtype=np.int64)
    b_mass = np.empty(_N_BUCKETS, dtype=np.int64)
    b_count = np.empty(_N_BUCKETS, dtype=np.int64)
    for i in range(lo, hi):
        code, row_sum, pmax = _load_bucket_row(src, i, logits, temp, p, bid, b_mass, b_count)
        errs[i] = code
        if code != OK:
            continue
        ui = u[i] if randomized else 0.0
        v_star = _set_row(p, pmax, ui, qhat, kind, randomized, lam, k_reg, weight, allow_empty, b_mass, b_count,
                          bid, tmp)
        for j in range(k):
            out[i, j] = p[j] >= v_star


@njit(cache=True, nogil=True, parallel=True)
def predict_sets(src, u, qhat, logits, temp, kind, randomized, lam, k_reg, weight, allow_empty, chunk, out, errs):
    n = src.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        set_rows(src, u, qhat, logits, temp, kind, randomized, lam, k_reg, weight, allow_empty, c * chunk,
                 min(n, (c + 1) * chunk), out, errs)


@njit(cache=True, nogil=True)
def lac_label_rows(src, labels, logits, temp, lo, hi, out, errs):
    p = np.empty(src.shape[1], dtype=np.float64)
    for i in range(lo, hi):
        errs[i] = _row_check(src, i, logits)
        if errs[i] != OK:
            continue
        _row_probs(src, i, logits, temp, p)
        out[i] = 1.0 - p[labels[i]]


@njit(cache=True, nogil=True, parallel=True)
def lac_label_scores(src, labels, logits, temp, chunk, out, errs):
    n = src.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        lac_label_rows(src, labels, logits, temp, c * chunk, min(n, (c + 1) * chunk), out, errs)


@njit(cache=True, nogil=True, inline="always")
def lac_row_scores(p, out, i):
    """LAC score 1 - p_y of every label of one probability row (K,) into row i of out (n, K)."""
    for j in range(p.shape[0]):
        out[i, j] = 1.0 - p[j]


@njit(cache=True, nogil=True)
def lac_all_rows(src, logits, temp, lo, hi, out, errs):
    k = src.shape[1]
    p = np.empty(k, dtype=np.float64)
    for i in range(lo, hi):
        errs[i] = _row_check(src, i, logits)
        if errs[i] != OK:
            continue
        _row_probs(src, i, logits, temp, p)
        lac_row_scores(p, out, i)


@njit(cache=True, nogil=True, parallel=True)
def lac_all_scores(src, logits, temp, chunk, out, errs):
    n = src.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        lac_all_rows(src, logits, temp, c * chunk, min(n, (c + 1) * chunk), out, errs)


@njit(cache=True, nogil=True)
def lac_set_rows(src, qhat, logits, temp, allow_empty, lo, hi, out, errs):
    """LAC sets {y : 1 - p_y <= qhat}; for probabilities, check and compare in one pass over the input."""
    k = src.shape[1]
    p = np.empty(k, dtype=np.float64)
    for i in range(lo, hi):
        any_in = False
        if logits:
            code, _ = _load_row(src, i, logits, temp, p)
            errs[i] = code
            if code != OK:
                continue
            for j in range(k):
                inside = 1.0 - p[j] <= qhat
                out[i, j] = inside
                any_in = any_in or inside
        else:
            s = 0.0
            bad = 0.0
            for j in range(k):
                v = np.float64(src[i, j])
                s += v
                # NaN, inf and values outside [0, 1] all make `bad` non-zero (NaN propagates); no branch
                bad += (v < 0.0) + (v > 1.0) + (v != v)
                inside = 1.0 - v <= qhat
                out[i, j] = inside
                any_in = any_in or inside
            if bad != 0.0 or not np.isfinite(s):
                errs[i] = _row_check(src, i, logits)  # find which problem, for the message
                continue
            if abs(s - 1.0) > ROW_SUM_TOL:
                errs[i] = BAD_SUM
                continue
            errs[i] = OK
        if not any_in and not allow_empty:
            if not logits:
                for j in range(k):
                    p[j] = np.float64(src[i, j])
            pmax = p[0]
            for j in range(k):
                if p[j] > pmax:
                    pmax = p[j]
            for j in range(k):
                out[i, j] = p[j] >= pmax


@njit(cache=True, nogil=True, parallel=True)
def lac_predict_sets(src, qhat, logits, temp, allow_empty, chunk, out, errs):
    n = src.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        lac_set_rows(src, qhat, logits, temp, allow_empty, c * chunk, min(n, (c + 1) * chunk), out, errs)


@njit(cache=True, nogil=True)
def lac_cut32(qhat):
    """Smallest float32 v in [0, 1] with 1.0 - float64(v) <= qhat (the LAC test is monotone in v), or inf."""
    one = np.float32(1.0)
    if not (1.0 - np.float64(one) <= qhat):
        return np.inf
    lo = np.uint32(0)  # bit patterns of non-negative floats are ordered like their values
    hi = np.array([one]).view(np.uint32)[0]
    while lo < hi:
        mid = lo + (hi - lo) // np.uint32(2)
        v = np.array([mid], dtype=np.uint32).view(np.float32)[0]
        if 1.0 - np.float64(v) <= qhat:
            hi = mid
        else:
            lo = mid + np.uint32(1)
    return np.float64(np.array([lo], dtype=np.uint32).view(np.float32)[0])


@njit(cache=True, nogil=True)
def lac_cut64(qhat):
    """As `lac_cut32` for float64 inputs."""
    if not (1.0 - 1.0 <= qhat):
        return np.inf
    lo = np.uint64(0)
    hi = np.array([1.0]).view(np.uint64)[0]
    while lo < hi:
        mid = lo + (hi - lo) // np.uint64(2)
        v = np.array([mid], dtype=np.uint64).view(np.float64)[0]
        if 1.0 - v <= qhat:
            hi = mid
        else:
            lo = mid + np.uint64(1)
    return np.array([lo], dtype=np.uint64).view(np.float64)[0]


@njit(cache=True, nogil=True)
def lac_prob_rows(src, bits, one_bits, cut, allow_empty, lo, hi, out, errs):
    """LAC sets for probability inputs as `src >= cut` in the input's own dtype (SIMD-friendly), with the row
    checks (finite, in [0, 1], sum within tolerance) in a second pass over the row while it is in cache.
    `bits` is `src` viewed as unsigned integers of its width and `one_bits` the pattern of 1.0: a value is
    finite and in [0, 1] exactly when its pattern is <= one_bits (NaN, inf and negatives are larger)."""
    k = src.shape[1]
    c = src.dtype.type(cut) if cut <= 1.0 else src.dtype.type(2.0)
    for i in range(lo, hi):
        row = src[i]
        for j in range(k):
            out[i, j] = row[j] >= c
        # range and finiteness from the bit patterns: an integer max reduction, which vectorizes
        bmax = bits[i, 0]
        for j in range(k):
            bj = bits[i, j]
            bmax = bj if bj > bmax else bmax
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        s4 = 0.0
        s5 = 0.0
        s6 = 0.0
        s7 = 0.0
        j = 0
        while j + 8 <= k:
            s0 += np.float64(row[j])
            s1 += np.float64(row[j + 1])
            s2 += np.float64(row[j + 2])
            s3 += np.float64(row[j + 3])
            s4 += np.float64(row[j + 4])
            s5 += np.float64(row[j + 5])
            s6 += np.float64(row[j + 6])
            s7 += np.float64(row[j + 7])
            j += 8
        while j < k:
            s0 += np.float64(row[j])
            j += 1
        s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
        if bmax > one_bits:
            code = _row_check(src, i, False)  # which problem, for the message
            if code != OK:  # (OK here means a -0.0: sign bit set, yet a valid probability)
                errs[i] = code
                continue
        mx = np.float64(0.0)
        if not allow_empty:
            for j in range(k):
                mx = max(mx, np.float64(row[j]))
        if abs(s - 1.0) > ROW_SUM_TOL:
            errs[i] = BAD_SUM
            continue
        errs[i] = OK
        if not allow_empty and not (mx >= c):
            for j in range(k):
                out[i, j] = np.float64(row[j]) >= mx


@njit(cache=True, nogil=True, parallel=True)
def lac_prob_sets(src, bits, one_bits, cut, allow_empty, chunk, out, errs):
    n = src.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        lac_prob_rows(src, bits, one_bits, cut, allow_empty, c * chunk, min(n, (c + 1) * chunk), out, errs)


@njit(cache=True, nogil=True)
def check_rows_serial(src, logits, errs):
    for i in range(src.shape[0]):
        errs[i] = _row_check(src, i, logits)


@njit(cache=True, nogil=True, parallel=True)
def check_rows(src, logits, errs):
    """Error code of every row (see `_row_check`), for validation outside the score kernels."""
    for i in prange(src.shape[0]):
        errs[i] = _row_check(src, i, logits)


# ---- the set kernel for small K (every score kind) ---------------------------------------------------------------
# At small K the bucket machinery of `set_rows` (two 322-entry tables zeroed and walked per row) costs more than
# the row itself, and so does sorting it (insertion sort: branch mispredictions, measured ~9x slower than this at
# K = 10). Instead every label's mass above, tie-group mass and rank come from comparing it with every other label:
# K^2 branch-free compares that LLVM vectorises, no sort, no allocation per row (scratch per chunk of rows).
SMALL_K = 32


@njit(cache=True, nogil=True)
def _check_copy_row(src, i, logits, temp, p):
    """Check row i and copy it into `p` as float64 probabilities in one pass; returns (error code, row sum, max).
    The flags and the four-lane sum are those of `_row_check`, so a row fails here exactly when it fails there."""
    k = src.shape[1]
    if logits:
        code = _row_check(src, i, logits)
        if code != OK:
            return code, 0.0, 0.0
        _row_probs(src, i, logits, temp, p)
        s = 0.0
        pmax = p[0]
        for j in range(k):
            s += p[j]
            pmax = max(pmax, p[j])
        return OK, s, pmax
    bad = False
    out = False
    pmax = -np.inf
    k4 = k - k % 4
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    for j in range(0, k4, 4):
        v0 = np.float64(src[i, j])
        v1 = np.float64(src[i, j + 1])
        v2 = np.float64(src[i, j + 2])
        v3 = np.float64(src[i, j + 3])
        p[j] = v0
        p[j + 1] = v1
        p[j + 2] = v2
        p[j + 3] = v3
        s0 += v0
        s1 += v1
        s2 += v2
        s3 += v3
        bad |= not ((v0 - v0 == 0.0) & (v1 - v1 == 0.0) & (v2 - v2 == 0.0) & (v3 - v3 == 0.0))
        out |= (min(min(v0, v1), min(v2, v3)) < 0.0) | (max(max(v0, v1), max(v2, v3)) > 1.0)
        pmax = max(pmax, max(max(v0, v1), max(v2, v3)))
    s = (s0 + s1) + (s2 + s3)
    for j in range(k4, k):
        v = np.float64(src[i, j])
        p[j] = v
        s += v
        bad |= not (v - v == 0.0)
        out |= (v < 0.0) | (v > 1.0)
        pmax = max(pmax, v)
    if bad:
        return NONFINITE, 0.0, 0.0
    if out:
        return OUT_OF_RANGE, 0.0, 0.0
    if abs(s - 1.0) > ROW_SUM_TOL:
        return BAD_SUM, s, 0.0
    return OK, s, pmax


@njit(cache=True, nogil=True)
def _pairwise_row_sets(p, fx, pmax, u, qhat, kind, randomized, lam, k_reg, weight, allow_empty, out, i):
    """Row i of `out`: {y : s(x, y) <= qhat} with each label's score from `_label_mass` sums over the row, taken
    from the fixed-point masses `fx` (the same integers, summed exactly in any order, so the same scores as
    `tie_group_scores`); an empty set becomes the labels at p_max when not `allow_empty`."""
    k = p.shape[0]
    any_in = False
    for j in range(k):
        pj = p[j]
        m_above = np.int64(0)
        m_group = np.int64(0)
        c_above = 0
        c_group = 0
        for t in range(k):
            pt = p[t]
            f = fx[t]
            above = pt > pj
            tied = pt == pj
            m_above += f if above else 0
            m_group += f if tied else 0
            c_above += 1 if above else 0
            c_group += 1 if tied else 0
        inside = _score(kind, m_above, m_group, c_above + c_group, pmax, u, randomized, lam, k_reg, weight) <= qhat
        out[i, j] = inside
        any_in |= inside
    if not any_in and not allow_empty:
        for j in range(k):
            out[i, j] = p[j] >= pmax


@njit(cache=True, nogil=True)
def small_set_rows(src, u, qhat, logits, temp, kind, randomized, lam, k_reg, weight, allow_empty, lo, hi, out,
                   errs):
    """Boolean prediction sets for rows lo..hi-1, as `set_rows` bit for bit, for K <= SMALL_K (measured faster
    than the bucket walk there; docs/benchmarks.md, `small_k`): check, copy and max in one pass, then the K^2
    compares of `_pairwise_row_sets`."""
    k = src.shape[1]
    p = np.empty(k, dtype=np.float64)
    fx = np.empty(k, dtype=np.int64)
    for i in range(lo, hi):
        code, row_sum, pmax = _check_copy_row(src, i, logits, temp, p)
        errs[i] = code
        if code != OK:
            continue
        for j in range(k):
            fx[j] = _fixed(p[j])
        ui = u[i] if randomized else 0.0
        _pairwise_row_sets(p, fx, pmax, ui, qhat, kind, randomized, lam, k_reg, weight, allow_empty, out, i)


@njit(cache=True, nogil=True, parallel=True)
def small_predict_sets(src, u, qhat, logits, temp, kind, randomized, lam, k_reg, weight, allow_empty, chunk, out,
                       errs):
    n = src.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        small_set_rows(src, u, qhat, logits, temp, kind, randomized, lam, k_reg, weight, allow_empty, c * chunk,
                       min(n, (c + 1) * chunk), out, errs)


# ---- LAC sets for probabilities at small K ----------------------------------------------------------------------
# At small K the per-row loops of `lac_prob_rows` are too short to vectorise well (a row of 10 float32 is 40 bytes):
# compare and range-check a block of rows as one flat run instead, then take the row sums.
LAC_SMALL_K = 128


@njit(cache=True, nogil=True)
def _lac_flat_block(src, bits, one_bits, c, allow_empty, lo, hi, out, errs):
    k = src.shape[1]
    a = lo * k
    b = hi * k
    sf = src.reshape(src.size)[a:b]
    bf = bits.reshape(bits.size)[a:b]
    of = out.reshape(out.size)[a:b]
    for t in range(b - a):  # indices from 0 (no wraparound checks), so these two loops vectorise
        of[t] = sf[t] >= c
    bmax = bf[0]
    for t in range(b - a):
        x = bf[t]
        bmax = x if x > bmax else bmax
    for i in range(lo, hi):  # the row sums of `_row_check`
        errs[i] = BAD_SUM if abs(row_sum(src, i) - 1.0) > ROW_SUM_TOL else OK
    if bmax > one_bits:  # a NaN, inf, negative or -0.0 somewhere in the block: which rows, for the message
        for i in range(lo, hi):
            code = _row_check(src, i, False)
            if code != OK:
                errs[i] = code
    if not allow_empty:
        for i in range(lo, hi):
            if errs[i] != OK:
                continue
            mb = bits[i, 0]
            for j in range(k):
                x = bits[i, j]
                mb = x if x > mb else mb
            if mb <= one_bits:  # the largest pattern is p_max's
                mx = np.float64(uint_float(mb))
            else:  # a -0.0 in the row
                mx = np.float64(0.0)
                for j in range(k):
                    mx = max(mx, np.float64(src[i, j]))
            if not (mx >= c):
                for j in range(k):
                    out[i, j] = np.float64(src[i, j]) >= mx


@njit(cache=True, nogil=True)
def lac_small_rows(src, bits, one_bits, cut, allow_empty, lo, hi, out, errs):
    """As `lac_prob_rows` (same sets and codes) for K <= LAC_SMALL_K, in blocks of rows that stay in cache."""
    k = src.shape[1]
    c = src.dtype.type(cut) if cut <= 1.0 else src.dtype.type(2.0)
    block = max(1, 8192 // k)
    for b0 in range(lo, hi, block):
        _lac_flat_block(src, bits, one_bits, c, allow_empty, b0, min(hi, b0 + block), out, errs)


@njit(cache=True, nogil=True, parallel=True)
def lac_small_sets(src, bits, one_bits, cut, allow_empty, chunk, out, errs):
    n = src.shape[0]
    for c in prange((n + chunk - 1) // chunk):
        lac_small_rows(src, bits, one_bits, cut, allow_empty, c * chunk, min(n, (c + 1) * chunk), out, errs)
