"""Prediction sets computed where a torch tensor lives (CPU or CUDA), with the tensor's own methods.

The core never imports torch (import-linter contract `core-dependencies`): a tensor is recognised by its type's
module, and every operation here is a method of the tensor or of tensors derived from it (`sort`, `topk`,
`cumsum`, `gather`, comparisons), so the same code runs on any device torch supports. Calibration stays on the
host; at predict only scalars (qhat, the exact LAC cut, the window width) and the per-row uniforms of randomized
sets (drawn on the host from the calibrator's generator, n float64) cross to the device, and nothing of size
n x K comes back.

Semantics are the Numba kernels' (conformal/_kernels/scores.py), operation for operation: probabilities widened
to float64, mass in fixed point int64(floor(p * 2**60 + 0.5)) summed exactly, tie groups sharing one score, the
set a prefix of tie groups ending at the first group whose score exceeds qhat. On CPU tensors the sets are the
Numba path's bit for bit (tests/conformal/test_tensor_sets.py); for logits the softmax denominator is summed by
`cumsum` (sequential on CPU, as in the kernel), but torch's `exp` (like NumPy's SIMD one) differs from libm's,
which the kernels call, by one ulp in about 5 % of values, and on CUDA a reduction order may differ too: a softmax
can differ in its last bit, which moves a label only when its score ties qhat to the last bit.

No full sort per row where avoidable: only the top `m` labels of every row are taken (`topk`), `m` from a bound
on how many labels can enter any set (APS/RAPS: a label in a set has p >= (row sum - qhat) / K; TopK: rank <=
qhat + 1; SAPS: rank <= (qhat - p_max) / weight + 2). The window is exact whatever `m` is: a tie group cut by the
window's edge scores too low, never too high, so a row is decided unless its whole window entered the set; those
rows (if any) are redone with a full sort.

A CPU tensor does not take this path: after the same type and shape checks (`check_tensor`, the same messages) it
is viewed as a NumPy array without a copy (`host_view`), the host (Numba) kernels run on the view, and their
outputs come back as CPU tensors sharing the arrays' memory (`from_host`); on CPU those kernels are 4-50x faster
than the tensor ops (docs/benchmarks.md, small_k and tensor paths). `_device_path_on_cpu` (private, for the tests and
benchmarks) sends CPU tensors down the device path instead, so the bit-identity tests keep proving the path a CUDA
tensor takes.
"""
from __future__ import annotations

import sys

import numpy as np

from conformal._kernels import scores as _k
from conformal._kernels import statistics as _ks
from conformal._validation import ROW_SUM_TOL

_SCALE = float(2 ** 60)


def is_tensor(x) -> bool:
    """True for a torch tensor (recognised without importing torch)."""
    return (type(x).__module__ or "").startswith("torch") and hasattr(x, "device") and hasattr(x, "dtype")


# True: CPU tensors take the device path too (the tests and benchmarks set it to run, on CPU tensors, the path a
# CUDA tensor takes); False (default): CPU tensors are computed by the host kernels through a shared NumPy view.
_device_path_on_cpu = False


def on_host(x) -> bool:
    """True when a checked tensor is computed by the host kernels: a dense CPU tensor, unless the device path is
    forced (`_device_path_on_cpu`). Other layouts (sparse, ...) have no NumPy view and stay on the device path."""
    return x.device.type == "cpu" and not _device_path_on_cpu and str(x.layout) == "torch.strided"


def host_view(x) -> np.ndarray:
    """The NumPy view of a checked (so detached) dense CPU tensor: it shares the tensor's memory, no copy."""
    return x.numpy()


def from_host(like, arr):
    """The NumPy result `arr` as a CPU tensor sharing its memory (torch is taken from `like`'s type, never imported
    here). A read-only array (a frozen or shared output) is copied first: torch has no read-only tensors, and a
    writable tensor over it would let a caller change what was frozen; so is one with a negative stride, which
    torch cannot view."""
    if not arr.flags.writeable or min(arr.strides, default=0) < 0:
        arr = arr.copy()
    return sys.modules[type(like).__module__.partition(".")[0]].from_numpy(arr)


