"""ROS 2 messages as plain dicts: the conformal outputs laid out like `vision_msgs` and `diagnostic_msgs`, plus a
companion message for what those have no field for (class sets, interval boxes, the abstain flag and its reasons).

Nothing here imports rclpy (it is not installable here): every function returns nested dicts of Python ints,
floats, strings, bools and lists, with exactly the field names and types of the message definitions
(vision_msgs 4.1 for ROS 2; geometry_msgs, std_msgs, builtin_interfaces, diagnostic_msgs), so a node fills a
message with ``set_message_fields(msg, d)`` (rosidl_runtime_py) or field by field. docs/ros2.md has a complete
example node and the companion message definition; tests/adapters/test_ros2.py checks every dict against the
message definitions, field by field.

Conventions (see docs/streaming.md and docs/detection.md):
- a class SET becomes the `results` list (one hypothesis per member, score = its probability; unlisted classes
  score 0 by the vision_msgs convention); the companion message states that it is a conformal set, its level,
  and the abstain decision;
- interval boxes are NOT encoded as covariances (downstream filters would read them as sigma^2): the pose
  covariance stays zero and the inner / outer boxes and per-coordinate intervals go to the companion message;
- yaw becomes a quaternion about z; 3D box sizes are (l, w, h) along the box's own x, y, z axes.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["header", "classification", "detection2d_array", "detection3d_array", "conformal_detections",
           "conformal_classification", "diagnostic_status", "COMPANION_MSG"]

COMPANION_MSG = """\
# conformal_msgs/ConformalDetection: the conformal extras of one detection (or classification), keyed by
# the same header and id as its vision_msgs Detection2D / Detection3D / Classification.
std_msgs/Header header
string id                     # = Detection2D.id / Detection3D.id ("" for a classification)
float64 alpha                 # miscoverage level of the intervals (boxes) / of the class set (classification)
float64 alpha_cls             # miscoverage level of the class set of a detection (NaN: no class set)
bool keep                     # score >= the calibrated confidence threshold
bool abstain                  # do not act on it (classification: the abstention rule fired)
string[] abstain_reasons      # which statistic(s) fired, e.g. "entropy", "shift_alarm"
string[] class_set            # class ids in the conformal set, most probable first
float64[] class_set_scores    # their probabilities
float64[] lower               # per-coordinate lower bounds (2D: x1 y1 x2 y2; 3D: x y z l w h yaw)
float64[] upper               # per-coordinate upper bounds
float64[4] outer_box          # 2D only: a box that contains the object (x1 y1 x2 y2); NaN in 3D
float64[4] inner_box          # 2D only: a box contained in the object; NaN in 3D
string calibration_version    # hash of the calibrator state; bump VisionInfo.database_version with it
"""


def _float(x) -> float:
    return float(x)


def header(stamp, frame_id: str = "") -> dict:
    """std_msgs/Header from a stamp: a (sec, nanosec) pair of ints, seconds as a float or int, or a dict
    {"sec", "nanosec"}; `frame_id` is the coordinate frame (a string, e.g. "camera")."""
    if not isinstance(frame_id, str):
        raise TypeError(f"`frame_id` must be a str (the coordinate frame); got {type(frame_id).__name__}")
    if isinstance(stamp, dict):
        if set(stamp) != {"sec", "nanosec"}:
            raise ValueError(f"`stamp` as a dict must have keys sec and nanosec; got {sorted(stamp)}")
        sec, nanosec = stamp["sec"], stamp["nanosec"]
    elif isinstance(stamp, (tuple, list)):
        if len(stamp) != 2:
            raise ValueError(f"`stamp` as a pair must be (sec, nanosec); got {stamp!r}")
        sec, nanosec = stamp
    elif isinstance(stamp, numbers.Real) and not isinstance(stamp, bool):
        if not math.isfinite(stamp) or stamp < 0:
            raise ValueError(f"`stamp` must be a finite time >= 0 in seconds; got {stamp!r}")
        sec = int(math.floor(stamp))
        nanosec = int(round((float(stamp) - sec) * 1e9))
        if nanosec == 1_000_000_000:
            sec, nanosec = sec + 1, 0
    else:
        raise TypeError(f"`stamp` must be (sec, nanosec), seconds as a number, or {{'sec', 'nanosec'}}; got "
                        f"{type(stamp).__name__}")
    for name, v, hi in (("sec", sec, 2**31 - 1), ("nanosec", nanosec, 999_999_999)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 0 <= v <= hi:
            raise ValueError(f"`stamp` {name} must be an int in [0, {hi}]; got {v!r}")
    return {"stamp": {"sec": int(sec), "nanosec": int(nanosec)}, "frame_id": frame_id}


def _class_id(label, class_names) -> str:
    label = int(label)
    if class_names is None:
        return str(label)
    if not 0 <= label < len(class_names):
        raise ValueError(f"label {label} has no entry in `class_names` ({len(class_names)} names)")
    return str(class_names[label])


def _hypotheses(labels, scores, class_names) -> list:
    return [{"class_id": _class_id(c, class_names), "score": _float(s)} for c, s in zip(labels, scores)]


def _pose(x=0.0, y=0.0, z=0.0, yaw=0.0) -> dict:
    return {"position": {"x": _float(x), "y": _float(y), "z": _float(z)},
            "orientation": {"x": 0.0, "y": 0.0, "z": math.sin(yaw / 2.0), "w": math.cos(yaw / 2.0)}}


def _with_pose(hyps: list, pose: dict) -> list:
    # the covariance stays zero on purpose: conformal intervals are not Gaussian variances
    return [{"hypothesis": h, "pose": {"pose": pose, "covariance": [0.0] * 36}} for h in hyps]


def classification(step: dict, stamp, frame_id: str = "", class_names=None) -> dict:
    """vision_msgs/Classification from one `StreamingConformal.step` output (or a dict with "set" and
    "set_probs"): one ObjectHypothesis per member of the conformal set, most probable first."""
    return {"header": header(stamp, frame_id), "results": _hypotheses(step["set"], step["set_probs"], class_names)}


def conformal_classification(step: dict, stamp, frame_id: str = "", class_names=None,
                             reasons=None) -> dict:
    """The companion message of a classification step (see COMPANION_MSG)."""
    nan4 = [math.nan] * 4
    why = list(reasons) if reasons is not None else ([] if not step["abstain"] else
                                                     (["shift_alarm"] if step.get("shift_alarm") else ["statistic"]))
    return {"header": header(stamp, frame_id), "id": "", "alpha": _float(step["alpha"]), "alpha_cls": math.nan,
            "keep": True, "abstain": bool(step["abstain"]), "abstain_reasons": [str(r) for r in why],
            "class_set": [_class_id(c, class_names) for c in step["set"]],
            "class_set_scores": [_float(p) for p in step["set_probs"]], "lower": [], "upper": [],
            "outer_box": nan4, "inner_box": nan4, "calibration_version": str(step.get("calibration_version", ""))}


def _check_result(result, dim: int) -> None:
    boxes = getattr(result, "boxes", None)
    if boxes is None or not isinstance(boxes, np.ndarray) or boxes.ndim != 2 or boxes.shape[1] != (4 if dim == 2
                                                                                                    else 7):
        raise TypeError(f"`result` must be a {dim}D conformal.detection.DetectionResult (boxes of shape "
                        f"(M, {4 if dim == 2 else 7})); got {type(result).__name__}")


def _members(result, i: int, class_probs) -> tuple[list, list]:
    """(labels, scores) of detection i's hypotheses: the members of its class set, scored by the detector's class
    probabilities when `class_probs` (M, K) is given (else by its detection score), most probable first; without
    a class set, the detector's label and score."""
    if result.class_sets is not None:
        members = np.flatnonzero(result.class_sets[i])
        scores = (np.asarray(class_probs)[i, members] if class_probs is not None
                  else np.full(members.size, float(result.scores[i])))
        order = np.argsort(-scores, kind="stable")
        return members[order].tolist(), scores[order].tolist()
    return [int(result.labels[i])], [float(result.scores[i])]


