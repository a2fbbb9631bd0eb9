"""ConformalDetector.predict on a frame of torch tensors: class sets, box intervals and outer / inner boxes computed
with the tensors' own methods on their device, returned there (the core never imports torch: conformal/_tensor.py).

Same numbers as the NumPy path (conformal/detection/_kernels.py `scaled_margins`, `outer_inner`): the per-side
margin of a detection is the maximum of the calibrated margins over the classes in its mask (infinite for an empty
mask), times the scale, subtracted from / added to the float64 box; max, clamp and the IEEE subtract / add /
multiply are exact, so on CPU tensors the intervals are bit-identical (tests/conformal/detection/
test_tensor_detection.py). Only the 3D scale="range" hypot and the yaw wrap use library functions whose last bit
may differ; the tests quantify them. Validation brings one small boolean vector to the host; the offending row only
when there is one. Calibration stays on the host; the (C, D) margins cross to the device per frame.

A CPU frame takes this path only when forced (`conformal._tensor._device_path_on_cpu`, for the tests): by default
its fields are checked here (`check_tensor_fields`: keys, devices, dtypes, shapes; no value read) and the NumPy path
runs on shared views of them, its arrays shared back as CPU tensors (`predict`).
"""
from __future__ import annotations

from conformal import _tensor as _t
from conformal._validation import BOX_DIM, BOX_KEY, as_array

_FLOATS = ("torch.float32", "torch.float64")
_INTS = ("torch.int64", "torch.int32", "torch.int16", "torch.int8", "torch.uint8")


def is_tensor_frame(frame) -> bool:
    """True for a dict frame whose boxes are a torch tensor."""
    return isinstance(frame, dict) and _t.is_tensor(frame.get(BOX_KEY[2], frame.get(BOX_KEY[3])))


def _tensor_field(frame, key, dev, where, shape, dtypes, what):
    x = frame[key]
    if not _t.is_tensor(x) or x.device != dev:
        raise TypeError(f"{where}`{key}` must be a torch tensor on {dev} (as the boxes); got "
                        f"{type(x).__name__}{'' if not _t.is_tensor(x) else ' on ' + str(x.device)}")
    if str(x.dtype) not in dtypes:
        raise TypeError(f"{where}`{key}` must be a {what} tensor; got dtype {str(x.dtype).replace('torch.', '')}")
    if x.dim() != len(shape) or any(w is not None and g != w for g, w in zip(x.shape, shape)):
        want = "(" + ", ".join(("M", "K")[min(i, 1)] if w is None else str(w) for i, w in enumerate(shape)) + \
            ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{where}`{key}` must have shape {want}; got {tuple(x.shape)}")
    return x.detach()


def check_tensor_fields(frame, dim: int, n_classes: int) -> dict:
    """Keys, devices, dtypes and shapes of a prediction frame of tensors (no value is read), with the NumPy path's
    messages; the tensors come back detached and unconverted."""
    where = "prediction frame: "
    key = BOX_KEY[dim]
    if key not in frame:
        raise ValueError(f"{where}missing key {key!r}; keys present: {sorted(frame)}")
    for need, hint in (("labels", "use zeros(M, int) for a single-class detector"),
                       ("scores", "the detector's confidence per box")):
        if need not in frame:
            raise ValueError(f"{where}missing key {need!r} ({hint})")
    dev, d = frame[key].device, BOX_DIM[dim]
    boxes = _tensor_field(frame, key, dev, where, (None, d), _FLOATS + _INTS, "float or integer")
    m = boxes.shape[0]
    labels = _tensor_field(frame, "labels", dev, where, (m,), _INTS, "1-D integer")
    scores = _tensor_field(frame, "scores", dev, where, (m,), _FLOATS + _INTS, "float or integer")
    cp = std = None
    if frame.get("class_probs") is not None:
        cp = _tensor_field(frame, "class_probs", dev, where, (m, None), _FLOATS, "float32 or float64")
        if cp.shape[1] != n_classes:
            raise ValueError(f"{where}`class_probs` has {cp.shape[1]} classes; expected {n_classes}")
    if frame.get("box_std") is not None:
        std = _tensor_field(frame, "box_std", dev, where, (m, d), _FLOATS + _INTS, "float or integer")
    return {"boxes": boxes, "labels": labels, "scores": scores, "class_probs": cp, "box_std": std}