def check_tensor(x, name: str = "probs", n_classes: int | None = None):
    """Type and shape checks of an (n, K) float tensor, with the messages of `check_scores_matrix`."""
    dtype = str(x.dtype)
    if dtype not in ("torch.float32", "torch.float64"):
        raise TypeError(f"`{name}` must be a float32 or float64 tensor; got dtype {dtype.replace('torch.', '')}")
    if x.dim() != 2:
        raise ValueError(f"`{name}` must be 2-D (n_samples, n_classes); got shape {tuple(x.shape)}")
    n, k = x.shape
    if n < 1:
        raise ValueError(f"`{name}` must have at least 1 row; got shape {tuple(x.shape)}")
    if k < 2:
        raise ValueError(f"`{name}` must have at least 2 classes (columns); got {k}")
    if n_classes is not None and k != n_classes:
        raise ValueError(f"`{name}` has {k} classes but the calibrator was fitted with {n_classes}")
    return x.detach()


def check_values(x, logits: bool, name: str = "probs") -> None:
    """Raise the kernels' ValueError for the first bad row (finite; for probabilities also in [0, 1], rows summing
    to 1 within ROW_SUM_TOL). One boolean comes back to the host; the offending row only when there is one."""
    finite = x.isfinite().all(dim=1)
    if logits:
        bad = ~finite
    else:
        in_range = ((x >= 0) & (x <= 1)).all(dim=1)
        sums = x.double().sum(dim=1)
        bad = ~finite | ~in_range | ((sums - 1.0).abs() > ROW_SUM_TOL)
    if not bool(bad.any()):
        return
    row = int(bad.nonzero()[0, 0])
    if not bool(finite[row]):
        raise ValueError(f"`{name}` must be finite; row {row} holds NaN or inf")
    if not bool(in_range[row]):
        raise ValueError(f"`{name}` must hold probabilities in [0, 1]; row {row} does not "
                         f"(pass inputs='logits' for raw model outputs)")
    raise ValueError(f"`{name}` rows must sum to 1 within {ROW_SUM_TOL:g}; row {row} sums to {float(sums[row]):.6g} "
                     f"(pass inputs='logits' for raw model outputs)")


def probs64(x, logits: bool, temp: float):
    """float64 probabilities: the input widened, or the kernels' softmax of logits / temp (max-shifted exp,
    denominator summed left to right)."""
    v = x.double()
    if not logits:
        return v
    if temp != 1.0:
        v = v / temp
    e = (v - v.max(dim=1, keepdim=True).values).exp()
    return e / e.cumsum(dim=1)[:, -1:]


def _fixed(p):
    return (p * _SCALE + 0.5).floor().long()


def _score(kind, m_above, m_group, rank, pmax, u, randomized, lam, k_reg, weight):
    """`conformal._kernels.scores._score` on tensors (m_above, m_group int64; rank int64; pmax, u float64)."""
    if kind in (_k.APS, _k.RAPS):
        s = ((m_above.double() + u * m_group.double()) if randomized else (m_above + m_group).double()) / _SCALE
        if kind == _k.RAPS:
            pen = rank - k_reg
            s = s.where(pen <= 0, s + lam * pen.double())
        return s
    if kind == _k.SAPS:
        v = u if randomized else 1.0
        return (pmax + ((rank - 2).double() + v) * weight).where(rank != 1, v * pmax)
    return ((rank - 1).double() + u) if randomized else rank.double()


def _walk(sv, kind, randomized, lam, k_reg, weight, u):
    """Scores of the tie groups of rows of values sorted in decreasing order, at every position (each position
    carries the score of its group as if the group ended there: exact at the last position of each group)."""
    m = sv.shape[1]
    pos = _arange_like(sv, m)
    first = sv.new_ones(sv.shape).bool()
    first[:, 1:] = sv[:, 1:] != sv[:, :-1]
    fx = _fixed(sv)
    cum = fx.cumsum(dim=1)
    start = (pos * first.long()).cummax(dim=1).values  # first position of each position's tie group
    m_above = (cum - fx).gather(1, start)
    last = sv.new_ones(sv.shape).bool()
    last[:, :-1] = first[:, 1:]
    rank = (pos + 1).expand_as(sv)
    uu = u[:, None] if randomized else 0.0
    pmax = sv[:, :1]
    return _score(kind, m_above, cum - m_above, rank, pmax, uu, randomized, lam, k_reg, weight), start, last


def _arange_like(x, m):
    return x.new_ones((1, m)).long().cumsum(dim=1) - 1


def _v_star(sv, qhat, kind, randomized, lam, k_reg, weight, u):
    """Smallest probability in each row's set (inf when empty) from the top-m values `sv` (n, m) in decreasing
    order, and a flag per row: False when the window does not decide it (every position entered)."""
    n, m = sv.shape
    s, start, last = _walk(sv, kind, randomized, lam, k_reg, weight, u)
    reject = last & (s > qhat)
    has_reject = reject.any(dim=1)
    f = reject.long().argmax(dim=1)  # first rejected group end (0 when none: masked below)
    f_start = start.gather(1, f[:, None])[:, 0]
    inf = sv.new_full((n,), float("inf"))
    prev = sv.gather(1, (f_start - 1).clamp(min=0)[:, None])[:, 0]
    v = prev.where(f_start > 0, inf)
    v = v.where(has_reject, sv[:, -1])
    return v, has_reject


