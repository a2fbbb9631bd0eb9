"""The 8-lane path of the APS/RAPS set kernel at K <= 16 (conformal/_kernels/lanes.py and `prob_sets._lane_block`):
the sorting network, the lane intrinsics against NumPy, the exact mass thresholds and the margin that makes the
float64 walk exact, and the rows a block hands back (undecided, or a block with a bit pattern above 1.0)."""
import numpy as np
import pytest
from numba import njit

from conformal._kernels import lanes as L
from conformal._kernels import prob_sets as PS
from conformal._kernels import scores as K
from conformal.scores import APS, RAPS
from tests.reference import naive

TOP = 1 << 62


@pytest.mark.parametrize("k", range(1, 17))
def test_batcher_pairs_sort_every_zero_one_input(k):
    """The 0-1 principle: a comparator network sorts every input iff it sorts every 0/1 input; all 2**k of them."""
    pairs = L.batcher_pairs(k)
    assert all(0 <= a < b < k for a, b in pairs)
    x = ((np.arange(2 ** k)[:, None] >> np.arange(k)) & 1).astype(np.int8)
    for a, b in pairs:
        hi, lo = np.maximum(x[:, a], x[:, b]), np.minimum(x[:, a], x[:, b])
        x[:, a], x[:, b] = hi, lo
    assert (np.diff(x, axis=1) <= 0).all()
    if k == 10:
        assert len(pairs) == 32


@njit(cache=True)
def _sort8(t, k):
    L.sort8(t, k)


@njit(cache=True)
def _umax_add(t, k, bm):
    s = np.zeros((2, 8))
    for j in range(k):
        L.umax8(bm, t, j)
        L.add8(s, j % 2, t, j)
    return bm, s


@njit(cache=True)
def _walk8(t, k, bounds):
    n_in = np.full(8, -7, dtype=np.int64)
    mask = L.walk8(t, k, bounds, n_in)
    return n_in, mask


