"""Score kernels against their NumPy twins (tests/reference/naive.py), exactly, over shapes, dtypes and ties."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformal.scores import APS, LAC, RAPS, SAPS, TopK, get_score, score_names
from tests.reference import naive


def twin(kernels, twin):
    """The `twin` marker for kernels of conformal._kernels.scores (see tests/conftest.py)."""
    return pytest.mark.twin(*(f"conformal._kernels.scores.{k}" for k in kernels), twin=twin)


SCORES = [LAC(), APS(), RAPS(lam=0.05, k_reg=2), SAPS(weight=0.3), TopK()]
PARAMS = {"raps": {"lam": 0.05, "k_reg": 2}, "saps": {"weight": 0.3}}


def _twin_params(score):
    return PARAMS.get(score.name, {})


@st.composite
def prob_rows(draw):
    n = draw(st.integers(1, 12))
    k = draw(st.integers(2, 25))
    ties = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if ties:  # few distinct weights -> many exact ties after normalisation
        w = rng.integers(0, 4, size=(n, k)).astype(np.float64)
        w[:, 0] += 1.0
    else:
        w = rng.gamma(0.3, size=(n, k)) + 1e-12
    p = w / w.sum(axis=1, keepdims=True)
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    p = p.astype(dtype)
    if dtype == np.float32:  # renormalised float32 rows still sum to 1 within 1e-3
        p = (p / p.sum(axis=1, keepdims=True, dtype=np.float64)).astype(np.float32)
    return p, rng


@twin(("_row_check", "_row_probs", "_fixed", "_score", "_label_mass", "label_rows", "tie_group_scores",
       "all_rows", "lac_label_rows", "lac_row_scores", "lac_all_rows"), twin=naive.all_scores)
@twin(("_bucket", "_load_bucket_row", "_bucket_min", "_set_row", "set_rows", "lac_prob_rows", "lac_cut32",
       "lac_cut64"), twin=naive.sets)
@pytest.mark.parametrize("score", SCORES, ids=lambda s: s.name)
@settings(max_examples=40, deadline=None)
@given(data=prob_rows(), randomized=st.booleans())
def test_kernels_match_numpy_twin(score, data, randomized):
    p, rng = data
    n, k = p.shape
    u = rng.random(n) if (randomized and score.randomizable) else None
    labels = rng.integers(0, k, n)
    params = _twin_params(score)
    want_all = naive.all_scores(score.name, p, u, **params)
    got_all = score.all_scores(p, u)
    np.testing.assert_array_equal(got_all, want_all)
    np.testing.assert_array_equal(score.label_scores(p, labels, u), want_all[np.arange(n), labels])
    # thresholds at, just below and between observed scores, plus the extremes
    flat = np.unique(want_all)
    for q in [*rng.choice(flat, size=min(4, flat.size)), np.nextafter(flat[0], -1), flat[-1], 0.0, np.inf]:
        for allow_empty in (True, False):
            want = naive.sets(score.name, p, q, u, allow_empty=allow_empty, **params)
            np.testing.assert_array_equal(score.sets(p, q, u, allow_empty=allow_empty), want, err_msg=f"q={q}")


@pytest.mark.parametrize("score", SCORES, ids=lambda s: s.name)
def test_large_k_sets_and_ties_in_one_bucket(score):
    """K = 1000 with peaked rows, and rows whose labels all fall in one bucket (the exact-sort path)."""
    rng = np.random.default_rng(1)
    z = rng.normal(size=(30, 1000)) * rng.uniform(0.5, 6, size=(30, 1))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    flat = np.full((3, 1000), 1e-3)
    flat[1, :10] += 1e-9
    flat[1] /= flat[1].sum()
    p = np.vstack([p, flat, np.eye(1000)[:2]])
    u = rng.random(p.shape[0]) if score.randomizable else None
    # The sort-based all-label kernel (itself checked against the twin above) is the reference at this size;
    # the twin checks a few rows directly.
    want_all = score.all_scores(p, u)
    rows = [0, 30, 31]
    np.testing.assert_array_equal(
        want_all[rows], naive.all_scores(score.name, p[rows], None if u is None else u[rows], **_twin_params(score)))
    for q in np.quantile(want_all, [0.001, 0.01, 0.1, 0.5, 0.9]):
        np.testing.assert_array_equal(score.sets(p, q, u), want_all <= q)


@twin(("_row_probs", "_load_row", "lac_set_rows"), twin=naive.softmax_row)
@pytest.mark.parametrize("score", SCORES, ids=lambda s: s.name)
def test_logits_equal_softmax_then_probs(score):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(50, 7)) * 3
    p = np.array([naive.softmax_row(r) for r in z])
    np.testing.assert_array_equal(score.all_scores(z, inputs="logits"), score.all_scores(p))
    np.testing.assert_array_equal(score.sets(z, 0.7, inputs="logits"), score.sets(p, 0.7))


def test_non_contiguous_and_float32_inputs_are_not_copied_wrongly():
    rng = np.random.default_rng(3)
    big = rng.dirichlet(np.ones(6), size=40)
    view = big[::2]  # non-contiguous rows
    assert not view.flags.c_contiguous
    for s in SCORES:
        np.testing.assert_array_equal(s.all_scores(view), s.all_scores(np.ascontiguousarray(view)))
    before = big.copy()
    APS().sets(big, 0.5)
    np.testing.assert_array_equal(big, before)


def test_sets_are_prefixes_and_ties_move_together():
    p = np.array([[0.3, 0.3, 0.2, 0.2]])
    s = APS().all_scores(p)
    assert s[0, 0] == s[0, 1] and s[0, 2] == s[0, 3]
    np.testing.assert_array_equal(APS().sets(p, 0.6), [[True, True, False, False]])
    np.testing.assert_array_equal(APS().sets(p, 0.59), [[False, False, False, False]])


def test_registry_and_params():
    assert score_names() == ["aps", "lac", "raps", "saps", "topk"]
    assert get_score("RAPS", lam=0.1, k_reg=3) == RAPS(lam=0.1, k_reg=3)
    assert repr(SAPS(weight=0.5)) == "SAPS(weight=0.5)"
    with pytest.raises(ValueError, match="unknown `score` 'nope'; valid names are: aps, lac"):
        get_score("nope")
    with pytest.raises(TypeError, match="score parameters"):
        get_score(APS(), lam=0.1)
    with pytest.raises(ValueError, match="`lam`"):
        RAPS(lam=-1)
    with pytest.raises(ValueError, match="`k_reg`"):
        RAPS(k_reg=1.5)
    with pytest.raises(ValueError, match="`weight`"):
        SAPS(weight=0)


@twin(("label_scores", "all_scores", "lac_label_scores", "lac_all_scores"), twin=naive.all_scores)
@twin(("predict_sets", "lac_prob_sets"), twin=naive.sets)
@pytest.mark.parametrize("score", SCORES, ids=lambda s: s.name)
def test_parallel_kernels_equal_serial_rows(score):
    """Large inputs run chunked in parallel, small ones serially: both must give identical results."""
    from conformal._kernels import scores as K
    from conformal.scores import base
    rng = np.random.default_rng(4)
    p = rng.dirichlet(np.full(40, 0.2), size=3000).astype(np.float32)
    y = rng.integers(0, 40, 3000)
    u = rng.random(3000) if score.randomizable else None
    big = (score.label_scores(p, y, u), score.all_scores(p, u), score.sets(p, 0.8, u))
    assert p.size > base._SERIAL_MAX  # the calls above took the parallel path
    small = [np.concatenate(parts) for parts in zip(*[
        (score.label_scores(p[i:i + 50], y[i:i + 50], None if u is None else u[i:i + 50]),
         score.all_scores(p[i:i + 50], None if u is None else u[i:i + 50]),
         score.sets(p[i:i + 50], 0.8, None if u is None else u[i:i + 50])) for i in range(0, 3000, 50)])]
    for a, b in zip(big, small):
        np.testing.assert_array_equal(a, b)
    assert K.OK == 0
    rows = [0, 1234, 2999]  # and the parallel results equal the twin's (a few rows: the twin is slow)
    ur = None if u is None else u[rows]
    want = naive.all_scores(score.name, p[rows], ur, **_twin_params(score))
    np.testing.assert_array_equal(big[1][rows], want)
    np.testing.assert_array_equal(big[0][rows], want[np.arange(3), y[rows]])
    np.testing.assert_array_equal(big[2][rows], naive.sets(score.name, p[rows], 0.8, ur, **_twin_params(score)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("score", SCORES, ids=lambda s: s.name)
def test_set_kernels_flag_the_first_bad_row(score, dtype):
    """Values are validated inside the kernels; each problem is reported with its row (-0.0 is valid)."""
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.ones(6), size=40).astype(dtype)
    ok = p.copy()
    ok[2, 0], ok[2, 1] = -0.0, ok[2, 1] + ok[2, 0]
    score.sets(ok, 0.5)
    cases = [(np.nan, "row 7 holds NaN or inf"), (np.inf, "row 7 holds NaN or inf"), (-0.1, "row 7 does not"),
             (1.5, "row 7 does not")]
    for value, message in cases:
        bad = p.copy()
        bad[7, 3] = value
        bad[9, 3] = value
        with pytest.raises(ValueError, match=message):
            score.sets(bad, 0.5)
    bad = p.copy()
    bad[7] *= 0.9
    with pytest.raises(ValueError, match="row 7 sums to 0.9"):
        score.sets(bad, 0.5)


@twin(("_row_check", "check_rows", "check_rows_serial"), twin=naive.row_errors)
@settings(max_examples=40, deadline=None)
@given(data=prob_rows(), logits=st.booleans(), damage=st.lists(st.tuples(st.integers(0, 11), st.integers(0, 24),
                                                                        st.sampled_from([np.nan, np.inf, -np.inf,
                                                                                         -0.1, 1.5, 0.0, 2e-3]))))
def test_row_check_kernels_match_twin(data, logits, damage):
    """The fused row validation flags exactly the rows (and the first problem) the definition does."""
    from conformal._kernels import scores as K
    p, _ = data
    p = p.copy()
    for i, j, v in damage:
        if i < p.shape[0] and j < p.shape[1]:
            p[i, j] = v if v != 2e-3 else p[i, j] + v  # 2e-3: push the row sum just past the tolerance
    want = naive.row_errors(p, logits)
    for kernel in (K.check_rows_serial, K.check_rows):
        errs = np.empty(p.shape[0], dtype=np.int8)
        kernel(p, logits, errs)
        np.testing.assert_array_equal(errs, want)


@twin(("lac_predict_sets", "lac_set_rows", "_load_row"), twin=naive.sets)
def test_parallel_logits_and_strided_paths_match_twin_rows():
    """Large logit and non-contiguous inputs take the general LAC kernel in parallel chunks; rows equal the twin."""
    rng = np.random.default_rng(6)
    z = rng.normal(size=(6000, 12)) * 3
    p = np.array([naive.softmax_row(r) for r in z[:: 2]])
    rows = [0, 777, 2999]
    got = LAC().sets(z[::2], 0.6, inputs="logits")
    assert not z[::2].flags.c_contiguous and got.shape == (3000, 12)
    np.testing.assert_array_equal(got[rows], naive.sets("lac", p[rows], 0.6))
    strided = np.ascontiguousarray(np.repeat(p, 2, axis=0))[::2]
    np.testing.assert_array_equal(LAC().sets(strided, 0.6, allow_empty=False)[rows],
                                  naive.sets("lac", p[rows], 0.6, allow_empty=False))


def _lane_sum_twin(row):
    """NumPy twin of `row_sum`: four sequential lanes (cumsum adds left to right), combined as (0+1)+(2+3), then
    the tail added in order."""
    x = np.asarray(row, dtype=np.float64)
    k4 = x.size - x.size % 4
    lanes = [np.cumsum(x[lane:k4:4])[-1] if k4 else 0.0 for lane in range(4)]
    s = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
    for v in x[k4:]:
        s += v
    return s


@twin(("row_sum",), twin=_lane_sum_twin)
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 7, 8, 10, 33, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_sum_adds_in_the_same_order_as_its_twin(k, dtype):
    """Bit for bit: every kernel's row-sum check (LAC, APS/RAPS, the flat LAC block) goes through this sum."""
    from numba import njit

    from conformal._kernels import scores as K

    @njit
    def sums(src):
        return np.array([K.row_sum(src, i) for i in range(src.shape[0])])

    rng = np.random.default_rng(k)
    p = rng.dirichlet(np.full(k, 0.3), size=50).astype(dtype) if k > 1 else np.ones((50, 1), dtype=dtype)
    p[::7] *= dtype(1.0 + 1e-3)  # rows off 1 too
    got = sums(p)
    want = np.array([_lane_sum_twin(r) for r in p])
    np.testing.assert_array_equal(got, want)
