"""Numba kernels for the point-cloud helpers and corruptions (private).

Arrays in, arrays out; no randomness here: the Python wrappers draw from a Generator and pass values in.
Each kernel has a plain NumPy twin in tests/perturbations/test_pointcloud_kernels.py.
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def farthest_point_sampling_kernel(xyz, n_samples, start):
    """Greedy farthest-point sampling on float64 (N, 3) `xyz`, starting at index `start`.

    Distances are squared Euclidean, summed x, y, z in that order; ties go to the lowest index. A chosen
    point is never chosen again, so the indices are distinct even when the cloud has duplicate points.
    """
    n = xyz.shape[0]
    out = np.empty(n_samples, dtype=np.int64)
    min_d = np.full(n, np.inf)
    chosen = np.zeros(n, dtype=np.bool_)
    cur = start
    for s in range(n_samples):
        out[s] = cur
        chosen[cur] = True
        cx = xyz[cur, 0]
        cy = xyz[cur, 1]
        cz = xyz[cur, 2]
        best = -1.0
        best_i = 0
        for i in range(n):
            dx = xyz[i, 0] - cx
            dy = xyz[i, 1] - cy
            dz = xyz[i, 2] - cz
            d = dx * dx + dy * dy + dz * dz
            if d < min_d[i]:
                min_d[i] = d
            if not chosen[i] and min_d[i] > best:
                best = min_d[i]
                best_i = i
        cur = best_i
    return out


@njit(cache=True, nogil=True)
def nearest_neighbour_distance_kernel(xyz):
    """Euclidean distance from each point of float64 (N, 3) `xyz` to its nearest other point (inf if N == 1)."""
    n = xyz.shape[0]
    out = np.full(n, np.inf)
    for i in range(n):
        best = np.inf
        for j in range(n):
            if j != i:
                dx = xyz[i, 0] - xyz[j, 0]
                dy = xyz[i, 1] - xyz[j, 1]
                dz = xyz[i, 2] - xyz[j, 2]
                d = dx * dx + dy * dy + dz * dz
                if d < best:
                    best = d
        out[i] = np.sqrt(best)
    return out


@njit(cache=True, nogil=True)
def fog_response_kernel(alpha, r0_grid, dr, window, r1, r2):
    """Hahner et al. (ICCV'21) soft-target fog response for each hard-target range in `r0_grid`.

    P(R; R0) = (2/c) * int_{R - W}^{R} sin^2(pi (R - r) / W) * exp(-2 alpha r) * xi(r) / r^2 * [r < R0] dr,
    the pulse-convolved fog backscatter per unit (C_A P0 beta), with W = c * tau_H and xi the overlap ramp
    from r1 to r2. Returns (R_fog, I_fog): the argmax range and maximum of P over R for each R0, using a
    midpoint rule with step `dr` (c = 299,792,458 m/s).
    """
    c = 299792458.0
    n_w = int(round(window / dr))
    n0 = r0_grid.shape[0]
    r_fog = np.zeros(n0)
    i_fog = np.zeros(n0)
    r_top = r0_grid[n0 - 1] + window
    n_r = int(r_top / dr) + 1
    # g on the midpoint grid r_k = (k + 0.5) dr
    g = np.zeros(n_r)
    for k in range(n_r):
        r = (k + 0.5) * dr
        if r <= r1:
            xi = 0.0
        elif r >= r2:
            xi = 1.0
        else:
            xi = (r - r1) / (r2 - r1)
        g[k] = np.exp(-2.0 * alpha * r) * xi / (r * r)
    for a in range(n0):
        r0 = r0_grid[a]
        k_max = int(r0 / dr)  # midpoints below R0
        best = 0.0
        best_r = 0.0
        j_top = min(n_r, k_max + n_w + 1)
        for j in range(1, j_top):  # R = j * dr
            big_r = j * dr
            acc = 0.0
            lo = max(0, j - n_w)
            hi = min(j, k_max)
            for k in range(lo, hi):
                r = (k + 0.5) * dr
                s = np.sin(np.pi * (big_r - r) / window)
                acc += s * s * g[k]
            acc *= 2.0 / c * dr
            if acc > best:
                best = acc
                best_r = big_r
        r_fog[a] = best_r
        i_fog[a] = best
    return r_fog, i_fog
