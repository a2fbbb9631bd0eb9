"""Config validation: every bad key or value fails on load, naming the key and the allowed values."""
import numpy as np
import pytest
import yaml

from audit import ConfigError, load_config, validate_config


def test_defaults_filled_and_input_untouched(tiny_config):
    raw = tiny_config()
    before = yaml.safe_dump(raw)
    cfg = validate_config(raw)
    assert yaml.safe_dump(raw) == before
    assert cfg["conformal"]["score"] == {"name": "aps", "params": {}}
    assert cfg["abstention"]["rule"] == {"name": "youden", "params": {}}
    assert cfg["executor"] == {"name": "local", "workers": 1, "address": None}
    assert cfg["corruptions"][0]["params"] == {}


@pytest.mark.parametrize("mutate, match", [
    (lambda c: c.pop("model"), "`model` is required"),
    (lambda c: c.update(colour="red"), r"unknown config key\(s\) colour; allowed keys: .*abstention"),
    (lambda c: c["split"].update(repeat=3), r"split.repeat; allowed keys under `split`: .*repeats"),
    (lambda c: c.update(conformal={"score": "apss"}), r"conformal.score.name` is 'apss'; allowed values: aps"),
    (lambda c: c.update(conformal={"score": {"name": "raps", "params": {"lambda": 1}}}),
     r"conformal.score.params.lambda; allowed keys .*k_reg, lam"),
    (lambda c: c.update(conformal={"alpha": 1.5}), r"conformal.alpha` must be in \(0, 1\)"),
    (lambda c: c.update(conformal={"randomized": "yes"}), r"conformal.randomized` must be true or false"),
    (lambda c: c.update(abstention={"statistic": "nll"}), r"abstention.statistic` is 'nll'; allowed values"),
    (lambda c: c.update(abstention={"rule": "roc"}), r"abstention.rule.name` is 'roc'; allowed values"),
    (lambda c: c.update(abstention={"rule": {"name": "budget", "params": {"max_abstain": 2.0}}}),
     r"rejected by the calibrator: `max_abstain` must be in \(0, 1\)"),
    (lambda c: c.update(abstention={"target": "risk"}), r"abstention.target` is 'risk'"),
    (lambda c: c.update(data={"name": "mnist"}), r"data.name` is 'mnist'; allowed values: digits"),
    (lambda c: c.update(model={"name": "resnet"}), r"model.name` is 'resnet'; allowed values"),
    (lambda c: c.update(model={"name": "sklearn_logreg", "params": {"C": -1}}), r"model.params.C` must be"),
    (lambda c: c["corruptions"].append({"name": "gaussian_noize"}), r"corruptions\[2\].name"),
    (lambda c: c["corruptions"][0].update(severities=[0, 6]), r"corruptions\[0\].severities` must hold"),
    (lambda c: c["corruptions"][0].update(severities=[]), r"non-empty list"),
    (lambda c: c["corruptions"].append(dict(c["corruptions"][0])), "listed twice"),
    (lambda c: c["corruptions"].append({"name": "nosuchmod:f"}), "cannot be imported"),
    (lambda c: c.update(executor={"name": "dask"}), r"executor.name` is 'dask'; allowed values: local, ray"),
    (lambda c: c.update(executor={"workers": 0}), r"executor.workers` must be >= 1"),
    (lambda c: c.update(seed=-1), r"`seed` must be >= 0"),
    (lambda c: c.update(data={"name": "precomputed", "params": {"path": "/nonexistent.npz"}}),
     r"does not exist"),
    (lambda c: c.update(data={"name": "image_folder", "params": {}}), r"data.params.root` is required"),
])
def test_bad_configs_name_the_key(tiny_config, mutate, match):
    cfg = tiny_config()
    mutate(cfg)
    with pytest.raises(ConfigError, match=match):
        validate_config(cfg)


def test_unknown_builtin_corruption_lists_valid_names(tiny_config):
    cfg = tiny_config(corruptions=[{"name": "gaussian_noize"}])
    with pytest.raises(ConfigError, match="allowed values: .*gaussian_noise"):
        validate_config(cfg)


def test_load_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(top)


def test_shipped_configs_validate():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "configs"
    names = sorted(p.name for p in root.glob("*.yaml"))
    assert "digits_camera.yaml" in names
    for p in root.glob("*.yaml"):
        assert load_config(p)["name"] == p.stem