def _columns(k, dtype, rng, ties):
    w = rng.integers(0, 3, size=(k, 8)).astype(np.float64) if ties else rng.gamma(0.5, size=(k, 8))
    w[0] += 1.0
    w[:, 5] = 0.0  # a lane of zeros but one
    w[0, 5] = 1.0
    return (w / w.sum(axis=0)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sort8_against_numpy(dtype):
    rng = np.random.default_rng(1)
    for k in range(1, 17):
        for ties in (False, True):
            t = np.empty((k + 1, 8), dtype=dtype)
            t[:k] = _columns(k, dtype, rng, ties)
            t[k] = -1.0
            want = -np.sort(-t[:k], axis=0)
            _sort8(t, k)
            np.testing.assert_array_equal(t[:k], want, err_msg=f"k={k}")
            assert (t[k] == -1.0).all()
    t = rng.random((17, 8)).astype(dtype)
    before = t.copy()
    _sort8(t, 17)  # beyond the networks: left as it is
    np.testing.assert_array_equal(t, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_umax8_and_add8_against_numpy(dtype):
    rng = np.random.default_rng(2)
    t = rng.random((13, 8)).astype(dtype)
    t[3, 2] = -0.0
    t[4, 6] = np.nan
    utype = np.uint32 if dtype == np.float32 else np.uint64
    bm, s = _umax_add(t, 13, np.zeros(8, dtype=utype))
    np.testing.assert_array_equal(bm, t.view(utype).max(axis=0))
    t64 = t.astype(np.float64)
    for q in (0, 1):
        want = np.zeros(8)
        for j in range(q, 13, 2):  # the same order of additions
            want = want + t64[j]
        np.testing.assert_array_equal(s[q], want)


def _walk_twin(t, k, bounds):
    """`walk8` in Python, lane by lane."""
    n_in = np.zeros(8, dtype=np.int64)
    mask = 0
    for lane in range(8):
        s = 0.0
        for r in range(k):
            x = float(t[r, lane])
            s += x
            if float(t[r + 1, lane]) != x:
                if s <= bounds[0, r + 1]:
                    n_in[lane] = r + 1
                elif not s > bounds[1, r + 1]:
                    mask |= 1 << lane
    return n_in, mask


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_walk8_against_python(dtype):
    rng = np.random.default_rng(3)
    for k in (1, 2, 5, 10, 16):
        for ties in (False, True):
            t = np.empty((k + 1, 8), dtype=dtype)
            t[:k] = -np.sort(-_columns(k, dtype, rng, ties), axis=0)
            t[k] = -1.0
            sums = np.cumsum(t[:k].astype(np.float64), axis=0)
            for _ in range(6):  # bounds at, between and around the lanes' own partial sums
                lo = np.concatenate([[0.0], rng.choice(sums.ravel(), size=k)])
                hi = lo + rng.choice([0.0, 1e-12, 0.05], size=k + 1)
                lo[rng.random(k + 1) < 0.2] = -np.inf
                bounds = np.ascontiguousarray(np.stack([lo, hi]))
                n_in, mask = _walk8(t, k, bounds)
                want_n, want_mask = _walk_twin(t, k, bounds)
                np.testing.assert_array_equal(n_in, want_n)
                assert mask == want_mask
    t = np.full((1, 8), -1.0, dtype=dtype)
    n_in, mask = _walk8(t, 0, np.zeros((2, 1)))
    assert mask == 0 and (n_in == 0).all()


def _score_py(score, m, r):
    """The non-randomized APS/RAPS score of fixed-point mass m at rank r, in Python floats (same IEEE operations as
    `scores._score`)."""
    s = float(m) * 2.0 ** -60
    if score.name == "raps" and r - score.k_reg > 0:
        s = s + score.lam * (r - score.k_reg)
    return s


SCORES = [APS(), RAPS(lam=0.05, k_reg=2), RAPS(lam=0.5, k_reg=0), RAPS(lam=1e-12, k_reg=3)]


@pytest.mark.twin("conformal._kernels.prob_sets._mass_thresholds", twin="inline")
@pytest.mark.parametrize("score", SCORES, ids=lambda s: f"{s.name}-{getattr(s, 'lam', '')}")
def test_mass_thresholds_are_the_exact_score_boundary(score):
    """thr[r] is characterised without a search: score(thr) <= q < score(thr + 1), or -1 when score(0) > q, or
    2**62 when score(2**62) <= q (checked in Python floats, as `_mass_thresholds` computes with `_score`)."""
    rng = np.random.default_rng(4)
    fixed = [int(K._fixed(v)) for v in rng.random(5)]
    qs = [0.0, -1.0, 0.5, 0.9, 0.99, 1.0, 1.5, 1e300, float(np.nextafter(0.9, 0)), *rng.random(4),
          *[_score_py(score, m, 3) for m in fixed], float("nan")]
    kind, lam, k_reg, weight = score.kernel_params()
    for q in qs:
        thr = PS._mass_thresholds(q, kind, lam, k_reg, 16)
        assert thr[0] == -1
        for r in range(1, 17):
            t = int(thr[r])
            if t == -1:
                assert _score_py(score, 0, r) > q
            elif t == TOP:
                assert not _score_py(score, TOP, r) > q
            else:
                assert 0 <= t < TOP
                assert not _score_py(score, t, r) > q, (q, r, t)
                assert _score_py(score, t + 1, r) > q, (q, r, t)


@pytest.mark.twin("conformal._kernels.prob_sets._walk_bounds", twin="inline")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_walk_bounds_decide_exactly_what_the_fixed_point_test_decides(dtype):
    """For sorted rows (K <= 16, summing to 1 within the check's tolerance) and thresholds at and within a few
    thousand units of each prefix's exact fixed-point mass cm: the float64 sum S of the prefix, added as `walk8`
    adds it, is never surely in when cm > thr nor surely out when cm <= thr; and the bounds are the documented
    formula."""
    rng = np.random.default_rng(5)
    thr = np.array([-1, 0, 5, 2 ** 59, 2 ** 60 - 3, TOP], dtype=np.int64)
    b = PS._walk_bounds(thr)
    assert b[0, 0] == b[1, 0] == -np.inf and b[0, -1] == b[1, -1] == np.inf
    for r in (1, 2, 3, 4):
        assert b[0, r] == (float(thr[r]) - 16384.0) * 2.0 ** -60
        assert b[1, r] == (float(thr[r]) + 16384.0) * 2.0 ** -60
    undecided = 0
    for k in (2, 10, 16):
        p = -np.sort(-rng.dirichlet(np.full(k, 0.3), size=300), axis=1)
        p[:100] *= 1 + rng.uniform(-9e-4, 9e-4, size=(100, 1))  # off 1, inside the tolerance
        p = p.astype(dtype)
        for row in p:
            s = 0.0
            cm = 0
            for r in range(k):
                s += float(row[r])
                cm += int(K._fixed(float(row[r])))
                deltas = np.array([0, -1, 1, -2000, 2000, -20000, 20000, *rng.integers(-40000, 40000, size=3)])
                t = np.clip(cm + deltas, 0, TOP - 1).astype(np.int64)
                bb = PS._walk_bounds(t)
                for j in range(t.size):
                    if s <= bb[0, j]:
                        assert cm <= t[j], (s, cm, t[j])
                    elif s > bb[1, j]:
                        assert cm > t[j], (s, cm, t[j])
                    else:
                        undecided += 1
    assert undecided > 0  # the margin is met


def _block(p, q, score, allow_empty, i0=0):
    n, k = p.shape
    kind, lam, k_reg, weight = score.kernel_params()
    utype = np.uint32 if p.dtype == np.float32 else np.uint64
    one = np.ones(1, dtype=p.dtype).view(utype)[0]
    bounds = PS._walk_bounds(PS._mass_thresholds(q, kind, lam, k_reg, k))
    t = np.empty((k + 1, 8), dtype=p.dtype)
    t[k] = -1.0
    out = np.zeros((n, k), dtype=np.bool_)
    errs = np.full(n, -1, dtype=np.int8)
    left = PS._lane_block(p, p.view(utype), one, i0, bounds, allow_empty, t, np.empty((4, 8)),
                          np.empty(8, dtype=utype), np.empty(8, dtype=np.int64), out, errs)
    return int(left), out, errs


@pytest.mark.twin("conformal._kernels.prob_sets._lane_block", twin=naive.sets)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("score", SCORES[:2], ids=lambda s: s.name)
def test_lane_block_hands_back_undecided_rows_and_odd_blocks(score, dtype):
    """A qhat equal to a row's own score leaves that row undecided (its sum is within the margin); a block with
    -0.0 or NaN is handed back whole; every row the block decides has the twin's set; bad sums are flagged."""
    rng = np.random.default_rng(6)
    k = 10
    p = -np.sort(-rng.dirichlet(np.full(k, 0.5), size=16), axis=1).astype(dtype)
    q = naive.all_scores(score.name, p, None, **({"lam": score.lam, "k_reg": score.k_reg}
                                                 if score.name == "raps" else {}))[3, 2]
    for allow_empty in (True, False):
        want = naive.sets(score.name, p, float(q), None, **({"lam": score.lam, "k_reg": score.k_reg}
                                                          if score.name == "raps" else {}),
                          allow_empty=allow_empty)
        left, out, errs = _block(p, float(q), score, allow_empty)
        assert left & (1 << 3)
        assert (errs[:8] == K.OK).all()
        for lane in range(8):
            if not left & (1 << lane):
                np.testing.assert_array_equal(out[lane], want[lane])
        left, out, errs = _block(p, float(q), score, allow_empty, i0=8)
        for lane in range(8):
            if not left & (1 << lane):
                np.testing.assert_array_equal(out[8 + lane], want[8 + lane])
    for odd in (-0.0, np.nan):
        r = p.copy()
        r[13, 9] = odd
        assert _block(r, 0.9, score, True, i0=8)[0] == 0xFF
        assert _block(r, 0.9, score, True, i0=0)[0] == 0
    r = p.copy()
    r[2] *= 1.01
    left, out, errs = _block(r, 0.9, score, True)
    assert errs[2] == K.BAD_SUM and (np.delete(errs[:8], 2) == K.OK).all()


@njit(cache=True)
def _load_block(src, i0, t):
    L.load_block(src, i0, t)


@njit(cache=True)
def _ge_rows(src, c, out):
    for i in range(src.shape[0]):
        L.ge_row(src, i, c[i], out)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_load_block_and_ge_row_against_numpy(dtype):
    """The block transpose (t[j, l] = src[i0 + l, j]) and the row compare (out[i] = src[i] >= c[i]) at every K
    they serve, 8..16, with cuts at values of the rows, between them, 0 and above 1; rows beside the block and
    the output around each row are left alone."""
    rng = np.random.default_rng(7)
    for k in range(8, 17):
        src = rng.random((24, k)).astype(dtype)
        src[5, 0] = 0.0
        t = np.full((k + 1, 8), -1.0, dtype=dtype)
        _load_block(src, 8, t)
        np.testing.assert_array_equal(t[:k], src[8:16].T)
        assert (t[k] == -1.0).all()
        c = src[np.arange(24), rng.integers(0, k, 24)].copy()
        c[:3] = [0.0, 2.0, 0.5]
        out = np.ones((24, k), dtype=np.bool_)
        _ge_rows(src, c.astype(dtype), out)
        np.testing.assert_array_equal(out, src >= c[:, None].astype(dtype))
