"""The APS/RAPS set kernel for probability inputs (bisection on the cut, conformal/_kernels/prob_sets.py) against
the NumPy twin and the bucket kernel it replaces for probabilities, exactly, at every K."""
import numpy as np
import pytest
from numba import njit

from conformal._kernels import prob_sets as PS
from conformal._kernels import scores as K
from conformal._kernels.bits import cttz64, range_mask8
from conformal.scores import APS, RAPS, base
from tests.reference import naive

KS = [2, 3, 10, 16, 17, 31, 32, 33, 80, 100, 1000]
SCORES = [APS(), RAPS(lam=0.05, k_reg=2), RAPS(lam=0.001, k_reg=0), RAPS(lam=0.5, k_reg=7)]


def _twin(*kernels, twin):
    return pytest.mark.twin(*(f"conformal._kernels.prob_sets.{k}" for k in kernels), twin=twin)


def _rows(k, n, kind, dtype, rng):
    if kind == "ties":  # few distinct weights -> exact ties after normalisation
        w = rng.integers(0, 4, size=(n, k)).astype(np.float64)
        w[:, 0] += 1.0
    elif kind == "zeros":  # many exact zeros, one-hot rows among them
        w = rng.gamma(0.3, size=(n, k)) * (rng.random((n, k)) < 0.3)
        w[:, 0] += 1e-3
        w[::5] = 0.0
        w[::5, 1] = 1.0
    elif kind == "peaked":  # a calibrated-looking softmax: one large label, a long tail of tiny ones
        z = rng.normal(size=(n, k)) * 3.0
        z[:, 0] += 6.0
        w = np.exp(z - z.max(axis=1, keepdims=True))
    else:
        w = rng.gamma(0.3, size=(n, k)) + 1e-12
    p = w / w.sum(axis=1, keepdims=True)
    return np.ascontiguousarray(p.astype(dtype))


def _params(score):
    return {"lam": score.lam, "k_reg": score.k_reg} if score.name == "raps" else {}


def _run(kernel, p, u, qhat, score, allow_empty, chunk=None):
    n, k = p.shape
    kind, lam, k_reg, weight = score.kernel_params()
    rnd = u is not None
    uu = u if rnd else np.zeros(1)
    out = np.empty((n, k), dtype=np.bool_)
    errs = np.empty(n, dtype=np.int8)
    if kernel is K.set_rows:
        kernel(p, uu, qhat, False, 1.0, kind, rnd, lam, k_reg, weight, allow_empty, 0, n, out, errs)
        return out, errs
    utype = np.uint32 if p.dtype == np.float32 else np.uint64
    one = np.ones(1, dtype=p.dtype).view(utype)[0]
    if chunk is None:
        kernel(p, p.view(utype), one, uu, qhat, kind, rnd, lam, k_reg, weight, allow_empty, 0, n, out, errs)
    else:
        kernel(p, p.view(utype), one, uu, qhat, kind, rnd, lam, k_reg, weight, allow_empty, chunk, out, errs)
    return out, errs


def _qhats(scores, rng):
    flat = np.unique(scores)
    qs = [*rng.choice(flat, size=5), np.nextafter(flat[0], -1), flat[0], flat[-1], 0.0, 0.5, 0.9, 0.99, 0.999, 1e300,
          np.inf, -1.0]
    return [float(q) for q in qs]


# K = 1000 against the (slow, O(K^2) Python) twin for APS and one RAPS only; every RAPS setting meets K = 1000
# against the bucket kernel on many rows below.
CASES = [(s, k) for k in KS for s in (SCORES if k < 1000 else SCORES[:2])]


@_twin("_prob_row_check", "_mass_ge", "_walk_groups", "_walk_sorted", "_gather", "_min_ge", "_prune_cut", "_row_v_star",
       "_select_v_star", "_odd_row", "_small_row", "_lane_block", "_lane_bounds", "_small_set_rows", "_large_set_rows",
       "prob_set_rows", twin=naive.sets_from_scores)
