"""SYNTHETIC LiDAR street scenes with 3D-box ground truth, ray-cast with open3d's RaycastingScene (headless).

Each scene is a randomised street layout (a road of random width and direction, raised kerbs and
pavements, building walls with gaps, poles, trees and bushes, and -- when the ``pymeshlab`` wheel is
installed -- the Stanford bunny from its sample meshes as extra clutter) with objects of four classes:
cars and trucks composed of boxes, pedestrians and cyclists of cylinders, spheres and boxes, at random
poses up to ~70 m, partly occluding one another. A spinning sensor 1.73 m above the road (KITTI-like
mounting; HDL-64E-like vertical field of view +2 .. -24.8 degrees, evenly spaced rings) scans it; the
intensity is the surface reflectivity times the cosine of the incidence angle (range-compensated, as in
KITTI) plus small noise, with random paint and clothing reflectivities, some of them dark.

Ground truth per scene: 7-DoF boxes ``(x, y, z, l, w, h, yaw)`` (z = box centre; yaw in [-pi/2, pi/2):
a box is the same box turned by pi, so calibrate with ``yaw_period=pi``), labels (see CLASSES) and
the number of returns on each object; per point: ring, instance (-1 background) and semantic id.

It is synthetic data, not a recording: use it to exercise code paths, train and audit the reference
detector and study coverage under corruptions, not to claim accuracy on real sensors. Deterministic
(one seed per scene, splits disjoint in seeds), nothing is downloaded; open3d is imported inside the
functions that ray-cast.
"""
from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import numpy as np

__all__ = ["CLASSES", "SEMANTIC", "SPLIT_SEEDS", "SPLIT_SIZES", "SENSOR_HEIGHT", "FOV_DEG", "make_lidar_scene",
           "load_lidar_scenes", "points_in_boxes", "visible"]

CLASSES = ("car", "truck", "pedestrian", "cyclist")
SEMANTIC = {"ground": 0, "kerb": 1, "building": 2, "pole": 3, "vegetation": 4, "clutter": 5,
            "car": 6, "truck": 7, "pedestrian": 8, "cyclist": 9}
SENSOR_HEIGHT = 1.73
FOV_DEG = (2.0, -24.8)
SPLIT_SEEDS = {"train": 1_000_000, "calibration": 2_000_000, "test": 3_000_000}
SPLIT_SIZES = {"train": 600, "calibration": 300, "test": 500}
MAX_DISTANCE = 70.0
LIFT = 0.02  # objects float 2 cm above the surface, so no ground return lies inside a box
# (l, w, h) ranges in metres
SIZES = {"car": ((3.8, 4.9), (1.6, 1.95), (1.4, 1.75)), "truck": ((6.5, 10.0), (2.3, 2.6), (2.8, 3.6)),
         "pedestrian": ((0.5, 0.8), (0.5, 0.7), (1.55, 1.9)), "cyclist": ((1.6, 1.9), (0.55, 0.75), (1.6, 1.85))}
PAINT = (0.04, 0.08, 0.3, 0.55, 0.8)  # black, dark grey, mid, silver, white
REFLECTIVITY = {"ground": 0.18, "kerb": 0.3, "building": 0.45, "pole": 0.5, "vegetation": 0.35, "clutter": 0.6}


# ---------------------------------------------------------------- meshes (legacy open3d, local frame)
def _box(o3d, size, centre):
    b = o3d.geometry.TriangleMesh.create_box(*size)
    b.translate(np.asarray(centre, dtype=float) - np.asarray(size, dtype=float) / 2.0)
    return b


def _cyl(o3d, radius, height, centre):
    c = o3d.geometry.TriangleMesh.create_cylinder(radius=radius, height=height, resolution=10, split=1)
    c.translate(np.asarray(centre, dtype=float))
    return c


def _sphere(o3d, radius, centre):
    s = o3d.geometry.TriangleMesh.create_sphere(radius=radius, resolution=6)
    s.translate(np.asarray(centre, dtype=float))
    return s


def _join(meshes):
    out = meshes[0]
    for m in meshes[1:]:
        out += m
    return out


