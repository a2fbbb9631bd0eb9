"""Object-level corruptions of ModelNet40-C (Sun et al., "Benchmarking Robustness of 3D Point Cloud
Recognition Against Common Corruptions", 2022), re-implemented from the formulas in
docs/pointcloud_corruptions.md (no PyGeM, no ModelNet40-C code).

Every function here works in ModelNet40-C's input frame: the caller (`pointcloud.corrupt`) has moved the
cloud into the unit sphere (centroid at 0, farthest point at 1, as the ModelNet40 h5 files ship) and maps
the result back by the same centre and radius afterwards. Magnitudes are absolute in that frame; the
functions that call `renormalize` end, as ModelNet40-C's do, in the bounding-box frame (longest side 2).
Each takes (pts, rng, p) with pts a float64
(N, C) copy it may modify, rng a Generator and p the sampled params (the severity row plus the scalar draws
of its sampler in `SAMPLERS`; arrays, or the lists of a JSON record), and returns (out, index, applied):
`index[j]` is the source row of output row
j or -1 for an added point, `applied` the values drawn or derived. A sampler, ``sample(n, p, rng)`` for an
n-point cloud, makes the draws that come before any per-point draw, in the order the corruption always
made them, so the numbers for a seed never changed; the function draws only the per-point ones.
Columns past xyz travel with their point; added points copy them from the point they were made from
(upsampling) or get zeros (background).
"""
from __future__ import annotations

import functools
import math

import numpy as np

from ._kernels.pointcloud import ffd_kernel, rbf_apply_kernel


def renormalize(xyz: np.ndarray) -> None:
    """In place: centre the bounding box and scale the longest side to 2 (skipped for a zero-extent cloud)."""
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    extent = float((hi - lo).max())
    xyz -= (lo + hi) / 2.0
    if extent > 0.0:
        xyz *= 2.0 / extent


def _scaled(count: int, n: int, ref: int = 1024) -> int:
    """A ModelNet40-C count given for `ref` points, scaled to a cloud of `n` points (at least 1)."""
    return max(1, int(round(count * n / ref)))


def _signed_uniform(rng, centre, spread, size):
    """±U(centre - spread, centre + spread) with an independent random sign per value."""
    return rng.uniform(centre - spread, centre + spread, size) * rng.choice((-1.0, 1.0), size)


def uniform(pts, rng, p):
    pts[:, :3] += rng.uniform(-p["c"], p["c"], (len(pts), 3))
    renormalize(pts[:, :3])
    return pts, np.arange(len(pts)), {}


def gaussian(pts, rng, p):
    pts[:, :3] += rng.normal(0.0, p["sigma"], (len(pts), 3))
    np.clip(pts[:, :3], -1.0, 1.0, out=pts[:, :3])  # ModelNet40-C clips instead of renormalising
    return pts, np.arange(len(pts)), {}


