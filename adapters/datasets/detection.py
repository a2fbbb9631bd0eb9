"""A synthetic detection generator with known ground truth (2D images and 3D bird's-eye-view scenes).

SYNTHETIC DATA: a simulated detector on simulated scenes, not a recording and not a real detector. No
detector weights or detection data sets can be downloaded in this project, so tests and benchmarks use
simulated detectors whose failure modes are the ones conformal detection must survive:

- bias: boxes systematically too small (2D: `bias` px shrink per side; 3D: centres pulled `bias` m toward the
  sensor and sizes shrunk by `bias` m), the case that breaks symmetric-residual methods;
- heteroscedastic noise: per-coordinate sigma = noise + noise_growth * size (2D, px) or
  noise * (1 + noise_growth * range) (3D, m), so far or large objects are localised worse, times a per-object
  difficulty factor shared by all coordinates (log-normal, sd `quality_spread`);
- misses that depend on the object (small objects in 2D, distant objects in 3D are missed more often);
- false positives (Poisson per frame, lower confidence, flatter class probabilities);
- class confusion (the class evidence points at a wrong class with probability `confusion`);
- a per-box uncertainty `box_std` that is informative but imperfect (true sigma times a log-normal factor);
- 3D: heading flips (yaw + pi) with probability `flip_rate`; predicted yaw is not wrapped (may leave [-pi, pi)).

Frames follow the torchvision convention: predictions {"boxes" | "boxes3d", "scores", "labels", "class_probs",
"box_std"}, ground truth {"boxes" | "boxes3d", "labels"}; plus "_gt_index" on predictions (which object each
detection came from, -1 for false positives) for tests that need the generator's own truth.

The false positives and class probabilities are drawn by `perturbations.false_positives`, which the
`clutter` degradation (`perturbations.detector`) shares, so its extra false positives are the simulator's own.
numpy only.
"""
from __future__ import annotations

import math

import numpy as np

from conformal.utils import check_random_state as as_generator
from perturbations.false_positives import (
    CLASS_SIZES_3D,
    NOISE_GROWTH,
    class_probabilities,
    default_noise,
    false_positives_2d,
    false_positives_3d,
    prediction_frame,
    sigmoid,
)

__all__ = ["make_scenes", "CLASS_SIZES_3D"]

# 2D: (mean width, mean height) in px per class (3D sizes: CLASS_SIZES_3D)
_CLASS_SIZES_2D = np.array([[40.0, 90.0], [110.0, 60.0], [60.0, 70.0], [160.0, 110.0], [30.0, 30.0]])


def _scene_2d(rng, n_classes, size, mean_objects, bias, noise, noise_growth, miss_rate, fp_rate, confusion,
              class_signal, quality_spread, translation):
    h_img, w_img = size
    g = rng.poisson(mean_objects)
    labels = rng.integers(0, n_classes, g)
    base = _CLASS_SIZES_2D[labels % len(_CLASS_SIZES_2D)]
    wh = base * np.exp(rng.normal(0.0, 0.45, (g, 2)))
    wh = np.minimum(wh, [0.6 * w_img, 0.6 * h_img])
    x1 = rng.uniform(0, w_img - wh[:, 0])
    y1 = rng.uniform(0, h_img - wh[:, 1])
    gt = np.stack([x1, y1, x1 + wh[:, 0], y1 + wh[:, 1]], axis=1)
    # detection: small objects are missed more often
    s = np.sqrt(wh[:, 0] * wh[:, 1])
    p_miss = np.minimum(0.95, miss_rate * np.clip(64.0 / s, 0.25, 4.0))
    det = np.flatnonzero(rng.random(g) >= p_miss)
    sig = noise + noise_growth * np.repeat(wh[det], 2, axis=1)[:, [0, 2, 1, 3]]  # x1:w, y1:h, x2:w, y2:h
    sig = sig * np.exp(quality_spread * rng.normal(0.0, 1.0, (det.size, 1)))  # hard objects: off on every side
    shrink = np.array([bias, bias, -bias, -bias])
    # localisation error = shared translation (moves both sides of an axis together) + independent per-side part
    shift = rng.normal(0.0, 1.0, (det.size, 2))[:, [0, 1, 0, 1]]
    z = translation * shift + math.sqrt(1.0 - translation ** 2) * rng.normal(0.0, 1.0, (det.size, 4))
    boxes = gt[det] + shrink + sig * z
    boxes[:, 2] = np.maximum(boxes[:, 2], boxes[:, 0] + 1.0)
    boxes[:, 3] = np.maximum(boxes[:, 3], boxes[:, 1] + 1.0)
    std = sig * np.exp(rng.normal(0.0, 0.2, sig.shape))
    conf = sigmoid(1.5 + 0.6 * np.log(s[det] / 64.0) + rng.normal(0.0, 1.0, det.size))
    probs = class_probabilities(rng, labels[det], n_classes, class_signal, confusion)
    fboxes, fstd, fconf, fprobs = false_positives_2d(rng, n_classes, size, fp_rate, noise, noise_growth,
                                                     class_signal)
    return gt, labels, det, boxes, std, conf, probs, fboxes, fstd, fconf, fprobs


