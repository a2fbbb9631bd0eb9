"""Every input check of the public API, in one place.

Messages follow one pattern: "`name` must be ...; got ...", plus the fix where there is one.
Nothing here copies or coerces data silently: arrays come back as views of what the caller passed.
"""
from __future__ import annotations

import numbers

import numpy as np

from conformal._kernels import checks as _kc
from conformal._kernels import scores as _k

# Row sums of probability inputs may deviate from 1 by this much (float32 softmax outputs are often off by ~1e-7).
ROW_SUM_TOL = 1e-3


class NotFittedError(ValueError, AttributeError):
    """Raised when a calibrator is used before `fit`."""


def check_is_fitted(obj, attribute: str = "qhat_") -> None:
    if not hasattr(obj, attribute):
        raise NotFittedError(f"this {type(obj).__name__} is not fitted yet; call fit first")


def as_array(x, name: str) -> np.ndarray:
    """A NumPy view of `x`: ndarrays pass through, CPU torch tensors are shared without copying, CUDA (or other
    device) tensors are copied to the host once (one synchronising device-to-host copy of the whole tensor, e.g.
    200 MB and tens of ms for 50,000 x 1,000 float32), and lists / tuples of numbers become arrays (their dtype is
    NumPy's: Python floats give float64, NumPy float32 scalars float32; nothing is rounded).

    torch is never imported here; a tensor is recognised by its type's module, so the core works without torch.
    """
    if isinstance(x, np.ndarray):
        return x
    module = type(x).__module__ or ""
    if module.startswith("torch"):
        x = x.detach()
        device = getattr(getattr(x, "device", None), "type", "cpu")
        return (x if device == "cpu" else x.cpu()).numpy()  # CPU: shares memory with the tensor
    if isinstance(x, (list, tuple)):
        try:
            arr = np.asarray(x)
        except ValueError:
            raise ValueError(f"`{name}` given as a {type(x).__name__} must be rectangular (every row the same "
                             f"length)") from None
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"`{name}` given as a {type(x).__name__} must hold numbers; got elements of dtype "
                            f"{arr.dtype}")
        return arr
    raise TypeError(f"`{name}` must be a numpy array or a torch tensor (or a list of numbers); got {type(x).__name__}")


def check_scores_matrix(x, name: str = "probs", *, inputs: str = "probs", n_classes: int | None = None,
                        values: bool = True) -> np.ndarray:
    """Validate an (n, K) matrix of probabilities (or logits) and return it unchanged (float32/float64).

    values=False checks only type and shape; the score kernels check values row by row as they read them
    (`raise_row_error` turns their codes into the same messages).
    """
    arr = as_array(x, name)
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"`{name}` must be a float32 or float64 array; got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D (n_samples, n_classes); got shape {arr.shape}"
                         + (" (use probs[None, :] for a single row)" if arr.ndim == 1 else ""))
    n, k = arr.shape
    if n < 1:
        raise ValueError(f"`{name}` must have at least 1 row; got shape {arr.shape}")
    if k < 2:
        raise ValueError(f"`{name}` must have at least 2 classes (columns); got {k}")
    if n_classes is not None and k != n_classes:
        raise ValueError(f"`{name}` has {k} classes but the calibrator was fitted with {n_classes}")
    if not values:
        return arr
    # one compiled pass over the rows (finite, in [0, 1], sums), no n x K temporaries
    errs = np.empty(n, dtype=np.int8)
    (_k.check_rows_serial if arr.size <= 1 << 15 else _k.check_rows)(arr, inputs != "probs", errs)
    raise_row_error(errs, arr, name)
    return arr