def _window(p, qhat, kind, weight, k):
    """How many top labels per row can decide every set (see the module docstring); K when nothing is saved."""
    if not np.isfinite(qhat):
        return k
    if kind in (_k.APS, _k.RAPS):
        cut = (p.sum(dim=1, keepdim=True) - qhat) / k * (1.0 - 1e-12)
        m = int((p >= cut).sum(dim=1).max()) + 1
    elif kind == _k.TOPK:
        m = int(np.floor(max(qhat, 0.0))) + 2
    else:  # SAPS
        m = int(np.floor(max(qhat, 0.0) / weight)) + 3
    return max(1, min(k, m))


def rank_sets(score, x, qhat: float, u, logits: bool, temp: float, allow_empty: bool):
    """Sets {y : s(x, y) <= qhat} of a rank score (APS, RAPS, SAPS, TopK) for an (n, K) tensor, on its device."""
    kind, lam, k_reg, weight = score.kernel_params()
    randomized = u is not None
    p = probs64(x, logits, temp)
    n, k = p.shape
    ut = p.new_tensor(u) if randomized else None
    m = _window(p, qhat, kind, weight, k)
    sv = p.topk(m, dim=1, sorted=True).values if m < k else p.sort(dim=1, descending=True).values
    v, decided = _v_star(sv, qhat, kind, randomized, lam, k_reg, weight, ut)
    if m < k:
        redo = (~decided).nonzero()[:, 0]
        if redo.numel():
            full = p.index_select(0, redo).sort(dim=1, descending=True).values
            v_full, _ = _v_star(full, qhat, kind, randomized, lam, k_reg, weight,
                                None if ut is None else ut.index_select(0, redo))
            v = v.index_copy(0, redo, v_full)
    if not allow_empty:
        pmax = p.max(dim=1).values
        v = v.where(v != float("inf"), pmax)
    return p >= v[:, None]


def rank_all_scores(score, x, u, logits: bool, temp: float):
    """Score of every label (n, K) float64, on the tensor's device (one sort per row), as `Score.all_scores`."""
    kind, lam, k_reg, weight = score.kernel_params()
    randomized = u is not None
    p = probs64(x, logits, temp)
    sv, order = p.sort(dim=1, descending=True, stable=True)
    s, start, last = _walk(sv, kind, randomized, lam, k_reg, weight, p.new_tensor(u) if randomized else None)
    m = sv.shape[1]
    pos = _arange_like(sv, m).expand_as(sv)
    big = pos.new_full(sv.shape, m)
    end = pos.where(last, big).flip(1).cummin(dim=1).values.flip(1)  # last position of each group
    return p.new_empty(p.shape).scatter_(1, order, s.gather(1, end))


def lac_sets(x, qhat: float, logits: bool, temp: float, allow_empty: bool):
    """LAC sets {y : 1 - p_y <= qhat}: for probabilities `x >= cut` in the tensor's dtype with the exact cut of
    that dtype (as the kernel), for logits on the float64 softmax."""
    if logits:
        p = probs64(x, logits, temp)
        sets = (1.0 - p) <= qhat
        base = p
    else:
        is32 = str(x.dtype) == "torch.float32"
        cut = _k.lac_cut32(qhat) if is32 else _k.lac_cut64(qhat)
        sets = x >= (cut if cut <= 1.0 else 2.0)
        base = x
    if not allow_empty:
        sets = add_top1(sets, base)
    return sets


def lac_scores(x, logits: bool, temp: float):
    return 1.0 - probs64(x, logits, temp)


def add_top1(sets, base):
    """Give every empty set the label(s) of maximal `base` (probabilities, or logits: same argmax)."""
    empty = ~sets.any(dim=1, keepdim=True)
    return sets | (empty & (base == base.max(dim=1, keepdim=True).values))


def _count_le(cal_sorted, flat, strict: bool):
    """#{cal < v} (strict) or #{cal <= v} for every v of `flat`, by one stable sort of both (the tensor API has no
    searchsorted method): cal values tied with v sort after v when strict, before it otherwise."""
    nc, nf = cal_sorted.shape[0], flat.shape[0]
    buf = flat.new_empty(nc + nf)
    if strict:
        buf[:nf], buf[nf:] = flat, cal_sorted
    else:
        buf[:nc], buf[nc:] = cal_sorted, flat
    order = buf.argsort(stable=True)
    is_cal = (order >= nf) if strict else (order < nc)
    before = is_cal.long().cumsum(0)
    out = order.new_empty(nf)
    out[order[~is_cal] - (0 if strict else nc)] = before[~is_cal]
    return out


