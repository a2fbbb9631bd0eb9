"""Kernels vs their NumPy twins, and curves vs scikit-learn (which implements the same definitions)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from conformal._kernels import statistics as K
from conformal.abstention import aurc, auroc, risk_coverage_curve, roc_curve, selective_risk
from conformal.stats import clopper_pearson

from . import _naive

AK, CK = "conformal._kernels.statistics.", "conformal._kernels.curves."


def _probs(rng, n, k, dtype, ties):
    p = rng.dirichlet(np.full(k, 0.3), size=n)
    if ties:  # quantise so rows hold exact ties (and exact zeros)
        p = np.round(p * 8) + (np.arange(k) == 0)
        p = p / p.sum(1, keepdims=True)
    return p.astype(dtype)


@pytest.mark.twin(AK + "_max_prob_row", AK + "_stat_serial", twin=_naive.max_prob)
@pytest.mark.twin(AK + "_margin_row", AK + "_stat_serial", twin=_naive.margin)
@pytest.mark.twin(AK + "_entropy_block", AK + "_entropy_serial", AK + "_xlogx", twin=_naive.entropy_series)
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(2, 30), seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from([np.float32, np.float64]), ties=st.booleans())
def test_statistic_kernels_match_numpy_twins(n, k, seed, dtype, ties):
    p = _probs(np.random.default_rng(seed), n, k, dtype, ties)
    p0 = p.copy()
    np.testing.assert_array_equal(K.max_prob(p), _naive.max_prob(p))
    np.testing.assert_array_equal(K.margin(p), _naive.margin(p))
    np.testing.assert_array_equal(K.entropy(p), _naive.entropy_series(p))
    np.testing.assert_allclose(K.entropy(p), _naive.entropy(p), rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(p, p0)


@pytest.mark.twin(AK + "_xlogx", twin=_naive.xlogx_series)
def test_xlogx_matches_the_definition_across_the_float_range():
    # every binade from the smallest subnormal to 1, plus the reduction boundaries around sqrt(1/2)
    v = np.concatenate([[0.0, 5e-324, 1e-310, np.nextafter(np.sqrt(0.5), 0), np.sqrt(0.5),
                         np.nextafter(np.sqrt(0.5), 1), 0.5, 1.0],
                        np.random.default_rng(0).random(20_000) * 2.0 ** -(np.arange(20_000) % 1075.0)])
    got = np.empty_like(v)
    for i, x in enumerate(v):
        got[i] = K._xlogx(x)
    np.testing.assert_array_equal(got, _naive.xlogx_series(v))
    with np.errstate(divide="ignore", invalid="ignore"):
        ref = np.where(v > 0, v * np.log(np.where(v > 0, v, 1.0)), 0.0)
    normal = v >= np.finfo(np.float64).tiny
    np.testing.assert_allclose(got[normal], ref[normal], rtol=4e-16 * 8, atol=0)
    assert np.all(np.abs(got[~normal] - ref[~normal]) < 1e-300) and got[0] == 0.0


@pytest.mark.twin(AK + "_entropy_parallel", AK + "_entropy_row", twin=_naive.entropy_series)
def test_entropy_parallel_equals_serial_and_spans_chunks():
    p = _probs(np.random.default_rng(3), 1000, 300, np.float32, False)
    np.testing.assert_array_equal(K._entropy_parallel(p), K._entropy_serial(p))
    np.testing.assert_array_equal(K._entropy_parallel(p[::3, 5:]), _naive.entropy_series(p[::3, 5:]))
    rows = np.array([K._entropy_row(p, i) for i in range(0, 1000, 97)])  # the per-frame (streaming) path
    np.testing.assert_array_equal(rows, K._entropy_serial(p)[::97])
    np.testing.assert_array_equal(rows, _naive.entropy_series(p[::97]))


@pytest.mark.twin(CK + "group_counts", twin=_naive.roc_points)
@pytest.mark.twin(CK + "positive_rank_sum", twin=_naive.auroc_pairs)
@settings(max_examples=80, deadline=None)
@given(n=st.integers(2, 300), levels=st.integers(2, 1000), seed=st.integers(0, 2**31 - 1))
def test_roc_and_auroc_match_sklearn_and_pair_count(n, levels, seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, levels, n) / levels  # few levels -> many ties
    pos = rng.random(n) < rng.uniform(0.05, 0.95)
    if pos.all() or not pos.any():
        pos[0] = not pos[0]
    c = roc_curve(s, pos)
    fpr, tpr, thr = sk_roc_curve(pos, s, drop_intermediate=False)
    np.testing.assert_array_equal(c.fpr, fpr)
    np.testing.assert_array_equal(c.tpr, tpr)
    # our tau at point j is sklearn's threshold at point j + 1 (we accept <= tau, sklearn flags >= threshold)
    np.testing.assert_array_equal(c.taus[1:-1], thr[2:])
    f2, t2 = _naive.roc_points(s, pos, c.taus)
    np.testing.assert_array_equal(c.fpr, f2)
    np.testing.assert_array_equal(c.tpr, t2)
    assert abs(auroc(s, pos) - roc_auc_score(pos, s)) <= 1e-12
    assert abs(c.auc - _naive.auroc_pairs(s, pos)) <= 1e-12


@pytest.mark.twin(CK + "group_counts", twin=_naive.risk_coverage)
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 200), levels=st.integers(1, 50), seed=st.integers(0, 2**31 - 1))
def test_risk_coverage_and_aurc_match_twin(n, levels, seed):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, levels, n).astype(np.float64)
    err = rng.random(n) < 0.3
    cov, risk, taus = risk_coverage_curve(s, err)
    c2, r2, t2 = _naive.risk_coverage(s, err)
    np.testing.assert_array_equal(taus, t2)
    np.testing.assert_allclose(cov, c2, rtol=0, atol=1e-15)
    np.testing.assert_allclose(risk, r2, rtol=0, atol=1e-15)
    assert abs(aurc(s, err) - float(np.dot(r2, np.diff(np.r_[0.0, c2])))) <= 1e-12


def test_aurc_without_ties_is_mean_prefix_risk():
    rng = np.random.default_rng(3)
    s = rng.permutation(100).astype(float)
    err = rng.random(100) < 0.2
    e = err[np.argsort(s)]
    expected = np.mean([e[:k].mean() for k in range(1, 101)])
    assert abs(aurc(s, err) - expected) < 1e-12


def test_auroc_perfect_and_reversed_and_constant():
    s = np.arange(10.0)
    pos = s >= 5
    assert auroc(s, pos) == 1.0 and auroc(-s, pos) == 0.0 and auroc(np.zeros(10), pos) == 0.5


def test_selective_risk_interval_is_clopper_pearson():
    err = np.array([True, False, False, True, False, False])
    ab = np.array([False, False, False, True, True, False])
    risk, lo, hi, n = selective_risk(err, ab)
    assert (risk, n) == (0.25, 4)
    assert (lo, hi) == clopper_pearson(1, 4, 0.95)


def test_curve_inputs_are_validated_and_not_modified():
    s = np.array([0.3, 0.1, 0.2])
    pos = np.array([True, False, True])
    s0, p0 = s.copy(), pos.copy()
    roc_curve(s, pos)
    auroc(s, pos)
    np.testing.assert_array_equal(s, s0)
    np.testing.assert_array_equal(pos, p0)
    with pytest.raises(TypeError, match="positives"):
        auroc(s, np.array([1, 0, 1]))
    with pytest.raises(ValueError, match="statistic"):
        auroc(np.array([0.1, np.nan, 0.2]), pos)
    with pytest.raises(ValueError, match="both classes"):
        auroc(s, np.ones(3, bool))
    with pytest.raises(ValueError, match="shape"):
        roc_curve(s, pos[:2])
    with pytest.warns(UserWarning, match="undefined"):
        c = roc_curve(s, np.zeros(3, bool))
    assert np.isnan(c.auc) and np.isnan(c.tpr).all()


def test_abstention_metrics_are_reachable_from_conformal_metrics():
    import conformal.abstention as curves  # the curves live in conformal.metrics; abstention re-exports them
    import conformal.metrics as M

    for name in ("roc_curve", "auroc", "risk_coverage_curve", "aurc", "selective_risk", "abstention_rate", "ROCCurve"):
        assert getattr(M, name) is getattr(curves, name) and name in M.__all__
    s = np.array([0.1, 0.4, 0.35, 0.8])
    err = np.array([False, False, True, True])
    assert M.auroc(s, err) == 0.75
    risk, lo, hi, n_acc = M.selective_risk(err, s > 0.5)
    assert (risk, n_acc) == (1 / 3, 3) and 0 < lo < risk < hi < 1
