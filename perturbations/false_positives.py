"""False positives and class evidence of the SIMULATED detector: one implementation for two users.

The detection simulator (`adapters.datasets.make_scenes`) draws each frame's false positives and class
probabilities with these functions, and the `clutter` degradation (`perturbations.detector`) adds extra
false positives with the same ones, so an added false positive is drawn exactly like the simulator's own.
They live here, below `adapters`, because perturbations may not import adapters. SYNTHETIC data only.

Every function takes the generator first and draws from it in a fixed order; the per-detection noise of
the true detections stays in the simulator.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["CLASS_SIZES_3D", "FP_SIZE_2D", "class_probabilities", "default_noise", "false_positives_2d",
           "false_positives_3d", "prediction_frame", "sigmoid"]

# (l, w, h) in m of car, pedestrian, cyclist, truck: the 3D classes' mean sizes (false positives take them as drawn)
CLASS_SIZES_3D = np.array([[4.5, 1.9, 1.6], [0.8, 0.7, 1.75], [1.8, 0.6, 1.7], [8.0, 2.6, 3.2]])
CLASS_SIZES_3D.setflags(write=False)
FP_SIZE_2D = 50.0  # median side in px of a 2D false positive
NOISE_GROWTH = 0.03


def default_noise(dim: int) -> float:
    """The simulator's base box noise: 2 px in 2D, 0.15 m in 3D."""
    return 2.0 if dim == 2 else 0.15


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def class_probabilities(rng, labels, n_classes, signal, confusion):
    """Softmax of iid N(0, 1) logits plus signal x U(0.5, 1.5) at the target class, which is a random wrong
    class with probability `confusion`. (m, n_classes) rows summing to 1."""
    m = labels.shape[0]
    logits = rng.normal(0.0, 1.0, (m, n_classes))
    target = labels.copy()
    confused = rng.random(m) < confusion
    if n_classes > 1 and confused.any():
        shift = rng.integers(1, n_classes, confused.sum())
        target[confused] = (labels[confused] + shift) % n_classes
    logits[np.arange(m), target] += signal * rng.uniform(0.5, 1.5, m)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def false_positives_2d(rng, n_classes, image_size, fp_rate, noise, noise_growth, class_signal):
    """Poisson(`fp_rate`) image boxes (log-normal sides around 50 px, uniform position), their box_std,
    low confidences and flat class evidence: (boxes xyxy, box_std, scores, class_probs)."""
    h_img, w_img = image_size
    f = rng.poisson(fp_rate)
    fwh = FP_SIZE_2D * np.exp(rng.normal(0.0, 0.5, (f, 2)))
    fwh = np.minimum(fwh, [0.6 * w_img, 0.6 * h_img])
    fx = rng.uniform(0, w_img - fwh[:, 0])
    fy = rng.uniform(0, h_img - fwh[:, 1])
    fboxes = np.stack([fx, fy, fx + fwh[:, 0], fy + fwh[:, 1]], axis=1)
    fstd = noise + noise_growth * np.repeat(fwh, 2, axis=1)[:, [0, 2, 1, 3]]
    fconf = sigmoid(-1.0 + rng.normal(0.0, 1.0, f))
    fprobs = class_probabilities(rng, rng.integers(0, n_classes, f), n_classes, 0.5 * class_signal, 0.0)
    return fboxes, fstd, fconf, fprobs


def false_positives_3d(rng, n_classes, max_range, fp_rate, class_signal, box_std_row):
    """Poisson(`fp_rate`) bird's-eye boxes at uniform range in [3, max_range) and bearing, with a class size
    and random yaw; box_std is `box_std_row` (7,) for every one. Returns (boxes3d, box_std, scores, class_probs)."""
    f = rng.poisson(fp_rate)
    fr = rng.uniform(3.0, max_range, f)
    ft = rng.uniform(-math.pi, math.pi, f)
    flwh = CLASS_SIZES_3D[rng.integers(0, len(CLASS_SIZES_3D), f)]
    fboxes = np.column_stack([fr * np.cos(ft), fr * np.sin(ft), 0.5 * flwh[:, 2], flwh,
                              rng.uniform(-math.pi, math.pi, f)])
    fstd = np.tile(box_std_row, (f, 1))
    fconf = sigmoid(-1.0 + rng.normal(0.0, 1.0, f))
    fprobs = class_probabilities(rng, rng.integers(0, n_classes, f), n_classes, 0.5 * class_signal, 0.0)
    return fboxes, fstd, fconf, fprobs


def prediction_frame(key, boxes, scores, class_probs, box_std, gt_index, rng, dtype=np.float64) -> dict:
    """One prediction frame in a random order (one permutation drawn from `rng`), labels the argmax class.

    ``{key: boxes, "scores", "labels", "class_probs", "box_std", "_gt_index"}``; floats in `dtype`.
    """
    boxes = boxes.astype(dtype)
    class_probs = class_probs.astype(dtype)
    gt_index = gt_index.astype(np.int64)
    order = rng.permutation(boxes.shape[0])
    return {key: boxes[order], "scores": scores.astype(dtype)[order],
            "labels": np.argmax(class_probs, axis=1).astype(np.int64)[order], "class_probs": class_probs[order],
            "box_std": box_std.astype(dtype)[order], "_gt_index": gt_index[order]}