def _object_mesh(o3d, kind, ln, w, h):
    """Composed primitives of one object inside its box [-l/2, l/2] x [-w/2, w/2] x [0, h], front at +x."""
    if kind == "car":
        wheel = 0.3 * h
        parts = [_box(o3d, (ln, w, 0.45 * h), (0.0, 0.0, wheel + 0.225 * h - 0.05 * h)),
                 _box(o3d, (0.55 * ln, 0.9 * w, h - 0.7 * h), (-0.08 * ln, 0.0, 0.85 * h))]
        for sx in (-0.32, 0.32):
            for sy in (-0.4, 0.4):
                parts.append(_box(o3d, (0.16 * ln, 0.18 * w, wheel), (sx * ln, sy * w, wheel / 2.0)))
    elif kind == "truck":
        cab = 0.2 * ln
        parts = [_box(o3d, (cab, w, 0.8 * h), (ln / 2.0 - cab / 2.0, 0.0, 0.4 * h + 0.05 * h)),
                 _box(o3d, (ln - cab - 0.2, w, 0.8 * h), (-cab / 2.0 - 0.1, 0.0, 0.6 * h)),
                 _box(o3d, (ln, 0.8 * w, 0.15 * h), (0.0, 0.0, 0.12 * h))]
    elif kind == "pedestrian":
        r = 0.45 * min(ln, w) / 2.0 + 0.05
        head = 0.11 * h
        parts = [_cyl(o3d, 0.8 * r, 0.47 * h, (0.0, 0.0, 0.235 * h)),
                 _cyl(o3d, r, 0.34 * h, (0.0, 0.0, 0.47 * h + 0.17 * h)),
                 _sphere(o3d, head, (0.0, 0.0, h - head))]
    else:  # cyclist: bicycle frame and wheels along x, rider above
        wheel_r = 0.34
        parts = [_box(o3d, (ln - 0.02, 0.08, 2 * wheel_r), (0.0, 0.0, wheel_r)),
                 _box(o3d, (0.5 * ln, 0.1, 0.1), (0.0, 0.0, 2 * wheel_r + 0.05)),
                 _cyl(o3d, 0.2, h - 2 * wheel_r - 0.25, (-0.05 * ln, 0.0, 2 * wheel_r + (h - 2 * wheel_r - 0.25) / 2)),
                 _sphere(o3d, 0.12, (0.0, 0.0, h - 0.12))]
    return _join(parts)


@functools.lru_cache(maxsize=1)
def _bunny_vertices_triangles():
    """The Stanford bunny shipped in the pymeshlab wheel's sample meshes, or None without pymeshlab."""
    spec = importlib.util.find_spec("pymeshlab")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "tests" / "sample_meshes" / "bunny.obj"
    if not path.is_file():
        return None
    import open3d as o3d

    m = o3d.io.read_triangle_mesh(str(path))
    v = np.asarray(m.vertices, dtype=np.float64)
    if len(v) == 0:
        return None
    # the bunny file is y-up: make it z-up, scale to a 0.9 m tall sculpture standing on z = 0
    v = v[:, [0, 2, 1]] * np.array([1.0, -1.0, 1.0])
    v -= [(v[:, 0].min() + v[:, 0].max()) / 2, (v[:, 1].min() + v[:, 1].max()) / 2, v[:, 2].min()]
    v *= 0.9 / v[:, 2].max()
    return v, np.asarray(m.triangles, dtype=np.int32)


def _place(mesh, x, y, z, yaw):
    c, s = math.cos(yaw), math.sin(yaw)
    mesh.rotate(np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]), center=(0.0, 0.0, 0.0))
    mesh.translate((x, y, z))
    return mesh


def _wrap_half(yaw):
    return (yaw + math.pi / 2) % math.pi - math.pi / 2