def pvalues_against(cal_sorted, s, v):
    """`_ConformalClassifier._pvalues_against` on tensors: cal_sorted (n_cal,) float64 on s's device."""
    n = cal_sorted.shape[0]
    flat = s.reshape(-1).contiguous()
    ge = n - _count_le(cal_sorted, flat, strict=True).reshape(s.shape)  # #{s_i >= s}
    if v is None:
        return (1.0 + ge) / (n + 1.0)
    gt = n - _count_le(cal_sorted, flat, strict=False).reshape(s.shape)  # #{s_i > s}
    return (gt + v * (ge - gt + 1.0)) / (n + 1.0)


# ---- the calibrators' predict on tensors (called from calibrators.py when `probs` is a tensor) --------------------
def _f64(x, values):
    """A float64 tensor of host `values` on x's device (never through x's own dtype)."""
    return x.new_zeros(0).double().new_tensor(values)


def _mode(est):
    """(randomized, allow_empty) as the calibrator's predict reads them (resolved values where it has them)."""
    return bool(getattr(est, "randomized_", est.randomized)), bool(getattr(est, "allow_empty_", est.allow_empty))


def _scores(est, x, u, logits):
    if est.score_.randomizable:
        return rank_all_scores(est.score_, x, u, logits, est.temperature)
    return lac_scores(x, logits, est.temperature)


def split_predict_sets(est, probs, rng=None):
    """`SplitConformalClassifier.predict_sets` for a tensor: a bool tensor on the same device."""
    x = check_tensor(probs, "probs", est.n_classes_)
    if on_host(x):
        return from_host(x, est.predict_sets(host_view(x), rng))
    logits = est.inputs == "logits"
    check_values(x, logits)
    randomized, allow_empty = _mode(est)
    score = est.score_
    if randomized and not score.randomizable:  # LAC: smoothed p-values
        gen = est._generator(rng)
        v = _f64(x, gen.random(x.shape[0])[:, None])
        cal = _f64(x, est.calibration_scores_)
        sets = pvalues_against(cal, lac_scores(x, logits, est.temperature), v) > est.alpha
        return add_top1(sets, x) if not allow_empty else sets
    u = est._uniforms(x.shape[0], rng)
    if not score.randomizable:
        return lac_sets(x, float(est.qhat_), logits, est.temperature, allow_empty)
    return rank_sets(score, x, float(est.qhat_), u, logits, est.temperature, allow_empty)


def class_conditional_predict_sets(est, probs, rng=None):
    """`ClassConditionalConformalClassifier.predict_sets` for a tensor: a bool tensor on the same device."""
    x = check_tensor(probs, "probs", est.n_classes_)
    if on_host(x):
        return from_host(x, est.predict_sets(host_view(x), rng))
    logits = est.inputs == "logits"
    check_values(x, logits)
    randomized, allow_empty = _mode(est)
    qhat = _f64(x, est.qhat_)
    if randomized and not est.score_.randomizable:
        gen = est._generator(rng)
        s = lac_scores(x, logits, est.temperature)
        v = _f64(x, gen.random(x.shape[0]))
        cal = _f64(x, est.calibration_scores_)
        edges = np.concatenate([[0], np.cumsum(est.class_counts_)])
        pv = s.new_ones(s.shape)
        for c in range(est.n_classes_):
            if edges[c + 1] > edges[c]:
                pv[:, c] = pvalues_against(cal[int(edges[c]):int(edges[c + 1])], s[:, c], v)
        sets = pv > est.alpha
        fb = est.fallback_classes_
        if est.fallback == "full" and fb.size:
            sets[:, fb.tolist()] = True
        elif fb.size:
            cols = fb.tolist()
            sets[:, cols] = s[:, cols] <= qhat[cols]
    else:
        u = est._uniforms(x.shape[0], rng)
        sets = _scores(est, x, u, logits) <= qhat[None, :]
    return add_top1(sets, x) if not allow_empty else sets


