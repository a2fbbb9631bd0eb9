"""The reference 3D detector (`adapters.reference.load("lidar_detector")`) on SYNTHETIC ray-cast scans it never saw,
and `ConformalDetector(dim=3)` calibrated on its clean outputs."""
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("open3d")

from adapters import reference  # noqa: E402
from adapters.datasets.lidar_scenes import load_lidar_scenes, visible  # noqa: E402
from adapters.lidar_detector import LidarDetector, centre_recall, coverage_breakdown  # noqa: E402
from conformal.detection import ConformalDetector, evaluate_detector  # noqa: E402

RECALL_FLOOR = 0.6     # BEV-centre recall (<= 2 m, objects with >= 20 returns, score >= 0.3); measured: see docs
N_POOL = 240           # calibration-split scans 0..239 (never trained on)
ALPHA = ALPHA_CLS = 0.1


@pytest.fixture(scope="module")
def detector():
    torch.set_num_threads(1)
    return reference.load("lidar_detector")


@pytest.fixture(scope="module")
def pool(detector):
    scans, frames = load_lidar_scenes("calibration", N_POOL)
    return detector.predict(scans), [visible(f, 5) for f in frames]


def test_predict_returns_conformal_frames(detector):
    scans, _ = load_lidar_scenes("test", 2, start=450)
    a = detector.predict(scans)
    b = detector.predict(scans[1])  # one array is a batch of one
    assert len(a) == 2 and len(b) == 1
    for k in ("boxes3d", "scores", "labels", "class_probs"):
        np.testing.assert_array_equal(a[1][k], b[0][k])  # same scan, same output
    f = a[0]
    m = len(f["scores"])
    assert 0 < m <= 100 and f["boxes3d"].shape == (m, 7) and f["class_probs"].shape == (m, 4)
    assert f["labels"].dtype == np.int64 and (f["scores"] >= 0.05).all() and (f["scores"] <= 1).all()
    np.testing.assert_allclose(f["class_probs"].sum(1), 1.0, atol=1e-6)
    assert (np.abs(f["boxes3d"][:, 6]) <= math.pi / 2 + 1e-9).all() and (f["boxes3d"][:, 3:6] > 0).all()


def test_bad_scans_are_refused(detector):
    with pytest.raises(TypeError, match="scans"):
        detector.predict("scan.bin")
    with pytest.raises(ValueError, match=r"scans\[0\]"):
        detector.predict([np.zeros((10, 3), np.float32)])
    with pytest.raises(ValueError, match="score_floor"):
        LidarDetector(detector.model, score_floor=1.5)


def test_recall_above_floor_on_a_held_out_slice(detector):
    scans, frames = load_lidar_scenes("test", 60, start=400)
    rec = centre_recall(detector.predict(scans), frames)
    assert rec >= RECALL_FLOOR, rec
    far = centre_recall(detector.predict(scans), frames, radius=0.05)
    assert far < rec  # the criterion can fail: a 5 cm radius misses most centres


def test_conformal_3d_coverage_within_binomial_tolerance(pool):
    """Over 10 random calibration/test splits of the pool: mean joint box coverage and class-set coverage of matched
    kept detections within 3 binomial standard errors of 1 - alpha (from below) and 1 - alpha + 1/(n+1) (above)."""
    preds, gts = pool
    box, cls, n_test = [], [], []
    for r in range(10):
        perm = np.random.default_rng(r).permutation(N_POOL)
        cal, test = perm[:N_POOL // 2], perm[N_POOL // 2:]
        cd = ConformalDetector(dim=3, alpha=ALPHA, alpha_cls=ALPHA_CLS, class_score="aps", yaw_period=math.pi,
                               match_metric="center_distance", match_threshold=2.0, score_threshold=0.3,
                               scale="range")
        cd.fit([preds[i] for i in cal], [gts[i] for i in cal])
        res = evaluate_detector(cd, [preds[i] for i in test], [gts[i] for i in test])
        box.append(res["box_joint"]["value"])
        cls.append(res["class_set"]["value"])
        n_test.append(res["n_matched"])
        n_cal = cd.n_matched_
    n = min(n_test)
    assert n >= 300, n
    se = math.sqrt(ALPHA * (1 - ALPHA) / n)
    for cov in (np.mean(box), np.mean(cls)):
        assert 1 - ALPHA - 3 * se <= cov <= 1 - ALPHA + 1 / (n_cal + 1) + 3 * se, (cov, se)
    bd = coverage_breakdown(cd, [preds[i] for i in test], [gts[i] for i in test])
    assert set(bd["box_by_range"]) <= {"<20 m", "20-40 m", ">=40 m"} and bd["n_matched"] == res["n_matched"]
    assert sum(v[3] for v in bd["box_by_points"].values()) == bd["n_matched"]


def test_streaming_example_in_the_docs_runs(tmp_path):
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    (block,) = re.findall(r"```python\n(.*?)```", (root / "docs" / "lidar_detection.md").read_text(), re.S)
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("conformal step") == 3