def check_tensor_values(f: dict, dim: int, n_classes: int) -> dict:
    """The values of checked fields (`check_tensor_fields`) on their device, with the NumPy path's messages, in
    its order; float64 / int64 tensors back. One boolean vector comes back to the host; the offending row only
    when there is one."""
    where, key = "prediction frame: ", BOX_KEY[dim]
    boxes, labels, scores = f["boxes"].double(), f["labels"].long(), f["scores"].double()
    cp, std = f["class_probs"], None if f["box_std"] is None else f["box_std"].double()
    m = boxes.shape[0]
    if m == 0:
        return {"boxes": boxes, "labels": labels, "scores": scores, "class_probs": cp, "box_std": std}
    # one row-wise flag per check, in the NumPy path's order; one boolean vector comes back
    checks = [("boxes_finite", ~boxes.isfinite().all(dim=1))]
    if dim == 2:
        checks.append(("boxes_xyxy", (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])))
    else:
        checks.append(("boxes_sizes", (boxes[:, 3:6] < 0).any(dim=1)))
    checks += [("labels_low", labels < 0), ("labels_high", labels >= n_classes),
               ("scores_finite", ~scores.isfinite())]
    if cp is not None:
        checks.append(("class_probs_finite", ~cp.isfinite().all(dim=1)))
    if std is not None:
        checks += [("box_std_finite", ~std.isfinite().all(dim=1)), ("box_std_positive", (std <= 0).any(dim=1))]
    flags = boxes.new_zeros((len(checks), m)).bool()
    for i, (_, bad) in enumerate(checks):
        flags[i] = bad
    any_bad = flags.any(dim=1).tolist()
    if any(any_bad):
        name, bad = checks[any_bad.index(True)]
        row = int(bad.nonzero()[0, 0])
        what = {"boxes_finite": f"`{key}` must be finite; row {row} holds NaN or inf",
                "boxes_xyxy": f"`{key}` must be xyxy with x2 >= x1 and y2 >= y1; row {row} is "
                              f"{boxes[row].tolist()} (convert xywh/cxcywh boxes to xyxy first)",
                "boxes_sizes": f"`{key}` sizes l, w, h (columns 3-5) must be >= 0; row {row} is {boxes[row].tolist()}",
                "labels_low": f"`labels` must be >= 0; got {int(labels.min())}",
                "labels_high": f"`labels` must be < n_classes={n_classes}; got {int(labels.max())}",
                "scores_finite": f"`scores` must be finite; row {row} holds NaN or inf",
                "class_probs_finite": f"`class_probs` must be finite; row {row} holds NaN or inf",
                "box_std_finite": f"`box_std` must be finite; row {row} holds NaN or inf",
                "box_std_positive": f"`box_std` must be > 0 (a per-coordinate uncertainty); got min "
                                    f"{float(std.min())}"}[name]
        raise ValueError(where + what)
    return {"boxes": boxes, "labels": labels, "scores": scores, "class_probs": cp, "box_std": std}


def _scales(boxes, std, dim: int, scale: str, min_scale: float):
    """`_kernels._scale` for every coordinate: (M, D) float64 (or a broadcastable 1.0)."""
    if scale == "none":
        return 1.0
    if scale == "uncertainty":
        return std
    out = boxes.new_ones(boxes.shape)
    if dim == 2:
        w = (boxes[:, 2] - boxes[:, 0]).clamp(min=min_scale)
        h = (boxes[:, 3] - boxes[:, 1]).clamp(min=min_scale)
        out[:, 0], out[:, 2], out[:, 1], out[:, 3] = w, w, h, h
    elif scale == "size":
        lw = boxes[:, 3].maximum(boxes[:, 4]).clamp(min=min_scale)
        out[:, 0], out[:, 1] = lw, lw
        out[:, 2] = out[:, 5] = boxes[:, 5].clamp(min=min_scale)
        out[:, 3], out[:, 4] = boxes[:, 3].clamp(min=min_scale), boxes[:, 4].clamp(min=min_scale)
    else:  # range
        out[:, :6] = boxes[:, 0].hypot(boxes[:, 1]).clamp(min=min_scale)[:, None]
    return out