def detection2d_array(result, stamp, frame_id: str = "", class_names=None, ids=None, kept_only: bool = True,
                      class_probs=None) -> dict:
    """vision_msgs/Detection2DArray from a 2D `conformal.detection.DetectionResult` (kept detections by default).
    `ids`: one string per input detection (default: its index), so the companion message can refer to it;
    `class_probs`: the frame's (M, K) class probabilities, which score the members of each class set."""
    _check_result(result, 2)
    rows = np.flatnonzero(result.keep) if kept_only else np.arange(result.boxes.shape[0])
    h = header(stamp, frame_id)
    dets = []
    for i in rows.tolist():
        x1, y1, x2, y2 = (float(v) for v in result.boxes[i])
        labels, scores = _members(result, i, class_probs)
        dets.append({"header": h, "results": _with_pose(_hypotheses(labels, scores, class_names), _pose()),
                     "bbox": {"center": {"position": {"x": (x1 + x2) / 2, "y": (y1 + y2) / 2}, "theta": 0.0},
                              "size_x": x2 - x1, "size_y": y2 - y1},
                     "id": str(i) if ids is None else str(ids[i])})
    return {"header": h, "detections": dets}


def detection3d_array(result, stamp, frame_id: str = "", class_names=None, ids=None, kept_only: bool = True,
                      class_probs=None) -> dict:
    """vision_msgs/Detection3DArray from a 3D `DetectionResult` (boxes x, y, z, l, w, h, yaw)."""
    _check_result(result, 3)
    rows = np.flatnonzero(result.keep) if kept_only else np.arange(result.boxes.shape[0])
    h = header(stamp, frame_id)
    dets = []
    for i in rows.tolist():
        x, y, z, ln, w, ht, yaw = (float(v) for v in result.boxes[i])
        pose = _pose(x, y, z, yaw)
        labels, scores = _members(result, i, class_probs)
        dets.append({"header": h, "results": _with_pose(_hypotheses(labels, scores, class_names), pose),
                     "bbox": {"center": pose, "size": {"x": ln, "y": w, "z": ht}},
                     "id": str(i) if ids is None else str(ids[i])})
    return {"header": h, "detections": dets}


