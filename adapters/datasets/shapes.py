"""SYNTHETIC point clouds of primitive shapes: a stand-in for ModelNet-style object classification.

* `make_shapes` -- point clouds of primitive shapes (box, sphere, cylinder, cone, torus, capsule,
  tetrahedron, octahedron), sampled from open3d meshes with random proportions, rotations and sensor noise.
  It is not real LiDAR data: use it to train and test code paths and the shipped reference PointNet, not to
  claim accuracy on real objects.

open3d is imported inside `make_shapes` only.
"""
from __future__ import annotations

import numpy as np

__all__ = ["SHAPE_CLASSES", "make_shapes"]

SHAPE_CLASSES = ("box", "sphere", "cylinder", "cone", "torus", "capsule", "tetrahedron", "octahedron")


def _mesh(kind: str, rng: np.random.Generator):
    import open3d as o3d

    g = o3d.geometry.TriangleMesh
    r = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    if kind == "box":
        m = g.create_box(r(0.3, 1.0), r(0.3, 1.0), r(0.3, 1.0))
    elif kind == "sphere":
        m = g.create_sphere(radius=0.5, resolution=20)
        m.scale(1.0, center=(0, 0, 0))
        m.vertices = o3d.utility.Vector3dVector(np.asarray(m.vertices) * np.array([1.0, r(0.8, 1.0), r(0.8, 1.0)]))
    elif kind == "cylinder":
        m = g.create_cylinder(radius=r(0.2, 0.5), height=r(0.6, 1.6), resolution=32, split=4)
    elif kind == "cone":
        m = g.create_cone(radius=r(0.3, 0.6), height=r(0.6, 1.4), resolution=32, split=4)
    elif kind == "torus":
        m = g.create_torus(torus_radius=0.6, tube_radius=r(0.1, 0.3), radial_resolution=30, tubular_resolution=20)
    elif kind == "capsule":  # a cylinder with two hemispherical caps (spheres at the ends, merged)
        rad, h = r(0.15, 0.35), r(0.6, 1.4)
        m = g.create_cylinder(radius=rad, height=h, resolution=32, split=4)
        for z in (-h / 2, h / 2):
            s = g.create_sphere(radius=rad, resolution=16)
            s.translate((0, 0, z))
            m += s
    elif kind == "tetrahedron":
        m = g.create_tetrahedron(radius=r(0.5, 1.0))
    elif kind == "octahedron":
        m = g.create_octahedron(radius=r(0.5, 1.0))
    else:  # pragma: no cover - SHAPE_CLASSES is the only caller
        raise ValueError(kind)
    return m


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def make_shapes(n_per_class: int = 100, num_points: int = 1024, rng=None, *, n_points: int | None = None,
                seed: int | None = None):
    """SYNTHETIC primitive-shape point clouds: (list of float32 (num_points, 3) clouds, int64 labels, class names).

    Each cloud is sampled uniformly from the surface of an open3d mesh (`SHAPE_CLASSES`) with random proportions,
    a random 3-D rotation, anisotropic scaling in [0.8, 1.25] and Gaussian noise of 1 % of its size; then centred
    and scaled so its longest side is 2. Classes are in blocks of `n_per_class`.

    `rng`: None, an int seed or a numpy Generator. `n_points` / `seed` are accepted as aliases of `num_points` /
    `rng` (the audit's data source calls them so); giving both names of one argument is an error.
    """
    if n_points is not None:
        if num_points != 1024:
            raise TypeError("give `num_points` or its alias `n_points`, not both")
        num_points = n_points
    if seed is not None:
        if rng is not None:
            raise TypeError("give `rng` or its alias `seed`, not both")
        rng = seed
    for name, v in (("n_per_class", n_per_class), ("num_points", num_points)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"`{name}` must be a positive integer; got {v!r}")
    if not (rng is None or isinstance(rng, np.random.Generator)
            or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool))):
        raise TypeError(f"`rng` must be None, an int seed or a numpy Generator; got {type(rng).__name__}")
    rng = np.random.default_rng(rng)
    import open3d as o3d

    clouds, labels = [], []
    for c, kind in enumerate(SHAPE_CLASSES):
        for _ in range(int(n_per_class)):
            mesh = _mesh(kind, rng)
            # open3d's sampler takes a global seed; draw it from our generator so results are reproducible.
            o3d.utility.random.seed(int(rng.integers(0, 2 ** 31 - 1)))
            pts = np.asarray(mesh.sample_points_uniformly(number_of_points=int(num_points)).points)
            pts = pts @ (_random_rotation(rng) * rng.uniform(0.8, 1.25, size=3)).T
            pts = pts - pts.mean(axis=0)
            pts = pts / (np.ptp(pts, axis=0).max() / 2.0)
            pts = pts + rng.normal(scale=0.01, size=pts.shape)
            clouds.append(pts.astype(np.float32))
            labels.append(c)
    return clouds, np.asarray(labels, dtype=np.int64), list(SHAPE_CLASSES)