def _write_png(path, value=128):
    import cv2

    cv2.imwrite(str(path), np.full((10, 10), value, dtype=np.uint8))


def test_image_folder_single_class_and_unreadable(tmp_path, tiny_config):
    from audit import run_audit

    root = tmp_path / "imgs"
    (root / "cat").mkdir(parents=True)
    _write_png(root / "cat" / "a.png")
    cfg = validate_config(tiny_config(data={"name": "image_folder", "params": {"root": str(root)}}))
    with pytest.raises(ConfigError, match="at least 2 classes"):
        run_audit(cfg, tmp_path / "out", quiet=True)
    (root / "dog").mkdir()
    (root / "dog" / "b.png").write_bytes(b"not a png")
    with pytest.raises(ConfigError, match=r"b.png' cannot be read"):
        run_audit(cfg, tmp_path / "out", quiet=True)


def test_output_dir_not_writable(tmp_path, tiny_config):
    from audit import run_audit

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="not writable"):
        run_audit(validate_config(tiny_config()), blocker / "out", quiet=True)


def test_ray_missing_is_an_error_before_work(tmp_path, tiny_config, monkeypatch):
    import sys

    from audit import run_audit

    monkeypatch.setitem(sys.modules, "ray", None)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"needs Ray, which is not installed.*\[ray\]"):
        run_audit(validate_config(tiny_config()), out, executor="ray", quiet=True)
    assert not out.exists()


def test_reference_model_refuses_its_training_data(tiny_config, tmp_path):
    """digits_cnn was trained on one half of digits_split(): auditing it on a seeded split would put training
    images into the calibration/test pool, so it is refused before any model runs."""
    from audit import run_audit

    cfg = validate_config(tiny_config(data={"name": "digits", "params": {"size": 28}},
                                      model={"name": "reference", "params": {"name": "digits_cnn"}}))
    with pytest.raises(ConfigError, match="split: reference"):
        run_audit(cfg, tmp_path / "out", quiet=True)
    cfg = validate_config(tiny_config(data={"name": "digits", "params": {"size": 28}},
                                      model={"name": "reference", "params": {"name": "shapes_pointnet"}}))
    with pytest.raises(ConfigError, match="trained on 'shapes' data"):
        run_audit(cfg, tmp_path / "out", quiet=True)
    with pytest.raises(ConfigError, match="model.params.name` is 'resnet'"):
        validate_config(tiny_config(model={"name": "reference", "params": {"name": "resnet"}}))


def test_import_cost():
    """`import conformal` does not import the audit; `import audit` pulls in no torch, matplotlib,
    OpenCV, open3d or Ray (they load only when a run needs them)."""
    import subprocess
    import sys

    code = ("import sys, conformal\n"
            "assert 'audit' not in sys.modules\n"
            "import audit\n"
            "heavy = [m for m in ('torch', 'matplotlib', 'cv2', 'open3d', 'ray', 'sklearn') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_image_npz_source_checks_arrays(tmp_path, tiny_config):
    from audit.tasks.classification.data import DATA_SOURCES

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 9, 9), dtype=np.uint8)
    labels = np.repeat([0, 1], 20)
    np.savez(tmp_path / "ok.npz", images=images, labels=labels)
    cfg = validate_config(tiny_config(data={"name": "image_npz", "params": {"path": str(tmp_path / "ok.npz")}}))
    d = DATA_SOURCES["image_npz"].load(cfg["data"]["params"], cfg["split"], cfg["seed"])
    assert d.pool_labels.shape[0] + d.train_labels.shape[0] == 40 and d.n_classes == 2
    assert images.sum() == np.load(tmp_path / "ok.npz")["images"].sum()  # file and arrays untouched
    for name, arrays, match in [("float.npz", {"images": images.astype(np.float32), "labels": labels},
                                 "must be uint8"),
                                ("short.npz", {"images": images, "labels": labels[:5]}, "labels must be integers"),
                                ("one.npz", {"images": images, "labels": np.zeros(40, dtype=int)}, "single class"),
                                ("nokey.npz", {"pixels": images, "labels": labels}, "has no array 'images'")]:
        np.savez(tmp_path / name, **arrays)
        cfg = validate_config(tiny_config(data={"name": "image_npz", "params": {"path": str(tmp_path / name)}}))
        with pytest.raises(ConfigError, match=match):
            DATA_SOURCES["image_npz"].load(cfg["data"]["params"], cfg["split"], cfg["seed"])