def lane_sum(v):
    """Row sums of a float64 (n, K) tensor in the kernels' fixed order: four lanes (j mod 4), each summed left to
    right (`cumsum`: sequential on CPU), combined as (s0 + s1) + (s2 + s3), then the K mod 4 tail in order."""
    n, k = v.shape
    k4 = k - k % 4
    if k4:
        lanes = v[:, :k4].reshape(n, k4 // 4, 4).cumsum(dim=1)[:, -1, :]
        s = (lanes[:, 0] + lanes[:, 1]) + (lanes[:, 2] + lanes[:, 3])
    else:
        s = v.new_zeros(n)
    for j in range(k4, k):
        s = s + v[:, j]
    return s


# ---- the label-free statistics of conformal/_kernels/statistics.py, operation for operation -----------------
_ONE_MINUS_SQRT_HALF_BITS = _ks._ONE_BITS - _ks._SQRT_HALF_BITS


def _xlogx(v):
    """`conformal._kernels.statistics._xlogx` on a float64 tensor of finite values >= 0."""
    i64, f64 = v.new_zeros(0).long().dtype, v.dtype
    b = v.view(i64) + _ONE_MINUS_SQRT_HALF_BITS
    m = ((b & _ks._MANTISSA) + _ks._SQRT_HALF_BITS).view(f64)
    e = ((b >> 52) | _ks._TWO52_BITS).view(f64) - _ks._TWO52_PLUS_BIAS
    f = (m - 1.0) / (m + 1.0)
    s = f * f
    poly = 1.0 / 17.0
    for c in (1.0 / 15.0, 1.0 / 13.0, 1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0):
        poly = c + s * poly
    return v * (e * _ks.LN2 + 2.0 * f * poly)


def entropy(p):
    """Entropy / log K of float64 rows `p` (n, K), as `_entropy_block`."""
    h = lane_sum(_xlogx(p))
    return -h * (1.0 / np.log(np.float64(p.shape[1])))


def max_prob(p):
    return 1.0 - p.max(dim=1).values


def margin(p):
    top = p.topk(2, dim=1).values
    return 1.0 - (top[:, 0] - top[:, 1])


# ---- one streaming frame on the tensor's device (conformal.online.FrameScorer.tensor_frame) ----------------------
def frame_code(x, logits: bool) -> int:
    """The kernels' error code of a (1, K) row (0 valid, 1 NaN/inf, 2 outside [0, 1], 3 bad sum; the first that
    applies, as `_row_check`), one int back to the host."""
    v = x.double()
    bad = ~v.isfinite().all()
    if logits:
        return int(bad)
    out = ((v < 0.0) | (v > 1.0)).any()
    bad_sum = (lane_sum(v.nan_to_num(0.0)) - 1.0).abs()[0] > ROW_SUM_TOL
    code = bad_sum.long() * 3
    code = code.where(~out, code.new_full((), 2))
    return int(code.where(~bad, code.new_full((), 1)))


class _KernelScore:
    """A score as `rank_all_scores` reads it (kernel_params only)."""

    def __init__(self, kind, lam, k_reg, weight):
        self._params = (kind, lam, k_reg, weight)

    def kernel_params(self):
        return self._params


def frame(scorer, x, q: float, stat_fn):
    """One validated (1, K) row at threshold q on its device: (probabilities (1, K) float64, every label's
    non-randomized score (K,) float64, the set's labels by decreasing probability (stable) and their
    probabilities as host lists, top-1 label, its probability, whether allow_empty=False filled an empty set with
    the top-1 group, the statistic). Only the set's labels and a few scalars come to the host."""
    p = probs64(x, scorer.logits, scorer.temperature)
    if scorer.kind == 0:  # LAC
        scores = 1.0 - p
    else:
        score = _KernelScore(scorer.kind, scorer.lam, scorer.k_reg, scorer.weight)
        scores = rank_all_scores(score, x, None, scorer.logits, scorer.temperature)
    sv, order = p.sort(dim=1, descending=True, stable=True)
    in_set = scores.gather(1, order) <= q
    empty = ~in_set.any()
    if not scorer.allow_empty:
        in_set = in_set | (empty & (sv == sv[:, :1]))
    stat = stat_fn(p, scores) if stat_fn is not None else p.new_full((1,), float("nan"))
    head = p.new_empty(4)
    head[0], head[1], head[2], head[3] = stat[0], sv[0, 0], order[0, 0].double(), empty.double()
    members = order[in_set]
    packed = p.new_empty(4 + 2 * members.shape[0])
    packed[:4] = head
    packed[4:4 + members.shape[0]] = members.double()
    packed[4 + members.shape[0]:] = sv[in_set]
    host = packed.tolist()
    m = members.shape[0]
    return (p, scores[0], [int(j) for j in host[4:4 + m]], host[4 + m:], int(host[2]), host[1],
            bool(host[3]) and not scorer.allow_empty and m > 0, host[0])
