"""Fitted label-free statistics (knn, mahalanobis, energy, input_quality): kernels against their NumPy twin,
faiss against the exact kernel, what each statistic measures, label-free signatures, clear errors and saved state.
"""
import inspect
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import conformal
from conformal import Energy, InputQuality, KNNDistance, Mahalanobis
from conformal._kernels import knn as KK
from conformal.abstention import FITTED_STATISTICS
from conformal.abstention.fitted import faiss_available
from conformal.io import StateError
from tests.reference import knn as twin_knn

KN = "conformal._kernels.knn."


@pytest.mark.twin(KN + "knn_distances", KN + "_knn_row", KN + "knn_distance_one", twin=twin_knn.knn_distances)
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 30), m=st.integers(1, 1300), d=st.integers(1, 20), seed=st.integers(0, 2**31 - 1),
       mean=st.booleans(), ties=st.booleans(), data=st.data())
def test_knn_kernel_matches_numpy_twin(n, m, d, seed, mean, ties, data):
    rng = np.random.default_rng(seed)
    k = data.draw(st.integers(1, min(m, 12)))
    bank = rng.normal(size=(m, d)).astype(np.float32)
    q = rng.normal(size=(n, d)).astype(np.float32)
    if ties:  # repeated bank rows and queries on bank rows: equal distances, zeros
        bank = np.round(bank)
        q = np.concatenate([bank[: min(n, m)], np.round(q)])[:n]
    bank_t = np.ascontiguousarray(bank.T)
    q0 = q.copy()
    got = KK.knn_distances(q, bank_t, k, mean)
    want = twin_knn.knn_distances(q, bank_t, k, mean)
    np.testing.assert_array_equal(got, want)
    acc, top = np.empty(KK._BLOCK, np.float32), np.empty(k, np.float32)
    one = np.array([KK.knn_distance_one(q[i], bank_t, k, mean, acc, top) for i in range(n)])
    np.testing.assert_array_equal(one, want)
    np.testing.assert_array_equal(q, q0)
    # and the definition in float64 (up to float32 rounding)
    d64 = np.sqrt(((q[:, None, :].astype(np.float64) - bank[None].astype(np.float64)) ** 2).sum(-1))
    ref = np.sort(d64, 1)[:, :k]
    np.testing.assert_allclose(got, ref.mean(1) if mean else ref[:, -1], rtol=1e-4, atol=1e-4)
