"""The ROS 2 dicts match their message definitions field by field (names, types, array lengths), carry no NumPy
scalars, and say what the conformal outputs say. The definitions below restate vision_msgs 4.1 (ROS 2),
geometry_msgs, std_msgs, builtin_interfaces and diagnostic_msgs as their .msg files declare them."""
import json
import math

import numpy as np
import pytest

from adapters import ros2

MSGS = {
    "builtin_interfaces/Time": "int32 sec\nuint32 nanosec",
    "std_msgs/Header": "builtin_interfaces/Time stamp\nstring frame_id",
    "geometry_msgs/Point": "float64 x\nfloat64 y\nfloat64 z",
    "geometry_msgs/Quaternion": "float64 x\nfloat64 y\nfloat64 z\nfloat64 w",
    "geometry_msgs/Vector3": "float64 x\nfloat64 y\nfloat64 z",
    "geometry_msgs/Pose": "geometry_msgs/Point position\ngeometry_msgs/Quaternion orientation",
    "geometry_msgs/PoseWithCovariance": "geometry_msgs/Pose pose\nfloat64[36] covariance",
    "vision_msgs/Point2D": "float64 x\nfloat64 y",
    "vision_msgs/Pose2D": "vision_msgs/Point2D position\nfloat64 theta",
    "vision_msgs/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y",
    "vision_msgs/BoundingBox3D": "geometry_msgs/Pose center\ngeometry_msgs/Vector3 size",
    "vision_msgs/ObjectHypothesis": "string class_id\nfloat64 score",
    "vision_msgs/ObjectHypothesisWithPose": "vision_msgs/ObjectHypothesis hypothesis\n"
                                            "geometry_msgs/PoseWithCovariance pose",
    "vision_msgs/Classification": "std_msgs/Header header\nvision_msgs/ObjectHypothesis[] results",
    "vision_msgs/Detection2D": "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
                               "vision_msgs/BoundingBox2D bbox\nstring id",
    "vision_msgs/Detection3D": "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
                               "vision_msgs/BoundingBox3D bbox\nstring id",
    "vision_msgs/Detection2DArray": "std_msgs/Header header\nvision_msgs/Detection2D[] detections",
    "vision_msgs/Detection3DArray": "std_msgs/Header header\nvision_msgs/Detection3D[] detections",
    "diagnostic_msgs/KeyValue": "string key\nstring value",
    "diagnostic_msgs/DiagnosticStatus": "byte level\nstring name\nstring message\nstring hardware_id\n"
                                        "diagnostic_msgs/KeyValue[] values",
}
MSGS["conformal_msgs/ConformalDetection"] = "\n".join(
    line.split("#")[0].strip() for line in ros2.COMPANION_MSG.splitlines() if line.split("#")[0].strip())
PRIMITIVE = {"float64": float, "int32": int, "uint32": int, "string": str, "bool": bool, "byte": bytes}


def check(value, msg_type: str, where: str = "msg"):
    """Raise AssertionError unless `value` is exactly a dict of the message's fields with the declared types."""
    fields = {}
    for line in MSGS[msg_type].splitlines():
        typ, name = line.split()
        fields[name] = typ
    assert isinstance(value, dict), f"{where}: {type(value).__name__} is not a message dict"
    assert set(value) == set(fields), f"{where}: fields {sorted(value)} != {sorted(fields)} of {msg_type}"
    for name, typ in fields.items():
        v, w = value[name], f"{where}.{name}"
        base, array, size = typ, False, None
        if typ.endswith("]"):
            base, array = typ[: typ.index("[")], True
            size = typ[typ.index("[") + 1: -1] or None
        items = v if array else [v]
        if array:
            assert isinstance(v, list), f"{w}: an array field must be a list; got {type(v).__name__}"
            if size is not None:
                assert len(v) == int(size), f"{w}: {len(v)} items; {typ} has {size}"
        for j, item in enumerate(items):
            iw = f"{w}[{j}]" if array else w
            if base in PRIMITIVE:
                assert type(item) is PRIMITIVE[base], f"{iw}: {type(item).__name__} is not {base}"
                if base == "byte":
                    assert len(item) == 1, f"{iw}: a byte is one byte"
            else:
                check(item, base if "/" in base else f"{msg_type.split('/')[0]}/{base}", iw)


def test_the_checker_can_fail():
    good = {"stamp": {"sec": 1, "nanosec": 2}, "frame_id": "cam"}
    check(good, "std_msgs/Header")
    for bad in ({"stamp": {"sec": 1, "nanosec": 2}}, {"stamp": {"sec": np.int64(1), "nanosec": 2}, "frame_id": ""},
                {"stamp": {"sec": 1.0, "nanosec": 2}, "frame_id": ""}):
        with pytest.raises(AssertionError):
            check(bad, "std_msgs/Header")


@pytest.mark.parametrize("stamp, expected", [((12, 500), (12, 500)), (3.25, (3, 250_000_000)), (7, (7, 0)),
                                             ({"sec": 1, "nanosec": 999_999_999}, (1, 999_999_999)),
                                             (1.9999999999, (2, 0))])
def test_header_accepts_stamps_as_pairs_floats_and_dicts(stamp, expected):
    h = ros2.header(stamp, "camera")
    check(h, "std_msgs/Header")
    assert (h["stamp"]["sec"], h["stamp"]["nanosec"]) == expected and h["frame_id"] == "camera"