# ---------------------------------------------------------------- layout
def _layout(gen):
    """Scene description (plain numbers): street frame, static geometry and objects in the street frame."""
    road_half = gen.uniform(3.5, 8.0)
    walk = gen.uniform(2.0, 4.5)
    layout = {"heading": gen.uniform(-math.pi, math.pi), "offset": gen.uniform(-0.4, 0.4) * road_half,
              "road_half": road_half, "walk": walk, "kerb": gen.uniform(0.1, 0.2), "statics": [], "objects": []}
    wall_y = road_half + walk
    for side in (-1.0, 1.0):
        x = -90.0
        while x < 90.0:  # facades with gaps (side streets, driveways)
            length = gen.uniform(8.0, 40.0)
            thick = gen.uniform(0.8, 3.0)
            if gen.random() < 0.8:
                layout["statics"].append(("building", "box", (length, thick, gen.uniform(5.0, 20.0)),
                                          (x + length / 2, side * (wall_y + thick / 2 + gen.uniform(0.0, 2.0)), 0.0)))
            x += length + gen.uniform(0.0, 10.0)
        for x in np.arange(-80.0, 80.0, gen.uniform(12.0, 30.0)):
            layout["statics"].append(("pole", "cyl", (gen.uniform(0.08, 0.2), gen.uniform(3.0, 8.0)),
                                      (x + gen.uniform(-2, 2), side * (road_half + 0.5), 0.0)))
        for _ in range(gen.integers(2, 9)):
            x = gen.uniform(-80.0, 80.0)
            y = side * (road_half + gen.uniform(1.0, walk))
            if gen.random() < 0.5:  # tree: trunk and canopy
                size = (gen.uniform(1.2, 2.8), gen.uniform(2.5, 4.0))
                layout["statics"].append(("vegetation", "tree", size, (x, y, 0.0)))
            else:  # bush
                layout["statics"].append(("vegetation", "sphere", (gen.uniform(0.4, 1.0),), (x, y, 0.0)))
    if gen.random() < 0.6 and _bunny_vertices_triangles() is not None:
        for _ in range(gen.integers(1, 3)):
            side = gen.choice([-1.0, 1.0])
            layout["statics"].append(("clutter", "bunny", (gen.uniform(0.7, 1.6), gen.uniform(-math.pi, math.pi)),
                                      (gen.uniform(-60.0, 60.0), side * (road_half + gen.uniform(0.8, walk)), 0.0)))
    # (x, y, radius) in the street frame of everything an object must not touch
    taken = [(x, y, size[0])
             for _, shape, size, (x, y, _) in layout["statics"] if shape != "box"]

    def free(x, y, r):
        if math.hypot(x, y + layout["offset"]) < 3.0 + r:  # the ego vehicle's own footprint
            return False
        return all(math.hypot(x - a, y - b) > r + c + 0.3 for a, b, c in taken)

    n_objects = gen.integers(6, 22)
    for _ in range(n_objects * 4):
        if len(layout["objects"]) >= n_objects:
            break
        kind = CLASSES[gen.choice(4, p=[0.5, 0.12, 0.23, 0.15])]
        ln, w, h = (gen.uniform(*r) for r in SIZES[kind])
        x = gen.uniform(-MAX_DISTANCE, MAX_DISTANCE)
        if kind in ("car", "truck"):
            if gen.random() < 0.5:  # parked at the kerb
                y = gen.choice([-1.0, 1.0]) * (road_half - w / 2 - gen.uniform(0.2, 0.6))
                yaw = gen.normal(0.0, 0.05) + (math.pi if gen.random() < 0.5 else 0.0)
            else:  # in a lane, maybe turning
                y = gen.uniform(-road_half + w, road_half - w)
                yaw = gen.normal(0.0, 0.15) + (math.pi if y > 0 else 0.0)
                yaw += gen.normal(0, 0.6) if gen.random() < 0.15 else 0.0  # turning
        elif kind == "pedestrian":
            if gen.random() < 0.75:
                y = gen.choice([-1.0, 1.0]) * (road_half + gen.uniform(0.4, walk - 0.5))
            else:  # crossing
                y = gen.uniform(-road_half + 0.5, road_half - 0.5)
            yaw = gen.uniform(-math.pi, math.pi)
        else:
            y = gen.choice([-1.0, 1.0]) * (road_half - gen.uniform(0.6, 1.6))
            yaw = gen.normal(0.0, 0.1) + (math.pi if y > 0 else 0.0)
        r = 0.5 * math.hypot(ln, w)
        if not free(x, y, r):
            continue
        taken.append((x, y, r))
        layout["objects"].append((kind, (ln, w, h), (x, y), yaw, float(gen.choice(PAINT)) if kind in ("car", "truck")
                                  else float(gen.uniform(0.05, 0.6))))
    return layout


