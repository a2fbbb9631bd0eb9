"""Detector degradations: named, severity-parameterised changes to the output of a SIMULATED detector.

No real detector or detection data set can run offline in this project, so the detection audit degrades the
output of the detector simulated by `adapters.datasets.make_scenes` instead of corrupting sensor data. A
degradation transforms one prediction frame of the clean detector after the fact, with a generator of its
own (the audit seeds it by its seed, the degradation's name and the frame, never by the severity). So:

- everything a degradation does not touch is identical to the clean frame (same detections, same noise), and
  a difference between audit cells comes from the degradation alone;
- severities are nested: the objects occluded at severity 3 include those occluded at severity 1, the clutter
  at severity 5 includes that of severity 4, the noise added at severity 5 is the same draw scaled up.

Every degradation is one function and one table row (``"2d.v"`` / ``"3d.v"``: the value v at severity 1..5
for 2D and 3D scenes), registered as modality ``"detections"`` in the package's one registry; the frame's
"_gt_index" (the true object of each detection, -1 for a false positive) lets occlusion and confusion hit
true objects only, and never reaches a conformal detector. The generator supplies only the per-detection
draws, so a degradation's sampled params are its table value; what it drew (how many detections it dropped,
added, relabelled or flipped) comes back as `info` in ``perturbations.registry.corrupt_logged``.

Examples
--------
>>> import numpy as np
>>> from adapters.datasets import make_scenes
>>> (pred,), (gt,) = make_scenes(1, rng=0, mean_objects=8.0)
>>> ctx = {"scene": {"n_classes": 4, "image_size": (480, 640), "max_range": 70.0},
...        "detector": {"noise": 2.0, "noise_growth": 0.03, "class_signal": 3.0}}
>>> out = corrupt(pred, "clutter", 5, rng=0, gt=gt, dim=2, **ctx)
>>> added = out["_gt_index"][len(pred["scores"]):]  # the clean rows first, then the extra false positives
>>> len(added) > 0, bool((added == -1).all())
(True, True)
>>> names("3d")[-1], value("box_shift", 2, dim=3)
('heading_flip', 0.2)
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from functools import partial

import numpy as np

from ._common import as_generator, check_severity
from .false_positives import NOISE_GROWTH, default_noise, false_positives_2d, false_positives_3d, prediction_frame
from .registry import Corruption, Modality, check_options, register
from .registry import names as _names

__all__ = ["REGISTRY", "corrupt", "apply", "names", "degradation_names", "value", "table_markdown", "OPTIONS"]

OPTIONS = ("gt", "dim", "scene", "detector")


def _key(dim: int) -> str:
    return "boxes" if dim == 2 else "boxes3d"


def _copy(pred: dict) -> dict:
    return {k: np.array(a, copy=True) for k, a in pred.items()}


def _take(pred: dict, rows: np.ndarray) -> dict:
    return {k: v[rows] for k, v in pred.items()}


def _need(arg: str, mapping: Mapping, keys) -> None:
    lacking = [k for k in keys if k not in mapping]
    if lacking:
        raise ValueError(f"`{arg}` lacks {lacking}: pass the make_scenes keyword arguments of the clean frames")


def _fix(boxes: np.ndarray, dim: int) -> None:
    """Keep boxes valid in place: 2D at least 1 px wide and high around their centre, 3D sizes >= 0.05 m."""
    if dim == 2:
        for lo, hi in ((0, 2), (1, 3)):
            bad = boxes[:, hi] < boxes[:, lo] + 1.0
            c = 0.5 * (boxes[bad, lo] + boxes[bad, hi])
            boxes[bad, lo], boxes[bad, hi] = c - 0.5, c + 0.5
    else:
        np.maximum(boxes[:, 3:6], 0.05, out=boxes[:, 3:6])


# ------------------------------------------------------------------------------------------ the degradations
# Each takes (pred, params, rng, *, gt, dim, scene, detector) and returns (new frame, info); pred is not modified.
def sensor_noise(pred, p, rng, *, gt, dim, scene, detector):
    """Extra Gaussian box noise: the total noise is v x the detector's, and box_std grows by v."""
    v = p["v"]
    out = _copy(pred)
    boxes = out[_key(dim)]
    z = rng.standard_normal(boxes.shape)
    boxes += math.sqrt(v * v - 1.0) * out["box_std"] * z
    out["box_std"] *= v
    _fix(boxes, dim)
    return out, {}


