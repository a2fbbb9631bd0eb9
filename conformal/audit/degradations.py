"""Detector degradations of the detection audit: named, severity-parameterised changes to a SIMULATED detector.

No real detector or detection data set can run offline in this project, so the detection audit corrupts the
detector simulated by `conformal.detection.synthetic.make_scenes` instead of its inputs. Each degradation maps
the clean detector's parameters and a severity (1-5) to degraded parameters (and, for `box_shift`, a
deterministic post-hoc offset of the predicted boxes). The severity tables are data, beside the code, in the
style of ImageNet-C: adding a degradation is one table row.

Every value is *added to* the clean detector (a probability p becomes 1 - (1 - p)(1 - v)), so severity 1 is
always worse than clean, and severity 5 worse than severity 4.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DEGRADATIONS", "Degradation", "degradation_names", "degrade", "shift_boxes"]


@dataclass(frozen=True)
class Degradation:
    """One detector degradation: what it simulates, which parameter it changes, and its severity tables."""

    help: str
    rule: str  # how the table value v changes the clean parameter (for docs and `conformal-audit list`)
    table_2d: tuple | None  # values at severity 1..5 for 2D scenes (None: not defined in 2D)
    table_3d: tuple | None  # values at severity 1..5 for 3D scenes
    unit_2d: str = ""
    unit_3d: str = ""

    def table(self, dim: int) -> tuple | None:
        return self.table_2d if dim == 2 else self.table_3d


def _combine(p: float, v: float) -> float:
    """Probability of either of two independent events (the clean one with p, the degradation's with v)."""
    return 1.0 - (1.0 - p) * (1.0 - v)


DEGRADATIONS = {
    "sensor_noise": Degradation(
        "sensor noise: localisation noise of every box grows", "noise and noise_growth multiplied by v",
        (1.5, 2.0, 3.0, 4.0, 6.0), (1.5, 2.0, 3.0, 4.0, 6.0), "x", "x"),
    "occlusion": Degradation(
        "occlusion: objects are missed more often", "miss_rate -> 1 - (1 - miss_rate)(1 - v)",
        (0.1, 0.2, 0.3, 0.45, 0.6), (0.1, 0.2, 0.3, 0.45, 0.6), "extra miss prob.", "extra miss prob."),
    "clutter": Degradation(
        "clutter: more false positives per frame", "fp_rate -> fp_rate + v",
        (1.0, 2.0, 4.0, 7.0, 12.0), (1.0, 2.0, 4.0, 7.0, 12.0), "extra FP/frame", "extra FP/frame"),
    "class_confusion": Degradation(
        "class confusion: class evidence points at a wrong class", "confusion -> 1 - (1 - confusion)(1 - v)",
        (0.1, 0.2, 0.3, 0.45, 0.6), (0.1, 0.2, 0.3, 0.45, 0.6), "extra confusion prob.", "extra confusion prob."),
    "box_shift": Degradation(
        "systematic box shift (e.g. camera-detector misalignment): every predicted box moves",
        "2D: boxes move v px right and down; 3D: centres move v m along +x",
        (2.0, 4.0, 6.0, 9.0, 12.0), (0.1, 0.2, 0.3, 0.5, 0.8), "px", "m"),
    "box_shrink": Degradation(
        "systematic box shrink: predicted boxes too small (3D: also pulled toward the sensor)", "bias -> bias + v",
        (1.0, 2.0, 3.0, 5.0, 8.0), (0.05, 0.1, 0.15, 0.25, 0.4), "px per side", "m"),
    "heading_flip": Degradation(
        "heading flips: yaw off by pi (3D only)", "flip_rate -> 1 - (1 - flip_rate)(1 - v)",
        None, (0.02, 0.05, 0.1, 0.2, 0.3), "", "extra flip prob."),
}


def degradation_names(dim: int | None = None) -> list:
    """Names of the degradations defined for `dim` (2 or 3), or all names."""
    return [k for k, d in DEGRADATIONS.items() if dim is None or d.table(dim) is not None]


def degrade(name: str, severity: int, detector: dict, dim: int) -> tuple[dict, float]:
    """Degraded simulated-detector parameters and the box shift (0 unless `box_shift`).

    `detector` holds the clean parameters of `make_scenes` (noise and noise_growth already resolved to numbers);
    it is not modified.
    """
    if name not in DEGRADATIONS:
        raise ValueError(f"`name` must be one of {', '.join(DEGRADATIONS)}; got {name!r}")
    table = DEGRADATIONS[name].table(dim)
    if table is None:
        raise ValueError(f"degradation {name!r} is not defined for dim={dim}")
    if isinstance(severity, bool) or severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"`severity` must be an integer in 1..5; got {severity!r}")
    v = float(table[severity - 1])
    out = dict(detector)
    shift = 0.0
    if name == "sensor_noise":
        out["noise"] = detector["noise"] * v
        out["noise_growth"] = detector["noise_growth"] * v
    elif name == "occlusion":
        out["miss_rate"] = min(_combine(detector["miss_rate"], v), 0.99)
    elif name == "clutter":
        out["fp_rate"] = detector["fp_rate"] + v
    elif name == "class_confusion":
        out["confusion"] = _combine(detector["confusion"], v)
    elif name == "box_shift":
        shift = v
    elif name == "box_shrink":
        out["bias"] = detector["bias"] + v
    elif name == "heading_flip":
        out["flip_rate"] = _combine(detector["flip_rate"], v)
    return out, shift


def shift_boxes(boxes: np.ndarray, shift: float, dim: int) -> np.ndarray:
    """A new array: 2D xyxy boxes moved `shift` px right and down, 3D boxes moved `shift` m along +x."""
    out = np.array(boxes, dtype=np.float64, copy=True)
    if shift:
        if dim == 2:
            out[:, :4] += shift
        else:
            out[:, 0] += shift
    return out


def table_markdown() -> str:
    """The severity tables as a Markdown table (docs/audit.md)."""
    rows = ["| degradation | what it simulates | rule | 2D, severity 1..5 | 3D, severity 1..5 |",
            "|---|---|---|---|---|"]
    for name, d in DEGRADATIONS.items():
        t2 = "n/a" if d.table_2d is None else ", ".join(f"{v:g}" for v in d.table_2d) + f" {d.unit_2d}"
        t3 = "n/a" if d.table_3d is None else ", ".join(f"{v:g}" for v in d.table_3d) + f" {d.unit_3d}"
        rows.append(f"| `{name}` | {d.help} | {d.rule} | {t2.strip()} | {t3.strip()} |")
    return "\n".join(rows)