def conformal_detections(result, stamp, frame_id: str = "", *, alpha: float, alpha_cls=None, class_names=None,
                         ids=None, calibration_version: str = "", kept_only: bool = True, abstain=None,
                         reasons=None, class_probs=None) -> list:
    """One companion message (COMPANION_MSG) per detection of `result` (kept ones by default): the class set,
    the per-coordinate intervals, the inner / outer boxes (2D) and, when given, per-detection abstain flags
    (`abstain`: (M,) bool) with `reasons` (M lists of strings)."""
    dim = 2 if result.boxes.shape[1] == 4 else 3
    _check_result(result, dim)
    rows = np.flatnonzero(result.keep) if kept_only else np.arange(result.boxes.shape[0])
    h = header(stamp, frame_id)
    out = []
    for i in rows.tolist():
        labels, scores = _members(result, i, class_probs) if result.class_sets is not None else ([], [])
        flag = bool(abstain[i]) if abstain is not None else False
        why = [str(r) for r in reasons[i]] if reasons is not None else []
        outer = [float(v) for v in result.outer[i]] if dim == 2 else [math.nan] * 4
        inner = [float(v) for v in result.inner[i]] if dim == 2 else [math.nan] * 4
        out.append({"header": h, "id": str(i) if ids is None else str(ids[i]), "alpha": float(alpha),
                    "alpha_cls": math.nan if alpha_cls is None else float(alpha_cls), "keep": bool(result.keep[i]),
                    "abstain": flag, "abstain_reasons": why, "class_set": [_class_id(c, class_names) for c in labels],
                    "class_set_scores": [float(s) for s in scores], "lower": [float(v) for v in result.lower[i]],
                    "upper": [float(v) for v in result.upper[i]],
                    "outer_box": outer, "inner_box": inner,
                    "calibration_version": str(calibration_version)})
    return out


LEVELS = {"OK": 0, "WARN": 1, "ERROR": 2, "STALE": 3}


def diagnostic_status(step: dict, name: str = "conformal_monitor", hardware_id: str = "") -> dict:
    """diagnostic_msgs/DiagnosticStatus of the shift monitor after a `StreamingConformal.step`: level OK in normal
    mode, WARN once the monitor alarmed (conservative abstention in force), with the monitor's numbers as
    KeyValue pairs (values are strings, as the message requires)."""
    alarm = bool(step.get("shift_alarm", False))
    keys = ("mode", "shift_alarm", "monitor_pvalue", "log10_martingale", "alpha", "qhat", "tau", "n_feedback",
            "calibration_version")
    values = [{"key": k, "value": str(step[k])} for k in keys if k in step]
    message = ("shift alarm: conservative abstention until reset_monitor()" if alarm else
               "no shift detected")
    # `byte` fields are bytes of length 1 in rclpy (DiagnosticStatus.OK == b"\\x00")
    return {"level": bytes([LEVELS["WARN"] if alarm else LEVELS["OK"]]), "name": str(name), "message": message,
            "hardware_id": str(hardware_id), "values": values}