def raise_row_error(errs: np.ndarray, x: np.ndarray, name: str = "probs") -> None:
    """Raise the ValueError for the first row a kernel flagged (codes from conformal._kernels.scores)."""
    if errs.shape[0] <= 256 and not errs.tobytes().strip(b"\x00"):  # per-frame calls: no flatnonzero
        return
    bad = np.flatnonzero(errs)
    if bad.size == 0:
        return
    row = int(bad[0])
    code = int(errs[row])
    if code == 1:
        raise ValueError(f"`{name}` must be finite; row {row} holds NaN or inf")
    if code == 2:
        raise ValueError(f"`{name}` must hold probabilities in [0, 1]; row {row} does not "
                         f"(pass inputs='logits' for raw model outputs)")
    total = float(np.sum(x[row], dtype=np.float64))
    raise ValueError(f"`{name}` rows must sum to 1 within {ROW_SUM_TOL:g}; row {row} sums to {total:.6g} "
                     f"(pass inputs='logits' for raw model outputs)")


def check_labels(y, n_samples: int, n_classes: int, name: str = "labels") -> np.ndarray:
    """Integer labels in [0, n_classes), one per row; returned as an int64 view or (for other int widths) copy."""
    arr = as_array(y, name)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be 1-D; got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"`{name}` must have one entry per row of probs ({n_samples}); got {arr.shape[0]}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"`{name}` must be an integer array; got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= n_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"`{name}` must lie in [0, {n_classes}); index {i} holds {arr[i]}")
    return arr.astype(np.int64, copy=False)


def check_alpha(alpha, name: str = "alpha") -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"`{name}` must be a float in (0, 1); got {type(alpha).__name__}")
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"`{name}` must be in (0, 1) (the miscoverage level); got {alpha}")
    return alpha


def check_sets(sets, name: str = "sets") -> np.ndarray:
    arr = as_array(sets, name)
    if arr.dtype != np.bool_:
        raise TypeError(f"`{name}` must be a boolean (n, K) array; got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"`{name}` must be a non-empty 2-D (n, K) array; got shape {arr.shape}")
    return arr


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int >= {minimum}; got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}")
    return int(value)


