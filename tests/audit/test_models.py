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
