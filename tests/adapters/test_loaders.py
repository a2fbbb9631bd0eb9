"""Models from files (TorchScript, ONNX, class + state_dict) and NumPy callables: same logits as the torch module
they came from, classes loaded from a file without PYTHONPATH, and clear errors at load time for a missing file or
a wrong format."""
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("cv2")

from adapters import CameraClassifier, ImagePreprocess, LidarClassifier, NumpyModel, load_model  # noqa: E402
from adapters.loaders import load_class, resolve_class_spec  # noqa: E402

NETS = textwrap.dedent('''
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self, in_channels=1, num_classes=4):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, 3, 3, padding=1)
            self.head = nn.Linear(3, num_classes)

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))
''')


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    (d / "tiny_nets_for_loader_test.py").write_text(NETS)
    cls = load_class("tiny_nets_for_loader_test.py:TinyNet", base_dir=d)
    torch.manual_seed(0)
    net = cls(in_channels=1, num_classes=4).eval()
    x = torch.rand(2, 1, 8, 8)
    torch.save(net.state_dict(), d / "weights.pt")
    torch.jit.trace(net, x).save(str(d / "m.pt"))
    torch.save(net, d / "whole.pt")
    (d / "garbage.bin").write_bytes(b"not a model")
    return d, net


def _images(n=6, size=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size), dtype=np.uint8)


def test_class_from_a_file_needs_no_pythonpath(model_files):
    d, _ = model_files
    spec = resolve_class_spec("tiny_nets_for_loader_test.py:TinyNet", d)
    assert spec == f"{d.resolve()}/tiny_nets_for_loader_test.py:TinyNet"
    # a bare module name is looked up in base_dir first, then on sys.path
    assert resolve_class_spec("tiny_nets_for_loader_test:TinyNet", d) == \
        f"{d.resolve()}/tiny_nets_for_loader_test:TinyNet"
    assert load_class("tiny_nets_for_loader_test:TinyNet", d).__name__ == "TinyNet"
    assert resolve_class_spec("collections:OrderedDict", d) == "collections:OrderedDict"
    with pytest.raises(FileNotFoundError, match="missing.py"):
        load_class("missing.py:Net", d)
    with pytest.raises(ValueError, match="has no attribute 'Nope'"):
        load_class("tiny_nets_for_loader_test.py:Nope", d)
    with pytest.raises(ValueError, match="file.py:Class"):
        load_class("no_colon", d)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's legacy ONNX exporter says it is legacy
@pytest.mark.parametrize("kind", ["torchscript", "torch", "onnx"])
def test_every_kind_gives_the_modules_logits(model_files, kind):
    d, net = model_files
    if kind == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")
        x = torch.rand(2, 1, 8, 8)
        torch.onnx.export(net, (x,), str(d / "m.onnx"), dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    path = {"torchscript": "m.pt", "torch": "weights.pt", "onnx": "m.onnx"}[kind]
    model = load_model(kind, path, base_dir=d, cls="tiny_nets_for_loader_test.py:TinyNet",
                       kwargs={"in_channels": 1, "num_classes": 4})
    pre = ImagePreprocess(color="gray", mean=0.5, std=0.5)
    images = _images()
    got = CameraClassifier(model, pre, batch_size=4, progress=False).predict_logits(images)
    with torch.inference_mode():
        expect = net(torch.from_numpy(pre(images))).numpy()
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5)


def test_wrong_files_fail_at_load_with_the_file_named(model_files):
    d, _ = model_files
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_model("torchscript", d / "nope.pt")
    with pytest.raises(ValueError, match="state_dict.*use kind 'torch'"):
        load_model("torchscript", d / "weights.pt")
    with pytest.raises(ValueError, match="not a TorchScript model"):
        load_model("torchscript", d / "garbage.bin")
    with pytest.raises(ValueError, match="TorchScript archive.*'torchscript'"):
        load_model("torch", d / "m.pt", cls="tiny_nets_for_loader_test.py:TinyNet", base_dir=d)
    with pytest.raises(ValueError, match="save model.state_dict"):
        load_model("torch", d / "whole.pt", cls="tiny_nets_for_loader_test.py:TinyNet", base_dir=d)
    with pytest.raises(ValueError, match="does not fit"):
        load_model("torch", d / "weights.pt", cls="tiny_nets_for_loader_test.py:TinyNet", base_dir=d,
                   kwargs={"num_classes": 7})
    with pytest.raises(ValueError, match="needs `cls`"):
        load_model("torch", d / "weights.pt")
    with pytest.raises(ValueError, match="kind"):
        load_model("pickle", d / "weights.pt")
    pytest.importorskip("onnxruntime")
    with pytest.raises(ValueError, match="garbage.bin.*not an ONNX model"):
        load_model("onnx", d / "garbage.bin")


def test_callables_may_return_numpy(model_files):
    _, net = model_files
    pre = ImagePreprocess(color="gray")
    images = _images(5)

    def numpy_model(x):  # e.g. an ONNX Runtime or TensorRT wrapper: NumPy in, NumPy out
        assert isinstance(x, np.ndarray) and x.dtype == np.float32
        with torch.inference_mode():
            return net(torch.from_numpy(x)).numpy().astype(np.float64)

    a = CameraClassifier(NumpyModel(numpy_model), pre).predict_logits(images)
    b = CameraClassifier(lambda x: net(x).numpy(), pre).predict_logits(images)  # torch in, NumPy out
    c = CameraClassifier(net, pre).predict_logits(images)
    np.testing.assert_allclose(a, c, atol=1e-6)
    np.testing.assert_allclose(b, c, atol=1e-6)
    with pytest.raises(TypeError, match="torch.Tensor or a NumPy array"):
        CameraClassifier(lambda x: x.tolist(), pre).predict_logits(images)
    cloud_net = NumpyModel(lambda x: x.mean(axis=1))  # (b, N, 3) -> (b, 3)
    clouds = [np.random.default_rng(i).normal(size=(50, 3)) for i in range(3)]
    assert LidarClassifier(cloud_net, num_points=16).predict_logits(clouds).shape == (3, 3)