@pytest.mark.parametrize(("score", "k"), CASES, ids=[f"{s.name}{_params(s)}-{k}" for s, k in CASES])
def test_prob_set_kernel_equals_twin_and_bucket_kernel(score, k):
    rng = np.random.default_rng(k)
    n = 3 if k >= 1000 else 24
    for data in ("plain", "ties", "zeros", "peaked"):
        for dtype in (np.float32, np.float64):
            p = _rows(k, n, data, dtype, rng)
            for u in (None, rng.random(n)):
                scores = naive.all_scores(score.name, p, u, **_params(score))
                for q in _qhats(scores, rng):
                    for allow_empty in (True, False):
                        want = naive.sets_from_scores(scores, p, q, allow_empty)  # = naive.sets, scores once
                        got, errs = _run(PS.prob_set_rows, p, u, q, score, allow_empty)
                        assert not errs.any()
                        np.testing.assert_array_equal(got, want, err_msg=f"K={k} q={q} {data} {dtype}")
                        bucket, _ = _run(K.set_rows, p, u, q, score, allow_empty)
                        np.testing.assert_array_equal(got, bucket)


@njit(cache=True)
def _fixed_vec_rows(v):
    out = np.empty(v.size, dtype=np.int64)
    for t in range(v.size):
        out[t] = PS._fixed_vec(np.float64(v[t]))
    return out


@_twin("_fixed_vec", twin="inline")
def test_fixed_vec_is_fixed_bit_for_bit():
    """`_fixed_vec` (no float -> int64 conversion, so it vectorises on AVX2) gives `_fixed`'s integer,
    floor(p * 2**60 + 0.5) in float64 (here in Python), for the float32 patterns of a stride through [0, 1], the
    neighbours of every power of two, -0.0, and float64 values across every exponent down to the subnormals."""
    rng = np.random.default_rng(5)
    b32 = np.arange(0, 0x3F800001, 4099, dtype=np.uint32)
    edges = np.ldexp(1.0, np.arange(-149, 1)).astype(np.float32)
    f32 = np.concatenate([b32.view(np.float32), edges, np.nextafter(edges, np.float32(0)),
                          np.nextafter(edges, np.float32(2)), np.float32([0.0, -0.0, 1.0])])
    f32 = f32[(f32 <= 1.0) | (f32 == 0.0)]
    f64 = np.concatenate([rng.random(20_000), np.ldexp(rng.random(20_000), -rng.integers(0, 1075, 20_000)),
                          np.ldexp(1.0, np.arange(-1074, 1)), np.nextafter(np.ldexp(1.0, np.arange(-1073, 1)), 0.0),
                          [0.0, -0.0, 1.0, np.nextafter(1.0, 0.0), 2.0 ** -8, np.nextafter(2.0 ** -7, 0.0)]])
    for v in (f32, f64):
        got = _fixed_vec_rows(v)
        want = np.array([int(np.floor(float(x) * 2.0 ** 60 + 0.5)) for x in v.astype(np.float64)], dtype=np.int64)
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, [K._fixed(float(x)) for x in v.astype(np.float64)])


