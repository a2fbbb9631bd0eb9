"""The reference models shipped with the package (trained here by ``python -m adapters.train``; nothing is
downloaded). Each name gives the network, its weights file in ``adapters/weights`` and the adapter settings it was
trained with:

=================  ======================================================  =========================================
name               data (what it was trained on)                           adapter
=================  ======================================================  =========================================
fashion_cnn        Fashion-MNIST train split, first 12 000 images (real)   CameraClassifier, 28 x 28 grey, mean/std .5
digits_cnn         scikit-learn digits, `digits_split()` train half (real)  CameraClassifier, 28 x 28 grey, mean/std .5
shapes_pointnet    `make_shapes` SYNTHETIC primitives, seed 0               LidarClassifier, 512 points, FPS, normalised
scenes_detector    `load_composite_scenes("train")`: real Fashion-MNIST     TorchDetector, 128 x 128 RGB, ImageNet
                   objects on real photographs, SYNTHETIC composition       mean/std
lidar_detector     `load_lidar_scenes("train")` SYNTHETIC ray-cast scans   LidarDetector (BEV grid), frames of 3D boxes
=================  ======================================================  =========================================

Data a model never saw, for calibration and tests: the Fashion-MNIST test split (and train images 12 000+), the
`digits_split()` held-out half, `make_shapes` with any seed other than 0, and the "calibration" and "test" splits
of `load_composite_scenes` (disjoint object and photograph pools) and of `load_lidar_scenes` (disjoint seeds).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["REFERENCE", "names", "load_model", "load", "digits_split", "weights_path"]

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
FASHION_TRAIN_SIZE = 12000
SHAPES_TRAIN_SEED = 0
_GREY = {"size": (28, 28), "color": "gray", "mean": 0.5, "std": 0.5}

REFERENCE = {
    "fashion_cnn": {"kind": "camera", "file": "fashion_cnn.pt", "net": "SmallCNN",
                    "net_kwargs": {"in_channels": 1, "num_classes": 10, "width": 8}, "preprocess": _GREY},
    "digits_cnn": {"kind": "camera", "file": "digits_cnn.pt", "net": "SmallCNN",
                   "net_kwargs": {"in_channels": 1, "num_classes": 10}, "preprocess": _GREY},
    "shapes_pointnet": {"kind": "lidar", "file": "shapes_pointnet.pt", "net": "SmallPointNet",
                        "net_kwargs": {"in_dim": 3, "num_classes": 8},
                        "lidar": {"num_points": 512, "sampling": "fps", "normalize": True}},
    "scenes_detector": {"kind": "detector", "file": "scenes_detector.pt", "net": "SmallCenterNet",
                        "net_kwargs": {"num_classes": 10, "width": 32, "crop_width": 24},
                        "preprocess": {"color": "rgb"}},
    "lidar_detector": {"kind": "lidar_detector", "file": "lidar_detector.pt", "net": "BEVCenterNet",
                       "net_kwargs": {"num_classes": 4, "width": 32},
                       "detector": {"num_classes": 4, "score_floor": 0.05, "max_detections": 100}},
}
_TRAIN_TASK = {"fashion_cnn": "fashion_mnist", "digits_cnn": "digits", "shapes_pointnet": "shapes",
               "scenes_detector": "scenes_detector", "lidar_detector": "lidar_detector"}


def names() -> list[str]:
    return sorted(REFERENCE)


def _entry(name):
    if name not in REFERENCE:
        raise ValueError(f"unknown reference model {name!r}; valid names are: {', '.join(names())}")
    return REFERENCE[name]


def weights_path(name: str) -> Path:
    return WEIGHTS_DIR / _entry(name)["file"]


def build_model(name: str):
    """The untrained network of reference model `name`."""
    e = _entry(name)
    if e["kind"] == "lidar_detector":
        from adapters import lidar_detector as models
    else:
        from adapters import models
    return getattr(models, e["net"])(**e["net_kwargs"])


def load_model(name: str, weights=None):
    """The trained network (eval mode, CPU), weights read with ``torch.load(..., weights_only=True)``."""
    import torch

    _entry(name)  # an unknown name fails here, before any file is looked for
    path = Path(weights) if weights is not None else weights_path(name)
    if not path.is_file():
        raise FileNotFoundError(f"weights of {name!r} not found at {path}; train them with "
                                f"`python -m adapters.train {_TRAIN_TASK[name]}`")
    net = build_model(name)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


def make_adapter(name: str, net, **adapter_kwargs):
    """The adapter reference model `name` was trained with, around `net` (keyword arguments override)."""
    from adapters.camera import CameraClassifier
    from adapters.lidar import LidarClassifier
    from adapters.preprocess import ImagePreprocess

    e = _entry(name)
    if e["kind"] == "lidar_detector":
        from adapters.lidar_detector import LidarDetector

        return LidarDetector(net, **{**e["detector"], **adapter_kwargs})
    if e["kind"] == "detector":
        from adapters.detector import TorchDetector

        kw = {"preprocess": ImagePreprocess(**e["preprocess"]), "num_classes": e["net_kwargs"]["num_classes"]}
        kw.update(adapter_kwargs)
        return TorchDetector(net, **kw)
    if e["kind"] == "camera":
        kw = {"preprocess": ImagePreprocess(**e["preprocess"]), "num_classes": e["net_kwargs"]["num_classes"]}
        kw.update(adapter_kwargs)
        return CameraClassifier(net, **kw)
    kw = {**e["lidar"], "num_classes": e["net_kwargs"]["num_classes"]}
    kw.update(adapter_kwargs)
    return LidarClassifier(net, **kw)


def load(name: str, weights=None, **adapter_kwargs):
    """Reference model `name` wrapped in its adapter, ready for ``predict_proba`` (``predict`` for detectors)."""
    return make_adapter(name, load_model(name, weights), **adapter_kwargs)


def digits_split(seed: int = 0):
    """(train_indices, heldout_indices) of scikit-learn's 1797 digits: a fixed stratified half/half split. The
    reference `digits_cnn` was trained on the first part only."""
    from adapters.datasets import load_digits_images

    _, labels = load_digits_images(size=8)
    rng = np.random.default_rng(seed)
    train = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        train.append(rng.permutation(idx)[: idx.size // 2])
    train = np.sort(np.concatenate(train))
    held = np.setdiff1d(np.arange(labels.size), train)
    return train, held
