"""Score kernels against their NumPy twins (tests/reference/naive.py), exactly, over shapes, dtypes and ties."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformal.scores import APS, LAC, RAPS, SAPS, TopK, get_score, score_names
from tests.reference import naive

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