def _scene_3d(rng, n_classes, max_range, mean_objects, bias, noise, noise_growth, miss_rate, fp_rate, confusion,
              class_signal, flip_rate, quality_spread):
    g = rng.poisson(mean_objects)
    labels = rng.integers(0, n_classes, g)
    lwh = CLASS_SIZES_3D[labels % len(CLASS_SIZES_3D)] * np.exp(rng.normal(0.0, 0.1, (g, 3)))
    r = rng.uniform(3.0, max_range, g)
    theta = rng.uniform(-math.pi, math.pi, g)
    yaw = rng.uniform(-math.pi, math.pi, g)
    gt = np.column_stack([r * np.cos(theta), r * np.sin(theta), 0.5 * lwh[:, 2], lwh, yaw])
    p_miss = np.minimum(0.95, miss_rate * (0.3 + 1.4 * r / max_range))
    det = np.flatnonzero(rng.random(g) >= p_miss)
    k = det.size
    growth = 1.0 + noise_growth * r[det]
    sig = np.empty((k, 7))
    sig[:, 0:2] = noise * growth[:, None]
    sig[:, 2] = 0.5 * noise * growth
    sig[:, 3:6] = 0.5 * noise * growth[:, None] * np.sqrt(lwh[det] / 2.0)
    sig[:, 6] = 0.04 * growth
    sig *= np.exp(quality_spread * rng.normal(0.0, 1.0, (k, 1)))
    boxes = gt[det] + sig * rng.normal(0.0, 1.0, (k, 7))
    # bias: centre pulled toward the sensor (the visible surface), sizes too small
    rr = np.maximum(np.hypot(boxes[:, 0], boxes[:, 1]), 1e-9)
    boxes[:, 0] -= bias * boxes[:, 0] / rr
    boxes[:, 1] -= bias * boxes[:, 1] / rr
    boxes[:, 3:6] = np.maximum(boxes[:, 3:6] - bias, 0.05)
    flip = rng.random(k) < flip_rate
    boxes[flip, 6] += math.pi  # heading flip; yaw deliberately left unwrapped
    std = sig * np.exp(rng.normal(0.0, 0.2, sig.shape))
    conf = sigmoid(2.0 - 3.0 * r[det] / max_range + rng.normal(0.0, 1.0, k))
    probs = class_probabilities(rng, labels[det], n_classes, class_signal, confusion)
    fboxes, fstd, fconf, fprobs = false_positives_3d(rng, n_classes, max_range, fp_rate, class_signal,
                                                     sig.mean(axis=0) if k else np.full(7, noise))
    return gt, labels, det, boxes, std, conf, probs, fboxes, fstd, fconf, fprobs


def make_scenes(n_frames: int, *, dim: int = 2, rng=None, n_classes: int = 4, mean_objects: float = 6.0,
                bias: float = 0.0, noise: float | None = None, noise_growth: float | None = None,
                miss_rate: float = 0.1, fp_rate: float = 1.0, confusion: float = 0.1, class_signal: float = 3.0,
                image_size: tuple[int, int] = (480, 640), max_range: float = 70.0, flip_rate: float = 0.0,
                quality_spread: float = 0.4, translation: float = 0.6, dtype=np.float64):
    """Simulate `n_frames` frames of a detector with known ground truth. Returns (predictions, ground_truth).

    Parameters
    ----------
    dim : 2 (image boxes xyxy in px) or 3 (x, y, z, l, w, h, yaw in m, rad)
    bias : 2D px shrink per side; 3D m toward the sensor and off each size
    noise, noise_growth : base sigma and its growth (2D default 2 px + 0.03 * size; 3D 0.15 m * (1 + 0.03 r))
    miss_rate : base miss probability (scaled up for small / far objects)
    fp_rate : mean false positives per frame;  confusion : probability the class evidence is for a wrong class
    flip_rate : 3D heading-flip probability
    quality_spread : sd of a per-detection log-factor on sigma shared by all coordinates (hard objects are off
        on every side at once: the dependence between sides that max-rank exploits)
    translation : 2D weight in [0, 1) of the per-object shift shared by both sides of an axis (the rest of the
        error is independent per side; each side's sd stays sigma)

    Examples
    --------
    >>> preds, gts = make_scenes(2, rng=0)
    >>> sorted(preds[0]), sorted(gts[0])
    (['_gt_index', 'box_std', 'boxes', 'class_probs', 'labels', 'scores'], ['boxes', 'labels'])
    """
    if dim not in (2, 3):
        raise ValueError(f"`dim` must be 2 or 3; got {dim!r}")
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 0:
        raise ValueError(f"`n_frames` must be an int >= 0; got {n_frames!r}")
    if not 0.0 <= translation < 1.0:
        raise ValueError(f"`translation` must be in [0, 1); got {translation}")
    if not 0.0 <= miss_rate < 1.0 or not 0.0 <= confusion <= 1.0 or fp_rate < 0 or not 0.0 <= flip_rate <= 1.0:
        raise ValueError("`miss_rate` must be in [0, 1), `confusion` and `flip_rate` in [0, 1], `fp_rate` >= 0")
    gen = as_generator(rng)
    if noise is None:
        noise = default_noise(dim)
    if noise_growth is None:
        noise_growth = NOISE_GROWTH
    key = "boxes" if dim == 2 else "boxes3d"
    preds, gts = [], []
    for _ in range(int(n_frames)):
        if dim == 2:
            out = _scene_2d(gen, n_classes, image_size, mean_objects, bias, noise, noise_growth, miss_rate,
                            fp_rate, confusion, class_signal, quality_spread, translation)
        else:
            out = _scene_3d(gen, n_classes, max_range, mean_objects, bias, noise, noise_growth, miss_rate,
                            fp_rate, confusion, class_signal, flip_rate, quality_spread)
        gt, labels, det, boxes, std, conf, probs, fboxes, fstd, fconf, fprobs = out
        preds.append(prediction_frame(key, np.concatenate([boxes, fboxes]), np.concatenate([conf, fconf]),
                                      np.concatenate([probs, fprobs]), np.concatenate([std, fstd]),
                                      np.concatenate([det, np.full(fboxes.shape[0], -1)]), gen, dtype))
        gts.append({key: gt.astype(dtype), "labels": labels.astype(np.int64)})
    return preds, gts
