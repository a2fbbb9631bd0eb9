"""The LiDAR detection audit (`data: lidar_scenes`): SYNTHETIC ray-cast scans, the nine scene corruptions applied to
the scans before the reference BEV detector, conformal 3D boxes calibrated on clean scans."""
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("open3d")

from adapters.datasets.lidar_scenes import make_lidar_scene, points_in_boxes  # noqa: E402
from adapters.lidar_detector import centre_recall  # noqa: E402
from audit import ConfigError, load_config, run_audit, validate_config  # noqa: E402
from audit.tasks.detection.sources import lidar  # noqa: E402
from perturbations.pointcloud import SCENE_CORRUPTIONS, corrupt_with_index  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def tiny(**over):
    cfg = {"name": "tiny_lidar", "task": "detection", "seed": 3,
           "data": {"name": "lidar_scenes", "params": {"n_frames": 40}},
           "model": {"name": "lidar_detector", "params": {}},
           "split": {"calibration_fraction": 0.5, "repeats": 3},
           "conformal": {"alpha": 0.1, "alpha_cls": 0.1, "yaw_period": float(np.pi), "match_metric": "center_distance",
                         "match_threshold": 2.0, "recall_alpha": None, "score_threshold": 0.3},
           "corruptions": [{"name": "snow", "severities": [5]}],
           "output": {"plots": True, "report": True, "examples": 1, "render_png": False}}
    cfg.update(over)
    return cfg


def test_shipped_config_is_valid_and_lists_all_nine_scene_corruptions():
    cfg = load_config(ROOT / "configs" / "lidar_detection.yaml")
    assert cfg["data"]["name"] == "lidar_scenes" and cfg["conformal"]["yaw_period"] == pytest.approx(np.pi)
    assert [c["name"] for c in cfg["corruptions"]] == list(SCENE_CORRUPTIONS)


def test_bad_config_values_are_named():
    with pytest.raises(ConfigError, match="not a LiDAR scene corruption"):
        validate_config(tiny(corruptions=[{"name": "gaussian", "severities": [1]}]))
    with pytest.raises(ConfigError, match="n_rings"):
        validate_config(tiny(data={"name": "lidar_scenes", "params": {"n_rings": 16}}))
    with pytest.raises(ConfigError, match="model.name"):
        validate_config(tiny(model={"name": "simulated_detector", "params": {}}))


@pytest.mark.parametrize("name", SCENE_CORRUPTIONS)
def test_per_point_labels_survive_scene_corruptions_through_corrupt_with_index(name):
    scan, frame = make_lidar_scene(3_000_007)
    opts = lidar._options(name, frame, 32)
    out, idx = corrupt_with_index(scan, name, 5, 11, **opts)
    assert idx.shape == (len(out),) and idx.dtype == np.int64 and idx.max() < len(scan) and idx.min() >= -1
    src = np.flatnonzero(idx >= 0)
    assert np.unique(idx[src]).size == src.size  # no return is counted twice
    label = np.full(len(out), -1)
    label[src] = frame["instance"][idx[src]]
    np.testing.assert_array_equal(out[src, 3] >= 0, True)
    obj = np.flatnonzero(label >= 0)
    if name in ("rain", "snow"):  # a return may come back from nearer (attenuation / particles): same ray
        a = out[src, :3] / np.linalg.norm(out[src, :3], axis=1, keepdims=True)
        b = scan[idx[src], :3] / np.linalg.norm(scan[idx[src], :3], axis=1, keepdims=True)
        np.testing.assert_allclose(a, b, atol=1e-4)
    elif name != "motion_distortion":  # every other corruption keeps or drops a return, never moves it
        np.testing.assert_array_equal(out[src, :3], scan[idx[src], :3])
        inside = points_in_boxes(out[obj], frame["boxes3d"])
        assert inside[np.arange(obj.size), label[obj]].all()  # a labelled object point is inside its own box
    if name == "motion_distortion":
        assert obj.size == (frame["instance"] >= 0).sum()  # it moves returns, it never drops one


@pytest.fixture(scope="module")
def ctx():
    cfg = validate_config(tiny())
    return lidar.LidarScenes().context(cfg)


@pytest.mark.parametrize("name", ["fog", "snow"])
def test_fog_and_snow_at_severity_5_lower_recall(ctx, name):
    small = {**ctx, "n_frames": 25}
    clean_preds, _, _ = lidar.simulate(small, "clean", 0)
    preds, _, records = lidar.simulate(small, name, 5)
    truth = [make_lidar_scene(lidar_seed(i))[1] for i in range(25)]
    clean, bad = centre_recall(clean_preds, truth), centre_recall(preds, truth)
    assert len(records) == 25 and records[0]["name"] == name
    assert bad < clean - 0.1, (clean, bad)


def lidar_seed(i):
    from adapters.datasets.lidar_scenes import SPLIT_SEEDS

    return SPLIT_SEEDS["test"] + i


def test_audit_end_to_end_writes_ap_coverage_and_bev_examples(tmp_path):
    cfg = validate_config(tiny())
    results = run_audit(cfg, tmp_path / "run", quiet=True)
    rows = {r["cell"]: r for r in results["cells"]}
    clean, snow = rows["clean"], next(r for c, r in rows.items() if c != "clean")
    for m in ("box_coverage", "class_coverage", "recall_risk", "fp_per_frame", "ap_bev", "ap_3d"):
        assert np.isfinite(clean[m]["mean"]) and "lo" in clean[m], m
    assert snow["recall_risk"]["mean"] > clean["recall_risk"]["mean"]
    assert (tmp_path / "run" / "plots" / "examples.png").is_file()
    curves = np.load(tmp_path / "run" / "curves.npz")
    assert curves["clean__ex_points"].shape[1] == 3
    html = (tmp_path / "run" / "report.html").read_text()
    assert "BEV AP" in html and "SYNTHETIC" in html
    applied = json.loads(__import__("gzip").decompress((tmp_path / "run" / "applied" / f"{snow['cell']}.json.gz")
                                                         .read_bytes()))
    assert len(applied) == 40


def test_cached_clean_scans_are_the_generated_ones_and_corruptions_never_touch_them():
    from perturbations.registry import corrupt_logged

    ctx = {"n_rings": 32, "seed": 4}
    scan, frame = make_lidar_scene(lidar_seed(31))
    first, gt, rec = lidar.scan_of(ctx, "fog", 5, 31)  # fills this process's cache
    again, _, rec2 = lidar.scan_of(ctx, "fog", 5, 31)  # from the cache
    clean, _, none = lidar.scan_of(ctx, "clean", 0, 31)
    np.testing.assert_array_equal(clean, scan)
    np.testing.assert_array_equal(gt["boxes3d"], frame["boxes3d"])
    np.testing.assert_array_equal(again, first)
    assert none is None and rec == rec2
    # the same scan the uncached path made: the fresh scene corrupted with its own per-scan facts
    import zlib

    rng = np.random.default_rng(np.random.SeedSequence([4, 8123, zlib.crc32(b"fog"), 31]))
    (want, _), _ = corrupt_logged(scan, "fog", 5, rng, "pointcloud", **lidar._options("fog", frame, 32))
    np.testing.assert_array_equal(first, want)
