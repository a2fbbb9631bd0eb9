"""Offline data sets for the reference models and the tests: nothing here downloads anything.

* `load_fashion_mnist` -- real images: Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from Debian's
  ``dataset-fashion-mnist`` package (``apt install dataset-fashion-mnist``).
* `load_digits_images` -- real images: scikit-learn's 8 x 8 handwritten digits, upscaled with OpenCV.
* `make_shapes` -- SYNTHETIC point clouds of primitive shapes (box, sphere, cylinder, cone, torus, capsule,
  tetrahedron, octahedron), sampled from open3d meshes with random proportions, rotations and sensor noise.
  It is a stand-in for ModelNet-style object classification, not real LiDAR data.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

__all__ = ["FASHION_MNIST_CLASSES", "SHAPE_CLASSES", "load_fashion_mnist", "load_digits_images", "make_shapes"]

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
SHAPE_CLASSES = ("box", "sphere", "cylinder", "cone", "torus", "capsule", "tetrahedron", "octahedron")
_FASHION_DIRS = ("/usr/share/datasets/fashion-mnist", "/usr/share/dataset-fashion-mnist")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, found {data.size} bytes")
    return data.reshape(shape).copy()


def load_fashion_mnist(split: str = "train", root: str | os.PathLike | None = None):
    """Fashion-MNIST images and labels: (uint8 (n, 28, 28), int64 (n,)); n = 60000 (train) or 10000 (test).

    `root` defaults to the Debian package's folder (``$FASHION_MNIST_DIR`` overrides it).
    """
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be 'train' or 'test'; got {split!r}")
    candidates = [root] if root is not None else \
        ([os.environ["FASHION_MNIST_DIR"]] if os.environ.get("FASHION_MNIST_DIR") else list(_FASHION_DIRS))
    prefix = "train" if split == "train" else "t10k"
    for d in candidates:
        img, lab = Path(d) / f"{prefix}-images-idx3-ubyte.gz", Path(d) / f"{prefix}-labels-idx1-ubyte.gz"
        if img.is_file() and lab.is_file():
            images, labels = _read_idx(img), _read_idx(lab).astype(np.int64)
            if images.shape[0] != labels.shape[0]:
                raise ValueError(f"{img} and {lab} hold different numbers of items")
            return images, labels
    raise FileNotFoundError(f"Fashion-MNIST files not found in {candidates}; install Debian's "
                            "`dataset-fashion-mnist` package or pass `root=` (or set FASHION_MNIST_DIR)")


def load_digits_images(size: int = 28):
    """scikit-learn's handwritten digits (1797 real 8 x 8 images, 0-16 grey levels) as uint8 (n, size, size)
    images in [0, 255], upscaled with OpenCV bilinear interpolation (values rounded, not truncated); int64 labels.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"`size` must be an integer >= 8; got {size!r}")
    import cv2
    from sklearn.datasets import load_digits

    d = load_digits()
    small = (d.images * (255.0 / 16.0)).astype(np.float32)
    images = np.stack([cv2.resize(im, (int(size), int(size)), interpolation=cv2.INTER_LINEAR) for im in small])
    images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    return images, d.target.astype(np.int64)


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