def make_lidar_scene(seed: int, *, n_rings: int = 32, n_azimuth: int | None = None, max_range: float = 100.0):
    """Ray-cast one SYNTHETIC street scene.

    Parameters
    ----------
    seed : int
        The scene's only source of randomness: layout, objects, paint and intensity noise.
    n_rings : int
        Laser rings, evenly spaced over FOV_DEG (32 or 64 for the shipped configurations).
    n_azimuth : int or None
        Azimuth steps per revolution; default 1024 for 32 rings and 2048 for 64 (about 0.18 degrees).
    max_range : float
        Returns farther than this are dropped.

    Returns
    -------
    scan : float32 (N, 4) x, y, z, intensity in [0, 1]; sensor at the origin, z up, ring-major order
    frame : dict with ``boxes3d`` float64 (M, 7), ``labels`` int64 (M,), ``n_points`` int64 (M,) and per point
        ``ring``, ``instance`` (object row or -1) and ``semantic`` (SEMANTIC) int64 (N,)
    """
    import open3d as o3d

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int; got {seed!r}")
    if isinstance(n_rings, bool) or not isinstance(n_rings, (int, np.integer)) or n_rings < 2:
        raise ValueError(f"`n_rings` must be an int >= 2; got {n_rings!r}")
    if n_azimuth is None:
        n_azimuth = 1024 if n_rings <= 32 else 2048
    gen = np.random.default_rng(int(seed))
    lay = _layout(gen)
    z0 = -SENSOR_HEIGHT
    heading, off, road_half = lay["heading"], lay["offset"], lay["road_half"]
    c, s = math.cos(heading), math.sin(heading)

    def to_sensor(x, y):  # street frame (road centre line along x) -> sensor frame
        y = y + off
        return c * x - s * y, s * x + c * y

    meshes, sem, rho = [], [], []

    def add(mesh, kind, reflectivity):
        meshes.append(mesh)
        sem.append(SEMANTIC[kind])
        rho.append(reflectivity)

    add(_box(o3d, (400.0, 400.0, 0.2), (0.0, 0.0, z0 - 0.1)), "ground", REFLECTIVITY["ground"])
    for side in (-1.0, 1.0):  # kerb + pavement slab along each side
        slab = _box(o3d, (400.0, 2 * lay["walk"] + 20.0, lay["kerb"]),
                    (0.0, side * (road_half + lay["walk"] + 10.0), lay["kerb"] / 2))
        add(_place(slab, *to_sensor(0.0, 0.0), z0, heading), "kerb", REFLECTIVITY["kerb"])
    bunny = _bunny_vertices_triangles()
    for kind, shape, size, (x, y, _) in lay["statics"]:
        if shape == "box":
            m = _box(o3d, size, (0.0, 0.0, size[2] / 2))
        elif shape == "cyl":
            m = _cyl(o3d, size[0], size[1], (0.0, 0.0, size[1] / 2))
        elif shape == "tree":
            m = _join([_cyl(o3d, 0.15, size[1], (0.0, 0.0, size[1] / 2)),
                       _sphere(o3d, size[0], (0.0, 0.0, size[1] + 0.6 * size[0]))])
        elif shape == "sphere":
            m = _sphere(o3d, size[0], (0.0, 0.0, 0.6 * size[0]))
        else:
            m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(bunny[0] * size[0]),
                                          o3d.utility.Vector3iVector(bunny[1]))
        m = _place(m, *to_sensor(x, y), z0 + lay["kerb"], heading + (size[1] if shape == "bunny" else 0.0))
        add(m, kind, REFLECTIVITY[kind])
    n_static = len(meshes)
    boxes, labels = [], []
    for kind, (ln, w, h), (x, y), yaw, paint in lay["objects"]:
        on_walk = abs(y) > road_half
        zb = z0 + (lay["kerb"] if on_walk else 0.0) + LIFT
        xs, ys = to_sensor(x, y)
        m = _place(_object_mesh(o3d, kind, ln, w, h), xs, ys, zb, heading + yaw)
        add(m, kind, paint)
        boxes.append((xs, ys, zb + h / 2, ln, w, h, _wrap_half(heading + yaw)))
        labels.append(CLASSES.index(kind))

    scene = o3d.t.geometry.RaycastingScene()
    for m in meshes:
        scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(m))
    sem_arr, rho_arr = np.array(sem, np.int64), np.array(rho)

    elev = np.radians(np.linspace(FOV_DEG[0], FOV_DEG[1], n_rings))
    az = np.linspace(-np.pi, np.pi, int(n_azimuth), endpoint=False)
    ce, se = np.cos(elev)[:, None], np.sin(elev)[:, None]
    dirs = np.stack(np.broadcast_arrays(ce * np.cos(az)[None], ce * np.sin(az)[None], se), -1).reshape(-1, 3)
    rays = np.concatenate([np.zeros_like(dirs), dirs], axis=1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays))
    t = hit["t_hit"].numpy()
    gid = hit["geometry_ids"].numpy().astype(np.int64)
    ok = np.isfinite(t) & (t <= max_range)
    t, gid, d = t[ok], gid[ok], dirs[ok]
    normal = hit["primitive_normals"].numpy()[ok]
    cos_inc = np.abs((normal * d).sum(axis=1))
    intensity = np.clip(rho_arr[gid] * cos_inc + gen.normal(0.0, 0.01, len(t)), 0.0, 1.0)
    scan = np.concatenate([d * t[:, None], intensity[:, None]], axis=1).astype(np.float32)
    instance = np.where(gid >= n_static, gid - n_static, -1).astype(np.int64)
    m_obj = len(boxes)
    frame = {"boxes3d": np.array(boxes, np.float64).reshape(m_obj, 7), "labels": np.array(labels, np.int64),
             "n_points": np.bincount(instance[instance >= 0], minlength=m_obj).astype(np.int64),
             "ring": np.repeat(np.arange(n_rings), int(n_azimuth))[ok].astype(np.int64),
             "instance": instance, "semantic": sem_arr[gid]}
    return scan, frame