@pytest.mark.parametrize("stamp, err", [((1,), ValueError), (-1.0, ValueError), ((1, 2_000_000_000), ValueError),
                                        ("now", TypeError), ((1.5, 2), ValueError), (math.nan, ValueError)])
def test_bad_stamps_are_refused(stamp, err):
    with pytest.raises(err, match="stamp"):
        ros2.header(stamp)


@pytest.fixture(scope="module")
def stream_step():
    from adapters import StreamingConformal
    from conformal import SplitConformalClassifier

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(5) * 0.5, size=800)
    y = np.array([rng.choice(5, p=row) for row in p])
    cal = SplitConformalClassifier(score="lac", alpha=0.1).fit(p[:600], y[:600])
    s = StreamingConformal(cal, reference=p[600:700])
    return [s.step(p[700 + i]) for i in range(3)]


def test_classification_and_its_companion(stream_step):
    names = ["car", "person", "bike", "sign", "pole"]
    for step in stream_step:
        msg = ros2.classification(step, (5, 0), "camera", class_names=names)
        check(msg, "vision_msgs/Classification")
        assert [r["class_id"] for r in msg["results"]] == [names[c] for c in step["set"]]
        comp = ros2.conformal_classification(step, (5, 0), "camera", class_names=names)
        check(comp, "conformal_msgs/ConformalDetection")
        assert comp["abstain"] == step["abstain"] and comp["alpha"] == step["alpha"]
        json.dumps(msg) and json.dumps(comp)  # plain Python values only (no NumPy scalars)


def test_diagnostic_status_of_the_monitor(stream_step):
    d = ros2.diagnostic_status(stream_step[-1], hardware_id="front_camera")
    check(d, "diagnostic_msgs/DiagnosticStatus")
    assert d["level"] == b"\x00" and {"mode", "monitor_pvalue", "log10_martingale"} <= {v["key"] for v in d["values"]}
    alarmed = dict(stream_step[-1], shift_alarm=True, mode="conservative")
    assert ros2.diagnostic_status(alarmed)["level"] == b"\x01"


@pytest.fixture(scope="module")
def detections():
    from adapters.datasets import make_scenes
    from conformal.detection import ConformalDetector

    out = {}
    for dim in (2, 3):
        preds, gts = make_scenes(160, dim=dim, rng=3)
        det = ConformalDetector(dim=dim, alpha=0.1, alpha_cls=0.1, recall_alpha=None, score_threshold=0.3,
                                scale="none").fit(preds[:140], gts[:140])
        frame = preds[150]
        out[dim] = (det.predict(frame), frame)
    return out


def test_detection2d_array_and_companions(detections):
    res, frame = detections[2]
    arr = ros2.detection2d_array(res, 10.5, "camera", class_probs=frame["class_probs"])
    check(arr, "vision_msgs/Detection2DArray")
    kept = np.flatnonzero(res.keep)
    assert len(arr["detections"]) == kept.size > 0
    d0, i0 = arr["detections"][0], int(kept[0])
    x1, y1, x2, y2 = res.boxes[i0]
    assert d0["bbox"]["size_x"] == pytest.approx(x2 - x1) and d0["bbox"]["center"]["position"]["x"] == \
        pytest.approx((x1 + x2) / 2)
    assert [int(r["hypothesis"]["class_id"]) for r in d0["results"]] == sorted(
        np.flatnonzero(res.class_sets[i0]).tolist(), key=lambda c: -frame["class_probs"][i0, c])
    assert all(r["pose"]["covariance"] == [0.0] * 36 for r in d0["results"])  # intervals are not covariances
    comps = ros2.conformal_detections(res, 10.5, "camera", alpha=0.1, alpha_cls=0.1, calibration_version="abc",
                                      class_probs=frame["class_probs"])
    assert [c["id"] for c in comps] == [d["id"] for d in arr["detections"]]
    for c in comps:
        check(c, "conformal_msgs/ConformalDetection")
    assert comps[0]["outer_box"] == [float(v) for v in res.outer[i0]]
    json.dumps(arr)


def test_detection3d_array_and_companions(detections):
    res, frame = detections[3]
    arr = ros2.detection3d_array(res, (3, 4), "lidar")
    check(arr, "vision_msgs/Detection3DArray")
    i0 = int(np.flatnonzero(res.keep)[0])
    d0 = arr["detections"][0]
    q = d0["bbox"]["center"]["orientation"]
    assert 2 * math.atan2(q["z"], q["w"]) == pytest.approx(math.remainder(res.boxes[i0, 6], 2 * math.pi))
    assert d0["bbox"]["size"] == {"x": pytest.approx(res.boxes[i0, 3]), "y": pytest.approx(res.boxes[i0, 4]),
                                  "z": pytest.approx(res.boxes[i0, 5])}
    comps = ros2.conformal_detections(res, (3, 4), "lidar", alpha=0.1)
    for c in comps:
        check(c, "conformal_msgs/ConformalDetection")
    assert math.isnan(comps[0]["outer_box"][0]) and len(comps[0]["lower"]) == 7


def test_wrong_inputs_are_named():
    with pytest.raises(TypeError, match="DetectionResult"):
        ros2.detection2d_array(object(), 0)
    with pytest.raises(TypeError, match="frame_id"):
        ros2.header(0, frame_id=3)
