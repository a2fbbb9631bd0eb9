"""The small-K set kernel (pairwise compares, K <= SMALL_K) against the NumPy twin and the bucket kernel, exactly."""
import numpy as np
import pytest

from conformal._kernels import scores as K
from conformal.scores import APS, RAPS, SAPS, TopK, base
from tests.reference import naive

RANK_SCORES = [APS(), RAPS(lam=0.05, k_reg=2), SAPS(weight=0.3), TopK()]
PARAMS = {"raps": {"lam": 0.05, "k_reg": 2}, "saps": {"weight": 0.3}}
KS = [2, 3, 10, 31, 32, 33, 80]


def _twin(*kernels, twin):
    return pytest.mark.twin(*(f"conformal._kernels.scores.{k}" for k in kernels), twin=twin)


def _rows(k, n, ties, dtype, rng):
    if ties:  # few distinct weights -> exact ties after normalisation
        w = rng.integers(0, 4, size=(n, k)).astype(np.float64)
        w[:, 0] += 1.0
    else:
        w = rng.gamma(0.3, size=(n, k)) + 1e-12
    p = w / w.sum(axis=1, keepdims=True)
    if dtype == np.float32:
        p = (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    return p


def _run(kernel, p, u, qhat, score, allow_empty, logits=False):
    n, k = p.shape
    kind, lam, k_reg, weight = score.kernel_params()
    rnd = u is not None
    out = np.empty((n, k), dtype=np.bool_)
    errs = np.empty(n, dtype=np.int8)
    kernel(p, u if rnd else np.zeros(1), qhat, logits, 1.0, kind, rnd, lam, k_reg, weight, allow_empty, 0, n,
           out, errs)
    return out, errs


@_twin("_check_copy_row", "_pairwise_row_sets", "small_set_rows", twin=naive.sets_from_scores)
@pytest.mark.parametrize("k", KS)
@pytest.mark.parametrize("score", RANK_SCORES, ids=lambda s: s.name)
def test_small_k_kernel_equals_twin_and_bucket_kernel(score, k):
    rng = np.random.default_rng(k)
    for ties in (False, True):
        for dtype in (np.float32, np.float64):
            p = _rows(k, 40, ties, dtype, rng)
            for u in (None, rng.random(40)):
                scores = naive.all_scores(score.name, p, u, **PARAMS.get(score.name, {}))
                flat = np.unique(scores)
                qs = [*rng.choice(flat, size=4), np.nextafter(flat[0], -1), flat[-1], 0.0, 0.9, np.inf, -1.0]
                for q in qs:
                    for allow_empty in (True, False):
                        want = naive.sets_from_scores(scores, p, q, allow_empty)  # = naive.sets, scores once
                        got, errs = _run(K.small_set_rows, p, u, q, score, allow_empty)
                        assert not errs.any()
                        np.testing.assert_array_equal(got, want, err_msg=f"K={k} q={q} ties={ties}")
                        bucket, _ = _run(K.set_rows, p, u, q, score, allow_empty)
                        np.testing.assert_array_equal(got, bucket)


@_twin("small_predict_sets", "small_set_rows", twin=naive.sets)
@pytest.mark.parametrize("score", RANK_SCORES, ids=lambda s: s.name)
def test_small_k_parallel_path_and_public_dispatch(score):
    """`Score.sets` takes the small-K kernel for K <= SMALL_K, in parallel chunks for large inputs."""
    rng = np.random.default_rng(8)
    p = rng.dirichlet(np.full(10, 0.3), size=5000).astype(np.float32)
    assert p.size > base._SERIAL_MAX and p.shape[1] <= K.SMALL_K
    u = rng.random(5000)
    for uu in (None, u):
        got = score.sets(p, 0.8, uu)
        serial, _ = _run(K.small_set_rows, p, uu, 0.8, score, True)
        bucket, _ = _run(K.set_rows, p, uu, 0.8, score, True)
        np.testing.assert_array_equal(got, serial)
        np.testing.assert_array_equal(got, bucket)
        rows = [0, 2500, 4999]
        np.testing.assert_array_equal(got[rows], naive.sets(score.name, p[rows], 0.8, None if uu is None else uu[rows],
                                                            **PARAMS.get(score.name, {})))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("score", RANK_SCORES, ids=lambda s: s.name)
def test_small_k_kernel_flags_rows_as_the_row_check_does(score, dtype):
    rng = np.random.default_rng(9)
    p = rng.dirichlet(np.ones(7), size=20).astype(dtype)
    for bad in (np.nan, np.inf, -np.inf, -0.1, 1.5):
        q = p.copy()
        q[5, 3] = bad
        q[9, 0] = q[9, 0] + 0.01  # a bad sum
        _, errs = _run(K.small_set_rows, q, None, 0.5, score, True)
        want = np.empty(20, dtype=np.int8)
        K.check_rows_serial(q, False, want)
        np.testing.assert_array_equal(errs, want)
        with pytest.raises(ValueError, match="row 5"):
            score.sets(q, 0.5)
    z = rng.normal(size=(20, 7)).astype(dtype)  # logits
    got, errs = _run(K.small_set_rows, z, None, 0.5, score, True, logits=True)
    np.testing.assert_array_equal(got, score.sets(z, 0.5, inputs="logits"))
    np.testing.assert_array_equal(got, naive.sets(score.name, np.array([naive.softmax_row(r) for r in z]), 0.5,
                                                  **PARAMS.get(score.name, {})))
