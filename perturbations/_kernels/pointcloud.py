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
