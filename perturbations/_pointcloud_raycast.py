"""ModelNet40-C's Occlusion and LiDAR corruptions, ray-cast headless with open3d's RaycastingScene.

ModelNet40-C renders the object's mesh to a depth image in an OpenGL window, which needs a display. Here
each input point is tested for visibility instead: a ray from the viewpoint to the point is cast against
either the given mesh or, when there is none, a mesh built from the points themselves: one square
"splat" per point in its tangent plane (normal from PCA of its 10 nearest neighbours), half-side 2 x the
median nearest-neighbour spacing. A point is kept when nothing lies in front of it by more than half a
splat (1e-2 for a given mesh). So the output rows are input rows (labels
follow them), and only points hidden from the viewpoint are removed.

open3d is imported inside `visible_mask` only.
"""
from __future__ import annotations

import math

import numpy as np

from ._kernels.pointcloud import knn_kernel
from ._pointcloud_object import renormalize

SPLAT_FACTOR = 2.0
SPLAT_TOLERANCE = 0.5
NORMAL_NEIGHBOURS = 10


def _import_open3d():
    try:
        import open3d as o3d
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the 'occlusion' and 'lidar' corruptions ray-cast with open3d: pip install open3d-cpu "
                          "(and apt-get install libusb-1.0-0 on Debian)") from exc
    return o3d


def mesh_arrays(mesh):
    """(vertices float64 (V, 3), triangles int64 (T, 3)) from a (vertices, triangles) pair or an open3d mesh."""
    if isinstance(mesh, tuple) and len(mesh) == 2:
        v, t = np.asarray(mesh[0], dtype=np.float64), np.asarray(mesh[1])
    elif hasattr(mesh, "vertices") and hasattr(mesh, "triangles"):  # open3d.geometry.TriangleMesh
        v, t = np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.triangles)
    elif hasattr(mesh, "vertex") and hasattr(mesh, "triangle"):  # open3d.t.geometry.TriangleMesh
        v, t = mesh.vertex.positions.numpy().astype(np.float64), mesh.triangle.indices.numpy()
    else:
        raise TypeError("`mesh` must be a (vertices (V, 3), triangles (T, 3)) tuple or an open3d TriangleMesh; "
                        f"got {type(mesh).__name__}")
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0 or not np.isfinite(v).all():
        raise ValueError(f"`mesh` vertices must be a finite (V, 3) array with V >= 1; got shape {v.shape}")
    if t.ndim != 2 or t.shape[1] != 3 or len(t) == 0 or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(f"`mesh` triangles must be an integer (T, 3) array with T >= 1; got {t.dtype} {t.shape}")
    if t.min() < 0 or t.max() >= len(v):
        raise ValueError(f"`mesh` triangles index vertices 0..{len(v) - 1}; got indices {t.min()}..{t.max()}")
    return v, t.astype(np.int64)


