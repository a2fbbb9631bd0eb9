"""Public API of conformal.detection: bad input, empty frames, torch tensors, persistence, no mutation, yaw wrap."""
import copy
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from adapters.datasets import make_scenes
from conformal import NotFittedError, load
from conformal.detection import BoxIntervalCalibrator, ConformalDetector, DetectionAbstention, RecallRiskControl
from conformal.detection.intervals import residuals
from conformal.detection.metrics import side_coverage


@pytest.fixture(scope="module")
def data2d():
    return make_scenes(500, rng=0, bias=2.0)


@pytest.fixture(scope="module")
def fitted(data2d):
    preds, gts = data2d
    return ConformalDetector(alpha=0.1, alpha_cls=0.1, recall_alpha=0.3, random_state=0).fit(preds[:400], gts[:400])


def test_import_without_torch():
    code = "import sys, conformal.detection; " \
           "bad = [m for m in ('torch', 'cv2', 'open3d') if m in sys.modules]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)
    # numba itself may import scipy when it is installed; our own modules never do
    import pathlib
    src = pathlib.Path(__file__).resolve().parents[3] / "conformal" / "detection"
    for f in src.glob("*.py"):
        assert "import scipy" not in f.read_text() and "from scipy" not in f.read_text(), f


def test_predict_outputs_and_no_mutation(fitted, data2d):
    preds, _ = data2d
    frame = preds[450]
    before = copy.deepcopy(frame)
    out = fitted.predict(frame)
    for k in before:
        np.testing.assert_array_equal(before[k], frame[k])
    m = frame["boxes"].shape[0]
    assert out.lower.shape == out.upper.shape == out.outer.shape == (m, 4)
    assert out.class_sets.shape == (m, 4) and out.keep.dtype == bool
    assert (out.outer[:, :2] <= out.boxes[:, :2]).all() and (out.outer[:, 2:] >= out.boxes[:, 2:]).all()
    assert 0.0 <= fitted.score_threshold_ <= 1.0 and fitted.recall_.certified_
    d = out.to_dicts()
    assert len(d) == int(out.keep.sum()) and {"outer", "inner", "class_set"} <= set(d[0])


def test_torch_tensors_accepted(fitted, data2d):
    torch = pytest.importorskip("torch")
    frame = data2d[0][451]
    tframe = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in frame.items()}
    a, b = fitted.predict(frame), fitted.predict(tframe)
    np.testing.assert_array_equal(a.lower, b.lower)
    np.testing.assert_array_equal(a.class_sets, b.class_sets)


def test_save_load_roundtrip(fitted, data2d, tmp_path):
    path = tmp_path / "det.json"
    fitted.save(path)
    for obj in (ConformalDetector.load(path), load(path)):
        a, b = fitted.predict(data2d[0][452]), obj.predict(data2d[0][452])
        np.testing.assert_array_equal(a.lower, b.lower)
        np.testing.assert_array_equal(a.upper, b.upper)
        np.testing.assert_array_equal(a.class_sets, b.class_sets)
        assert obj.score_threshold_ == fitted.score_threshold_
    text = path.read_text().replace('"n_matched"', '"n_matchet"')
    path.write_text(text)
    with pytest.raises(ValueError, match="checksum"):
        ConformalDetector.load(path)


