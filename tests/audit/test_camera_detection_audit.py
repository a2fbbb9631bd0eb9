"""The detection audit on camera images (`data: composite_scenes`, `model: scenes_detector`): image corruptions
applied to composite scenes, the trained detector re-run per cell, the symmetric baseline and AP beside ours.

A tiny pool (240 scenes, one corruption at severity 5, 10 splits): clean coverage near 1 - alpha, the corruption
raising the recall risk or lowering the coverage, identical results on 1 process and 2 worker processes.
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("cv2")
pytest.importorskip("skimage")

from audit import ConfigError, load_config, run_audit, validate_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def tiny(**over):
    cfg = {"name": "tiny_camera_detection", "task": "detection", "seed": 3,
           "data": {"name": "composite_scenes", "params": {"n_frames": 240}},
           "model": {"name": "scenes_detector", "params": {"batch_size": 64}},
           "split": {"calibration_fraction": 0.5, "repeats": 10},
           "conformal": {"alpha": 0.1, "alpha_cls": 0.1, "class_score": "aps", "recall_alpha": 0.3},
           "corruptions": [{"name": "gaussian_noise", "severities": [5]}],
           "output": {"plots": True, "report": True, "examples": 1}}
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def cam_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("camdet") / "base"
    cfg = validate_config(tiny())
    return cfg, out, run_audit(cfg, out, quiet=True)


def _row(results, cell):
    return next(r for r in results["cells"] if r["cell"] == cell)


@pytest.mark.parametrize("change, match", [
    ({"model": {"name": "simulated_detector"}}, r"`model.name` is 'simulated_detector'; allowed values: "
                                                r"scenes_detector"),
    ({"model": {"name": "scenes_detector", "params": {"thresh": 1}}}, r"model.params.thresh; allowed keys"),
    ({"model": {"name": "scenes_detector", "params": {"weights": "nope.pt"}}}, r"model.params.weights"),
    ({"data": {"name": "composite_scenes", "params": {"n_frames": 5}}}, r"`data.params.n_frames` must be >= 20"),
    ({"corruptions": [{"name": "box_shift"}]}, r"'box_shift', not an image corruption"),
])
def test_config_errors(change, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(tiny(**change))


def test_shipped_config_validates():
    cfg = load_config(ROOT / "configs" / "camera_detection.yaml")
    assert cfg["data"]["name"] == "composite_scenes" and cfg["data"]["params"]["n_frames"] >= 1000
    assert len(cfg["corruptions"]) == 8 and all(c["severities"] == [1, 2, 3, 4, 5] for c in cfg["corruptions"])


def test_clean_coverage_and_the_baseline_and_ap(cam_run):
    cfg, out, results = cam_run
    clean = _row(results, "clean")
    # Tolerance: 3 binomial SEs of a coverage over all matched objects of the test halves (the split SE
    # understates it: the splits share one pool), plus 0.03 above for the max-rank correction's conservativeness.
    n_obj = clean["matched_objects"]["mean"]
    assert n_obj > 100
    for m, a in (("box_coverage", cfg["conformal"]["alpha"]), ("class_coverage", cfg["conformal"]["alpha_cls"])):
        tol = 3 * max(clean[m]["se"], math.sqrt(a * (1 - a) / (2 * n_obj)))
        assert 1 - a - tol <= clean[m]["mean"] <= 1 - a + 0.03 + tol, (m, clean[m])
    assert 0.0 < clean["box_coverage_symmetric"]["mean"] <= 1.0
    assert 0.3 < clean["ap50"]["mean"] <= 1.0 and clean["ap50"]["lo"] == clean["ap50"]["hi"]  # pool-wide, per cell
    report = (out / "report.html").read_text()
    assert "symmetric baseline" in report and "AP@0.5" in report
    assert (out / "plots" / "heatmaps.png").is_file() and (out / "applied" / "gaussian_noise_s5.json.gz").is_file()


def test_severity_5_noise_lowers_recall_or_coverage(cam_run):
    _, _, results = cam_run
    clean, noisy = _row(results, "clean"), _row(results, "gaussian_noise_s5")
    assert (noisy["recall_risk"]["mean"] > clean["recall_risk"]["mean"] + 0.1
            or noisy["box_coverage"]["mean"] < clean["box_coverage"]["mean"] - 0.05)
    assert noisy["ap50"]["mean"] < clean["ap50"]["mean"] - 0.05


def test_identical_results_on_two_worker_processes(cam_run, tmp_path):
    cfg, out, _ = cam_run
    quick = dict(cfg, split=dict(cfg["split"], repeats=2), output=dict(cfg["output"], plots=False, report=False))
    run_audit(quick, tmp_path / "procs", workers=2, quiet=True)
    base = json.loads((out / "results.json").read_text())["per_split"]
    procs = json.loads((tmp_path / "procs" / "results.json").read_text())["per_split"]
    assert procs == {c: {m: v[:2] for m, v in d.items()} for c, d in base.items()}
    for f in (out / "cache").glob("*.npz"):
        with np.load(f) as a, np.load(tmp_path / "procs" / "cache" / f.name) as b:
            assert sorted(a.files) == sorted(b.files)
            for k in a.files:
                np.testing.assert_array_equal(a[k], b[k])


# --- data: coco (a user's own result files) ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def coco_files(tmp_path_factory):
    from adapters.datasets import make_scenes
    from conformal.detection import io as cio

    d = tmp_path_factory.mktemp("coco")
    preds, gts = make_scenes(240, rng=11, n_classes=3, bias=2.0)
    cats = [3, 8, 20]
    ids = [1000 + i for i in range(240)]
    cio.write_coco(d / "ann.json", cio.coco_annotations(gts, image_ids=ids, category_ids=cats))
    cio.write_coco(d / "clean.json", cio.coco_results(preds, image_ids=ids, category_ids=cats))
    rng = np.random.default_rng(0)
    noisy = [dict(p, boxes=np.sort((p["boxes"] + rng.normal(0, 8, p["boxes"].shape)).reshape(-1, 2, 2), axis=1)
                  .reshape(-1, 4)) for p in preds]
    cio.write_coco(d / "noisy5.json", cio.coco_results(noisy, image_ids=ids, category_ids=cats))
    return d


def coco_cfg(d, **over):
    cfg = {"name": "coco_files", "task": "detection", "seed": 0,
           "data": {"name": "coco", "params": {"annotations": str(d / "ann.json"),
                                               "results": {"clean": str(d / "clean.json"),
                                                           "box_noise": {5: str(d / "noisy5.json")}}}},
           "model": {"name": "precomputed"}, "split": {"calibration_fraction": 0.5, "repeats": 10},
           "conformal": {"alpha": 0.1, "alpha_cls": 0.1, "recall_alpha": None, "score_threshold": 0.3},
           "corruptions": [{"name": "box_noise", "severities": [5]}],
           "output": {"plots": False, "report": True, "examples": 0}}
    cfg.update(over)
    return cfg


def test_coco_files_audit(coco_files, tmp_path):
    pytest.importorskip("pycocotools")
    cfg = validate_config(coco_cfg(coco_files))
    assert cfg["data"]["params"]["n_frames"] == 240
    results = run_audit(cfg, tmp_path / "coco", quiet=True)
    clean, noisy = _row(results, "clean"), _row(results, "box_noise_s5")
    n_obj = clean["matched_objects"]["mean"]
    tol = 3 * max(clean["box_coverage"]["se"], math.sqrt(0.09 / (2 * n_obj)))
    assert 0.9 - tol <= clean["box_coverage"]["mean"] <= 0.93 + tol
    assert noisy["box_coverage"]["mean"] < clean["box_coverage"]["mean"] - 0.2
    # the baseline is conformal too (|residual| quantiles): valid on clean frames; its size is reported beside ours
    assert clean["box_coverage_symmetric"]["mean"] >= 0.9 - tol
    assert clean["interval_size_symmetric"]["mean"] > 1.0
    assert math.isfinite(clean["ap50"]["mean"]) and noisy["ap50"]["mean"] < clean["ap50"]["mean"]


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.update(corruptions=[{"name": "box_noise", "severities": [1, 5]}]), r"severities \[1\] has no result"),
    (lambda c: c.update(corruptions=[{"name": "fog"}]), r"'fog', which has no result files; allowed values: box_no"),
    (lambda c: c["data"]["params"]["results"].pop("clean"), r"must map 'clean'"),
    (lambda c: c["data"]["params"].update(annotations="missing.json"), r"data.params.annotations"),
    (lambda c: c.update(model={"name": "scenes_detector"}), r"allowed values: precomputed"),
])
def test_coco_config_errors(coco_files, edit, match):
    cfg = coco_cfg(coco_files)
    edit(cfg)
    with pytest.raises(ConfigError, match=match):
        validate_config(cfg)