@njit(cache=True)
def _masks(src, lo, hi):
    n, k = src.shape
    out = np.zeros((n, k // 8), dtype=np.int64)
    low = np.zeros(n, dtype=np.int64)
    for i in range(n):
        for b in range(k // 8):
            out[i, b] = range_mask8(src, i, 8 * b, lo, hi)
        w = out[i, 0]
        low[i] = cttz64(w) if w != 0 else -1
    return out, low


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_range_mask8_and_cttz64_against_numpy(dtype):
    """The 8-lane range mask of `_gather`: bit t set exactly when lo <= float64(p[i, j + t]) < hi, at bounds that
    are values of the rows (both ends of the half-open range), between them, 0, -0.0 and 1; cttz64 = the index
    of the lowest set bit."""
    rng = np.random.default_rng(11)
    p = _rows(40, 64, "ties", dtype, rng)
    p[0, :8] = [0.0, -0.0, 1.0, 0.5, 0.25, 0.0, 1.0, 0.125]
    vals = np.unique(p.astype(np.float64))
    for lo, hi in [(0.0, 1.0), (0.0, np.inf), (-1.0, 0.0), (vals[1], vals[-1]), (vals[2], vals[2]),
                   (float(np.nextafter(vals[3], 0)), vals[3]), (vals[3], float(np.nextafter(vals[3], 1))), (0.3, 0.2)]:
        got, low = _masks(p, float(lo), float(hi))
        inside = (p.astype(np.float64) >= lo) & (p.astype(np.float64) < hi)
        want = (inside[:, :40].reshape(64, 5, 8) * (1 << np.arange(8))).sum(axis=2)
        np.testing.assert_array_equal(got, want, err_msg=f"lo={lo} hi={hi}")
        first = np.where(inside[:, :8].any(axis=1), inside[:, :8].argmax(axis=1), -1)
        np.testing.assert_array_equal(low, first)


@pytest.mark.parametrize("k", [2, 10, 16, 80, 100, 256, 257, 1000])
@pytest.mark.parametrize("score", SCORES, ids=lambda s: f"{s.name}{_params(s)}")
def test_prob_set_kernel_equals_bucket_kernel_on_many_rows(score, k):
    """Many rows (at large K the twin is slow; at small K, many rows meet every branch of the tie-group walk), at
    qhats taken from the rows' own scores."""
    rng = np.random.default_rng(k + 7)
    for data in ("plain", "ties", "zeros", "peaked"):
        p = _rows(k, 400, data, np.float32, rng)
        for u in (None, rng.random(400)):
            s_all = np.empty((400, k))
            errs = np.empty(400, dtype=np.int8)
            kind, lam, k_reg, weight = score.kernel_params()
            K.all_rows(p, np.zeros(1) if u is None else u, False, 1.0, kind, u is not None, lam, k_reg, weight, 0,
                       400, s_all, errs)
            for q in [*rng.choice(s_all.ravel(), size=6), 0.9, 0.99, 0.999, 0.9999]:
                for allow_empty in (True, False):
                    got, errs = _run(PS.prob_set_rows, p, u, float(q), score, allow_empty)
                    assert not errs.any()
                    bucket, _ = _run(K.set_rows, p, u, float(q), score, allow_empty)
                    np.testing.assert_array_equal(got, bucket, err_msg=f"K={k} q={q} {data}")


@_twin("prob_predict_sets", "prob_set_rows", twin=naive.sets)
@pytest.mark.parametrize("k", [10, 100])
@pytest.mark.parametrize("score", SCORES[:2], ids=lambda s: s.name)
def test_prob_set_parallel_path_and_public_dispatch(score, k):
    """`Score.sets` takes this kernel for C-contiguous probabilities, in parallel chunks for large inputs."""
    rng = np.random.default_rng(k + 1)
    p = _rows(k, 4000, "peaked", np.float32, rng)
    assert p.size > base._SERIAL_MAX
    u = rng.random(p.shape[0])
    for uu in (None, u):
        q = 0.9 if uu is not None else 0.99
        got = score.sets(p, q, uu)
        par, _ = _run(PS.prob_predict_sets, p, uu, q, score, True, chunk=256)
        bucket, _ = _run(K.set_rows, p, uu, q, score, True)
        np.testing.assert_array_equal(got, par)
        np.testing.assert_array_equal(got, bucket)
        rows = [0, 2000, 3999]
        np.testing.assert_array_equal(got[rows], naive.sets(score.name, p[rows], q,
                                                            None if uu is None else uu[rows], **_params(score)))
    # not C-contiguous, or logits: the other kernels, the same sets
    f = np.asfortranarray(p)
    np.testing.assert_array_equal(score.sets(f, 0.99), score.sets(p, 0.99))


def test_prob_set_kernel_rows_summing_off_one_and_negative_zero():
    """Rows inside the sum tolerance but off 1 (the pruning guess can fail: the walk goes on below it), and -0.0
    (a valid probability whose sign bit defeats the bit-pattern range check)."""
    rng = np.random.default_rng(3)
    for k in (10, 100):
        p = _rows(k, 40, "peaked", np.float64, rng)
        p[::2] *= 1 - 9e-4
        p[1::4, 0] += p[1::4, -1]
        p[1::4, -1] = -0.0
        for score in SCORES:
            for u in (None, rng.random(40)):
                for q in (0.95, 0.9985, 0.9995, 0.99995):
                    want = naive.sets(score.name, p, q, u, **_params(score))
                    got, errs = _run(PS.prob_set_rows, p, u, q, score, True)
                    assert not errs.any()
                    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [10, 100])
def test_prob_set_kernel_flags_rows_as_the_row_check_does(dtype, k):
    rng = np.random.default_rng(9)
    p = rng.dirichlet(np.ones(k), size=20).astype(dtype)
    for bad in (np.nan, np.inf, -np.inf, -0.1, 1.5):
        q = p.copy()
        q[5, 3] = bad
        q[9, 0] = q[9, 0] + 0.01  # a bad sum
        _, errs = _run(PS.prob_set_rows, q, None, 0.5, APS(), True)
        want = np.empty(20, dtype=np.int8)
        K.check_rows_serial(q, False, want)
        np.testing.assert_array_equal(errs, want)
        np.testing.assert_array_equal(errs, naive.row_errors(q))
        with pytest.raises(ValueError, match="row 5"):
            APS().sets(q, 0.5)


def _lac(kernel, p, qhat, allow_empty, chunk=None):
    n, k = p.shape
    cut = K.lac_cut32(qhat) if p.dtype == np.float32 else K.lac_cut64(qhat)
    utype = np.uint32 if p.dtype == np.float32 else np.uint64
    one = np.ones(1, dtype=p.dtype).view(utype)[0]
    out = np.empty((n, k), dtype=np.bool_)
    errs = np.empty(n, dtype=np.int8)
    if chunk is None:
        kernel(p, p.view(utype), one, cut, allow_empty, 0, n, out, errs)
    else:
        kernel(p, p.view(utype), one, cut, allow_empty, chunk, out, errs)
    return out, errs


@pytest.mark.twin("conformal._kernels.scores._lac_flat_block", "conformal._kernels.scores.lac_small_rows",
                  "conformal._kernels.scores.lac_small_sets", twin=naive.sets)
@pytest.mark.parametrize("k", [2, 3, 10, 31, 32, 33, 80, 100, 128])
def test_lac_small_k_kernel_equals_twin_and_row_kernel(k):
    rng = np.random.default_rng(k + 11)
    for data in ("plain", "ties", "zeros", "peaked"):
        for dtype in (np.float32, np.float64):
            p = _rows(k, 700, data, dtype, rng)  # > one block of rows at small K
            p[3, 1] = np.nan
            p[7, 0] = -0.1
            p[8, 0] = 1.5
            p[11, 0] += 0.01  # a bad sum
            p[12, 0] += p[12, -1]
            p[12, -1] = -0.0  # valid
            want_errs = naive.row_errors(p)
            ok = want_errs == 0
            s = naive.all_scores("lac", p[:40])
            for q in [*rng.choice(np.unique(s[ok[:40]]), size=3), 0.0, 0.5, 0.9, np.inf, -1.0]:
                for allow_empty in (True, False):
                    got, errs = _lac(K.lac_small_rows, p, float(q), allow_empty)
                    np.testing.assert_array_equal(errs, want_errs)
                    want = naive.sets("lac", p[:40][ok[:40]], float(q), allow_empty=allow_empty)
                    np.testing.assert_array_equal(got[:40][ok[:40]], want, err_msg=f"K={k} q={q} {data}")
                    row, row_errs = _lac(K.lac_prob_rows, p, float(q), allow_empty)
                    np.testing.assert_array_equal(got[ok], row[ok])
                    np.testing.assert_array_equal(errs, row_errs)
                    par, par_errs = _lac(K.lac_small_sets, p, float(q), allow_empty, chunk=256)
                    np.testing.assert_array_equal(par[ok], got[ok])
                    np.testing.assert_array_equal(par_errs, errs)
