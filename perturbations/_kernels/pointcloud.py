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
    # structure-of-arrays copy and a branch-free min pass so the inner loop vectorises
    x = xyz[:, 0].copy()
    y = xyz[:, 1].copy()
    z = xyz[:, 2].copy()
    out = np.empty(n_samples, dtype=np.int64)
    min_d = np.full(n, np.inf)
    cur = start
    for s in range(n_samples):
        out[s] = cur
        min_d[cur] = -1.0  # marks a chosen point: never the maximum again, never raised above -1
        cx = x[cur]
        cy = y[cur]
        cz = z[cur]
        for i in range(n):
            dx = x[i] - cx
            dy = y[i] - cy
            dz = z[i] - cz
            min_d[i] = min(min_d[i], dx * dx + dy * dy + dz * dz)
        best = -1.0
        best_i = 0
        for i in range(n):
            if min_d[i] > best:
                best = min_d[i]
                best_i = i
        cur = best_i
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


@njit(cache=True, nogil=True, error_model="numpy")  # no zero-division check: r^2 + radius^2 > 0
def rbf_apply_kernel(xyz, ctrl, w, c, q, radius, inverse):
    """p' = sum_i W_i phi(|p - x_i|) + c + p Q, phi multiquadric sqrt(r^2 + radius^2) or its inverse."""
    n = xyz.shape[0]
    k = ctrl.shape[0]
    r2 = radius * radius
    px = xyz[:, 0].copy()
    py = xyz[:, 1].copy()
    pz = xyz[:, 2].copy()
    o0 = c[0] + px * q[0, 0] + py * q[1, 0] + pz * q[2, 0]
    o1 = c[1] + px * q[0, 1] + py * q[1, 1] + pz * q[2, 1]
    o2 = c[2] + px * q[0, 2] + py * q[1, 2] + pz * q[2, 2]
    # control points outside, points inside: the inner loop has no reduction, so it vectorises
    for i in range(k):
        cx = ctrl[i, 0]
        cy = ctrl[i, 1]
        cz = ctrl[i, 2]
        w0 = w[i, 0]
        w1 = w[i, 1]
        w2 = w[i, 2]
        if inverse:
            for a in range(n):
                dx = px[a] - cx
                dy = py[a] - cy
                dz = pz[a] - cz
                phi = 1.0 / np.sqrt(dx * dx + dy * dy + dz * dz + r2)
                o0[a] += w0 * phi
                o1[a] += w1 * phi
                o2[a] += w2 * phi
        else:
            for a in range(n):
                dx = px[a] - cx
                dy = py[a] - cy
                dz = pz[a] - cz
                phi = np.sqrt(dx * dx + dy * dy + dz * dz + r2)
                o0[a] += w0 * phi
                o1[a] += w1 * phi
                o2[a] += w2 * phi
    out = np.empty((n, 3))
    out[:, 0] = o0
    out[:, 1] = o1
    out[:, 2] = o2
    return out


@njit(cache=True, nogil=True)
def ffd_kernel(xyz, mu):
    """Free-form deformation of points in [-1, 1]^3 (clamped to the lattice box) by lattice displacements
    `mu` (L, L, L, 3) in unit-cube units: p' = p + 2 sum_ijk B_i(u_x) B_j(u_y) B_k(u_z) mu_ijk, u = (p + 1)/2."""
    n = xyz.shape[0]
    lat = mu.shape[0]
    deg = lat - 1
    coef = np.empty(lat)
    for i in range(lat):
        cval = 1.0
        for j in range(i):
            cval = cval * (deg - j) / (j + 1)
        coef[i] = cval
    out = np.empty((n, 3))
    bx = np.empty(lat)
    by = np.empty(lat)
    bz = np.empty(lat)
    for a in range(n):
        for dim in range(3):
            u = (xyz[a, dim] + 1.0) / 2.0
            u = min(max(u, 0.0), 1.0)
            for i in range(lat):
                b = coef[i] * u ** i * (1.0 - u) ** (deg - i)
                if dim == 0:
                    bx[i] = b
                elif dim == 1:
                    by[i] = b
                else:
                    bz[i] = b
        d0 = 0.0
        d1 = 0.0
        d2 = 0.0
        for i in range(lat):
            for j in range(lat):
                bij = bx[i] * by[j]
                for k in range(lat):
                    wgt = bij * bz[k]
                    d0 += wgt * mu[i, j, k, 0]
                    d1 += wgt * mu[i, j, k, 1]
                    d2 += wgt * mu[i, j, k, 2]
        out[a, 0] = xyz[a, 0] + 2.0 * d0
        out[a, 1] = xyz[a, 1] + 2.0 * d1
        out[a, 2] = xyz[a, 2] + 2.0 * d2
    return out


