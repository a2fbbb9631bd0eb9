"""Input checks for detection frames (one place, as conformal._validation is for the core).

A frame is a dict in the torchvision convention: {"boxes": (M, 4) xyxy, "scores": (M,), "labels": (M,)} with
optional "class_probs" (M, K) and "box_std" (M, 4); 3D frames use "boxes3d" (M, 7) = x, y, z, l, w, h, yaw and
optional "box_std" (M, 7). Ground truth has the same form without scores. M = 0 is valid (an empty frame).
Arrays may be NumPy arrays or CPU torch tensors; nothing is copied unless a dtype must change, nothing is
modified, and any problem raises a ValueError/TypeError that names the frame, the key and the fix.
"""
from __future__ import annotations

import math

import numpy as np

from conformal._validation import as_array
from conformal.detection import _kernels as _k

BOX_KEY = {2: "boxes", 3: "boxes3d"}
BOX_DIM = {2: 4, 3: 7}
TWO_PI = 2.0 * math.pi


def check_dim(dim) -> int:
    if dim not in (2, 3) or isinstance(dim, bool):
        raise ValueError(f"`dim` must be 2 (image boxes xyxy) or 3 (BEV/3D boxes x,y,z,l,w,h,yaw); got {dim!r}")
    return int(dim)


def wrap_angle(a, period: float = TWO_PI):
    """Map angles into [-period/2, period/2)."""
    return (a + 0.5 * period) % period - 0.5 * period


def _float_array(x, where: str, shape_tail: tuple, frame: str, finite: bool = True) -> np.ndarray:
    arr = as_array(x, where)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{frame}`{where}` must be a numeric array; got dtype {arr.dtype}")
    expected_ndim = 1 + len(shape_tail)
    if arr.ndim != expected_ndim or tuple(arr.shape[1:]) != shape_tail:
        want = "(M" + "".join(f", {s}" for s in shape_tail) + ")"
        raise ValueError(f"{frame}`{where}` must have shape {want}; got {arr.shape}"
                         + (" (an empty frame is np.zeros((0, %d)))" % shape_tail[0] if shape_tail and arr.size == 0
                            else ""))
    arr = arr.astype(np.float64, copy=False)
    if finite and not np.isfinite(arr).all():
        row = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise ValueError(f"{frame}`{where}` must be finite; row {row} holds NaN or inf")
    return arr


def check_boxes(boxes, dim: int, where: str = "boxes", frame: str = "") -> np.ndarray:
    """(M, 4) xyxy with x2 >= x1 and y2 >= y1, or (M, 7) with l, w, h >= 0; float64 view/copy.

    Yaw may be any finite angle; it is wrapped into [-pi, pi) by the code that uses it, never here (inputs are
    not modified)."""
    arr = _float_array(boxes, where, (BOX_DIM[dim],), frame, finite=False)
    row, code = _k.box_errors(arr, dim)  # one compiled pass instead of several NumPy reductions
    if code == 1:
        raise ValueError(f"{frame}`{where}` must be finite; row {row} holds NaN or inf")
    if code == 2:
        raise ValueError(f"{frame}`{where}` must be xyxy with x2 >= x1 and y2 >= y1; row {row} is "
                         f"{arr[row].tolist()} (convert xywh/cxcywh boxes to xyxy first)")
    if code == 3:
        raise ValueError(f"{frame}`{where}` sizes l, w, h (columns 3-5) must be >= 0; row {row} is {arr[row].tolist()}")
    return arr


def check_frame(frame, dim: int, *, kind: str = "prediction", index: int | None = None,
                n_classes: int | None = None) -> dict:
    """Validate one frame; return a dict of float64/int64 NumPy arrays (boxes, scores, labels, class_probs,
    box_std; missing optional keys are None). `kind` is "prediction" (scores required) or "ground truth"."""
    where = f"{kind} frame {index}: " if index is not None else f"{kind} frame: "
    if not isinstance(frame, dict):
        raise TypeError(f"{where}must be a dict like {{'{BOX_KEY[dim]}': ..., 'labels': ...}}; got "
                        f"{type(frame).__name__}")
    key = BOX_KEY[dim]
    if key not in frame:
        other = BOX_KEY[5 - dim]
        hint = f" (it has {other!r}: use dim={5 - dim})" if other in frame else ""
        raise ValueError(f"{where}missing key {key!r}{hint}; keys present: {sorted(frame)}")
    boxes = check_boxes(frame[key], dim, key, where)
    m = boxes.shape[0]
    out = {"boxes": boxes, "scores": None, "labels": None, "class_probs": None, "box_std": None}
    if "labels" not in frame:
        raise ValueError(f"{where}missing key 'labels' (use np.zeros(M, int) for a single-class detector)")
    labels = as_array(frame["labels"], "labels")
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise TypeError(f"{where}`labels` must be a 1-D integer array; got dtype {labels.dtype}, shape {labels.shape}")
    if labels.shape[0] != m:
        raise ValueError(f"{where}`labels` has {labels.shape[0]} entries but `{key}` has {m} rows")
    if m and labels.min() < 0:
        raise ValueError(f"{where}`labels` must be >= 0; got {int(labels.min())}")
    if n_classes is not None and m and labels.max() >= n_classes:
        raise ValueError(f"{where}`labels` must be < n_classes={n_classes}; got {int(labels.max())}")
    out["labels"] = labels.astype(np.int64, copy=False)
    if kind == "prediction":
        if "scores" not in frame:
            raise ValueError(f"{where}missing key 'scores' (the detector's confidence per box)")
        scores = _float_array(frame["scores"], "scores", (), where)
        if scores.shape[0] != m:
            raise ValueError(f"{where}`scores` has {scores.shape[0]} entries but `{key}` has {m} rows")
        out["scores"] = scores
        if frame.get("class_probs") is not None:
            cp = as_array(frame["class_probs"], "class_probs")
            if cp.dtype not in (np.float32, np.float64) or cp.ndim != 2 or cp.shape[0] != m:
                raise ValueError(f"{where}`class_probs` must be a float (M={m}, K) array; got dtype {cp.dtype}, "
                                 f"shape {cp.shape}")
            if n_classes is not None and cp.shape[1] != n_classes:
                raise ValueError(f"{where}`class_probs` has {cp.shape[1]} classes; expected {n_classes}")
            out["class_probs"] = cp
    if frame.get("box_std") is not None:
        std = _float_array(frame["box_std"], "box_std", (BOX_DIM[dim],), where)
        if std.shape[0] != m:
            raise ValueError(f"{where}`box_std` has {std.shape[0]} rows but `{key}` has {m}")
        if m and (std <= 0).any():
            raise ValueError(f"{where}`box_std` must be > 0 (a per-coordinate uncertainty); got min {std.min()}")
        out["box_std"] = std
    return out


def check_frames(frames, dim: int, kind: str, n_classes: int | None = None) -> list[dict]:
    if not isinstance(frames, (list, tuple)):
        raise TypeError(f"`{kind}` frames must be a list of dicts (one per image); got {type(frames).__name__}")
    return [check_frame(f, dim, kind=kind, index=i, n_classes=n_classes) for i, f in enumerate(frames)]


def check_frame_pairs(predictions, ground_truth, dim: int) -> tuple[list, list]:
    """Checked prediction and ground-truth frames (see `check_frames`), which must come in equal numbers."""
    preds = check_frames(predictions, dim, "prediction")
    gts = check_frames(ground_truth, dim, "ground truth")
    if len(preds) != len(gts):
        raise ValueError(f"got {len(preds)} prediction frames but {len(gts)} ground-truth frames")
    return preds, gts