def occlusion(pred, p, rng, *, gt, dim, scene, detector):
    """Detected objects disappear, small (2D) or distant (3D) ones first; false positives stay."""
    v, key = p["v"], _key(dim)
    out = _copy(pred)
    m = out["scores"].shape[0]
    true = out["_gt_index"] >= 0
    u = rng.random(m)
    g = gt[key][out["_gt_index"][true]]
    if dim == 2:
        factor = np.clip(64.0 / np.sqrt((g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])), 0.25, 4.0)
    else:
        _need("scene", scene, ("max_range",))
        factor = 0.3 + 1.4 * np.hypot(g[:, 0], g[:, 1]) / scene["max_range"]
    prob = np.zeros(m)
    prob[true] = np.minimum(0.95, v * factor)
    kept = np.flatnonzero(u >= prob)
    return _take(out, kept), {"n_dropped": int(m - kept.size)}


def clutter(pred, p, rng, *, gt, dim, scene, detector):
    """Extra false positives, drawn like the simulator's own (`perturbations.false_positives`).

    Poisson(v_max) candidates (v_max: the table's largest v) are thinned with one uniform each, kept below
    v / v_max: Poisson(v), and the same candidates at every severity, so clutter nests in severity.
    """
    v, v_max = p["v"], p["v_max"]
    key = _key(dim)
    _need("scene", scene, ("n_classes", "image_size" if dim == 2 else "max_range"))
    _need("detector", detector, ("class_signal",))
    out = _copy(pred)
    noise = detector.get("noise")
    noise = default_noise(dim) if noise is None else noise
    if dim == 2:
        growth = detector.get("noise_growth")
        parts = false_positives_2d(rng, scene["n_classes"], tuple(scene["image_size"]), v_max, noise,
                                   NOISE_GROWTH if growth is None else growth, detector["class_signal"])
    else:
        parts = false_positives_3d(rng, scene["n_classes"], scene["max_range"], v_max, detector["class_signal"],
                                   np.full(7, noise))
    boxes, box_std, scores, probs = parts
    fp = prediction_frame(key, boxes, scores, probs, box_std, np.full(boxes.shape[0], -1), rng)
    extra = _take(fp, np.flatnonzero(rng.random(boxes.shape[0]) < v / v_max))
    out = {k: np.concatenate([out[k], extra[k].astype(out[k].dtype)]) for k in out}
    return out, {"n_added": int(extra["scores"].shape[0])}


def class_confusion(pred, p, rng, *, gt, dim, scene, detector):
    """With prob. v the class probabilities of a detected object are rotated to a random wrong class."""
    v = p["v"]
    out = _copy(pred)
    m = out["scores"].shape[0]
    true = out["_gt_index"] >= 0
    u = rng.random(m)
    k = out["class_probs"].shape[1]
    shift = rng.integers(1, k, m)
    hit = np.flatnonzero(true & (u < v))
    for i in hit:
        # iid logits plus signal at the target: rotating them is the simulator's own confusion, in law
        out["class_probs"][i] = np.roll(out["class_probs"][i], shift[i])
    out["labels"] = np.argmax(out["class_probs"], axis=1).astype(out["labels"].dtype)
    return out, {"n_confused": int(hit.size)}


def box_shift(pred, p, rng, *, gt, dim, scene, detector):
    """Every 2D box moves v px right and down; every 3D centre moves v m along +x."""
    v = p["v"]
    out = _copy(pred)
    boxes = out[_key(dim)]
    if dim == 2:
        boxes[:, :4] += v
    else:
        boxes[:, 0] += v
    return out, {}


def box_shrink(pred, p, rng, *, gt, dim, scene, detector):
    """2D: every side moves v px inward; 3D: l, w, h shrink by v m and centres move v m toward the sensor."""
    v = p["v"]
    out = _copy(pred)
    boxes = out[_key(dim)]
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
    return out, {}


def heading_flip(pred, p, rng, *, gt, dim, scene, detector):
    """With prob. v the yaw of a detection turns by pi (3D only)."""
    out = _copy(pred)
    boxes = out[_key(dim)]
    flip = rng.random(out["scores"].shape[0]) < p["v"]
    boxes[flip, 6] += math.pi  # left unwrapped, as the simulator does
    return out, {"n_flipped": int(flip.sum())}


