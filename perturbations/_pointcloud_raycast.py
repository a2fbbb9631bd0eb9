"""ModelNet40-C's Occlusion and LiDAR corruptions, ray-cast headless with open3d's RaycastingScene.

ModelNet40-C renders the object's mesh to a depth image in an OpenGL window, which needs a display, and
resamples N points from it. Here the same camera (pose, 1080 x 720 window, f = 365 px) casts one ray per
pixel against either the given mesh or, when there is none, a mesh built from the points themselves: one
square "splat" per point in its tangent plane (normal from PCA of its 10 nearest neighbours), half-side
2 x the median nearest-neighbour spacing. The hits are resampled to N as ``occlusion_1`` does; each
output row carries the extra columns of the input point it came from (its splat's point, or the nearest
input point for a given mesh). `visible_mask` (per-point visibility) remains as a helper.

open3d is imported inside `visible_mask` and `depth_resample` only.
"""
from __future__ import annotations

import math

import numpy as np

from ._kernels.pointcloud import knn_kernel
from ._pointcloud_object import renormalize

SPLAT_FACTOR = 2.0
SPLAT_TOLERANCE = 0.5
NORMAL_NEIGHBOURS = 10
GAP_WINDOW = 0.5   # splats: window half-width for the gap test, in projected splat half-sides
GAP_DEPTH = 4.0    # a hit this many splat half-sides behind the nearest in its window came through a gap


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

# ModelNet40-C's renderer: a 1080 x 720 window, pinhole focal length 365 px, principal point at the centre
WINDOW = (1080, 720)
FOCAL = 365.0
# ModelNet40-C rotates its z-up renders into ModelNet40's y-up frame with pts @ Rx(-pi/2) @ Rz(pi)
Y_UP_TO_Z_UP = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, -1.0, 0.0]])  # = (Rx(-pi/2) Rz(pi)).T


def _check_up(up) -> str:
    if up not in ("z", "y"):
        raise ValueError(f"`up` must be 'z' (z-up clouds) or 'y' (ModelNet40's h5 clouds are y-up); got {up!r}")
    return up


def _azimuth(rng, p):
    return rng.uniform(p["azimuth_centre"] - math.pi / 5, p["azimuth_centre"] + math.pi / 5)


def camera_rotation(polar: float, azimuth: float) -> np.ndarray:
    """ModelNet40-C's camera rotation R = Rz(azimuth) Rx(pi - polar); the camera looks along R[:, 2]."""
    ax = math.pi - polar
    rx = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(ax), -math.sin(ax)], [0.0, math.sin(ax), math.cos(ax)]])
    rz = np.array([[math.cos(azimuth), -math.sin(azimuth), 0.0], [math.sin(azimuth), math.cos(azimuth), 0.0],
                   [0.0, 0.0, 1.0]])
    return rz @ rx


def _eye(p, polar, azimuth):
    return -camera_rotation(polar, azimuth)[:, 2] * p["distance"]


def sample_occlusion(n, p, rng, **_):
    # ModelNet40-C tilts the camera by U(2pi/3, 5pi/6); with z up that is a polar angle of pi/6..pi/3.
    polar = math.pi - rng.uniform(2 * math.pi / 3, 5 * math.pi / 6)
    return {"polar": polar, "azimuth": _azimuth(rng, p)}


def sample_lidar(n, p, rng, **_):
    return {"azimuth": _azimuth(rng, p)}


def _surface_mesh(xyz, mesh):
    """(vertices, triangles, source of each triangle or None) of the given mesh or of per-point splats."""
    if mesh is not None:
        return mesh[0], mesh[1], None
    n = len(xyz)
    k = min(NORMAL_NEIGHBOURS, n - 1)
    neighbours, nn = knn_kernel(np.ascontiguousarray(xyz), k)
    half = SPLAT_FACTOR * max(float(np.median(nn)), 1e-9)
    normals = pca_normals(xyz, np.concatenate([np.arange(n)[:, None], neighbours], axis=1))
    verts, tris = splat_mesh(xyz, normals, half)
    return verts, tris, np.concatenate([np.arange(n), np.arange(n)])


