"""Torch tensors wherever arrays are (issue 18 §2): the camera and LiDAR adapters, ConformalModel (inputs, labels,
adapters of your own returning tensors) give the same results for a tensor as for the same NumPy array."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("cv2")

from adapters import CameraClassifier, ConformalModel, ImagePreprocess, LidarClassifier, reference  # noqa: E402
from adapters._arrays import to_host  # noqa: E402
from conformal import SplitConformalClassifier  # noqa: E402


def test_camera_takes_uint8_tensors_like_arrays(fashion_logits):
    logits, _, images = fashion_logits
    cam = reference.load("fashion_cnn", progress=False)
    t = torch.from_numpy(images[:12])
    np.testing.assert_allclose(cam.predict_logits(t), logits[:12], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(cam.predict_logits(list(t)), logits[:12], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="ambiguous"):  # the layout rule holds for tensors too
        CameraClassifier(cam.model, ImagePreprocess()).predict_logits(torch.zeros(8, 8, 3, dtype=torch.uint8))


def test_lidar_takes_tensors():
    from adapters.datasets import make_shapes

    clouds, _, _ = make_shapes(1, 600, rng=9)
    lidar = reference.load("shapes_pointnet", progress=False)
    expect = lidar.predict_proba(clouds[:4])
    np.testing.assert_allclose(lidar.predict_proba([torch.from_numpy(c) for c in clouds[:4]]), expect, atol=1e-6)
    np.testing.assert_allclose(lidar.predict_proba(torch.from_numpy(np.stack(clouds[:4]))), expect, atol=1e-6)
    assert LidarClassifier(lidar.model, num_points=64).predict_proba(torch.from_numpy(np.stack(clouds[:2]))).shape \
        == (2, 8)


class TorchOutputAdapter:
    """An adapter of your own whose predict_proba returns a torch tensor."""

    def __init__(self, cam):
        self.cam = cam

    def predict_proba(self, inputs):
        return torch.from_numpy(self.cam.predict_proba(inputs))


def test_conformal_model_with_tensor_inputs_labels_and_outputs(fashion_logits):
    _, labels, images = fashion_logits
    cam = reference.load("fashion_cnn", progress=False)
    conf = SplitConformalClassifier(score="lac", alpha=0.1)
    a = ConformalModel(adapter=cam, conformal=conf, temperature_fraction=0.2).fit(images[:600], labels[:600])
    b = ConformalModel(adapter=cam, conformal=conf, temperature_fraction=0.2).fit(
        torch.from_numpy(images[:600]), torch.from_numpy(labels[:600]))
    assert a.conformal_.qhat_ == pytest.approx(b.conformal_.qhat_)
    np.testing.assert_array_equal(a.predict(images[600:650]), b.predict(torch.from_numpy(images[600:650])))
    c = ConformalModel(adapter=TorchOutputAdapter(cam), conformal=conf).fit(images[:600], torch.tensor(labels[:600]))
    sets = c.predict(images[600:650])
    assert isinstance(sets, np.ndarray) and sets.shape == (50, 10)
    assert isinstance(c.predict_proba(images[:3]), np.ndarray)


def test_to_host_copies_cuda_tensors_and_leaves_the_rest():
    x = np.arange(3)
    assert to_host(x) is x
    t = torch.arange(3)
    assert isinstance(to_host(t), np.ndarray) and to_host([t, t])[1].tolist() == [0, 1, 2]
    if torch.cuda.is_available():  # not on this machine (CPU wheel); runs where a GPU is
        assert to_host(t.cuda()).tolist() == [0, 1, 2]