# ------------------------------------------------------------------------------------------------ tables
def _rows(v2d, v3d) -> tuple:
    """Five rows {"2d.v", "3d.v"} (a None column: not defined for that dim)."""
    cols = {f"{d}.v": vals for d, vals in (("2d", v2d), ("3d", v3d)) if vals is not None}
    return tuple({k: float(vals[s]) for k, vals in cols.items()} for s in range(5))


# name: (group, what it simulates, rule (v = table value), 2D values, 3D values, unit 2D, unit 3D)
_SPEC = {
    "sensor_noise": ("localisation", "sensor noise: every box is localised worse",
                     "extra Gaussian box noise, sd sqrt(v^2 - 1) x box_std (total noise x v); box_std x v",
                     (1.5, 2.0, 3.0, 4.0, 6.0), (1.5, 2.0, 3.0, 4.0, 6.0), "x noise", "x noise"),
    "occlusion": ("recall", "occlusion: detected objects disappear, small (2D) or distant (3D) ones first",
                  "each detected object is dropped with prob. min(0.95, v x f); f = clip(64 px / sqrt(area), 0.25, 4) "
                  "in 2D, 0.3 + 1.4 range / max_range in 3D (the simulator's own miss model)",
                  (0.1, 0.2, 0.3, 0.45, 0.6), (0.1, 0.2, 0.3, 0.45, 0.6), "", ""),
    "clutter": ("false_positives", "clutter: extra false positives, drawn like the simulator's own",
                "Poisson(v) extra false positives per frame", (1.0, 2.0, 4.0, 7.0, 12.0), (1.0, 2.0, 4.0, 7.0, 12.0),
                "FP/frame", "FP/frame"),
    "class_confusion": ("classification",
                        "class confusion: the class evidence of a detected object points at a wrong class",
                        "with prob. v the class probabilities of a detected object are rotated to a random wrong class",
                        (0.1, 0.2, 0.3, 0.45, 0.6), (0.1, 0.2, 0.3, 0.45, 0.6), "", ""),
    "box_shift": ("localisation", "systematic box shift (e.g. camera-detector misalignment)",
                  "2D: every box moves v px right and down; 3D: every centre moves v m along +x",
                  (2.0, 4.0, 6.0, 9.0, 12.0), (0.1, 0.2, 0.3, 0.5, 0.8), "px", "m"),
    "box_shrink": ("localisation", "systematic box shrink: boxes too small",
                   "2D: every side moves v px inward; 3D: l, w, h shrink by v m and centres move v m toward the sensor",
                   (1.0, 2.0, 3.0, 5.0, 8.0), (0.05, 0.1, 0.15, 0.25, 0.4), "px", "m"),
    "heading_flip": ("localisation", "heading flips (3D only)", "with prob. v the yaw of a detection turns by pi",
                     None, (0.02, 0.05, 0.1, 0.2, 0.3), "", ""),
}


# ------------------------------------------------------------------------------------------------ registry
def _sample(name, severity, pred, rng, *, gt, dim, scene, detector):
    entry = REGISTRY[name]
    params = {"v": entry.row(severity, f"{dim}d")["v"]}
    if name == "clutter":
        params["v_max"] = max(r[f"{dim}d.v"] for r in entry.table)
    return params


def _prepare(pred, entry, options):
    check_options(entry, options)
    missing = [k for k in OPTIONS if k not in options]
    if missing:
        raise TypeError(f"detector degradation {entry.name!r} needs the option(s) {missing} "
                        f"(it takes {', '.join(OPTIONS)})")
    dim = options["dim"]
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim not in (2, 3):
        raise ValueError(f"`dim` must be 2 or 3; got {dim!r}")
    if f"{dim}d" not in entry.tags:
        raise ValueError(f"degradation {entry.name!r} is not defined for dim={dim}")
    key = _key(dim)
    for arg, frame, keys in (("pred", pred, (key, "scores", "labels", "class_probs", "box_std", "_gt_index")),
                             ("gt", options["gt"], (key, "labels"))):
        if not isinstance(frame, Mapping):
            raise TypeError(f"`{arg}` must be a dict frame of arrays (make_scenes); got {type(frame).__name__}")
        lacking = [k for k in keys if k not in frame]
        if lacking:
            raise ValueError(f"`{arg}` lacks {lacking}; a {dim}D frame of make_scenes has {list(keys)}")
    for arg in ("scene", "detector"):
        if not isinstance(options[arg], Mapping):
            raise TypeError(f"`{arg}` must be a dict of make_scenes keyword arguments; "
                            f"got {type(options[arg]).__name__}")
    return pred, options