def pca_normals(xyz: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Unit normals: the least-variance direction of each point's neighbourhood (sign arbitrary)."""
    nb = xyz[neighbours]
    nb = nb - nb.mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", nb, nb)
    return np.linalg.eigh(cov)[1][:, :, 0]


def splat_mesh(xyz: np.ndarray, normals: np.ndarray, half_side: float):
    """One square (2 triangles) of half-side `half_side` centred on every point, normal to `normals`."""
    d = normals
    helper = np.where(np.abs(d[:, 2:3]) < 0.9, np.array([[0.0, 0.0, 1.0]]), np.array([[1.0, 0.0, 0.0]]))
    u = np.cross(d, helper)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(d, u) * half_side
    u *= half_side
    verts = np.stack([xyz - u - v, xyz + u - v, xyz + u + v, xyz - u + v], axis=1).reshape(-1, 3)
    base = 4 * np.arange(len(xyz))[:, None]
    tris = np.concatenate([base + np.array([0, 1, 2]), base + np.array([0, 2, 3])], axis=0)
    return verts, tris


def visible_mask(xyz: np.ndarray, eye: np.ndarray, mesh=None) -> tuple[np.ndarray, float]:
    """Boolean (N,) mask of the points seen from `eye`, and the depth tolerance used."""
    o3d = _import_open3d()
    n = len(xyz)
    if mesh is None:
        if n < 4:
            return np.ones(n, dtype=bool), 0.0  # too few points to hide anything
        k = min(NORMAL_NEIGHBOURS, n - 1)
        neighbours, nn = knn_kernel(np.ascontiguousarray(xyz), k)
        half = SPLAT_FACTOR * max(float(np.median(nn)), 1e-9)
        normals = pca_normals(xyz, np.concatenate([np.arange(n)[:, None], neighbours], axis=1))
        verts, tris = splat_mesh(xyz, normals, half)
        tol = SPLAT_TOLERANCE * half
    else:
        verts, tris = mesh
        tol = 1e-2  # points lie on the mesh surface up to sampling/rounding error (unit frame)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(verts.astype(np.float32)), o3d.core.Tensor(tris.astype(np.uint32)))
    d = xyz - eye
    dist = np.linalg.norm(d, axis=1)
    rays = np.concatenate([np.broadcast_to(eye, (n, 3)), d / dist[:, None]], axis=1).astype(np.float32)
    t_hit = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    return t_hit >= dist - tol, tol


LIDAR_POLAR = math.pi - 5 * math.pi / 8


def _azimuth(rng, p):
    return rng.uniform(p["azimuth_centre"] - math.pi / 5, p["azimuth_centre"] + math.pi / 5)


def _eye(p, polar, azimuth):
    direction = np.array([math.sin(polar) * math.cos(azimuth), math.sin(polar) * math.sin(azimuth), math.cos(polar)])
    return p["distance"] * direction


def sample_occlusion(n, p, rng, **_):
    # ModelNet40-C tilts the camera by U(2pi/3, 5pi/6); with z up that is a polar angle of pi/6..pi/3.
    polar = math.pi - rng.uniform(2 * math.pi / 3, 5 * math.pi / 6)
    return {"polar": polar, "azimuth": _azimuth(rng, p)}


def sample_lidar(n, p, rng, **_):
    return {"azimuth": _azimuth(rng, p)}


def occlusion(pts, rng, p, mesh=None):
    """Keep the points visible from a camera 3 half-extents away, 30-60 degrees above the xy-plane."""
    polar, azimuth = p["polar"], p["azimuth"]
    eye = _eye(p, polar, azimuth)
    vis, _ = visible_mask(pts[:, :3], eye, mesh)
    keep = np.flatnonzero(vis)
    out = pts[keep]
    if len(out):
        renormalize(out[:, :3])
    return out, keep, {"eye": eye, "azimuth": azimuth, "polar": polar}


def lidar(pts, rng, p, mesh=None):
    """Visible points, binned into 1-degree elevation bands as seen from a sensor 5 half-extents away.

    Only points in the middle half of their band are kept, snapped to the band centre (range and
    azimuth unchanged); then round(0.75 N) of them are drawn with replacement (ModelNet40-C: 768 of
    1,024). Not renormalised, as in ModelNet40-C.
    """
    polar, azimuth = LIDAR_POLAR, p["azimuth"]
    eye = _eye(p, polar, azimuth)
    vis, _ = visible_mask(pts[:, :3], eye, mesh)
    cand = np.flatnonzero(vis)
    rel = pts[cand, :3] - eye
    r = np.linalg.norm(rel, axis=1)
    theta = np.degrees(np.arccos(np.clip(rel[:, 2] / r, -1.0, 1.0)))  # polar angle from +z
    band = p["band_deg"]
    frac = theta / band - np.floor(theta / band)
    in_mid = (frac >= 0.25) & (frac <= 0.75)
    cand, rel, r, theta = cand[in_mid], rel[in_mid], r[in_mid], theta[in_mid]
    m = int(round(p["output_fraction"] * len(pts)))
    if len(cand) == 0 or m == 0:
        return pts[:0], np.empty(0, dtype=np.int64), {"eye": eye, "azimuth": azimuth}
    snapped = np.radians((np.floor(theta / band) + 0.5) * band)
    phi = np.arctan2(rel[:, 1], rel[:, 0])
    moved = pts[cand].copy()
    moved[:, :3] = eye + r[:, None] * np.stack(
        [np.sin(snapped) * np.cos(phi), np.sin(snapped) * np.sin(phi), np.cos(snapped)], axis=1)
    pick = rng.integers(len(cand), size=m)
    return moved[pick], cand[pick], {"eye": eye, "azimuth": azimuth, "polar": polar}


FUNCTIONS = {"occlusion": occlusion, "lidar": lidar}
SAMPLERS = {"occlusion": sample_occlusion, "lidar": sample_lidar}
