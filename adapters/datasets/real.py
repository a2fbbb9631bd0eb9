"""REAL data sets, read from local files: nothing here downloads anything.

* `load_fashion_mnist` -- real images: Fashion-MNIST (Xiao, Rasul & Vollgraf 2017) from Debian's
  ``dataset-fashion-mnist`` package (``apt install dataset-fashion-mnist``).
* `load_digits_images` -- real images: scikit-learn's 8 x 8 handwritten digits (shipped with
  scikit-learn), upscaled with OpenCV.

OpenCV and scikit-learn are imported inside `load_digits_images` only.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

__all__ = ["FASHION_MNIST_CLASSES", "load_fashion_mnist", "load_digits_images"]

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
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
