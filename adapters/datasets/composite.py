"""Composite detection scenes: REAL objects pasted on crops of REAL photographs, with exact boxes and labels.

SYNTHETIC COMPOSITION of real parts. The objects are real Fashion-MNIST images (Xiao et al. 2017, Debian's
``dataset-fashion-mnist``), the backgrounds real photographs that scikit-learn and scikit-image ship; the *scene*
is composed here: each object is resized to 16-80 px (aspect jitter 0.8-1.25), given a colour and alpha-blended
onto a random crop of a photograph, so its box is known exactly. It is a stand-in for a recorded detection data
set, which this project cannot download: use it to train and audit a detector end to end, not to claim accuracy
on street scenes.

* ``load_composite_scenes(split)`` -> ``(images, ground_truth)``: uint8 ``(n, size, size, 3)`` RGB images and one
  frame ``{"boxes": float64 (g, 4) xyxy px, "labels": int64 (g,)}`` per image (0-6 objects; images without
  objects included). Labels are the Fashion-MNIST classes (`FASHION_MNIST_CLASSES`).
* The three splits use disjoint pools of both objects and photographs (`SPLIT_POOLS`): "train" objects come from
  the Fashion-MNIST train split, "calibration" from test images 0-4999, "test" from test images 5000-9999.
* Deterministic: scene ``i`` of a split depends on (split, i, size) only, so the first ``n`` scenes are the same
  whatever ``n`` is asked for.

A box is the tight box of the object's blended pixels (alpha >= `ALPHA_MIN`; fainter pixels are not drawn), in
pixel-edge coordinates (a box covering pixel columns 3..9 is x1 = 3, x2 = 10). Objects may overlap (clutter and
occlusion); a new object is placed so that it hides at most half of any earlier box and is not itself more than
half inside one.
"""
from __future__ import annotations

import numpy as np

__all__ = ["load_composite_scenes", "SPLIT_POOLS", "SCENE_SPLITS", "ALPHA_MIN", "MAX_OBJECTS"]

SCENE_SPLITS = {"train": 4000, "calibration": 1000, "test": 1000}  # default number of scenes per split
ALPHA_MIN = 0.2
MAX_OBJECTS = 6
MIN_SIZE, MAX_SIZE = 16, 80
# (object source, object index range, background photographs); "sklearn:" = sklearn.datasets.load_sample_image,
# else a skimage.data function. Disjoint between splits.
SPLIT_POOLS = {
    "train": {"objects": ("train", 0, 60000),
              "backgrounds": ("astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "camera", "cell",
                              "text", "colorwheel", "sklearn:china.jpg")},
    "calibration": {"objects": ("test", 0, 5000),
                    "backgrounds": ("immunohistochemistry", "gravel", "moon", "sklearn:flower.jpg")},
    "test": {"objects": ("test", 5000, 10000),
             "backgrounds": ("hubble_deep_field", "coins", "clock", "retina", "page")},
}
_SPLIT_SEED = {"train": 0, "calibration": 1, "test": 2}
_CACHE: dict = {}


def _photo(name):
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        im = load_sample_image(name.split(":", 1)[1])
    else:
        import skimage.data

        im = getattr(skimage.data, name)()
    im = np.asarray(im)
    if im.ndim == 2:
        im = np.repeat(im[:, :, None], 3, axis=2)
    return np.ascontiguousarray(im[:, :, :3].astype(np.uint8))


def _pools(split):
    if split not in _CACHE:
        from .real import load_fashion_mnist

        src, lo, hi = SPLIT_POOLS[split]["objects"]
        images, labels = load_fashion_mnist(src)
        _CACHE[split] = (images[lo:hi], labels[lo:hi], [_photo(b) for b in SPLIT_POOLS[split]["backgrounds"]])
    return _CACHE[split]


def _background(rng, photos, size):
    import cv2

    ph = photos[rng.integers(len(photos))]
    h, w = ph.shape[:2]
    side = int(rng.integers(min(size, h, w), min(h, w) + 1))
    y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = ph[y:y + side, x:x + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)


