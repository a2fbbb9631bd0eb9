"""ConformalDetector.predict on a frame of torch tensors: class sets, intervals, outer / inner boxes as tensors on
the frame's device, bit-identical to the NumPy path on CPU tensors, on both paths a frame can take: the NumPy path
through shared views (a CPU frame's, by default) and the tensor ops of conformal/detection/_tensor.py (a CUDA
frame's; forced on CPU tensors by the `path` fixture)."""
import warnings

import numpy as np
import pytest

from adapters.datasets import make_scenes
from conformal import _tensor as _ts
from conformal.detection import ConformalDetector

torch = pytest.importorskip("torch")

FIELDS = ("boxes", "scores", "labels", "keep", "class_sets", "lower", "upper", "outer", "inner")


def _tensors(frame, dtype=None):
    out = {}
    for k, v in frame.items():
        t = torch.from_numpy(np.ascontiguousarray(v))
        out[k] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
    return out


def _same(a, b, msg=""):
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        if y is None:
            assert x is None, f
            continue
        assert torch.is_tensor(x) and x.device.type == "cpu", f
        np.testing.assert_array_equal(x.numpy(), y, err_msg=f"{f} {msg}")
        assert x.numpy().dtype == y.dtype, (f, x.dtype, y.dtype)


@pytest.fixture(params=["host", "device"])
def path(request, monkeypatch):
    """Run a test on both paths of a CPU frame: the NumPy path on shared views (default) and the device path."""
    monkeypatch.setattr(_ts, "_device_path_on_cpu", request.param == "device")
    return request.param


@pytest.fixture(scope="module")
def scenes2d():
    return make_scenes(300, rng=0, bias=2.0)


@pytest.fixture(scope="module")
def scenes3d():
    return make_scenes(300, dim=3, rng=1, bias=0.3)


@pytest.mark.parametrize("scale", ["none", "size"])
@pytest.mark.parametrize("class_conditional", [False, True])
def test_tensor_frames_equal_numpy_frames_2d(scenes2d, scale, class_conditional, path):
    preds, gts = scenes2d
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for score in ("aps", "lac"):
            det = ConformalDetector(alpha=0.1, alpha_cls=0.1, class_score=score, scale=scale,
                                    class_conditional=class_conditional, score_threshold=0.3)
            det.fit(preds[:200], gts[:200])
            for i in range(200, 240):
                for dtype in (None, torch.float32):  # as given (float64) and float32 tensors
                    frame = preds[i] if dtype is None else {k: (v.astype(np.float32) if v.dtype.kind == "f" else v)
                                                            for k, v in preds[i].items()}
                    _same(det.predict(_tensors(frame)), det.predict(frame), f"frame {i} {score} {dtype}")


def test_tensor_frames_equal_numpy_frames_3d(scenes3d, path):
    preds, gts = scenes3d
    for scale in ("none", "size", "range"):
        det = ConformalDetector(dim=3, alpha=0.1, alpha_cls=0.2, scale=scale, score_threshold=0.3).fit(preds[:200],
                                                                                                     gts[:200])
        for i in range(200, 240):
            frame = dict(preds[i])
            frame["boxes3d"] = frame["boxes3d"].copy()
            if len(frame["boxes3d"]):
                frame["boxes3d"][0, 6] += 40.0  # a yaw beyond the period: wrapped
            a, b = det.predict(_tensors(frame)), det.predict(frame)
            if scale != "range":
                _same(a, b, f"frame {i} {scale}")
            else:  # torch's hypot and numba's (libm) may differ in the last bit: quantify
                for f in ("lower", "upper"):
                    np.testing.assert_allclose(getattr(a, f).numpy(), getattr(b, f), rtol=1e-15, atol=1e-12)
                np.testing.assert_array_equal(a.class_sets.numpy(), b.class_sets)


def test_uncertainty_scale_and_empty_frames(scenes2d, path):
    preds, gts = scenes2d
    rng = np.random.default_rng(2)
    withstd = [{**p, "box_std": rng.uniform(0.5, 3.0, size=p["boxes"].shape)} for p in preds]
    det = ConformalDetector(alpha=0.1, alpha_cls=0.1, scale="uncertainty", score_threshold=0.3).fit(withstd[:200],
                                                                                                    gts[:200])
    for i in range(200, 230):
        _same(det.predict(_tensors(withstd[i])), det.predict(withstd[i]), f"frame {i}")
    empty = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, np.int64),
             "class_probs": np.zeros((0, 4)), "box_std": np.zeros((0, 4))}
    _same(det.predict(_tensors(empty)), det.predict(empty), "empty")


def test_tensor_results_convert_to_host(scenes2d, path):
    preds, gts = scenes2d
    det = ConformalDetector(alpha=0.1, alpha_cls=0.1, score_threshold=0.3).fit(preds[:200], gts[:200])
    a, b = det.predict(_tensors(preds[210])), det.predict(preds[210])
    assert a.to_dicts() == b.to_dicts()
    assert isinstance(a.to_host().lower, np.ndarray)


