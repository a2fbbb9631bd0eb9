"""Detection frames as flat arrays (for the cell cache) and back."""
from __future__ import annotations

import numpy as np

__all__ = ["FRAME_KEYS", "pack", "unpack"]

FRAME_KEYS = ("boxes", "scores", "labels", "class_probs", "box_std")


def pack(preds: list, gts: list, dim: int) -> dict:
    """Frames as flat arrays split by counts (for the npz cache). Optional keys (class_probs, box_std) are packed
    when every frame has them."""
    key = "boxes" if dim == 2 else "boxes3d"
    keys = [k for k in FRAME_KEYS if k in ("boxes", "scores", "labels") or
            (preds and all(p.get(k) is not None for p in preds))]
    out = {f"pred_{k}": np.concatenate([p[key if k == "boxes" else k] for p in preds]) for k in keys}
    out["pred_counts"] = np.array([p["scores"].shape[0] for p in preds], np.int64)
    out["gt_boxes"] = np.concatenate([g[key] for g in gts])
    out["gt_labels"] = np.concatenate([g["labels"] for g in gts])
    out["gt_counts"] = np.array([g["labels"].shape[0] for g in gts], np.int64)
    return out


def unpack(z, dim: int):
    key = "boxes" if dim == 2 else "boxes3d"
    cuts = np.cumsum(z["pred_counts"])[:-1]
    keys = [k for k in FRAME_KEYS if f"pred_{k}" in z]
    cols = {k: np.split(z[f"pred_{k}"], cuts) for k in keys}
    preds = [{(key if k == "boxes" else k): cols[k][i] for k in keys} for i in range(len(z["pred_counts"]))]
    gcuts = np.cumsum(z["gt_counts"])[:-1]
    gts = [{key: b, "labels": lab} for b, lab in zip(np.split(z["gt_boxes"], gcuts), np.split(z["gt_labels"], gcuts))]
    return preds, gts