def _wrapped_yaw(boxes, period: float):
    """`_geometry.wrapped_yaw`: yaws beyond +-period wrapped into [-period/2, period/2), else the boxes."""
    big = boxes[:, 6].abs() > period
    if not bool(big.any()):
        return boxes
    out = boxes.clone()
    yaw = out[:, 6]
    out[:, 6] = ((yaw + 0.5 * period).remainder(period) - 0.5 * period).where(big, yaw)
    return out


def margins(cal, boxes, mask, std):
    """`BoxIntervalCalibrator._apply` on tensors: (lower, upper) (M, D) float64 on the boxes' device."""
    if cal.dim == 3:
        boxes = _wrapped_yaw(boxes, float(cal.yaw_period))
    q_lo, q_hi = _t._f64(boxes, cal.q_lo_), _t._f64(boxes, cal.q_hi_)
    neg = float("-inf")
    m3 = mask[:, :, None]
    lo = q_lo[None].where(m3, neg).max(dim=1).values
    hi = q_hi[None].where(m3, neg).max(dim=1).values
    empty = ~mask.any(dim=1, keepdim=True)
    inf = float("inf")
    lo, hi = lo.where(~empty, inf), hi.where(~empty, inf)
    s = _scales(boxes, std, cal.dim, cal.scale, float(cal.min_scale))
    return boxes - lo * s, boxes + hi * s


def outer_inner(lower, upper):
    outer, inner = lower.clone(), upper.clone()
    outer[:, 2:], inner[:, 2:] = upper[:, 2:], lower[:, 2:]
    return outer, inner


def predict(det, frame):
    """`ConformalDetector.predict` for a frame of tensors: the DetectionResult fields as tensors on their device.
    A CPU frame (keys, devices, dtypes and shapes checked here, with this path's messages) is computed by the
    NumPy path on shared views of its tensors and its arrays come back as CPU tensors sharing their memory."""
    meta = check_tensor_fields(frame, det.dim, det.n_classes_)
    if _t.on_host(meta["boxes"]):
        host = {k: _t.host_view(v) for k, v in meta.items() if v is not None}
        host[BOX_KEY[det.dim]] = host.pop("boxes")
        return {k: None if v is None else _t.from_host(meta["boxes"], v)
                for k, v in det._predict_arrays(host).items()}
    f = check_tensor_values(meta, det.dim, det.n_classes_)
    boxes, labels, scores = f["boxes"], f["labels"], f["scores"]
    m = boxes.shape[0]
    keep = scores >= det.score_threshold_
    sets = None
    if det.classes_ is not None:
        if f["class_probs"] is None:
            raise ValueError("this detector was calibrated with class sets; the frame needs 'class_probs'")
        sets = det.classes_.predict_sets(f["class_probs"]) if m else boxes.new_zeros((0, det.n_classes_)).bool()
    if det.boxes_.class_conditional:
        mask = boxes.new_zeros((m, det.n_classes_)).bool()
        if m:
            mask[boxes.new_ones(m).long().cumsum(0) - 1, labels] = True
        if sets is not None:
            mask = mask | sets  # two-step: margins cover every class in the set (the label if the set is empty)
    else:
        mask = boxes.new_ones((m, 1)).bool()
    if det.boxes_.scale == "uncertainty" and f["box_std"] is None:
        raise ValueError("this detector was calibrated with scale='uncertainty'; the frame needs 'box_std'")
    lower, upper = margins(det.boxes_, boxes, mask, f["box_std"])
    outer = inner = None
    if det.dim == 2:
        outer, inner = outer_inner(lower, upper)
    return dict(boxes=boxes, scores=scores, labels=labels, keep=keep, class_sets=sets, lower=lower, upper=upper,
                outer=outer, inner=inner)


def to_host(value):
    """A tensor as a NumPy array (copied from its device), None as None."""
    return None if value is None else as_array(value, "result")