def _same(out, pred):
    return out


def _entry(name, spec):
    group, doc, rule, v2d, v3d, unit2d, unit3d = spec
    units = {k: u for k, u, vals in (("2d.v", unit2d, v2d), ("3d.v", unit3d, v3d)) if u and vals is not None}
    return Corruption(name=name, modality="detections", group=group, table=_rows(v2d, v3d),
                      sample=partial(_sample, name), apply=globals()[name], options=OPTIONS,
                      tags=tuple(d for d, vals in (("2d", v2d), ("3d", v3d)) if vals is not None), doc=doc, rule=rule,
                      reference="this project: degradations of the simulated detector (docs/audit.md)", units=units)


MODALITY = Modality("detections", _prepare, _same)
REGISTRY = register(MODALITY, [_entry(n, spec) for n, spec in _SPEC.items()])


# ------------------------------------------------------------------------------------------------ public
def names(subset: str = "all") -> tuple:
    """Names of the degradations in `subset`: "all", "2d", "3d" (defined for that dim) or a group
    ("localisation", "recall", "false_positives", "classification")."""
    return _names("detections", subset)


def degradation_names(dim: int | None = None) -> list:
    """Names of the degradations defined for `dim` (2 or 3), or all names."""
    return list(names("all" if dim is None else f"{dim}d"))


def value(name: str, severity: int, dim: int) -> float:
    """The table value v of a degradation at a severity."""
    if name not in REGISTRY:
        raise ValueError(f"`name` must be one of {', '.join(REGISTRY)}; got {name!r}")
    if f"{dim}d" not in REGISTRY[name].tags:
        raise ValueError(f"degradation {name!r} is not defined for dim={dim}")
    if isinstance(severity, bool) or severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"`severity` must be an integer in 1..5; got {severity!r}")
    return REGISTRY[name].row(severity, f"{dim}d")["v"]


def corrupt(pred: dict, name: str, severity: int, rng=None, *, gt: dict, dim: int, scene: dict,
            detector: dict) -> dict:
    """One prediction frame of the simulated detector, degraded; a new dict (the inputs are not modified).

    Parameters
    ----------
    pred : dict
        A `make_scenes` prediction frame including "_gt_index".
    name : str
        One of ``names()``; ``heading_flip`` is 3D only.
    severity : int in 1..5
    rng : None, int or numpy.random.Generator
        The degradation's own generator (the audit's: seeded by seed, degradation and frame, the same at
        every severity, which makes severities nested).
    gt : dict
        The frame's ground truth.
    dim : 2 or 3
    scene, detector : dict
        The `make_scenes` keyword arguments of the clean frames (scene: n_classes, image_size, max_range;
        detector: noise, noise_growth, class_signal, ...).
    """
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"`name` must be one of {', '.join(REGISTRY)}; got {name!r}")
    severity = check_severity(severity)
    entry = REGISTRY[name]
    options = {"gt": gt, "dim": dim, "scene": scene, "detector": detector}
    pred, options = _prepare(pred, entry, options)
    gen = as_generator(rng)
    out, _ = entry.apply(pred, entry.sample(severity, pred, gen, **options), gen, **options)
    return out


def apply(name: str, severity: int, pred: dict, gt: dict, *, dim: int, scene: dict, detector: dict,
          rng: np.random.Generator) -> dict:
    """`corrupt` with the argument order of the audit's former ``conformal.audit.degradations.apply``."""
    return corrupt(pred, name, severity, rng, gt=gt, dim=dim, scene=scene, detector=detector)


def table_markdown() -> str:
    """The severity tables as a Markdown table (docs/audit.md)."""
    rows = ["| degradation | what it simulates | rule (v = table value) | 2D, severity 1..5 | 3D, severity 1..5 |",
            "|---|---|---|---|---|"]
    for name, e in REGISTRY.items():
        cells = []
        for d in ("2d", "3d"):
            k = f"{d}.v"
            cells.append("n/a" if d not in e.tags else
                         (", ".join(f"{r[k]:g}" for r in e.table) + f" {e.units.get(k, '')}").strip())
        rows.append(f"| `{name}` | {e.doc} | {e.rule} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)