def test_detection_abstention_reads_tensor_results(scenes2d, path):
    """DetectionAbstention on the result of a tensor frame: the same flags, as a bool tensor on the device."""
    from conformal.detection import DetectionAbstention
    preds, gts = scenes2d
    det = ConformalDetector(alpha=0.1, alpha_cls=0.1, score_threshold=0.3).fit(preds[:150], gts[:150])
    for statistic in ("confidence", "set_size", "entropy", "interval_size"):
        for level in ("detection", "image"):
            ab = DetectionAbstention(statistic=statistic, level=level).fit(det, preds[150:220], gts[150:220])
            for i in range(220, 240):
                t = _tensors(preds[i])
                got = ab.predict(det.predict(t), t["class_probs"])
                want = ab.predict(det.predict(preds[i]), preds[i]["class_probs"])
                if level == "detection":
                    assert torch.is_tensor(got) and got.dtype == torch.bool
                    np.testing.assert_array_equal(got.numpy(), want)
                else:
                    assert got == want


def test_bad_tensor_frames_name_the_key(scenes2d, path):
    preds, gts = scenes2d
    det = ConformalDetector(alpha=0.1, alpha_cls=0.1, score_threshold=0.3).fit(preds[:200], gts[:200])
    frame = next(p for p in preds[200:] if len(p["boxes"]) >= 3)
    t = _tensors(frame)
    with pytest.raises(TypeError, match="`labels` must be a torch tensor on cpu"):
        det.predict({**t, "labels": frame["labels"]})
    with pytest.raises(TypeError, match="`labels` must be a 1-D integer tensor; got dtype float64"):
        det.predict({**t, "labels": t["labels"].double()})
    with pytest.raises(TypeError, match="`class_probs` must be a float32 or float64 tensor; got dtype float16"):
        det.predict({**t, "class_probs": t["class_probs"].half()})
    m = len(frame["boxes"])
    with pytest.raises(ValueError, match=rf"`scores` must have shape \({m},\); got \(2,\)"):
        det.predict({**t, "scores": t["scores"][:2]})
    with pytest.raises(ValueError, match="`class_probs` has 3 classes; expected 4"):
        det.predict({**t, "class_probs": t["class_probs"][:, :3]})
    bad = t["boxes"].clone()
    bad[1, 2] = bad[1, 0] - 1.0
    with pytest.raises(ValueError, match="`boxes` must be xyxy with x2 >= x1 and y2 >= y1; row 1"):
        det.predict({**t, "boxes": bad})
    bad = t["boxes"].clone()
    bad[2, 0] = float("nan")
    with pytest.raises(ValueError, match="`boxes` must be finite; row 2"):
        det.predict({**t, "boxes": bad})
    with pytest.raises(ValueError, match="`labels` must be < n_classes=4"):
        det.predict({**t, "labels": t["labels"] + 4})
    cp = t["class_probs"].clone()
    cp[0, 0] = float("inf")
    with pytest.raises(ValueError, match="`class_probs` must be finite; row 0"):
        det.predict({**t, "class_probs": cp})
    with pytest.raises(ValueError, match="needs 'class_probs'"):
        det.predict({k: v for k, v in t.items() if k != "class_probs"})


def test_cpu_frames_take_the_numpy_path_unless_forced(scenes2d, monkeypatch):
    """By default a CPU frame's values are never checked or computed with tensor ops: the NumPy path runs on shared
    views and its arrays come back as CPU tensors sharing their memory (a float64 input's boxes are the input's);
    the private switch sends it down the device path."""
    from conformal.detection import _tensor as _dt
    calls = []
    fn = _dt.check_tensor_values
    monkeypatch.setattr(_dt, "check_tensor_values", lambda *a: calls.append(1) or fn(*a))
    preds, gts = scenes2d
    det = ConformalDetector(alpha=0.1, alpha_cls=0.1, score_threshold=0.3).fit(preds[:200], gts[:200])
    frame = next(p for p in preds[200:] if len(p["boxes"]) >= 2)
    t = _tensors(frame)
    a = det.predict(t)
    assert calls == []
    _same(a, det.predict(frame), "host path")
    assert a.boxes.data_ptr() == t["boxes"].data_ptr()  # float64 boxes: a view, as the NumPy path's
    monkeypatch.setattr(_ts, "_device_path_on_cpu", True)
    _same(det.predict(t), det.predict(frame), "device path")
    assert calls == [1]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine (CPU tensors are tested "
                                                          "above; this checks the device path)")
def test_cuda_frames_stay_on_the_device_and_agree(scenes2d):
    preds, gts = scenes2d
    det = ConformalDetector(alpha=0.1, alpha_cls=0.1, class_conditional=True, score_threshold=0.3).fit(preds[:200],
                                                                                                     gts[:200])
    for i in range(200, 230):
        a = det.predict({k: v.cuda() for k, v in _tensors(preds[i]).items()})
        assert all(getattr(a, f).is_cuda for f in FIELDS)
        b = det.predict(preds[i])
        for f in FIELDS:  # max, clamp, +, -, * and compares only: exact on the device too
            np.testing.assert_array_equal(getattr(a, f).cpu().numpy(), getattr(b, f))