def check_nonneg_float(value, name: str, *, strictly_positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a float; got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (strictly_positive and value == 0):
        raise ValueError(f"`{name}` must be a finite float {'> 0' if strictly_positive else '>= 0'}; got {value}")
    return value


def check_statistic(x, name: str = "statistic", n: int | None = None) -> np.ndarray:
    """A finite 1-D real array, returned as float64 (a copy only when the dtype differs)."""
    arr = as_array(x, name)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.float16:
        raise TypeError(f"`{name}` must be a real (float or int) array; got dtype {arr.dtype}")
    if arr.ndim != 1 or arr.shape[0] < 1:
        raise ValueError(f"`{name}` must be a non-empty 1-D array; got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"`{name}` must have {n} entries (one per sample); got {arr.shape[0]}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"`{name}` must be finite; index {int(np.argmin(np.isfinite(arr)))} is NaN or inf")
    return arr.astype(np.float64, copy=False)


def check_flags(x, name: str, n: int) -> np.ndarray:
    arr = as_array(x, name)
    if arr.dtype != np.bool_:
        raise TypeError(f"`{name}` must be a boolean array (True = event); got dtype {arr.dtype} "
                        f"(use `{name}.astype(bool)` if it holds 0/1)")
    if arr.shape != (n,):
        raise ValueError(f"`{name}` must have shape ({n},), one flag per sample; got {arr.shape}")
    return arr


# --- scores ----------------------------------------------------------------------------------------------------
def check_inputs(inputs) -> bool:
    """True for logits, False for probabilities."""
    if inputs not in ("probs", "logits"):
        raise ValueError(f"`inputs` must be 'probs' or 'logits'; got {inputs!r}")
    return inputs == "logits"


def check_u(u, n: int) -> np.ndarray | None:
    """Per-row uniforms for randomized scores, or None for the non-randomized score."""
    if u is None:
        return None
    arr = as_array(u, "u")
    if arr.dtype != np.float64:
        raise TypeError(f"`u` must be a float64 array of uniforms in [0, 1]; got dtype {arr.dtype}")
    if arr.shape != (n,):
        raise ValueError(f"`u` must have shape ({n},), one uniform per row; got {arr.shape}")
    if not (np.all(arr >= 0.0) and np.all(arr <= 1.0)):
        raise ValueError("`u` must lie in [0, 1]")
    return arr


def check_qhat(qhat) -> float:
    if isinstance(qhat, bool) or not isinstance(qhat, (int, float, np.floating, np.integer)):
        raise TypeError(f"`qhat` must be a float; got {type(qhat).__name__}")
    qhat = float(qhat)
    if np.isnan(qhat):
        raise ValueError("`qhat` must not be NaN")
    return qhat


# --- detection frames ----------------------------------------------------------------------------------------
# A frame is a dict in the torchvision convention: {"boxes": (M, 4) xyxy, "scores": (M,), "labels": (M,)} with
# optional "class_probs" (M, K) and "box_std" (M, 4); 3D frames use "boxes3d" (M, 7) = x, y, z, l, w, h, yaw and
# optional "box_std" (M, 7). Ground truth has the same form without scores. M = 0 is valid (an empty frame).
# Arrays may be NumPy arrays or CPU torch tensors; nothing is copied unless a dtype must change, nothing is
# modified, and any problem raises a ValueError/TypeError that names the frame, the key and the fix.
BOX_KEY = {2: "boxes", 3: "boxes3d"}
BOX_DIM = {2: 4, 3: 7}
# match metric -> (dims it applies to, larger-is-better)
MATCH_METRICS = {"iou": ((2,), True), "bev_iou": ((3,), True), "center_distance": ((3,), False)}


def check_dim(dim) -> int:
    """2 (image boxes) or 3 (BEV / 3D boxes)."""
    if dim not in (2, 3) or isinstance(dim, bool):
        raise ValueError(f"`dim` must be 2 (image boxes xyxy) or 3 (BEV/3D boxes x,y,z,l,w,h,yaw); got {dim!r}")
    return int(dim)


def check_match_params(dim, metric, threshold, method):
    """(dim, metric, threshold, method) of detection matching, the metric defaulting to IoU / BEV IoU."""
    dim = check_dim(dim)
    if metric is None:
        metric = "iou" if dim == 2 else "bev_iou"
    if metric not in MATCH_METRICS:
        raise ValueError(f"`metric` must be one of {sorted(MATCH_METRICS)}; got {metric!r}")
    if dim not in MATCH_METRICS[metric][0]:
        raise ValueError(f"`metric`={metric!r} applies to dim={MATCH_METRICS[metric][0][0]} boxes, not dim={dim}")
    if method not in ("hungarian", "greedy"):
        raise ValueError(f"`method` must be 'hungarian' or 'greedy'; got {method!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not np.isfinite(threshold):
        raise TypeError(f"`threshold` must be a finite float; got {threshold!r}")
    if MATCH_METRICS[metric][1] and not 0.0 < threshold <= 1.0:
        raise ValueError(f"`threshold` is an IoU for metric={metric!r} and must be in (0, 1]; got {threshold}")
    if not MATCH_METRICS[metric][1] and threshold <= 0:
        raise ValueError(f"`threshold` is a distance for metric={metric!r} and must be > 0; got {threshold}")
    return dim, metric, float(threshold), method


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
    row, code = _kc.box_errors(arr, dim)  # one compiled pass instead of several NumPy reductions
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
            if not np.isfinite(cp).all():
                r = int(np.flatnonzero(~np.isfinite(cp).all(axis=1))[0])
                raise ValueError(f"{where}`class_probs` must be finite; row {r} holds NaN or inf")
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


def check_confidences(conf, name: str = "scores") -> np.ndarray:
    """A non-empty 1-D float64 array of detector confidences in [0, 1]."""
    c = as_array(conf, name).astype(np.float64, copy=False)
    if c.ndim != 1 or c.size == 0 or not np.isfinite(c).all() or c.min() < 0 or c.max() > 1:
        raise ValueError(f"`{name}` must be a non-empty 1-D array of confidences in [0, 1]")
    return c
