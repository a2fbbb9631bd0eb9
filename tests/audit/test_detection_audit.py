"""The detection audit (`task: detection`): a SIMULATED detector on SYNTHETIC scenes, calibrated on clean frames.

End-to-end on a tiny pool (240 frames, 2 degradations x 2 severities, 20 splits): files, CSV columns, clean
coverage near 1 - alpha, coverage falling with severity, thresholds from clean calibration only, resume, and
identical results on 1 process, 2 worker processes and Ray.
"""
import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from audit import ConfigError, load_config, run_audit, validate_config
from audit.runner.results import metric_columns
from audit.tasks import TASKS
from perturbations.detector import REGISTRY as DEGRADATIONS
from perturbations.detector import degradation_names


def csv_columns():
    return metric_columns(TASKS["detection"].csv_metrics)


ROOT = Path(__file__).resolve().parents[2]


def tiny(**over):
    cfg = {
        "name": "tiny_detection",
        "task": "detection",
        "seed": 5,
        "data": {"name": "synthetic_scenes", "params": {"n_frames": 240, "mean_objects": 5.0}},
        "model": {"name": "simulated_detector", "params": {"bias": 2.0}},
        "split": {"calibration_fraction": 0.5, "repeats": 20},
        "conformal": {"alpha": 0.1, "alpha_cls": 0.1, "recall_alpha": 0.25, "recall_delta": 0.1},
        "corruptions": [{"name": "sensor_noise", "severities": [1, 5]},
                        {"name": "class_confusion", "severities": [1, 5]}],
        "output": {"plots": True, "report": True, "examples": 1},
    }
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def det_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("detaudit") / "base"
    cfg = validate_config(tiny())
    results = run_audit(cfg, out, quiet=True)
    return cfg, out, results


def _per_split(out):
    return json.loads((out / "results.json").read_text())["per_split"]


def _row(results, cell):
    return next(r for r in results["cells"] if r["cell"] == cell)


