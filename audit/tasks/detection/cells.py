"""What a cell of the detection audit computes: the simulated detector's frames on the pool of synthetic
scenes, degraded after the fact (clean cell: untouched), packed as flat arrays for the cache."""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from audit.tasks.detection.degradations import apply

FRAME_KEYS = ("boxes", "scores", "labels", "class_probs", "box_std")


def simulate(ctx: dict, name: str, severity: int):
    """(predictions, ground truth) of the pool's frames for one cell.

    Frame i of the clean detector is seeded by (seed, i) only, so every cell starts from the same frames; a
    degradation then transforms them with a generator seeded by (seed, degradation, i), the same at every
    severity (see `audit.tasks.detection.degradations`)."""
    from conformal.detection.synthetic import make_scenes

    dim = ctx["dim"]
    scene = {k: v for k, v in ctx["scene"].items() if k not in ("dim", "n_frames")}
    scene["image_size"] = tuple(scene["image_size"])
    key = "boxes" if dim == 2 else "boxes3d"
    preds, gts = [], []
    for i in range(ctx["n_frames"]):
        rng = np.random.default_rng(np.random.SeedSequence([ctx["seed"], 8117, i]))
        (p,), (g,) = make_scenes(1, dim=dim, rng=rng, **scene, **ctx["detector"])
        if name != "clean":
            drng = np.random.default_rng(np.random.SeedSequence([ctx["seed"], 8119, zlib.crc32(name.encode()), i]))
            p = apply(name, severity, p, g, dim=dim, scene=scene, detector=ctx["detector"], rng=drng)
        # the generator's "_gt_index" is ground truth: it never reaches the conformal detector
        preds.append({key: p[key], "scores": p["scores"], "labels": p["labels"], "class_probs": p["class_probs"],
                      "box_std": p["box_std"]})
        gts.append(g)
    return preds, gts


def pack(preds: list, gts: list, dim: int) -> dict:
    """Frames as flat arrays split by counts (for the npz cache)."""
    key = "boxes" if dim == 2 else "boxes3d"
    out = {f"pred_{k}": np.concatenate([p[key if k == "boxes" else k] for p in preds]) for k in FRAME_KEYS}
    out["pred_counts"] = np.array([p["scores"].shape[0] for p in preds], np.int64)
    out["gt_boxes"] = np.concatenate([g[key] for g in gts])
    out["gt_labels"] = np.concatenate([g["labels"] for g in gts])
    out["gt_counts"] = np.array([g["labels"].shape[0] for g in gts], np.int64)
    return out


def unpack(z, dim: int):
    key = "boxes" if dim == 2 else "boxes3d"
    cuts = np.cumsum(z["pred_counts"])[:-1]
    cols = {k: np.split(z[f"pred_{k}"], cuts) for k in FRAME_KEYS}
    preds = [{(key if k == "boxes" else k): cols[k][i] for k in FRAME_KEYS} for i in range(len(z["pred_counts"]))]
    gcuts = np.cumsum(z["gt_counts"])[:-1]
    gts = [{key: b, "labels": lab} for b, lab in zip(np.split(z["gt_boxes"], gcuts), np.split(z["gt_labels"], gcuts))]
    return preds, gts


def compute_cell(ctx: dict, cell: dict) -> dict:
    """The packed frames of one cell (called by the executors; errors are caught there)."""
    preds, gts = simulate(ctx, cell["name"], cell["severity"])
    return pack(preds, gts, ctx["dim"])


def code_digest() -> str:
    from audit.runner.cache import fingerprint
    from audit.tasks.detection import degradations
    from conformal.detection import synthetic

    return fingerprint(*[Path(m.__file__).read_bytes().decode() for m in (synthetic, degradations)])


def describe(cfg: dict) -> str:
    p = cfg["data"]["params"]
    where = (f"{p['image_size'][1]}x{p['image_size'][0]} px images" if p["dim"] == 2
             else f"3D LiDAR-style scenes up to {p['max_range']:g} m")
    return (f"SYNTHETIC {p['dim']}D detection scenes ({p['n_frames']} frames of {where}, {p['n_classes']} classes, "
            f"~{p['mean_objects']:g} objects per frame) seen by a SIMULATED detector "
            "(conformal.detection.synthetic)")
