"""Audit models from files: `torchscript`, `onnx` and `torch` (class + state_dict) resolved against the config
file's folder, the `{name, path}` shorthand, preprocessing as data, and errors at load time (not per cell)."""
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("cv2")

from audit import validate_config  # noqa: E402
from audit.errors import ConfigError  # noqa: E402

NETS = textwrap.dedent('''
    import torch
    from torch import nn

    class Pixels(nn.Module):
        """Linear model on the flattened pixels of 1 x 8 x 8 inputs."""
        def __init__(self, num_classes=10):
            super().__init__()
            self.fc = nn.Linear(64, num_classes)

        def forward(self, x):
            return self.fc(torch.flatten(x, 1))
''')


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A folder as a user has it: nets.py, weights.pt (state_dict), model.pt (TorchScript), model.onnx."""
    d = tmp_path_factory.mktemp("user_models")
    (d / "audit_user_nets.py").write_text(NETS)
    from adapters.loaders import load_class

    torch.manual_seed(0)
    net = load_class("audit_user_nets.py:Pixels", d)().eval()
    torch.save(net.state_dict(), d / "weights.pt")
    torch.jit.trace(net, torch.zeros(2, 1, 8, 8)).save(str(d / "model.pt"))
    (d / "bad.pt").write_bytes(b"\x00" * 64)
    return d


def _cfg(tiny_config, model):
    return tiny_config(model=model)


GRAY = {"preprocess": {"color": "gray", "mean": 0.5, "std": 0.25}}


@pytest.mark.parametrize("model", [
    {"name": "torchscript", "path": "model.pt", "adapter": GRAY},
    {"name": "torchscript", "params": {"path": "model.pt", "adapter": GRAY}},
    {"name": "torch", "path": "weights.pt", "class": "audit_user_nets.py:Pixels", "adapter": GRAY},
    {"name": "torch", "path": "weights.pt", "class": "audit_user_nets:Pixels", "kwargs": {"num_classes": 10},
     "adapter": GRAY},
    {"name": "torch", "params": {"weights": "weights.pt", "module": "audit_user_nets:Pixels", "adapter": GRAY}},
])
def test_model_files_resolve_against_the_config_folder(tiny_config, model_dir, model):
    cfg = validate_config(_cfg(tiny_config, model), base_dir=model_dir)
    params = cfg["model"]["params"]
    assert params["path"] == str((model_dir / params["path"]).resolve())
    if cfg["model"]["name"] == "torch":
        assert params["class"].startswith(str(model_dir.resolve()))
    assert params["adapter"] == GRAY


def test_audit_runs_a_torchscript_model_with_custom_preprocessing(tiny_config, model_dir, tmp_path):
    from audit import run_audit

    cfg = validate_config(_cfg(tiny_config, {"name": "torchscript", "path": "model.pt", "adapter": GRAY}) |
                          {"split": {"repeats": 2}}, base_dir=model_dir)
    res = run_audit(cfg, tmp_path / "out")
    assert not res.get("failed_cells")
    clean = next(r for r in res["cells"] if r["cell"] == "clean")
    assert 0.0 <= clean["coverage"]["mean"] <= 1.0 and np.isfinite(clean["set_size"]["mean"])
    assert res["provenance"]["model_sha256"]  # the model file's hash is recorded


@pytest.mark.parametrize("model, message", [
    ({"name": "torchscript", "path": "missing.pt"}, "missing.pt.*does not exist"),
    ({"name": "torchscript", "path": "weights.pt"}, "not a TorchScript model.*state_dict"),
    ({"name": "torchscript", "path": "bad.pt"}, "not a TorchScript model"),
    ({"name": "torch", "path": "model.pt", "class": "audit_user_nets.py:Pixels"}, "TorchScript archive"),
    ({"name": "torch", "path": "weights.pt", "class": "audit_user_nets.py:Pixels", "kwargs": {"num_classes": 3}},
     "does not fit"),
    ({"name": "torch", "path": "weights.pt", "class": "nope.py:Pixels"}, "nope.py.*does not exist"),
    ({"name": "torch", "path": "weights.pt"}, "model.params.class` is required"),
    ({"name": "torch", "path": "weights.pt", "class": "audit_user_nets.py:Pixels", "params": {"path": "x"}},
     "given both"),
    ({"name": "torchscript", "path": "model.pt", "adapter": {"preprocess": {"color": "hsv"}}}, "color"),
    ({"name": "torchscript", "path": "model.pt", "adapter": {"preprocess": {"size": [8]}}}, "size"),
    ({"name": "torchscript", "path": "model.pt", "adapter": {"preprocess": {"std": [0.0]}}}, "std"),
    ({"name": "torchscript", "path": "model.pt", "adapter": {"preprocess": {"colour": "gray"}}},
     "unknown config key.*preprocess.colour"),
    ({"name": "torchscript", "path": "model.pt", "adapter": {"preprocess": "gray"}}, "must be a mapping"),
    ({"name": "torchscript", "path": "model.pt", "adapter": {"num_points": 64}}, "unknown config key"),
    ({"name": "torchscript", "path": "model.pt", "adapter": {"channels": "hsv"}}, "channels"),
])
def test_bad_models_fail_at_validation(tiny_config, model_dir, model, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(_cfg(tiny_config, model), base_dir=model_dir)


def test_onnx_model_in_the_audit(tiny_config, model_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import warnings

    from adapters.loaders import load_class

    net = load_class("audit_user_nets.py:Pixels", model_dir)()
    net.load_state_dict(torch.load(model_dir / "weights.pt", weights_only=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net.eval(), (torch.zeros(2, 1, 8, 8),), str(model_dir / "model.onnx"), dynamo=False,
                          input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    from audit import run_audit

    base = {"split": {"repeats": 2}, "corruptions": []}
    onnx = run_audit(validate_config(_cfg(tiny_config, {"name": "onnx", "path": "model.onnx", "adapter": GRAY})
                                     | base, base_dir=model_dir), tmp_path / "onnx")
    ts = run_audit(validate_config(_cfg(tiny_config, {"name": "torchscript", "path": "model.pt", "adapter": GRAY})
                                   | base, base_dir=model_dir), tmp_path / "ts")
    a, b = onnx["cells"][0], ts["cells"][0]
    assert abs(a["coverage"]["mean"] - b["coverage"]["mean"]) < 0.02
    with pytest.raises(ConfigError, match="not an ONNX model"):
        validate_config(_cfg(tiny_config, {"name": "onnx", "path": "bad.pt"}), base_dir=model_dir)


def test_preprocess_as_data_reaches_the_model_and_the_report(tiny_config, model_dir, tmp_path):
    """`model.params.adapter.preprocess` used to pass validation and then fail every cell ("preprocess must be a
    callable"); now it is built at load, used by the model, and stated in the report (the default too)."""
    from audit import run_audit
    from audit.errors import AuditError

    base = {"split": {"repeats": 2}, "corruptions": [], "output": {"plots": False, "report": True, "examples": 0}}
    cfg = validate_config(_cfg(tiny_config, {"name": "torchscript", "path": "model.pt", "adapter": GRAY}) | base,
                          base_dir=model_dir)
    res = run_audit(cfg, tmp_path / "gray")
    assert not res.get("failed_cells")
    page = (tmp_path / "gray" / "report.html").read_text()
    assert "Preprocessing:</b> ImagePreprocess(size=None, color=&#x27;gray&#x27;, mean=[0.5], std=[0.25]" in page
    # other mean/std: other model inputs, so other outputs (the options are not ignored)
    other = validate_config(_cfg(tiny_config, {"name": "torchscript", "path": "model.pt", "adapter": {
        "preprocess": {"color": "gray", "mean": 0.0, "std": 1.0}}}) | base, base_dir=model_dir)
    res2 = run_audit(other, tmp_path / "gray2")
    a = np.load(tmp_path / "gray" / "cache" / "clean.npz")["probs"]
    b = np.load(tmp_path / "gray2" / "cache" / "clean.npz")["probs"]
    assert a.shape == b.shape and not np.allclose(a, b)
    assert res2["cells"][0]["cell"] == "clean"
    # the default (3-channel ImageNet input) does not fit this 1-channel model: the audit stops at the clean cell
    # and says which preprocessing fed the model
    dflt = validate_config(_cfg(tiny_config, {"name": "torchscript", "path": "model.pt"}) | base,
                           base_dir=model_dir)
    with pytest.raises(AuditError, match=r"preprocessed by ImagePreprocess\(size=None, color='rgb'.*"
                                         r"model.params.adapter.preprocess"):
        run_audit(dflt, tmp_path / "default", quiet=True)


def test_default_preprocessing_is_stated_in_the_report(tiny_config, model_dir):
    from audit.tasks.classification.models import DEFAULT_PREPROCESS, preprocess_text

    cfg = validate_config(_cfg(tiny_config, {"name": "torchscript", "path": "model.pt"}), base_dir=model_dir)
    assert preprocess_text(cfg) == f"default ({DEFAULT_PREPROCESS})"
    assert "ImageNet mean (0.485, 0.456, 0.406)" in DEFAULT_PREPROCESS


def test_bgr_model_input():
    """`color: bgr` feeds a model trained on OpenCV frames: channels reversed, ImageNet statistics reversed."""
    from adapters import ImagePreprocess

    rgb = np.random.default_rng(0).integers(0, 256, size=(2, 5, 4, 3), dtype=np.uint8)
    to_rgb, to_bgr = ImagePreprocess(), ImagePreprocess(color="bgr")
    np.testing.assert_allclose(to_bgr(rgb), to_rgb(rgb)[:, ::-1], atol=1e-6)
    np.testing.assert_allclose(to_bgr(rgb[..., ::-1], "bgr"), to_bgr(rgb, "rgb"), atol=1e-6)
    gray = rgb[..., 0]
    assert to_bgr(gray).shape == (2, 3, 5, 4)


def test_class_file_loads_in_worker_processes_without_pythonpath(tiny_config, model_dir, tmp_path, monkeypatch):
    """Worker processes rebuild the model from the config's resolved paths: a `nets.py:Net` next to the config
    loads there too, with no PYTHONPATH, and the results equal the in-process run's."""
    from audit import run_audit

    monkeypatch.delenv("PYTHONPATH", raising=False)
    model = {"name": "torch", "path": "weights.pt", "class": "audit_user_nets.py:Pixels", "adapter": GRAY}
    cfg = validate_config(_cfg(tiny_config, model) | {"split": {"repeats": 3}}, base_dir=model_dir)
    local = run_audit(cfg, tmp_path / "local", quiet=True)
    pool = run_audit(cfg, tmp_path / "pool", workers=2, quiet=True)
    assert not pool.get("failed_cells")
    a = np.load(tmp_path / "local" / "cache" / "clean.npz")["probs"]
    b = np.load(tmp_path / "pool" / "cache" / "clean.npz")["probs"]
    np.testing.assert_array_equal(a, b)
    assert [r["coverage"]["mean"] for r in local["cells"]] == [r["coverage"]["mean"] for r in pool["cells"]]


def test_validate_and_dry_run_of_a_model_file_from_the_cli(tiny_config, model_dir, capsys):
    """`conformal-audit validate CONFIG` resolves the model against the YAML's folder and loads it; `--dry-run`
    runs one batch and, for a model the default preprocessing does not fit, says so in one line (exit 3)."""
    import yaml

    from audit.cli import main

    good = model_dir / "good.yaml"
    good.write_text(yaml.safe_dump(tiny_config(model={"name": "torchscript", "path": "model.pt", "adapter": GRAY})))
    assert main(["validate", str(good), "--dry-run"]) == 0
    assert "dry run: ok" in capsys.readouterr().out
    missing = model_dir / "missing.yaml"
    missing.write_text(yaml.safe_dump(tiny_config(model={"name": "onnx", "path": "nope.onnx"})))
    assert main(["validate", str(missing)]) != 0
    assert "nope.onnx" in capsys.readouterr().err
    unfit = model_dir / "unfit.yaml"  # the default preprocessing makes 3-channel input for a 1-channel model
    unfit.write_text(yaml.safe_dump(tiny_config(model={"name": "torchscript", "path": "model.pt"})))
    assert main(["validate", str(unfit), "--dry-run"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "preprocessed by ImagePreprocess(size=None, color='rgb'" in err[0]


@pytest.mark.parametrize("adapter, message", [
    ({"num_points": 0}, "num_points` must be >= 1"),
    ({"sampling": "grid"}, "sampling"),
    ({"columns": 5}, "columns"),
    ({"normalize": "yes"}, "normalize"),
    ({"preprocess": {"color": "gray"}}, "unknown config key.*preprocess"),
])
def test_point_cloud_adapter_options_are_checked_at_load(tiny_config, model_dir, adapter, message):
    cfg = tiny_config(data={"name": "shapes", "params": {"n_per_class": 5}}, corruptions=[],
                      model={"name": "torchscript", "path": "model.pt", "adapter": adapter})
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg, base_dir=model_dir)
