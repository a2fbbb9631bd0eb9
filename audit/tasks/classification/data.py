"""Data sources of a classification audit: each returns a train part (for in-process models) and an audit pool.

The pool is what gets split, R times, into clean calibration and (corrupted) test halves. Images are
uint8 arrays (N, H, W) or (N, H, W, 3); point clouds are lists of float32 (N_i, 3) arrays.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audit.errors import ConfigError
from audit.schema import boolean, check_params, integer, resolve_path

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CLOUD_SUFFIXES = (".ply", ".pcd", ".npy", ".bin")
PRECOMPUTED_KEY = re.compile(r"^probs_(?P<name>.+)_s(?P<severity>[1-5])$")


@dataclass
class Dataset:
    """Inputs and labels of one audit. `train_*` may be empty (pretrained models need no training data)."""

    modality: str  # "image" | "pointcloud" | "outputs"
    train_inputs: object
    train_labels: np.ndarray
    pool_inputs: object
    pool_labels: np.ndarray
    class_names: list
    description: str
    synthetic: bool
    extra: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def _stratified_split(labels: np.ndarray, train_fraction: float, seed: int):
    """Indices (train, pool): a seeded split with each class divided in the same proportion."""
    if train_fraction == 0.0:
        return np.zeros(0, dtype=np.int64), np.arange(labels.shape[0])
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7001]))
    train, pool = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(idx.shape[0])]
        n_train = int(round(train_fraction * idx.shape[0]))
        train.append(idx[:n_train])
        pool.append(idx[n_train:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(pool))


def _check_classes(labels: np.ndarray, where: str) -> None:
    classes = np.unique(labels)
    if classes.shape[0] < 2:
        raise ConfigError(f"{where} holds a single class ({classes.tolist()}); an audit needs at least 2")


def _subsample(inputs, labels, max_samples, seed):
    if max_samples is None or labels.shape[0] <= max_samples:
        return inputs, labels
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7002]))
    keep = np.sort(rng.choice(labels.shape[0], size=max_samples, replace=False))
    if isinstance(inputs, list):
        return [inputs[i] for i in keep], labels[keep]
    return inputs[keep], labels[keep]


def _take(inputs, idx):
    return [inputs[i] for i in idx] if isinstance(inputs, list) else inputs[idx]


# ---------------------------------------------------------------- sources


def _int_at_least(lo):
    return lambda v, key: integer(v, key, lo=lo)


def _optional_int_at_least(lo):
    return lambda v, key: None if v is None else integer(v, key, lo=lo)


def _one_of(*values):
    def check(v, key):
        if v not in values:
            raise ConfigError(f"config key `{key}` is {v!r}; allowed values: {', '.join(map(str, values))}")
        return v
    return check


def _string(v, key):
    if not isinstance(v, str) or not v:
        raise ConfigError(f"config key `{key}` must be a non-empty string; got {v!r}")
    return v


def _names(v, key):
    if v is None:
        return None
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        raise ConfigError(f"config key `{key}` must be a non-empty list of strings (one name per class); got {v!r}")
    if len(set(v)) != len(v):
        raise ConfigError(f"config key `{key}` has repeated class names: {v}")
    return list(v)


class Source:
    modality = "image"
    scene_input = False  # True: the source keeps whole LiDAR scans, so scene corruptions can act on them
    params: dict = {}  # key -> help
    checks: dict = {}  # key -> check(value, config key) -> value: every value is typed at load time
    required: tuple = ()
    help = ""

    def check_params(self, params: dict, path: str, base_dir) -> None:
        check_params(params, self.params, path, self.required)
        for key, value in list(params.items()):
            if key in ("path", "root"):
                params[key] = resolve_path(value, f"{path}.{key}", base_dir, kind=self.path_kind)
            elif key in self.checks:
                params[key] = self.checks[key](value, f"{path}.{key}")

    path_kind = "file"

    def load(self, params: dict, split: dict, seed: int) -> Dataset:  # pragma: no cover - interface
        raise NotImplementedError


class Digits(Source):
    help = "scikit-learn's 1,797 8x8 handwritten digits (real), upscaled to `size` px"
    params = {"size": "side of the upscaled square images (default 28)",
              "split": "'seeded' (stratified, by `seed` and split.train_fraction; default) or 'reference' (the "
                       "fixed half/half split the reference digits_cnn was trained with: train half / held-out pool)"}
    checks = {"size": _int_at_least(8), "split": _one_of("reference", "seeded")}

    def load(self, params, split, seed):
        size, how = params.get("size", 28), params.get("split", "seeded")
        from adapters.datasets import load_digits_images

        images, labels = load_digits_images(size=size)
        if how == "reference":
            from adapters.reference import digits_split

            tr, pool = digits_split()
        else:
            tr, pool = _stratified_split(labels, split["train_fraction"], seed)
        px, py = _subsample(images[pool], labels[pool], split["max_samples"], seed)
        return Dataset("image", images[tr], labels[tr], px, py, [str(i) for i in range(10)],
                       f"scikit-learn digits (real, 8x8 upscaled to {size}x{size}), {len(labels)} images, "
                       f"{len(tr)} train / {len(py)} audit pool ({how} split)", synthetic=False,
                       extra={"source": "digits", "size": size, "split": how})


class FashionMNIST(Source):
    help = "Fashion-MNIST (real, 28x28), from Debian's dataset-fashion-mnist; train file -> training, test file -> pool"
    params = {"root": f"directory of the idx .gz files (default {FASHION_MNIST_DIR})",
              "n_train": "number of training images to use (default all 60,000)"}
    checks = {"n_train": _optional_int_at_least(10)}
    path_kind = "dir"

    def load(self, params, split, seed):
        from adapters.datasets import FASHION_MNIST_CLASSES, load_fashion_mnist

        root = params.get("root", FASHION_MNIST_DIR)
        try:
            tx, ty = load_fashion_mnist("train", root=root)
            px, py = load_fashion_mnist("test", root=root)
        except FileNotFoundError:
            raise ConfigError(f"Fashion-MNIST files not found in {str(root)!r}; install Debian's "
                              "`dataset-fashion-mnist` (sudo apt-get install dataset-fashion-mnist) or set "
                              "`data.params.root`") from None
        n_train = params.get("n_train")
        if n_train is not None:
            tx, ty = _subsample(tx, ty, n_train, seed + 1)
        px, py = _subsample(px, py, split["max_samples"], seed)
        return Dataset("image", tx, ty, px, py, list(FASHION_MNIST_CLASSES),
                       f"Fashion-MNIST (real, 28x28 grayscale): {len(py)} audit images from the official test file "
                       f"({len(ty)} training-file images available to in-process models)", synthetic=False,
                       extra={"source": "fashion_mnist"})


class ImageFolder(Source):
    help = "your images: one subfolder per class (png/jpg/...), resized to `size` if given"
    params = {"root": "directory with one subfolder per class", "size": "resize to size x size (optional)",
              "grayscale": "read as grayscale (default false: RGB)"}
    checks = {"size": _optional_int_at_least(8), "grayscale": boolean}
    required = ("root",)
    path_kind = "dir"

    def load(self, params, split, seed):
        import cv2

        root = Path(params["root"])
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        if len(classes) < 2:
            raise ConfigError(f"config key `data.params.root`: {str(root)!r} must hold one subfolder per class and "
                              f"at least 2 classes; found {classes}")
        size, gray = params.get("size"), params.get("grayscale", False)
        images, labels = [], []
        for c, name in enumerate(classes):
            files = sorted(f for f in (root / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ConfigError(f"class folder {str(root / name)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            for f in files:
                im = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
                if im is None:
                    raise ConfigError(f"image file {str(f)!r} cannot be read (corrupt or unsupported format)")
                if not gray:
                    im = cv2.cvtColor(im, cv2.COLOR_BGR2RGB)
                if size is not None:
                    im = cv2.resize(im, (int(size), int(size)), interpolation=cv2.INTER_AREA)
                images.append(im)
                labels.append(c)
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise ConfigError(f"images under {str(root)!r} have different shapes {sorted(shapes)[:4]}...; set "
                              "`data.params.size` to resize them")
        images, labels = np.stack(images), np.asarray(labels, dtype=np.int64)
        tr, pool = _stratified_split(labels, split["train_fraction"], seed)
        px, py = _subsample(images[pool], labels[pool], split["max_samples"], seed)
        return Dataset("image", images[tr], labels[tr], px, py, classes,
                       f"image folder {root} ({len(labels)} images, {len(classes)} classes)", synthetic=False)


class ImageNpz(Source):
    help = "your images in an .npz: uint8 `images` (N,H,W[,3]) and int `labels` (N,)"
    params = {"path": ".npz file", "images_key": "default 'images'", "labels_key": "default 'labels'",
              "class_names": "optional list of names"}
    checks = {"images_key": _string, "labels_key": _string, "class_names": _names}
    required = ("path",)

    def load(self, params, split, seed):
        with np.load(params["path"], allow_pickle=False) as z:
            ik, lk = params.get("images_key", "images"), params.get("labels_key", "labels")
            for k in (ik, lk):
                if k not in z.files:
                    raise ConfigError(f"{params['path']!r} has no array {k!r}; it holds {z.files}")
            images, labels = z[ik], z[lk]
        if images.dtype != np.uint8 or images.ndim not in (3, 4):
            raise ConfigError(f"{params['path']!r}: images must be uint8 (N,H,W) or (N,H,W,3); got "
                              f"{images.dtype} {images.shape}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0] or not np.issubdtype(labels.dtype, np.integer):
            raise ConfigError(f"{params['path']!r}: labels must be integers of shape ({images.shape[0]},); got "
                              f"{labels.dtype} {labels.shape}")
        labels = labels.astype(np.int64)
        _check_classes(labels, f"{params['path']!r}")
        k = int(labels.max()) + 1
        names = params.get("class_names") or [str(i) for i in range(k)]
        tr, pool = _stratified_split(labels, split["train_fraction"], seed)
        px, py = _subsample(images[pool], labels[pool], split["max_samples"], seed)
        return Dataset("image", images[tr], labels[tr], px, py, list(names),
                       f"images from {params['path']} ({len(labels)} images)", synthetic=False)


class Shapes(Source):
    modality = "pointcloud"
    help = "SYNTHETIC point clouds of primitive shapes with random proportions (adapters.datasets.make_shapes)"
    params = {"n_per_class": "clouds per class (default 120)", "n_points": "points per cloud (default 1024)",
              "seed": "generator seed (default 1; the reference PointNet was trained on seed 0)"}
    checks = {"n_per_class": _int_at_least(4), "n_points": _int_at_least(4), "seed": _int_at_least(0)}

    def load(self, params, split, seed):
        from adapters.datasets import make_shapes

        n_per_class, n_points = params.get("n_per_class", 120), params.get("n_points", 1024)
        shapes_seed = params.get("seed", 1)
        clouds, labels, names = make_shapes(n_per_class=n_per_class, n_points=n_points, seed=shapes_seed)
        clouds = [np.asarray(c, dtype=np.float32) for c in clouds]
        labels = np.asarray(labels, dtype=np.int64)
        tr, pool = _stratified_split(labels, split["train_fraction"], seed)
        px, py = _subsample(_take(clouds, pool), labels[pool], split["max_samples"], seed)
        return Dataset("pointcloud", _take(clouds, tr), labels[tr], px, py, list(names),
                       f"SYNTHETIC primitive shapes ({len(names)} classes x {n_per_class}, {n_points} points each, "
                       f"generator seed {shapes_seed})", synthetic=True,
                       extra={"source": "shapes", "shapes_seed": shapes_seed})


class PointCloudFolder(Source):
    modality = "pointcloud"
    help = "your point clouds: one subfolder per class with .ply/.pcd/.npy/.bin files"
    params = {"root": "directory with one subfolder per class"}
    required = ("root",)
    path_kind = "dir"

    def load(self, params, split, seed):
        from perturbations.pointcloud import read_points

        root = Path(params["root"])
        classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        if len(classes) < 2:
            raise ConfigError(f"config key `data.params.root`: {str(root)!r} must hold one subfolder per class and "
                              f"at least 2 classes; found {classes}")
        clouds, labels = [], []
        for c, name in enumerate(classes):
            files = sorted(f for f in (root / name).iterdir() if f.suffix.lower() in CLOUD_SUFFIXES)
            if not files:
                raise ConfigError(f"class folder {str(root / name)!r} holds no point clouds "
                                  f"({', '.join(CLOUD_SUFFIXES)})")
            for f in files:
                try:
                    pts = np.asarray(read_points(str(f)))
                except Exception as exc:  # any reader failure is the file's fault; name it
                    raise ConfigError(f"point-cloud file {str(f)!r} cannot be read: {exc}") from None
                if pts.ndim != 2 or pts.shape[1] < 3 or pts.shape[0] == 0 or not np.isfinite(pts[:, :3]).all():
                    raise ConfigError(f"point-cloud file {str(f)!r} must hold a non-empty finite (N, >=3) array; "
                                      f"got shape {pts.shape}")
                clouds.append(np.ascontiguousarray(pts[:, :3], dtype=np.float32))
                labels.append(c)
        labels = np.asarray(labels, dtype=np.int64)
        tr, pool = _stratified_split(labels, split["train_fraction"], seed)
        px, py = _subsample(_take(clouds, pool), labels[pool], split["max_samples"], seed)
        return Dataset("pointcloud", _take(clouds, tr), labels[tr], px, py, classes,
                       f"point-cloud folder {root} ({len(labels)} clouds)", synthetic=False)


class Precomputed(Source):
    modality = "outputs"
    help = ("model outputs you computed: .npz with `labels` (N,), `probs_clean` (N,K) and "
            "`probs_<corruption>_s<severity>` (N,K) on the same N samples")
    params = {"path": ".npz file", "class_names": "optional list of names"}
    checks = {"class_names": _names}
    required = ("path",)

    def load(self, params, split, seed):
        labels, cells = read_precomputed(params["path"])
        names = params.get("class_names") or [str(i) for i in range(cells["clean"].shape[1])]
        return Dataset("outputs", None, np.zeros(0, dtype=np.int64), None, labels, list(names),
                       f"precomputed model outputs from {params['path']} ({labels.shape[0]} samples)",
                       synthetic=False, extra={"cells": cells})


def read_precomputed(path):
    """labels (N,) and {"clean" | (name, severity): probs (N, K) float64} from a precomputed-outputs .npz."""
    with np.load(path, allow_pickle=False) as z:
        files = list(z.files)
        if "labels" not in files or "probs_clean" not in files:
            raise ConfigError(f"{path!r} must hold arrays `labels` and `probs_clean`; it holds {files}")
        labels = z["labels"]
        cells = {"clean": z["probs_clean"]}
        for key in files:
            m = PRECOMPUTED_KEY.match(key)
            if m:
                cells[(m["name"], int(m["severity"]))] = z[key]
            elif key not in ("labels", "probs_clean"):
                raise ConfigError(f"{path!r}: array {key!r} is not `labels`, `probs_clean` or "
                                  "`probs_<corruption>_s<1..5>`")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(f"{path!r}: `labels` must be a 1-D integer array; got {labels.dtype} {labels.shape}")
    n = labels.shape[0]
    k = cells["clean"].shape[1] if cells["clean"].ndim == 2 else None
    for key, p in cells.items():
        name = key if key == "clean" else f"probs_{key[0]}_s{key[1]}"
        if p.ndim != 2 or p.shape != (n, k) or p.dtype.kind != "f":
            raise ConfigError(f"{path!r}: `{name}` must be float (N={n}, K={k}); got {p.dtype} {p.shape}")
        if not np.isfinite(p).all() or (p < 0).any() or np.abs(p.sum(1) - 1) .max() > 1e-3:
            raise ConfigError(f"{path!r}: `{name}` must hold probabilities (rows in [0,1] summing to 1)")
    if labels.min() < 0 or labels.max() >= k:
        raise ConfigError(f"{path!r}: `labels` must lie in 0..{k - 1}")
    if np.unique(labels).shape[0] < 2:
        raise ConfigError(f"{path!r}: `labels` hold a single class; an audit needs at least 2")
    return labels.astype(np.int64), {key: p.astype(np.float64) for key, p in cells.items()}


class LidarObjects(Source):
    """Object clusters cut from SYNTHETIC ray-cast LiDAR scans: the points inside each ground-truth box.

    The source keeps the scans (`Dataset.extra["scenes"]`), so a LiDAR *scene* corruption (fog, snow, ...) is applied
    to the whole scan first and the clusters are then cut again from the corrupted scan (`scene_clusters`); an
    object-level corruption is applied to each clean cluster as for any point cloud."""

    modality = "pointcloud"
    scene_input = True
    help = ("SYNTHETIC LiDAR object clusters (car, truck, pedestrian, cyclist): the points inside each ground-truth "
            "box of adapters.datasets.load_lidar_scenes; scene corruptions act on the whole scan before cutting")
    params = {"n_train_scenes": "train-split scans the in-process model trains on (default 60)",
              "n_scenes": "test-split scans whose clusters form the audit pool (default 40)",
              "n_rings": "32 or 64 (default 32)",
              "min_points": "objects with at least this many returns in the clean scan (default 10)"}
    checks = {"n_train_scenes": _int_at_least(1), "n_scenes": _int_at_least(1), "n_rings": _one_of(32, 64),
              "min_points": _int_at_least(1)}

    def load(self, params, split, seed):
        from adapters.datasets.lidar_scenes import CLASSES

        n_rings, min_points = params.get("n_rings", 32), params.get("min_points", 10)
        n_train, n_pool = params.get("n_train_scenes", 60), params.get("n_scenes", 40)
        tx, ty, _ = lidar_object_clusters("train", n_train, n_rings, min_points)
        px, py, scenes = lidar_object_clusters("test", n_pool, n_rings, min_points)
        if split["max_samples"] is not None and py.shape[0] > split["max_samples"]:
            raise ConfigError(f"config key `split.max_samples` ({split['max_samples']}) is below the "
                              f"{py.shape[0]} clusters of data 'lidar_objects'; lower `data.params.n_scenes` "
                              "instead (the clusters of a scan are corrupted together)")
        _check_classes(py, "the lidar_objects audit pool")
        return Dataset("pointcloud", tx, ty, px, py, list(CLASSES),
                       f"SYNTHETIC LiDAR object clusters: the points (x, y, z, intensity) inside each ground-truth box "
                       f"with >= {min_points} returns, {len(ty)} clusters from {n_train} train-split scans (training) "
                       f"/ {len(py)} from {n_pool} test-split scans (audit pool), {n_rings}-ring sensor",
                       synthetic=True, extra={"source": "lidar_objects", "scenes": scenes})


def lidar_object_clusters(split_name: str, n_scenes: int, n_rings: int, min_points: int):
    """(clusters, labels, scenes) of the objects with >= `min_points` returns in the clean scans of one split.

    `scenes` holds what a scene corruption needs: the clean scans, the per-scan facts the corruptions accept
    (rings, ground and object masks), the boxes, and for each cluster its (scan, box) row in `index`."""
    from adapters.datasets.lidar_scenes import SEMANTIC, load_lidar_scenes

    scans, frames = load_lidar_scenes(split_name, n_scenes, n_rings=n_rings)
    clusters, labels, index, boxes = [], [], [], []
    for i, (scan, fr) in enumerate(zip(scans, frames)):
        keep = np.flatnonzero(np.asarray(fr["n_points"]) >= min_points)
        boxes.append(np.asarray(fr["boxes3d"], dtype=np.float64)[keep])
        cut = cut_clusters(scan, boxes[-1])
        clusters += cut
        labels += [int(fr["labels"][k]) for k in keep]
        index += [(i, j) for j in range(keep.shape[0])]
    facts = [{"ring": fr["ring"], "ground_mask": np.isin(fr["semantic"], [SEMANTIC["ground"], SEMANTIC["kerb"]]),
              "object_mask": np.asarray(fr["instance"]) >= 0} for fr in frames]
    scenes = {"scans": scans, "facts": facts, "boxes": boxes, "n_rings": n_rings,
              "index": np.asarray(index, dtype=np.int64).reshape(-1, 2)}
    return clusters, np.asarray(labels, dtype=np.int64), scenes


def cut_clusters(scan, boxes) -> list:
    """The float32 (n, 4) points of `scan` inside each 7-DoF box. A box left without points (a corruption removed
    them all) gives its centre alone, intensity 0, so every object still gets an answer, and a wrong one counts."""
    from adapters.datasets.lidar_scenes import points_in_boxes

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    inside = points_in_boxes(scan[:, :3], boxes) if boxes.shape[0] else np.zeros((len(scan), 0), bool)
    out = []
    for j in range(boxes.shape[0]):
        pts = scan[inside[:, j]]
        if pts.shape[0] == 0:
            pts = np.array([[*boxes[j, :3], 0.0]], dtype=np.float32)
        out.append(np.ascontiguousarray(pts, dtype=np.float32))
    return out


def scene_options(name: str, facts: dict, n_rings: int) -> dict:
    """The per-scan facts (true rings, ground and object masks) a scene corruption declares it accepts."""
    from adapters.datasets.lidar_scenes import FOV_DEG
    from perturbations.pointcloud import REGISTRY

    cand = {**facts, "n_rings": n_rings, "fov_deg": FOV_DEG}
    return {k: v for k, v in cand.items() if k in REGISTRY[name].options}


SCENE_FACTS = ("ring", "n_rings", "fov_deg", "ground_mask", "object_mask")  # supplied per scan, not by the config


DATA_SOURCES = {
    "digits": Digits(),
    "fashion_mnist": FashionMNIST(),
    "image_folder": ImageFolder(),
    "image_npz": ImageNpz(),
    "shapes": Shapes(),
    "pointcloud_folder": PointCloudFolder(),
    "lidar_objects": LidarObjects(),
    "precomputed": Precomputed(),
}
