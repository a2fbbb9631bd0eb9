"""Each point-cloud Numba kernel against a plain NumPy twin (hypothesis for shapes and values)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perturbations import _pointcloud_object as obj
from perturbations._kernels.pointcloud import ffd_kernel, fog_response_kernel, knn_kernel, rbf_apply_kernel

SEEDS = st.integers(0, 2**31)


@pytest.mark.twin("perturbations._kernels.pointcloud.knn_kernel", twin="inline")
@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 80), k=st.integers(1, 12), seed=SEEDS, rounded=st.booleans())
def test_knn_matches_numpy(n, k, seed, rounded):
    k = min(k, n - 1)
    xyz = np.random.default_rng(seed).normal(size=(n, 3))
    if rounded:  # exact ties
        xyz = np.round(xyz)
    idx, nearest = knn_kernel(xyz, k)
    d = ((xyz[:, None, :] - xyz[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    ref = np.argsort(d, axis=1, kind="stable")[:, :k]  # stable sort: lower index first among ties
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(nearest, np.sqrt(d.min(axis=1)), rtol=1e-12)


@pytest.mark.twin("perturbations._kernels.pointcloud.ffd_kernel", twin=obj.ffd_displace)
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 200), seed=SEEDS, s=st.floats(0.0, 0.5), lattice=st.integers(2, 6))
def test_ffd_kernel_matches_numpy(n, seed, s, lattice):
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(-1, 1, (n, 3))
    mu = rng.uniform(-s, s, (lattice, lattice, lattice, 3))
    np.testing.assert_allclose(ffd_kernel(xyz, mu), obj.ffd_displace(xyz, mu), rtol=1e-10, atol=1e-12)


def test_ffd_zero_displacement_is_identity_and_bernstein_partition_of_unity():
    xyz = np.random.default_rng(0).uniform(-1, 1, (50, 3))
    np.testing.assert_allclose(ffd_kernel(xyz, np.zeros((5, 5, 5, 3))), xyz)
    # a uniform lattice shift moves every point by the same amount (the basis sums to 1)
    np.testing.assert_allclose(ffd_kernel(xyz, np.full((5, 5, 5, 3), 0.1)), xyz + 0.2, atol=1e-12)
    np.testing.assert_allclose(obj.bernstein(np.linspace(0, 1, 7), 4).sum(1), 1.0)


@pytest.mark.twin("perturbations._kernels.pointcloud.rbf_apply_kernel", twin=obj.rbf_apply)
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 200), seed=SEEDS, d=st.floats(0.0, 0.2), inverse=st.booleans())
def test_rbf_kernel_and_cached_inverse_match_numpy(n, seed, d, inverse):
    rng = np.random.default_rng(seed)
    ctrl = obj.control_lattice(5)
    moved = ctrl + rng.normal(0, d, ctrl.shape)
    w, c, q = obj.rbf_fit(ctrl, moved, 0.5, inverse)
    rhs = np.zeros((129, 3))
    rhs[:125] = moved
    sol = obj._rbf_inverse(5, 0.5, inverse) @ rhs
    np.testing.assert_allclose(sol[:125], w, atol=1e-7)
    xyz = rng.uniform(-1, 1, (n, 3))
    np.testing.assert_allclose(rbf_apply_kernel(xyz, ctrl, w, c, q, 0.5, inverse),
                               obj.rbf_apply(xyz, ctrl, w, c, q, 0.5, inverse), rtol=1e-9, atol=1e-12)
    # the interpolant passes through the moved control points
    np.testing.assert_allclose(obj.rbf_apply(ctrl, ctrl, w, c, q, 0.5, inverse), moved, atol=1e-7)


def fog_reference(alpha, r0, dr, window, r1, r2):
    """NumPy twin of the fog response: the same midpoint integral, vectorised over R."""
    c = 299792458.0
    rk = (np.arange(int((r0 + window) / dr) + 1) + 0.5) * dr
    xi = np.clip((rk - r1) / (r2 - r1), 0.0, 1.0)
    g = np.exp(-2 * alpha * rk) * xi / rk ** 2 * (rk < int(r0 / dr) * dr)
    best, best_r = 0.0, 0.0
    for j in range(1, min(len(rk), int(r0 / dr) + int(round(window / dr)) + 1)):
        big_r = j * dr
        lo = max(0, j - int(round(window / dr)))
        sel = slice(lo, j)
        val = (np.sin(np.pi * (big_r - rk[sel]) / window) ** 2 * g[sel]).sum() * 2 / c * dr
        if val > best:
            best, best_r = val, big_r
    return best_r, best


@pytest.mark.twin("perturbations._kernels.pointcloud.fog_response_kernel", twin=fog_reference)
def test_fog_kernel_matches_numpy_and_physics():
    grid = np.array([0.5, 1.5, 3.0, 8.0, 20.0])
    for alpha in (0.005, 0.06):
        r_fog, i_fog = fog_response_kernel(alpha, grid, 0.05, 5.996, 0.9, 1.0)
        for a, r0 in enumerate(grid):
            rr, ii = fog_reference(alpha, r0, 0.05, 5.996, 0.9, 1.0)
            assert r_fog[a] == rr
            assert math.isclose(i_fog[a], ii, rel_tol=1e-9)
        assert i_fog[0] == 0.0  # a target inside the overlap ramp sees no fog
        assert np.all(np.diff(i_fog) >= 0)  # a farther target lets more fog in front of it respond
        assert abs(i_fog[-1] - i_fog[-2]) < 1e-3 * i_fog[-1]  # saturates once R0 passes the pulse window
    thin = fog_response_kernel(0.005, grid, 0.05, 5.996, 0.9, 1.0)[1]
    thick = fog_response_kernel(0.06, grid, 0.05, 5.996, 0.9, 1.0)[1]
    assert np.all(thick[1:] < thin[1:])  # per unit beta, denser fog attenuates its own backscatter more


def precipitation_reference(r, rho, gaps, diam, noise, alpha, rho_p, half_div, r_min, p_min, range_accuracy):
    """Vectorised NumPy twin of precipitation_kernel."""
    n, k = gaps.shape
    x = np.cbrt(np.cumsum(gaps, axis=1) + r_min ** 3)
    valid = np.cumprod(x < r[:, None], axis=1).astype(bool)  # stop at the first particle behind the target
    share = np.where(valid, np.minimum((diam / (2 * half_div * x * 1000.0)) ** 2, 1.0), 0.0)
    pp = np.where(valid, rho_p * np.exp(-2 * alpha * x) * share / x ** 2, -1.0)
    best = pp.argmax(axis=1)
    rows = np.arange(n)
    trans = np.exp(-2 * alpha * r) * (1 - np.minimum(share.sum(1), 1.0))
    p_target = rho * trans / r ** 2
    to_part = (pp[rows, best] > p_target) & (pp[rows, best] >= p_min)
    keep = ~to_part & (p_target >= p_min)
    mode = np.where(to_part, 2, np.where(keep, 1, 0)).astype(np.int8)
    sigma = range_accuracy / np.sqrt(2 * np.maximum(p_target, 1e-300) / p_min)  # LISA's Eq. 7
    new_r = np.where(to_part, x[rows, best], np.where(keep, np.maximum(r + noise * sigma, 0.05), r))
    part_i = np.where(to_part, rho_p * share[rows, best] * np.exp(-2 * alpha * x[rows, best]), 0.0)
    return mode, new_r, trans, part_i


@pytest.mark.twin("perturbations._kernels.pointcloud.precipitation_kernel", twin=precipitation_reference)
@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 300), k=st.integers(1, 6), seed=SEEDS, scale=st.floats(0.5, 500.0),
       p_min=st.floats(1e-7, 1e-4))
def test_precipitation_kernel_matches_numpy(n, k, seed, scale, p_min):
    from perturbations._kernels.pointcloud import precipitation_kernel
    rng = np.random.default_rng(seed)
    args = (rng.uniform(1.0, 80.0, n), rng.uniform(0.02, 1.0, n), rng.exponential(scale, (n, k)),
            rng.exponential(1.0, (n, k)), rng.normal(size=n), 0.003, 0.02, 1.5e-3, 1.5, p_min, 0.09)
    got = precipitation_kernel(*args)
    ref = precipitation_reference(*args)
    np.testing.assert_array_equal(got[0], ref[0])
    for g, r in zip(got[1:], ref[1:]):
        np.testing.assert_allclose(g, r, rtol=1e-9, atol=1e-300)  # sums of shares in a different order
