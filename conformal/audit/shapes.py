"""SYNTHETIC primitive-shape point clouds for LiDAR audits.

The adapters' generator (``adapters.datasets.make_shapes``, open3d meshes) is used when it is installed, since
the reference PointNet was trained on it; otherwise surfaces are sampled analytically with NumPy here. Both are
synthetic: say so wherever results on them are shown.
"""
from __future__ import annotations

import numpy as np

SHAPES = ("box", "sphere", "cylinder", "cone", "torus", "ellipsoid")


def _unit(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _sample(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    a, b, c = rng.uniform(0.6, 1.4, size=3)
    if kind == "sphere":
        p = _unit(rng, n) * a
    elif kind == "ellipsoid":
        p = _unit(rng, n) * np.array([a * 1.6, b * 0.8, c * 0.5])
    elif kind == "box":
        dims = np.array([a, b, c])
        areas = np.array([dims[1] * dims[2], dims[0] * dims[2], dims[0] * dims[1]])
        face = rng.choice(3, size=n, p=areas / areas.sum())
        p = rng.uniform(-0.5, 0.5, size=(n, 3))
        p[np.arange(n), face] = rng.choice([-0.5, 0.5], size=n)
        p *= dims
    elif kind == "cylinder":
        r, h = 0.5 * a, b * 1.5
        side = rng.uniform(size=n) < (h / (h + r))
        t = rng.uniform(0, 2 * np.pi, n)
        rad = np.where(side, r, r * np.sqrt(rng.uniform(size=n)))
        z = np.where(side, rng.uniform(-h / 2, h / 2, n), rng.choice([-h / 2, h / 2], size=n))
        p = np.stack([rad * np.cos(t), rad * np.sin(t), z], 1)
    elif kind == "cone":
        r, h = 0.6 * a, b * 1.5
        t = rng.uniform(0, 2 * np.pi, n)
        base = rng.uniform(size=n) < 0.3
        s = np.sqrt(rng.uniform(size=n))  # area grows linearly towards the base
        rad = np.where(base, r * np.sqrt(rng.uniform(size=n)), r * s)
        z = np.where(base, -h / 2, h / 2 - s * h)
        p = np.stack([rad * np.cos(t), rad * np.sin(t), z], 1)
    elif kind == "torus":
        big, small = 0.7 * a, 0.25 * b
        u, v = rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n)
        p = np.stack([(big + small * np.cos(v)) * np.cos(u), (big + small * np.cos(v)) * np.sin(u),
                      small * np.sin(v)], 1)
    else:  # pragma: no cover - SHAPES is closed
        raise ValueError(kind)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # random orientation
    p = p @ q.T
    p -= p.mean(0)
    p /= np.abs(p).max()
    return p.astype(np.float32)


def make_shapes(n_per_class: int = 120, n_points: int = 1024, seed: int = 0):
    """(clouds, labels, class_names): `n_per_class` clouds of each primitive, each (n_points, 3) float32."""
    for name, v in (("n_per_class", n_per_class), ("n_points", n_points)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 2:
            raise ValueError(f"`{name}` must be an integer >= 2; got {v!r}")
    try:
        from adapters.datasets import make_shapes as _adapters_make_shapes
    except ImportError:
        _adapters_make_shapes = None
    if _adapters_make_shapes is not None:
        out = _adapters_make_shapes(n_per_class=n_per_class, n_points=n_points, seed=seed)
        clouds, labels, names = out[0], np.asarray(out[1], dtype=np.int64), list(out[2])
        return [np.asarray(c, dtype=np.float32) for c in clouds], labels, names
    rng = np.random.default_rng(np.random.SeedSequence([seed, 9100]))
    clouds, labels = [], []
    for c, kind in enumerate(SHAPES):
        for _ in range(n_per_class):
            clouds.append(_sample(kind, n_points, rng))
            labels.append(c)
    return clouds, np.asarray(labels, dtype=np.int64), list(SHAPES)
