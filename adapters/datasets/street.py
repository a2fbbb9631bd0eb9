"""A SYNTHETIC street scan for LiDAR tests, figures and benchmarks (open3d RaycastingScene, headless).

A straight street along x: a ground plane, building walls on both sides, and parked and driving cars
as boxes, scanned by a spinning 64-ring sensor 1.73 m above the road (HDL-64E-like vertical field of
view +2 .. -24.8 degrees, evenly spaced rings). Intensity is the surface reflectivity times the cosine
of the incidence angle (a Lambertian return, range-compensated as in KITTI) plus small noise; cars get a
random paint reflectivity, some of it dark. The scan is in ring-major order, like a raw sensor frame.

It is synthetic data, not a recording: use it to exercise code paths and look at corruptions, not to
measure model accuracy. open3d is imported inside `street_scan` only.
"""
from __future__ import annotations

import numpy as np

from conformal.utils import check_random_state as as_generator

__all__ = ["street_scan", "SENSOR_HEIGHT", "FOV_DEG", "LABELS", "REFLECTIVITY", "CAR_PAINT"]

SENSOR_HEIGHT = 1.73
FOV_DEG = (2.0, -24.8)
LABELS = {"ground": 0, "building": 1, "car": 2}
REFLECTIVITY = {"ground": 0.18, "building": 0.45}
CAR_PAINT = (0.04, 0.08, 0.3, 0.55, 0.8)  # black, dark grey, mid, silver, white


def _box(o3d, size, centre):
    b = o3d.geometry.TriangleMesh.create_box(*size)
    b.translate(np.asarray(centre, dtype=float) - np.asarray(size, dtype=float) / 2.0)
    return b


def street_scan(n_rings: int = 64, n_azimuth: int = 1890, rng=0, max_range: float = 100.0,
                return_labels: bool = False):
    """Ray-cast one sweep over the synthetic street.

    Parameters
    ----------
    n_rings, n_azimuth : int
        Laser rings (evenly spaced over FOV_DEG) and azimuth steps per revolution. 64 x 2048 gives about
        120,000 returns (1,890: about 120,000); 16 x 256 a ~4k-point scan for fast tests.
    rng : None, int or numpy.random.Generator
        Places the cars, picks their paint and draws the intensity noise.
    max_range : float
        Returns farther than this are dropped (no echo).
    return_labels : bool
        Also return ``ring`` (int64 ring id, 0 = top) and ``label`` (int64, see LABELS) per point.

    Returns
    -------
    points : float32 (N, 4) x, y, z, intensity in [0, 1], sensor at the origin, z up
    ring, label : int64 (N,), only with `return_labels`
    """
    import open3d as o3d

    gen = as_generator(rng)
    z0 = -SENSOR_HEIGHT
    parts = [("ground", _box(o3d, (240.0, 60.0, 0.2), (0.0, 0.0, z0 - 0.1))),
             ("building", _box(o3d, (160.0, 1.0, 14.0), (0.0, 10.5, z0 + 7.0))),
             ("building", _box(o3d, (160.0, 1.0, 14.0), (0.0, -10.5, z0 + 7.0))),
             ("building", _box(o3d, (4.0, 6.0, 9.0), (25.0, 7.0, z0 + 4.5)))]  # a kiosk near the kerb
    paints = []
    xs = np.arange(-60.0, 61.0, 9.0)
    for lane_y, density in ((7.5, 0.6), (-7.5, 0.6), (2.0, 0.25), (-2.0, 0.25)):
        for x in xs:
            if abs(x) < 5.0 and abs(lane_y) < 3.0:
                continue  # keep the ego lane around the sensor free
            if gen.random() < density:
                length, width, height = gen.uniform(4.0, 5.0), gen.uniform(1.7, 2.0), gen.uniform(1.4, 1.7)
                cx = x + gen.uniform(-2.0, 2.0)
                parts.append(("car", _box(o3d, (length, width, height), (cx, lane_y, z0 + height / 2.0 + 0.25))))
                paints.append(float(gen.choice(CAR_PAINT)))
    scene = o3d.t.geometry.RaycastingScene()
    geo_label, geo_rho = [], []
    car_i = 0
    for kind, mesh in parts:
        scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
        geo_label.append(LABELS[kind])
        if kind == "car":
            geo_rho.append(paints[car_i])
            car_i += 1
        else:
            geo_rho.append(REFLECTIVITY[kind])
    geo_label, geo_rho = np.array(geo_label), np.array(geo_rho)

    elev = np.radians(np.linspace(FOV_DEG[0], FOV_DEG[1], n_rings))
    az = np.linspace(-np.pi, np.pi, n_azimuth, endpoint=False)
    e, a = np.meshgrid(elev, az, indexing="ij")  # ring-major order
    dirs = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1).reshape(-1, 3)
    rays = np.concatenate([np.zeros_like(dirs), dirs], axis=1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays))
    t = hit["t_hit"].numpy()
    gid = hit["geometry_ids"].numpy().astype(np.int64)
    normal = hit["primitive_normals"].numpy()
    ok = np.isfinite(t) & (t <= max_range)
    t, gid, normal, d = t[ok], gid[ok], normal[ok], dirs[ok]
    cos_inc = np.abs((normal * d).sum(axis=1))
    intensity = np.clip(geo_rho[gid] * cos_inc + gen.normal(0.0, 0.01, len(t)), 0.0, 1.0)
    points = np.concatenate([d * t[:, None], intensity[:, None]], axis=1).astype(np.float32)
    if not return_labels:
        return points
    ring = np.repeat(np.arange(n_rings), n_azimuth)[ok].astype(np.int64)
    return points, ring, geo_label[gid]