def impulse(pts, rng, p):
    n = len(pts)
    k = max(1, n // p["divisor"])
    chosen = rng.choice(n, k, replace=False)
    pts[chosen, :3] += p["magnitude"] * rng.choice((-1.0, 1.0), (k, 3))
    renormalize(pts[:, :3])
    return pts, np.arange(n), {"moved": np.sort(chosen)}


def upsampling(pts, rng, p):
    n = len(pts)
    k = max(1, n // p["divisor"])
    src = rng.choice(n, k, replace=False)
    new = pts[src].copy()
    new[:, :3] += rng.uniform(-p["jitter"], p["jitter"], (k, 3))
    out = np.concatenate([pts, new])
    renormalize(out[:, :3])
    return out, np.concatenate([np.arange(n), np.full(k, -1)]), {"sources": src}


def background(pts, rng, p):
    n = len(pts)
    k = max(1, n // p["divisor"])
    new = np.zeros((k, pts.shape[1]))
    new[:, :3] = rng.uniform(-1.0, 1.0, (k, 3))
    out = np.concatenate([pts, new])
    renormalize(out[:, :3])
    return out, np.concatenate([np.arange(n), np.full(k, -1)]), {}


def _knn(xyz, centre, k):
    """Indices (into xyz) of the k points nearest to `centre`, squared distance, via argpartition."""
    d = ((xyz - centre) ** 2).sum(axis=1)
    k = min(k, len(xyz))
    return np.argpartition(d, k - 1)[:k]


def sample_cutout(n, p, rng, **_):
    """Positions (in the shrinking list of kept points) of the cluster anchors; each cluster removes `size`."""
    size, left, positions = _scaled(p["cluster"], n), n, []
    for _ in range(p["n_clusters"]):
        if left <= size:
            break
        positions.append(int(rng.integers(left)))
        left -= size
    return {"positions": positions}


def cutout(pts, rng, p):
    n = len(pts)
    size = _scaled(p["cluster"], n)
    keep = np.arange(n)
    anchors = []
    for position in p["positions"]:
        a = keep[position]
        anchors.append(int(a))
        drop = _knn(pts[keep, :3], pts[a, :3], size)
        keep = np.delete(keep, drop)
    return pts[keep], keep, {"anchors": np.array(anchors, dtype=np.int64)}


def density_dec(pts, rng, p):
    n = len(pts)
    patch, delete = _scaled(p["patch"], n), _scaled(p["delete"], n)
    keep = np.arange(n)
    anchors = []
    for _ in range(p["n_patches"]):
        if len(keep) <= patch:
            break
        a = keep[rng.integers(len(keep))]
        anchors.append(int(a))
        nn = _knn(pts[keep, :3], pts[a, :3], patch)
        keep = np.delete(keep, rng.choice(nn, min(delete, len(nn)), replace=False))
    return pts[keep], keep, {"anchors": np.array(anchors, dtype=np.int64)}


def sample_density_inc(n, p, rng, **_):
    """Positions (in the shrinking pool) of the patch anchors; each patch takes `patch` points of the pool."""
    m, patch = max(1, n // 2), _scaled(p["patch"], n, ref=2048)
    pool, kept, positions = n, 0, []
    for _ in range(p["n_patches"]):
        if pool <= patch or kept + patch > m:
            break
        positions.append(int(rng.integers(pool)))
        pool, kept = pool - patch, kept + patch
    return {"positions": positions}


def density_inc(pts, rng, p):
    """ModelNet40-C: from 2,048 points keep n full-density 100-NN patches, fill to 1,024 with replacement.

    For N input points the output has N // 2 points and the patches have round(100 N / 2048) points.
    """
    n = len(pts)
    m = max(1, n // 2)
    patch = _scaled(p["patch"], n, ref=2048)
    pool = np.arange(n)
    kept = []
    for position in p["positions"]:
        a = pool[position]
        nn = _knn(pts[pool, :3], pts[a, :3], patch)
        kept.append(pool[nn])
        pool = np.delete(pool, nn)
    patches = np.concatenate(kept) if kept else np.empty(0, dtype=np.int64)
    rest = pool[rng.integers(len(pool), size=m - len(patches))]  # with replacement, as ModelNet40-C
    idx = np.concatenate([patches, rest]).astype(np.int64)
    return pts[idx], idx, {"patches": patches}


def _rot(axis: int, a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    if axis == 0:
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == 1:
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def rotation_matrix(angles_rad) -> np.ndarray:
    """Rx @ Ry @ Rz for the row-vector convention `pts @ R` used by ModelNet40-C."""
    return _rot(0, angles_rad[0]) @ _rot(1, angles_rad[1]) @ _rot(2, angles_rad[2])


def sample_rotation(n, p, rng, **_):
    return {"angles_rad": np.deg2rad(_signed_uniform(rng, p["angle_deg"], p["spread_deg"], 3))}


def rotation(pts, rng, p):
    ang = np.asarray(p["angles_rad"], dtype=np.float64)
    pts[:, :3] = pts[:, :3] @ rotation_matrix(ang)
    renormalize(pts[:, :3])
    return pts, np.arange(len(pts)), {"angles_deg": np.rad2deg(ang)}


def sample_shear(n, p, rng, **_):
    return {"shear": _signed_uniform(rng, p["c"], p["spread"], 4)}


def shear(pts, rng, p):
    b, d, e, f = np.asarray(p["shear"], dtype=np.float64)
    m = np.array([[1.0, 0.0, b], [d, 1.0, e], [f, 0.0, 1.0]])
    pts[:, :3] = pts[:, :3] @ m
    renormalize(pts[:, :3])
    return pts, np.arange(len(pts)), {"matrix": m}


def bernstein(t: np.ndarray, degree: int) -> np.ndarray:
    """(len(t), degree + 1) Bernstein basis B_i^degree(t) = C(degree, i) t^i (1 - t)^(degree - i)."""
    i = np.arange(degree + 1)
    coef = np.array([math.comb(degree, k) for k in i], dtype=np.float64)
    return coef * t[:, None] ** i * (1.0 - t[:, None]) ** (degree - i)


def ffd_displace(xyz: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Free-form deformation of points in [-1, 1]^3 with lattice displacements `mu` (L, L, L, 3) in unit-cube units."""
    deg = mu.shape[0] - 1
    u = np.clip((xyz + 1.0) / 2.0, 0.0, 1.0)
    bx, by, bz = bernstein(u[:, 0], deg), bernstein(u[:, 1], deg), bernstein(u[:, 2], deg)
    disp = np.einsum("ni,nj,nk,ijkd->nd", bx, by, bz, mu, optimize=True)
    return xyz + 2.0 * disp


def sample_ffd(n, p, rng, **_):
    lat = p["lattice"]
    return {"control_displacements": rng.uniform(-p["s"], p["s"], (lat, lat, lat, 3))}


def ffd(pts, rng, p):
    mu = np.asarray(p["control_displacements"], dtype=np.float64)
    pts[:, :3] = ffd_kernel(np.ascontiguousarray(pts[:, :3]), mu)
    renormalize(pts[:, :3])
    return pts, np.arange(len(pts)), {"control_displacements": mu}


def _phi(r, radius, inverse):
    q = np.sqrt(r * r + radius * radius)
    return 1.0 / q if inverse else q


@functools.lru_cache(maxsize=8)
def control_lattice(lattice: int) -> np.ndarray:
    """(lattice^3, 3) regular grid over [-1, 1]^3, x slowest (cached, read-only)."""
    g = np.linspace(-1.0, 1.0, lattice)
    grid = np.ascontiguousarray(np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3))
    grid.flags.writeable = False
    return grid


def rbf_system(ctrl: np.ndarray, radius: float, inverse: bool) -> np.ndarray:
    """The (K+4, K+4) block matrix [[Phi, 1, X], [1^T, 0, 0], [X^T, 0, 0]] of the RBF interpolant."""
    k = len(ctrl)
    dist = np.sqrt(((ctrl[:, None, :] - ctrl[None, :, :]) ** 2).sum(-1))
    a = np.zeros((k + 4, k + 4))
    a[:k, :k] = _phi(dist, radius, inverse)
    a[:k, k] = a[k, :k] = 1.0
    a[:k, k + 1:] = ctrl
    a[k + 1:, :k] = ctrl.T
    return a


@functools.lru_cache(maxsize=8)
def _rbf_inverse(lattice: int, radius: float, inverse: bool) -> np.ndarray:
    # the system depends only on the fixed control lattice, so one inverse serves every call
    inv = np.linalg.inv(rbf_system(control_lattice(lattice), radius, inverse))
    inv.flags.writeable = False
    return inv


def rbf_fit(ctrl: np.ndarray, moved: np.ndarray, radius: float, inverse: bool):
    """Weights W (K, 3), constant c (3,) and affine Q (3, 3) of the PyGeM-style RBF interpolant
    (right-hand side: the moved control points, so the affine part carries the identity)."""
    k = len(ctrl)
    rhs = np.zeros((k + 4, 3))
    rhs[:k] = moved
    sol = np.linalg.solve(rbf_system(ctrl, radius, inverse), rhs)
    return sol[:k], sol[k], sol[k + 1:]


def rbf_apply(xyz, ctrl, w, c, q, radius, inverse):
    dist = np.sqrt(((xyz[:, None, :] - ctrl[None, :, :]) ** 2).sum(-1))
    return _phi(dist, radius, inverse) @ w + c + xyz @ q


def sample_rbf(n, p, rng, **_):
    a, gam = rng.uniform(-math.pi, math.pi, (2, p["lattice"] ** 3))
    return {"direction_azimuth": a, "direction_polar": gam}


def _rbf(pts, rng, p, inverse):
    ctrl = control_lattice(p["lattice"])
    a = np.asarray(p["direction_azimuth"], dtype=np.float64)
    gam = np.asarray(p["direction_polar"], dtype=np.float64)
    # ModelNet40-C's direction draw (two uniform angles), which is deliberately not uniform on the sphere
    moved = ctrl + p["d"] * np.stack([np.cos(a) * np.sin(gam), np.sin(a) * np.sin(gam), np.cos(gam)], -1)
    rhs = np.zeros((len(ctrl) + 4, 3))
    rhs[:len(ctrl)] = moved
    sol = _rbf_inverse(p["lattice"], p["radius"], inverse) @ rhs
    k = len(ctrl)
    pts[:, :3] = rbf_apply_kernel(np.ascontiguousarray(pts[:, :3]), ctrl, sol[:k], sol[k], sol[k + 1:],
                                  float(p["radius"]), inverse)
    renormalize(pts[:, :3])
    return pts, np.arange(len(pts)), {"control_points_moved": moved}


def rbf(pts, rng, p):
    return _rbf(pts, rng, p, inverse=False)


def inv_rbf(pts, rng, p):
    return _rbf(pts, rng, p, inverse=True)


FUNCTIONS = {
    "density_inc": density_inc, "density_dec": density_dec, "cutout": cutout, "uniform": uniform,
    "gaussian": gaussian, "impulse": impulse, "upsampling": upsampling, "background": background,
    "rotation": rotation, "shear": shear, "ffd": ffd, "rbf": rbf, "inv_rbf": inv_rbf,
}
SAMPLERS = {"density_inc": sample_density_inc, "cutout": sample_cutout, "rotation": sample_rotation,
            "shear": sample_shear, "ffd": sample_ffd, "rbf": sample_rbf, "inv_rbf": sample_rbf}
