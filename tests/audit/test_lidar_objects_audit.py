"""The point-cloud classification audit on LiDAR object clusters (`data: lidar_objects`): SYNTHETIC ray-cast scans,
clusters = the points inside each ground-truth box; a LiDAR scene corruption acts on the whole scan first and the
clusters are cut again from the corrupted scan. Sources without scans refuse scene corruptions."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("open3d")

from audit import ConfigError, load_config, run_audit, validate_config  # noqa: E402
from audit.tasks.classification import corrupt, data, models  # noqa: E402
from perturbations.pointcloud import SCENE_CORRUPTIONS  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SPLIT = {"max_samples": None, "train_fraction": 0.0}


def tiny(**over):
    cfg = {"name": "tiny_lidar_objects", "seed": 2,
           "data": {"name": "lidar_objects", "params": {"n_train_scenes": 30, "n_scenes": 24}},
           "split": {"train_fraction": 0.0, "calibration_fraction": 0.5, "repeats": 5},
           "model": {"name": "sklearn_logreg", "params": {"features": "cluster", "max_iter": 1000}},
           "conformal": {"score": "lac", "alpha": 0.1},
           "corruptions": [{"name": "snow", "severities": [5]}, {"name": "density_dec", "severities": [3]}],
           "output": {"plots": True, "report": True, "examples": 2, "render_png": False}}
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def pool():
    ds = data.DATA_SOURCES["lidar_objects"].load({"n_train_scenes": 30, "n_scenes": 24}, SPLIT, 0)
    params = {"features": "cluster", "max_iter": 1000}
    models.MODELS["sklearn_logreg"].check_params(params, "model.params", None)
    return ds, models.MODELS["sklearn_logreg"].prepare(params, ds, 0)


def test_shipped_config_is_valid_and_uses_scene_corruptions():
    cfg = load_config(ROOT / "configs" / "lidar_objects.yaml")
    names = {c["name"] for c in cfg["corruptions"]}
    assert cfg["data"]["name"] == "lidar_objects" and {"fog", "snow"} <= names


@pytest.mark.parametrize("name", SCENE_CORRUPTIONS)
def test_scene_corruptions_are_accepted_for_the_scene_level_source(name):
    cfg = validate_config(tiny(corruptions=[{"name": name, "severities": [5]}]))
    assert cfg["corruptions"][0]["name"] == name


def test_scene_corruptions_are_refused_without_a_scene_level_input():
    shapes = tiny(data={"name": "shapes", "params": {"n_per_class": 6}}, split={"train_fraction": 0.5})
    for name in ("fog", "snow"):
        with pytest.raises(ConfigError, match=f"`corruptions\\[0\\].name` is '{name}', a LiDAR scene corruption.*"
                                              "no scene-level input.*lidar_objects"):
            validate_config({**shapes, "corruptions": [{"name": name, "severities": [5]}]})
    # an object-level corruption stays fine there, and a per-scan fact is not a config option
    validate_config({**shapes, "corruptions": [{"name": "gaussian", "severities": [5]}]})
    with pytest.raises(ConfigError, match="ring"):
        validate_config(tiny(corruptions=[{"name": "beam_missing", "severities": [5], "params": {"ring": [0]}}]))


def test_clusters_are_the_points_inside_each_ground_truth_box(pool):
    from adapters.datasets.lidar_scenes import load_lidar_scenes, points_in_boxes

    ds, _ = pool
    sc = ds.extra["scenes"]
    scans, frames = load_lidar_scenes("test", 24)
    assert len(ds.pool_inputs) == sc["index"].shape[0] == ds.pool_labels.shape[0] > 100
    for c, (i, j), y in zip(ds.pool_inputs, sc["index"], ds.pool_labels):
        row = int(np.flatnonzero((frames[i]["boxes3d"] == sc["boxes"][i][j]).all(1))[0])
        assert c.dtype == np.float32 and c.shape == (frames[i]["n_points"][row], 4) and c.shape[0] >= 10
        assert points_in_boxes(c, sc["boxes"][i][j:j + 1]).all() and y == frames[i]["labels"][row]


@pytest.mark.parametrize("name", ["fog", "snow"])
def test_severity_5_fog_and_snow_thin_the_clusters_and_lower_accuracy(pool, name):
    ds, model = pool
    clean = ds.pool_inputs
    out, records = corrupt.corrupt_scenes(ds.extra["scenes"], name, 5, {}, np.random.default_rng(5))
    n0, n1 = np.array([len(c) for c in clean]), np.array([len(c) for c in out])
    assert len(records) == 24 and records[0]["name"] == name and records[0]["severity"] == 5
    assert len(out) == len(clean) and n1.sum() < 0.97 * n0.sum() and (n1 < n0).mean() > 0.4, (n1.sum(), n0.sum())
    acc = [float((model.predict_proba(x).argmax(1) == ds.pool_labels).mean()) for x in (clean, out)]
    assert acc[0] > 0.85 and acc[1] < acc[0] - 0.03, acc


def test_the_applied_record_replays_the_corrupted_scan(pool):
    from perturbations.pointcloud import corrupt_with_index
    from perturbations.registry import replay

    ds, _ = pool
    sc = ds.extra["scenes"]
    _, records = corrupt.corrupt_scenes(sc, "beam_missing", 4, {}, np.random.default_rng(9))
    opts = data.scene_options("beam_missing", sc["facts"][3], sc["n_rings"])
    again, idx = replay(sc["scans"][3], records[3], **opts)
    gen = np.random.default_rng(9)
    for k in range(4):  # the cell's one generator, advanced scan by scan
        out, index = corrupt_with_index(sc["scans"][k], "beam_missing", 4, gen,
                                        **data.scene_options("beam_missing", sc["facts"][k], sc["n_rings"]))
    np.testing.assert_array_equal(again, out)
    np.testing.assert_array_equal(idx, index)


def test_tiny_audit_end_to_end(tmp_path):
    cfg = validate_config(tiny())
    res = run_audit(cfg, tmp_path / "run", quiet=True)
    rows = {r["cell"]: r for r in res["cells"]}
    assert res["data"]["modality"] == "pointcloud" and "SYNTHETIC" in res["data"]["description"]
    clean, snow = rows["clean"], rows["snow_s5"]
    assert clean["accuracy"]["mean"] > 0.85 and abs(clean["coverage"]["mean"] - 0.9) < 0.08
    assert snow["accuracy"]["mean"] < clean["accuracy"]["mean"]
    z = np.load(tmp_path / "run" / "cache" / "snow_s5.npz")
    assert z["examples"].shape[1] == 4
    assert (tmp_path / "run" / "applied" / "snow_s5.json.gz").is_file()
    assert (tmp_path / "run" / "report.html").is_file()


def test_dry_run_cuts_the_first_clusters_from_the_first_scans_only():
    from audit.runner.run import dry_run
    from audit.tasks import get_task

    lines = dry_run(get_task("classification"), validate_config(tiny(corruptions=[{"name": "fog", "severities": [5]}])),
                    n=5, log=lambda *a: None)
    assert any(line.startswith("fog_s5: ok") and "probs (5, 4)" in line for line in lines), lines