@njit(cache=True, nogil=True)
def knn_kernel(xyz, k):
    """(N, k) indices of each point's k nearest other points (squared distance, nearest first; ties by
    lower index) and (N,) distance to the nearest one. Brute force O(N^2 k): for object clouds (~1k)."""
    n = xyz.shape[0]
    idx = np.empty((n, k), dtype=np.int64)
    dst = np.empty((n, k))
    nearest = np.empty(n)
    for i in range(n):
        for m in range(k):
            dst[i, m] = np.inf
            idx[i, m] = -1
        for j in range(n):
            if j == i:
                continue
            dx = xyz[i, 0] - xyz[j, 0]
            dy = xyz[i, 1] - xyz[j, 1]
            dz = xyz[i, 2] - xyz[j, 2]
            d = dx * dx + dy * dy + dz * dz
            if d < dst[i, k - 1]:
                m = k - 1
                while m > 0 and dst[i, m - 1] > d:
                    dst[i, m] = dst[i, m - 1]
                    idx[i, m] = idx[i, m - 1]
                    m -= 1
                dst[i, m] = d
                idx[i, m] = j
        nearest[i] = np.sqrt(dst[i, 0])
    return idx, nearest


@njit(cache=True, nogil=True)
def precipitation_kernel(r, rho, gaps, diam, noise, alpha, rho_p, half_div, r_min, p_min, range_accuracy):
    """LISA strongest-return Monte-Carlo per beam with the K nearest particles (pre-drawn values).

    r, rho: (N,) range and apparent reflectivity; gaps: (N, K) exponential gaps of x^3 - r_min^3
    (already scaled); diam: (N, K) particle diameters in mm; noise: (N,) standard normals. A return that
    stays on its target gets LISA's range noise sigma = range_accuracy / sqrt(2 SNR), SNR = P / p_min.
    Returns mode (N,) int8 (0 lost, 1 target, 2 particle), new range (N,), transmission factor of the
    target (N,) and particle intensity factor (N,) (imax * rho_p * share * exp(-2 alpha x) / imax).
    """
    n, k = gaps.shape
    mode = np.zeros(n, dtype=np.int8)
    new_r = np.empty(n)
    trans = np.empty(n)
    part_i = np.zeros(n)
    rmin3 = r_min * r_min * r_min
    for a in range(n):
        ra = r[a]
        cum = rmin3
        blocked = 0.0
        best_p = -1.0
        best_x = 0.0
        best_share = 0.0
        for j in range(k):
            cum += gaps[a, j]
            x = np.cbrt(cum)
            if x >= ra:
                break
            beam_mm = 2.0 * half_div * x * 1000.0
            share = (diam[a, j] / beam_mm) ** 2
            if share > 1.0:
                share = 1.0
            blocked += share
            pp = rho_p * np.exp(-2.0 * alpha * x) * share / (x * x)
            if pp > best_p:
                best_p = pp
                best_x = x
                best_share = share
        if blocked > 1.0:
            blocked = 1.0
        t = np.exp(-2.0 * alpha * ra) * (1.0 - blocked)
        trans[a] = t
        p_target = rho[a] * t / (ra * ra)
        if best_p > p_target and best_p >= p_min:
            mode[a] = 2
            new_r[a] = best_x
            part_i[a] = rho_p * best_share * np.exp(-2.0 * alpha * best_x)
        elif p_target >= p_min:
            mode[a] = 1
            nr = ra + noise[a] * range_accuracy / np.sqrt(2.0 * p_target / p_min)
            new_r[a] = nr if nr > 0.05 else 0.05
        else:
            new_r[a] = ra
    return mode, new_r, trans, part_i