def _overlap_ok(box, boxes):
    """The new box hides at most half of each earlier box and lies at most half inside any of them."""
    for b in boxes:
        iw = min(box[2], b[2]) - max(box[0], b[0])
        ih = min(box[3], b[3]) - max(box[1], b[1])
        if iw <= 0 or ih <= 0:
            continue
        inter = iw * ih
        if inter > 0.5 * (b[2] - b[0]) * (b[3] - b[1]) or inter > 0.5 * (box[2] - box[0]) * (box[3] - box[1]):
            return False
    return True


def _scene(rng, objects, labels, photos, size):
    import cv2

    img = _background(rng, photos, size)
    boxes, labs = [], []
    for _ in range(int(rng.integers(0, MAX_OBJECTS + 1))):
        for _attempt in range(20):
            k = int(rng.integers(len(objects)))
            s = float(np.exp(rng.uniform(np.log(MIN_SIZE), np.log(min(MAX_SIZE, size)))))
            ar = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
            ow = int(np.clip(round(s * np.sqrt(ar)), MIN_SIZE, size))
            oh = int(np.clip(round(s / np.sqrt(ar)), MIN_SIZE, size))
            alpha = cv2.resize(objects[k].astype(np.float32) / 255.0, (ow, oh), interpolation=cv2.INTER_AREA)
            alpha[alpha < ALPHA_MIN] = 0.0
            ys, xs = np.nonzero(alpha)
            if ys.size == 0:
                continue
            x0, y0 = int(rng.integers(0, size - ow + 1)), int(rng.integers(0, size - oh + 1))
            box = (x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1)
            if not _overlap_ok(box, boxes):
                continue
            region = img[y0:y0 + oh, x0:x0 + ow]
            colour = rng.uniform(0, 255, 3).astype(np.float32)
            mean = region.reshape(-1, 3).mean(0)
            if np.abs(colour - mean).mean() < 60:  # keep the object visible against its local background
                colour = np.where(mean > 127, colour * 0.3, 255 - 0.3 * (255 - colour)).astype(np.float32)
            a = alpha[:, :, None]
            img[y0:y0 + oh, x0:x0 + ow] = region * (1 - a) + colour * a
            boxes.append(box)
            labs.append(int(labels[k]))
            break
    frame = {"boxes": np.array(boxes, np.float64).reshape(-1, 4), "labels": np.array(labs, np.int64)}
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), frame


def load_composite_scenes(split: str = "train", n: int | None = None, *, size: int = 128):
    """Composite scenes of `split` ("train", "calibration" or "test"): ``(images, ground_truth)``.

    images: uint8 (n, size, size, 3) RGB; ground_truth: list of n frames {"boxes": float64 (g, 4) xyxy px,
    "labels": int64 (g,)}, g in 0..6. `n` defaults to `SCENE_SPLITS[split]` (4000 / 1000 / 1000); `size` >= 128.

    Examples
    --------
    >>> images, gts = load_composite_scenes("test", 3)
    >>> images.shape, images.dtype
    ((3, 128, 128, 3), dtype('uint8'))
    >>> sorted(gts[0])
    ['boxes', 'labels']
    """
    if split not in SPLIT_POOLS:
        raise ValueError(f"`split` must be one of {', '.join(SPLIT_POOLS)}; got {split!r}")
    if n is None:
        n = SCENE_SPLITS[split]
    for name, v, lo in (("n", n, 1), ("size", size, 128)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"`{name}` must be an int; got {type(v).__name__}")
        if v < lo:
            raise ValueError(f"`{name}` must be >= {lo}; got {v}")
    objects, labels, photos = _pools(split)
    images = np.empty((int(n), int(size), int(size), 3), np.uint8)
    gts = []
    for i in range(int(n)):
        rng = np.random.default_rng([_SPLIT_SEED[split], i, int(size)])
        images[i], frame = _scene(rng, objects, labels, photos, int(size))
        gts.append(frame)
    return images, gts