def _window_min(img, k):
    """Minimum over the (2k+1) x (2k+1) window around each pixel (inf outside the image)."""
    pad = np.pad(img, k, constant_values=np.inf)
    rows = np.lib.stride_tricks.sliding_window_view(pad, 2 * k + 1, axis=0).min(axis=-1)
    return np.lib.stride_tricks.sliding_window_view(rows, 2 * k + 1, axis=1).min(axis=-1)


def _through_gaps(depth, verts, distance):
    """Pixels whose hit lies far behind the nearest hit around them: rays that passed between front splats
    (seen edge-on near the silhouette, or in sparse patches) and hit a splat of the far side."""
    half = float(np.linalg.norm(verts[0] - verts[2])) / (2 * math.sqrt(2))  # splat half-side
    k = max(1, int(math.ceil(GAP_WINDOW * FOCAL * half / distance)))
    return depth > _window_min(depth, k) + GAP_DEPTH * half


def depth_resample(xyz, polar, azimuth, distance, n_points, rng, mesh=None):
    """ModelNet40-C's depth-image resampling: surface points seen by its camera, resampled to `n_points`.

    The camera (pose of `camera_rotation`, 1080 x 720 px, f = 365 px) casts one ray per pixel against the
    mesh (or the splats of the points); the hits are shuffled, every int(hits / n)-th kept, topped up by a
    draw with replacement when fewer than n remain, and the first n returned, as ``occlusion_1`` does.
    Returns (points (n, 3), the input row each came from: its splat's point, or the nearest input point
    for a given mesh).
    """
    o3d = _import_open3d()
    if len(xyz) < 4:
        return xyz.copy(), np.arange(len(xyz))
    rot = camera_rotation(polar, azimuth)
    eye = -rot[:, 2] * distance
    verts, tris, source = _surface_mesh(xyz, mesh)
    # only the pixels the object can cover: project the vertices, cast rays inside that box
    cam = (verts - eye) @ rot
    w, h = WINDOW
    cx, cy = w / 2 - 0.5, h / 2 - 0.5
    front = cam[:, 2] > 1e-9
    u = FOCAL * cam[front, 0] / cam[front, 2] + cx
    v = FOCAL * cam[front, 1] / cam[front, 2] + cy
    u0, u1 = max(int(np.floor(u.min())), 0), min(int(np.ceil(u.max())), w - 1)
    v0, v1 = max(int(np.floor(v.min())), 0), min(int(np.ceil(v.max())), h - 1)
    gu, gv = np.meshgrid(np.arange(u0, u1 + 1, dtype=np.float64), np.arange(v0, v1 + 1, dtype=np.float64))
    d = np.stack([(gu.ravel() - cx) / FOCAL, (gv.ravel() - cy) / FOCAL, np.ones(gu.size)], axis=1) @ rot.T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(verts.astype(np.float32)), o3d.core.Tensor(tris.astype(np.uint32)))
    rays = np.concatenate([np.broadcast_to(eye, d.shape), d], axis=1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays))
    t = hit["t_hit"].numpy()
    ok = np.isfinite(t)
    if source is not None and ok.any():  # splats: drop hits seen through gaps of the front surface
        ok &= ~_through_gaps(t.reshape(gu.shape), verts, distance).ravel()
    if not ok.any():
        return xyz[:0].copy(), np.empty(0, dtype=np.int64)
    pts = eye + d[ok] * t[ok, None]
    prim = hit["primitive_ids"].numpy()[ok].astype(np.int64)
    ratio = int(len(pts) / n_points)
    if ratio > 0:
        order = rng.permutation(len(pts))[::ratio]
        pts, prim = pts[order], prim[order]
    if len(pts) < n_points:
        pick = rng.integers(len(pts), size=n_points)
        pts, prim = pts[pick], prim[pick]
    pts, prim = pts[:n_points], prim[:n_points]
    if source is not None:
        src = source[prim]
    else:  # nearest input point, in blocks to bound memory
        src = np.concatenate([((xyz[None, :, :] - b[:, None, :]) ** 2).sum(-1).argmin(1)
                              for b in np.array_split(pts, max(1, len(pts) // 256))])
    return pts, src.astype(np.int64)


def _to_z_up(pts, up):
    if up == "y":
        pts = pts.copy()
        pts[:, :3] = pts[:, :3] @ Y_UP_TO_Z_UP
    return pts


def _from_z_up(out, up):
    if up == "y":
        out[:, :3] = out[:, :3] @ Y_UP_TO_Z_UP.T
    return out


def _rotate_mesh(mesh, up):
    return mesh if mesh is None or up == "z" else (mesh[0] @ Y_UP_TO_Z_UP, mesh[1])


def occlusion(pts, rng, p, mesh=None, up="z"):
    """ModelNet40-C's occlusion: the surface seen by a camera 3 half-extents away, 30-60 degrees above
    the horizon, resampled to N points from its depth image and renormalised.

    Rows are surface samples, each carrying the extra columns of the input point it came from (its
    splat, or the nearest point for a given mesh). ``up="y"`` for y-up clouds (ModelNet40's h5 files).
    """
    _check_up(up)
    polar, azimuth = p["polar"], p["azimuth"]
    work = _to_z_up(pts, up)
    surf, src = depth_resample(work[:, :3], polar, azimuth, p["distance"], len(pts), rng, _rotate_mesh(mesh, up))
    out = pts[src].copy()
    out[:, :3] = surf
    if len(out):
        renormalize(out[:, :3])
    eye = _eye(p, polar, azimuth)
    return _from_z_up(out, up), src, {"eye": _from_z_up(eye[None].copy(), up)[0], "azimuth": azimuth,
                                      "polar": polar}


def lidar(pts, rng, p, mesh=None, up="z"):
    """ModelNet40-C's LiDAR: N depth-image samples as seen from a sensor 5 half-extents away, binned into
    1-degree elevation bands.

    Only samples in the middle half of their band are kept, snapped to the band centre (range and
    azimuth unchanged); then round(0.75 N) of them are drawn with replacement (ModelNet40-C: 768 of
    1,024). Not renormalised, as in ModelNet40-C.
    """
    _check_up(up)
    polar, azimuth = LIDAR_POLAR, p["azimuth"]
    eye = _eye(p, polar, azimuth)
    work = _to_z_up(pts, up)
    surf, src = depth_resample(work[:, :3], polar, azimuth, p["distance"], len(pts), rng, _rotate_mesh(mesh, up))
    rel = surf - eye
    r = np.linalg.norm(rel, axis=1)
    theta = np.degrees(np.arccos(np.clip(rel[:, 2] / np.maximum(r, 1e-12), -1.0, 1.0)))  # polar angle from +z
    band = p["band_deg"]
    frac = theta / band - np.floor(theta / band)
    in_mid = (frac >= 0.25) & (frac <= 0.75)
    src, rel, r, theta = src[in_mid], rel[in_mid], r[in_mid], theta[in_mid]
    m = int(round(p["output_fraction"] * len(pts)))
    info = {"eye": _from_z_up(eye[None].copy(), up)[0], "azimuth": azimuth, "polar": polar}
    if len(src) == 0 or m == 0:
        return pts[:0], np.empty(0, dtype=np.int64), info
    snapped = np.radians((np.floor(theta / band) + 0.5) * band)
    phi = np.arctan2(rel[:, 1], rel[:, 0])
    moved = pts[src].copy()
    moved[:, :3] = eye + r[:, None] * np.stack(
        [np.sin(snapped) * np.cos(phi), np.sin(snapped) * np.sin(phi), np.cos(snapped)], axis=1)
    pick = rng.integers(len(src), size=m)
    return _from_z_up(moved[pick], up), src[pick], info


FUNCTIONS = {"occlusion": occlusion, "lidar": lidar}
SAMPLERS = {"occlusion": sample_occlusion, "lidar": sample_lidar}