def points_in_boxes(xyz, boxes3d, margin: float = 1e-3) -> np.ndarray:
    """Boolean (N, M): point n lies inside 7-DoF box m (grown by `margin` on every side)."""
    xyz = np.asarray(xyz, dtype=np.float64)[:, :3]
    b = np.asarray(boxes3d, dtype=np.float64).reshape(-1, 7)
    rel = xyz[:, None, :] - b[None, :, :3]
    c, s = np.cos(b[:, 6]), np.sin(b[:, 6])
    u = rel[..., 0] * c + rel[..., 1] * s
    v = -rel[..., 0] * s + rel[..., 1] * c
    return ((np.abs(u) <= b[:, 3] / 2 + margin) & (np.abs(v) <= b[:, 4] / 2 + margin)
            & (np.abs(rel[..., 2]) <= b[:, 5] / 2 + margin))


def visible(frame: dict, min_points: int = 5) -> dict:
    """The ground truth of the objects with at least `min_points` returns (``boxes3d``, ``labels``, ``n_points``):
    what a labeller sees in the scan (objects without returns are not annotated in KITTI either)."""
    if isinstance(min_points, bool) or not isinstance(min_points, (int, np.integer)) or min_points < 0:
        raise ValueError(f"`min_points` must be a non-negative int; got {min_points!r}")
    keep = frame["n_points"] >= min_points
    return {"boxes3d": frame["boxes3d"][keep], "labels": frame["labels"][keep], "n_points": frame["n_points"][keep]}


def load_lidar_scenes(split: str, n_scenes: int | None = None, *, n_rings: int = 32, start: int = 0):
    """SYNTHETIC ray-cast street scans and their ground truth: ``(scans, frames)``.

    Parameters
    ----------
    split : "train", "calibration" or "test"
        Disjoint seed ranges (SPLIT_SEEDS): scene i of a split is ``make_lidar_scene(SPLIT_SEEDS[split] + i)``.
    n_scenes : int or None
        How many scenes (default SPLIT_SIZES[split]: 600 / 300 / 500).
    n_rings : int
        32 (default, HDL-32-like density over the HDL-64 field of view) or 64.
    start : int
        Index of the first scene, to take a slice of a split.

    Returns
    -------
    scans : list of float32 (N_i, 4) arrays;  frames : list of ground-truth dicts (see `make_lidar_scene`)
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(f"`split` must be one of {sorted(SPLIT_SEEDS)}; got {split!r}")
    n = SPLIT_SIZES[split] if n_scenes is None else n_scenes
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 < n < 1_000_000:
        raise ValueError(f"`n_scenes` must be a positive int below 1,000,000; got {n_scenes!r}")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or not 0 <= start < 1_000_000 - n:
        raise ValueError(f"`start` must be an int with 0 <= start < 1,000,000 - n_scenes; got {start!r}")
    scans, frames = [], []
    for i in range(int(start), int(start) + int(n)):
        scan, frame = make_lidar_scene(SPLIT_SEEDS[split] + i, n_rings=n_rings)
        scans.append(scan)
        frames.append(frame)
    return scans, frames