# --- config -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, match", [
    ({"task": "segmentation"}, r"`task` is 'segmentation'; allowed values: classification, detection"),
    ({"abstention": {"statistic": "entropy"}}, r"unknown config key\(s\) abstention; allowed keys: .*conformal"),
    ({"data": {"name": "kitti"}},
     r"`data.name` is 'kitti'; allowed values: coco, composite_scenes, lidar_scenes, synthetic_scenes"),
    ({"data": {"name": "synthetic_scenes", "params": {"dim": 4}}}, r"`data.params.dim` is 4; allowed values: 2"),
    ({"data": {"name": "synthetic_scenes", "params": {"frames": 10}}},
     r"data.params.frames; allowed keys under `data.params`: .*n_frames"),
    ({"data": {"name": "synthetic_scenes", "params": {"n_frames": 5}}}, r"`data.params.n_frames` must be >= 20"),
    ({"model": {"name": "yolo"}}, r"`model.name` is 'yolo'; allowed values: simulated_detector"),
    ({"model": {"name": "simulated_detector", "params": {"miss_rate": 1.5}}},
     r"`model.params.miss_rate` must be < 1.0; got 1.5"),
    ({"model": {"name": "simulated_detector", "params": {"flip_rate": 0.1}}}, r"flip_rate` applies to 3D"),
    ({"conformal": {"alpha": 1.5}}, r"`conformal.alpha` must be in \(0, 1\)"),
    ({"conformal": {"class_score": "bogus"}}, r"`conformal.class_score` is 'bogus'; allowed values: .*lac"),
    ({"conformal": {"scale": "bogus"}}, r"rejected by ConformalDetector: .*scale"),
    ({"conformal": {"qhat": 3}}, r"unknown config key\(s\) conformal.qhat; allowed keys under `conformal`"),
    ({"split": {"train_fraction": 0.5}},
     r"split.train_fraction; allowed keys under `split`: calibration_fraction, repeats"),
    ({"corruptions": [{"name": "fog"}]}, r"'fog', not a detector degradation; allowed values: sensor_noise"),
    ({"corruptions": [{"name": "heading_flip"}]}, r"'heading_flip' is not defined for dim=2"),
    ({"corruptions": [{"name": "clutter", "severities": [6]}]}, r"severities` must hold integers in 1..5"),
    ({"corruptions": [{"name": "clutter", "params": {"rate": 3}}]}, r"degradations take no params"),
    ({"corruptions": "clutter"}, r"`corruptions` must be a list"),
])
def test_config_errors_name_the_key_and_allowed_values(change, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(tiny(**change))


def test_validated_config_is_explicit_and_stable():
    cfg = validate_config(tiny())
    assert cfg["conformal"]["scale"] == "size" and cfg["model"]["params"]["noise"] == 2.0
    assert validate_config(cfg) == cfg  # a saved config.yaml validates to itself


def test_shipped_configs_validate():
    cfg = load_config(ROOT / "configs" / "detection_synthetic.yaml")
    assert cfg["task"] == "detection" and cfg["data"]["params"]["dim"] == 2
    assert {c["name"] for c in cfg["corruptions"]} <= set(degradation_names(2))
    cfg3 = load_config(ROOT / "configs" / "detection_synthetic_3d.yaml")
    assert cfg3["data"]["params"]["dim"] == 3 and "heading_flip" in {c["name"] for c in cfg3["corruptions"]}
    defaults3 = validate_config(tiny(data={"name": "synthetic_scenes", "params": {"dim": 3}},
                                     corruptions=[{"name": "heading_flip"}]))
    assert defaults3["conformal"]["scale"] == "range" and defaults3["model"]["params"]["noise"] == 0.15


# --- end to end -----------------------------------------------------------------------------------------------
def test_files_columns_and_clean_coverage(det_run):
    cfg, out, results = det_run
    for name in ("config.yaml", "results.json", "results.csv", "curves.npz", "report.html", "plots/heatmaps.png",
                 "plots/metrics_vs_severity.png", "plots/examples.png"):
        assert (out / name).is_file(), name
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == csv_columns()
    assert [r["cell"] for r in rows] == ["clean", "sensor_noise_s1", "sensor_noise_s5", "class_confusion_s1",
                                         "class_confusion_s5"]
    for r in rows:
        for m in ("box_coverage", "class_coverage", "joint_coverage", "recall_risk", "fp_per_frame"):
            assert float(r[f"{m}_lo"]) <= float(r[m]) <= float(r[f"{m}_hi"]), (r["cell"], m)
    clean = _row(results, "clean")
    assert clean["box_coverage"]["n"] == 20
    # Clean test frames are exchangeable with the calibration frames. Tolerance: 3 binomial SEs of a coverage
    # measured on all matched objects of the pool's test halves (the split SE understates it: the splits share
    # one pool), plus 0.03 above for the max-rank correction's conservativeness.
    n_obj = clean["matched_objects"]["mean"]
    for m, a in (("box_coverage", cfg["conformal"]["alpha"]), ("class_coverage", cfg["conformal"]["alpha_cls"])):
        tol = 3 * max(clean[m]["se"], math.sqrt(a * (1 - a) / (2 * n_obj)))
        assert 1 - a - tol <= clean[m]["mean"] <= 1 - a + 0.03 + tol, (m, clean[m])
    # the recall threshold keeps the expected missed fraction below recall_alpha (w.p. 1 - delta)
    assert clean["recall_risk"]["mean"] <= cfg["conformal"]["recall_alpha"] + 3 * clean["recall_risk"]["se"]
    report = (out / "report.html").read_text()
    assert "SYNTHETIC" in report and report.count("data:image/png;base64,") == 3


def test_coverage_falls_as_a_degradation_worsens(det_run):
    _, _, results = det_run
    clean = _row(results, "clean")
    box = [clean["box_coverage"]["mean"]] + [_row(results, f"sensor_noise_s{s}")["box_coverage"]["mean"]
                                             for s in (1, 5)]
    assert box[0] > box[1] + 0.03 and box[1] > box[2] + 0.2, box
    cls = [clean["class_coverage"]["mean"]] + [_row(results, f"class_confusion_s{s}")["class_coverage"]["mean"]
                                               for s in (1, 5)]
    assert cls[0] > cls[1] + 0.03 and cls[1] > cls[2] + 0.2, cls
    # class confusion leaves the boxes alone, sensor noise leaves the classes alone (same scenes in every cell)
    assert abs(_row(results, "class_confusion_s5")["box_coverage"]["mean"] - box[0]) < 0.01
    assert abs(_row(results, "sensor_noise_s5")["class_coverage"]["mean"] - cls[0]) < 0.03
    assert _row(results, "sensor_noise_s5")["recall_risk"]["mean"] > clean["recall_risk"]["mean"] + 0.2


def test_thresholds_come_from_clean_calibration_only(det_run):
    _, out, _ = det_run
    ps = _per_split(out)
    assert len(set(ps["clean"]["score_threshold"])) > 1  # the threshold really is refitted per split
    for c in ps:
        assert ps[c]["score_threshold"] == ps["clean"]["score_threshold"]


def test_resume_reuses_cache(det_run, tmp_path, monkeypatch):
    from audit.runner import executors

    cfg, out, _ = det_run
    copy = tmp_path / "resumed"
    shutil.copytree(out, copy)

    def must_not_run(task, ctx, cell):
        raise AssertionError(f"cell {cell['cell']} was recomputed despite --resume")

    monkeypatch.setattr(executors, "compute_cell", must_not_run)
    run_audit(dict(cfg, output=dict(cfg["output"], plots=False, report=False)), copy, resume=True, quiet=True)
    assert _per_split(copy) == _per_split(out)
    changed = validate_config(dict(cfg, model={"name": "simulated_detector", "params": {"bias": 3.0}}))
    with pytest.raises(AssertionError, match="recomputed despite --resume"):
        run_audit(changed, copy, resume=True, quiet=True)


def test_workers_and_ray_give_identical_results(det_run, tmp_path):
    import ray  # noqa: F401  (the `ray` extra is part of the dev environment)

    cfg, out, _ = det_run
    # 2 splits: split r is seeded by (seed, r) only, so they must equal the first 2 of the base run
    quick = dict(cfg, split=dict(cfg["split"], repeats=2), output=dict(cfg["output"], plots=False, report=False))
    run_audit(quick, tmp_path / "procs", workers=2, quiet=True)
    run_audit(quick, tmp_path / "ray", workers=2, executor="ray", quiet=True)
    base = {c: {m: v[:2] for m, v in d.items()} for c, d in _per_split(out).items()}
    assert _per_split(tmp_path / "procs") == base
    assert _per_split(tmp_path / "ray") == base
    for f in (out / "cache").glob("*.npz"):
        with np.load(f) as a:
            for other in ("procs", "ray"):
                with np.load(tmp_path / other / "cache" / f.name) as b:
                    assert sorted(a.files) == sorted(b.files)
                    for k in a.files:
                        np.testing.assert_array_equal(a[k], b[k])


def test_3d_audit_with_heading_flips(tmp_path):
    cfg = validate_config(tiny(
        data={"name": "synthetic_scenes", "params": {"dim": 3, "n_frames": 160, "mean_objects": 6.0}},
        model={"name": "simulated_detector", "params": {"flip_rate": 0.0}},
        split={"repeats": 3},
        conformal={"alpha": 0.1, "alpha_cls": 0.1, "recall_alpha": None, "score_threshold": 0.0,
                   "match_metric": "center_distance", "match_threshold": 2.0},
        corruptions=[{"name": "heading_flip", "severities": [5]}]))
    results = run_audit(cfg, tmp_path / "d3", quiet=True)
    clean, flipped = _row(results, "clean"), _row(results, "heading_flip_s5")
    # 30% of headings off by pi: the yaw interval (2 pi period) cannot cover them
    assert flipped["box_coverage"]["mean"] < clean["box_coverage"]["mean"] - 0.15
    assert (tmp_path / "d3" / "plots" / "examples.png").is_file()


def test_cli_list_validate_and_report(det_run, capsys):
    from audit.cli import main

    _, out, _ = det_run
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    for name in DEGRADATIONS:
        assert name in listing
    assert "synthetic_scenes" in listing and "simulated_detector" in listing
    assert main(["validate", str(ROOT / "configs" / "detection_synthetic.yaml")]) == 0
    assert "task: detection" in capsys.readouterr().out
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").is_file()


def test_calibration_warnings_are_counted_and_reported(tmp_path):
    cfg = validate_config(tiny(data={"name": "synthetic_scenes", "params": {"n_frames": 60}}, split={"repeats": 2},
                               conformal={"recall_alpha": 0.01}, corruptions=[],
                               output={"plots": False, "report": True, "examples": 0}))
    results = run_audit(cfg, tmp_path / "w", quiet=True)
    (msg, count), = results["calibration_warnings"].items()
    assert count == 2 and "certifies recall risk <= 0.01" in msg
    assert "certifies recall risk &lt;= 0.01" in (tmp_path / "w" / "report.html").read_text()


def test_crashed_detection_cell_is_reported_and_others_continue(tmp_path, monkeypatch):
    import perturbations.registry as D

    real_apply = D.corrupt_logged

    def flaky(x, name, severity, *args, **kwargs):
        if name == "sensor_noise" and severity == 5:
            raise ArithmeticError("simulated failure at severity 5")
        return real_apply(x, name, severity, *args, **kwargs)

    monkeypatch.setattr(D, "corrupt_logged", flaky)  # in-process executor: the patched function is the one that runs
    cfg = validate_config(tiny(corruptions=[{"name": "sensor_noise", "severities": [1, 5]}],
                               split={"calibration_fraction": 0.5, "repeats": 3},
                               output={"plots": False, "report": False, "examples": 0}))
    results = run_audit(cfg, tmp_path / "out", quiet=True)
    assert list(results["failed_cells"]) == ["sensor_noise_s5"]
    assert "ArithmeticError: simulated failure at severity 5" in results["failed_cells"]["sensor_noise_s5"]
    assert [r["cell"] for r in results["cells"]] == ["clean", "sensor_noise_s1"]
    assert (tmp_path / "out" / "cache" / "sensor_noise_s1.npz").is_file()
    assert not (tmp_path / "out" / "cache" / "sensor_noise_s5.npz").exists()
    with (tmp_path / "out" / "results.csv").open() as fh:
        assert [row["cell"] for row in csv.DictReader(fh)] == ["clean", "sensor_noise_s1"]
