"""Detector degradations of the detection audit: named, severity-parameterised changes to a SIMULATED detector.

No real detector or detection data set can run offline in this project, so the detection audit degrades the
output of the detector simulated by `conformal.detection.synthetic.make_scenes` instead of corrupting sensor
data. A degradation transforms one frame of the clean detector's output after the fact, with a generator of its
own (seeded by the audit seed, the degradation's name and the frame, never by the severity). So:

- everything a degradation does not touch is identical to the clean cell (same scenes, same detections, same
  noise), and a difference between cells comes from the degradation alone;
- severities are nested: the objects occluded at severity 3 include those occluded at severity 1, the clutter
  at severity 5 includes that of severity 4, the noise added at severity 5 is the same draw scaled up.

The severity tables are data beside the code, in the style of ImageNet-C: adding a degradation is one table
row and one branch of `apply`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["DEGRADATIONS", "Degradation", "apply", "degradation_names", "table_markdown"]


@dataclass(frozen=True)
class Degradation:
    """One detector degradation: what it simulates, how its value v acts, and its severity tables."""

    help: str
    rule: str  # how the table value v changes the detector's output (for docs and `conformal-audit list`)
    table_2d: tuple | None  # v at severity 1..5 for 2D scenes (None: not defined in 2D)
    table_3d: tuple | None  # v at severity 1..5 for 3D scenes
    unit_2d: str = ""
    unit_3d: str = ""

    def table(self, dim: int) -> tuple | None:
        return self.table_2d if dim == 2 else self.table_3d


DEGRADATIONS = {
    "sensor_noise": Degradation(
        "sensor noise: every box is localised worse",
        "extra Gaussian box noise, sd sqrt(v^2 - 1) x box_std (total noise x v); box_std x v",
        (1.5, 2.0, 3.0, 4.0, 6.0), (1.5, 2.0, 3.0, 4.0, 6.0), "x noise", "x noise"),
    "occlusion": Degradation(
        "occlusion: detected objects disappear, small (2D) or distant (3D) ones first",
        "each detected object is dropped with prob. min(0.95, v x f); f = clip(64 px / sqrt(area), 0.25, 4) in 2D, "
        "0.3 + 1.4 range / max_range in 3D (the simulator's own miss model)",
        (0.1, 0.2, 0.3, 0.45, 0.6), (0.1, 0.2, 0.3, 0.45, 0.6), "", ""),
    "clutter": Degradation(
        "clutter: extra false positives, drawn like the simulator's own",
        "Poisson(v) extra false positives per frame", (1.0, 2.0, 4.0, 7.0, 12.0), (1.0, 2.0, 4.0, 7.0, 12.0),
        "FP/frame", "FP/frame"),
    "class_confusion": Degradation(
        "class confusion: the class evidence of a detected object points at a wrong class",
        "with prob. v the class probabilities of a detected object are rotated to a random wrong class",
        (0.1, 0.2, 0.3, 0.45, 0.6), (0.1, 0.2, 0.3, 0.45, 0.6), "", ""),
    "box_shift": Degradation(
        "systematic box shift (e.g. camera-detector misalignment)",
        "2D: every box moves v px right and down; 3D: every centre moves v m along +x",
        (2.0, 4.0, 6.0, 9.0, 12.0), (0.1, 0.2, 0.3, 0.5, 0.8), "px", "m"),
    "box_shrink": Degradation(
        "systematic box shrink: boxes too small",
        "2D: every side moves v px inward; 3D: l, w, h shrink by v m and centres move v m toward the sensor",
        (1.0, 2.0, 3.0, 5.0, 8.0), (0.05, 0.1, 0.15, 0.25, 0.4), "px", "m"),
    "heading_flip": Degradation(
        "heading flips (3D only)", "with prob. v the yaw of a detection turns by pi",
        None, (0.02, 0.05, 0.1, 0.2, 0.3), "", ""),
}


def degradation_names(dim: int | None = None) -> list:
    """Names of the degradations defined for `dim` (2 or 3), or all names."""
    return [k for k, d in DEGRADATIONS.items() if dim is None or d.table(dim) is not None]


def value(name: str, severity: int, dim: int) -> float:
    """The table value v of a degradation at a severity."""
    if name not in DEGRADATIONS:
        raise ValueError(f"`name` must be one of {', '.join(DEGRADATIONS)}; got {name!r}")
    table = DEGRADATIONS[name].table(dim)
    if table is None:
        raise ValueError(f"degradation {name!r} is not defined for dim={dim}")
    if isinstance(severity, bool) or severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"`severity` must be an integer in 1..5; got {severity!r}")
    return float(table[severity - 1])


def _take(pred: dict, rows: np.ndarray) -> dict:
    return {k: v[rows] for k, v in pred.items()}


def apply(name: str, severity: int, pred: dict, gt: dict, *, dim: int, scene: dict, detector: dict,
          rng: np.random.Generator) -> dict:
    """One frame of the simulated detector's output, degraded. Returns a new dict; the inputs are not modified.

    pred: a `make_scenes` prediction frame including "_gt_index" (the true object of each detection, -1 for false
    positives; used here to degrade true detections only, never passed to the conformal detector); gt: its
    ground truth; scene, detector: the `make_scenes` keyword arguments of the clean cell; rng: the generator of
    (audit seed, degradation, frame), the same at every severity.
    """
    v = value(name, severity, dim)
    key = "boxes" if dim == 2 else "boxes3d"
    out = {k: np.array(a, copy=True) for k, a in pred.items()}
    boxes, m = out[key], out["scores"].shape[0]
    true = out["_gt_index"] >= 0
    if name == "sensor_noise":
        z = rng.standard_normal(boxes.shape)
        boxes += math.sqrt(v * v - 1.0) * out["box_std"] * z
        out["box_std"] *= v
        _fix(boxes, dim)
    elif name == "occlusion":
        u = rng.random(m)
        g = gt[key][out["_gt_index"][true]]
        if dim == 2:
            factor = np.clip(64.0 / np.sqrt((g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])), 0.25, 4.0)
        else:
            factor = 0.3 + 1.4 * np.hypot(g[:, 0], g[:, 1]) / scene["max_range"]
        p = np.zeros(m)
        p[true] = np.minimum(0.95, v * factor)
        out = _take(out, np.flatnonzero(u >= p))
    elif name == "clutter":
        from conformal.detection.synthetic import make_scenes

        v_max = max(DEGRADATIONS[name].table(dim))
        params = dict(scene, mean_objects=0.0)
        params["image_size"] = tuple(params["image_size"])
        (fp,), _ = make_scenes(1, dim=dim, rng=rng, **params, **dict(detector, fp_rate=v_max))
        # thinning Poisson(v_max) with the same uniforms at every severity: Poisson(v), nested in severity
        extra = _take(fp, np.flatnonzero(rng.random(fp["scores"].shape[0]) < v / v_max))
        out = {k: np.concatenate([out[k], extra[k].astype(out[k].dtype)]) for k in out}
    elif name == "class_confusion":
        u = rng.random(m)
        k = out["class_probs"].shape[1]
        shift = rng.integers(1, k, m)
        for i in np.flatnonzero(true & (u < v)):
            # iid logits plus signal at the target: rotating them is the simulator's own confusion, in law
            out["class_probs"][i] = np.roll(out["class_probs"][i], shift[i])
        out["labels"] = np.argmax(out["class_probs"], axis=1).astype(out["labels"].dtype)
    elif name == "box_shift":
        if dim == 2:
            boxes[:, :4] += v
        else:
            boxes[:, 0] += v
    elif name == "box_shrink":
        if dim == 2:
            boxes[:, :2] += v
            boxes[:, 2:4] -= v
        else:
            r = np.maximum(np.hypot(boxes[:, 0], boxes[:, 1]), 1e-9)
            pull = np.minimum(v, r)
            boxes[:, 0] -= pull * boxes[:, 0] / r
            boxes[:, 1] -= pull * boxes[:, 1] / r
            boxes[:, 3:6] -= v
        _fix(boxes, dim)
    elif name == "heading_flip":
        flip = rng.random(m) < v
        boxes[flip, 6] += math.pi  # left unwrapped, as the simulator does
    return out


def _fix(boxes: np.ndarray, dim: int) -> None:
    """Keep boxes valid in place: 2D at least 1 px wide and high around their centre, 3D sizes >= 0.05 m."""
    if dim == 2:
        for lo, hi in ((0, 2), (1, 3)):
            bad = boxes[:, hi] < boxes[:, lo] + 1.0
            c = 0.5 * (boxes[bad, lo] + boxes[bad, hi])
            boxes[bad, lo], boxes[bad, hi] = c - 0.5, c + 0.5
    else:
        np.maximum(boxes[:, 3:6], 0.05, out=boxes[:, 3:6])


def table_markdown() -> str:
    """The severity tables as a Markdown table (docs/audit.md)."""
    rows = ["| degradation | what it simulates | rule (v = table value) | 2D, severity 1..5 | 3D, severity 1..5 |",
            "|---|---|---|---|---|"]
    for name, d in DEGRADATIONS.items():
        t2 = "n/a" if d.table_2d is None else ", ".join(f"{x:g}" for x in d.table_2d) + f" {d.unit_2d}"
        t3 = "n/a" if d.table_3d is None else ", ".join(f"{x:g}" for x in d.table_3d) + f" {d.unit_3d}"
        rows.append(f"| `{name}` | {d.help} | {d.rule} | {t2.strip()} | {t3.strip()} |")
    return "\n".join(rows)