def test_not_fitted():
    with pytest.raises(NotFittedError, match="fit"):
        ConformalDetector().predict({"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)})


def test_empty_frames(fitted):
    out = fitted.predict({"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, np.int64),
                          "class_probs": np.zeros((0, 4))})
    assert out.lower.shape == (0, 4) and out.class_sets.shape == (0, 4) and out.to_dicts() == []
    preds, gts = make_scenes(300, rng=3)
    preds = preds + [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, np.int64),
                      "class_probs": np.zeros((0, 4)), "box_std": np.zeros((0, 4))}]
    gts = gts + [{"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64)}]
    ConformalDetector(alpha=0.1, alpha_cls=0.1).fit(preds, gts)  # an empty image is fine


GOOD = {"boxes": np.array([[0.0, 0, 10, 10]]), "scores": np.array([0.9]), "labels": np.array([1])}


def test_frames_given_as_lists_predict_like_arrays(fitted):
    frame = {**GOOD, "class_probs": np.full((1, 4), 0.25)}
    as_lists = {k: v.tolist() for k, v in frame.items()}
    a, b = fitted.predict(as_lists), fitted.predict(frame)
    np.testing.assert_array_equal(a.lower, b.lower)
    np.testing.assert_array_equal(a.upper, b.upper)
    np.testing.assert_array_equal(a.class_sets, b.class_sets)


@pytest.mark.parametrize("change,err,msg", [
    ({"boxes": np.array([[10.0, 0, 0, 10]])}, ValueError, "x2 >= x1"),
    ({"boxes": np.array([[0.0, np.nan, 10, 10]])}, ValueError, "finite"),
    ({"boxes": np.array([[0.0, 0, 10]])}, ValueError, r"shape \(M, 4\)"),
    ({"scores": np.array([0.9, 0.8])}, ValueError, "`scores` has 2 entries"),
    ({"labels": np.array([1, 2])}, ValueError, "`labels` has 2 entries"),
    ({"labels": np.array([1.0])}, TypeError, "integer"),
    ({"boxes": [["0", "0", "10", "10"]]}, TypeError, "must hold numbers"),
])
def test_bad_frames(fitted, change, err, msg):
    frame = {**GOOD, "class_probs": np.full((1, 4), 0.25), **change}
    with pytest.raises(err, match=msg):
        fitted.predict(frame)


def test_bad_frame_structure(fitted):
    with pytest.raises(ValueError, match="missing key 'boxes'.*dim=3"):
        fitted.predict({"boxes3d": np.zeros((0, 7)), "scores": np.zeros(0), "labels": np.zeros(0, int)})
    with pytest.raises(ValueError, match="needs 'class_probs'"):
        fitted.predict(GOOD)
    with pytest.raises(ValueError, match="2 prediction frames but 1"):
        ConformalDetector().fit([GOOD, GOOD], [GOOD])


def test_bad_params():
    with pytest.raises(ValueError, match="scale"):
        BoxIntervalCalibrator(scale="range").fit(np.zeros((3, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="sides"):
        BoxIntervalCalibrator(dim=3, sides="outer").fit(np.zeros((3, 7)), np.zeros((3, 7)))
    with pytest.raises(ValueError, match="correction"):
        BoxIntervalCalibrator(correction="sidak").fit(np.zeros((3, 4)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match="IoU"):
        ConformalDetector(match_threshold=1.5).fit([GOOD], [GOOD])


def test_yaw_wrap_around_pi():
    pred = np.array([[0, 0, 0, 4, 2, 1.5, 3.12], [0, 0, 0, 4, 2, 1.5, -3.12], [0, 0, 0, 4, 2, 1.5, 3.12 + 4 * math.pi]])
    true = np.array([[0, 0, 0, 4, 2, 1.5, -3.12], [0, 0, 0, 4, 2, 1.5, 3.12], [0, 0, 0, 4, 2, 1.5, -3.12]])
    r = residuals(pred, true, 3)[:, 6]
    np.testing.assert_allclose(r, [2 * math.pi - 6.24, 6.24 - 2 * math.pi, 2 * math.pi - 6.24], atol=1e-9)
    # heading-agnostic: a flipped box has zero yaw residual
    flipped = pred.copy()
    flipped[:, 6] += math.pi
    np.testing.assert_allclose(residuals(pred, flipped, 3, math.pi)[:, 6], 0.0, atol=1e-9)
    # intervals calibrated on tiny yaw errors cover across the +/-pi seam
    rng = np.random.default_rng(0)
    n = 500
    cal_pred = np.tile(pred[0], (n, 1))
    cal_pred[:, 6] = rng.uniform(-math.pi, math.pi, n)
    cal_true = cal_pred.copy()
    cal_true[:, 6] = cal_pred[:, 6] + rng.normal(0, 0.05, n)  # unwrapped: some true yaws exceed pi
    cal = BoxIntervalCalibrator(dim=3, alpha=0.1).fit(cal_pred, cal_true)
    lo, hi = cal.predict(pred)
    lo_ok, hi_ok = side_coverage(pred, lo, hi, true, dim=3)
    assert (lo_ok[:, 6] & hi_ok[:, 6]).all()
    assert (hi[:, 6] - lo[:, 6] < 0.5).all()


def test_3d_detector_end_to_end():
    preds, gts = make_scenes(400, dim=3, rng=1, flip_rate=0.02)
    det = ConformalDetector(dim=3, alpha=0.1, scale="range", match_metric="center_distance",
                            match_threshold=2.0, alpha_cls=0.1).fit(preds[:300], gts[:300])
    out = det.predict(preds[350])
    assert out.lower.shape == out.boxes.shape and out.outer is None
    assert (out.lower[:, :6] <= out.boxes[:, :6]).all() or det.boxes_.q_lo_.min() < 0


def test_recall_control_warns_when_impossible():
    preds, gts = make_scenes(100, rng=2, miss_rate=0.6)
    with pytest.warns(UserWarning, match="no confidence threshold"):
        ctl = RecallRiskControl(alpha=0.05, delta=0.1).fit(preds, gts)
    assert not ctl.certified_ and ctl.threshold_ == 0.0


def test_abstention_budget_rate_holds():
    """rule='budget' at image level abstains on <= max_abstain of new frames (over 100 splits, 3 SE)."""
    preds, gts = make_scenes(1400, rng=5)
    det = ConformalDetector(alpha=0.1, alpha_cls=0.1, score_threshold=0.2).fit(preds[:400], gts[:400])
    results = [det.predict(p) for p in preds[400:]]
    rates = []
    rng = np.random.default_rng(0)
    for _ in range(100):
        perm = rng.permutation(1000)
        c, t = perm[:300], perm[300:]
        ab = DetectionAbstention(statistic="interval_size", level="image", rule="budget",
                                 rule_params={"max_abstain": 0.2})
        ab.fit(det, [preds[400 + i] for i in c], [gts[400 + i] for i in c])
        rates.append(np.mean([ab.predict(results[i]) for i in t]))
    assert np.mean(rates) <= 0.2 + 3 * np.std(rates) / 10
    assert np.mean(rates) > 0.1  # it does abstain


def test_abstention_selective_risk_and_detection_level():
    preds, gts = make_scenes(900, rng=6)
    det = ConformalDetector(alpha=0.1, alpha_cls=0.1, score_threshold=0.1).fit(preds[:300], gts[:300])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ab = DetectionAbstention(statistic="confidence", rule="selective_risk",
                                 rule_params={"delta": 0.22, "epsilon": 0.1}, random_state=0).fit(det, preds[300:],
                                                                                                  gts[300:])
    assert ab.ltt_ is not None and np.isfinite(ab.tau_)
    flags = ab.predict(det.predict(preds[0]))
    assert flags.shape == preds[0]["scores"].shape
    assert ab.event_rate_ > 0.22 and ab.tau_ < 1.0  # abstaining is needed to reach delta


def test_concurrent_predict_gives_identical_results(fitted, data2d):
    from concurrent.futures import ThreadPoolExecutor
    frames = data2d[0][400:480]
    serial = [fitted.predict(f) for f in frames]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(fitted.predict, frames))
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a.lower, b.lower)
        np.testing.assert_array_equal(a.class_sets, b.class_sets)


def test_docstring_examples_run():
    import doctest
    import importlib
    for name in ("matching", "recall", "predictor", "abstain", "intervals", "metrics"):
        mod = importlib.import_module(f"conformal.detection.{name}")
        result = doctest.testmod(mod, extraglobs={"np": np}, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, name


def test_evaluate_detector_report():
    from conformal.detection import evaluate_detector
    preds, gts = make_scenes(900, rng=8, bias=3.0)
    det = ConformalDetector(alpha=0.1, alpha_cls=0.1, recall_alpha=0.25, random_state=0).fit(preds[:500], gts[:500])
    rep = evaluate_detector(det, preds[500:], gts[500:])
    assert rep["box_joint"]["ci"][1] >= 0.9 and rep["class_set"]["ci"][1] >= 0.9  # consistent with the guarantee
    assert rep["recall_risk"] <= 0.25 + 0.05
    assert set(rep["box_per_size"]) <= {"small", "medium", "large"} and rep["mean_class_set_size"] >= 1
    assert sum(v[3] for v in rep["box_per_class"].values()) == rep["n_matched"]
    preds3, gts3 = make_scenes(500, dim=3, rng=9)
    det3 = ConformalDetector(dim=3, alpha=0.1, scale="range", match_metric="center_distance",
                             match_threshold=2.0).fit(preds3[:300], gts3[:300])
    rep3 = evaluate_detector(det3, preds3[300:], gts3[300:])
    assert set(rep3["box_per_range"]) <= {"<20 m", "20-40 m", ">=40 m"} and "class_set" not in rep3
