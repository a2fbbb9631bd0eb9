"""TorchDetector: torchvision-style detector output -> conformal.detection frames; batching, resizing, errors."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("cv2")

from adapters import ImagePreprocess, TorchDetector  # noqa: E402
from adapters.models import SmallCenterNet  # noqa: E402
from conformal.detection import ConformalDetector  # noqa: E402


class MeanBox:
    """A 'detector' whose one box depends on the image: reveals batching, ordering and scaling."""

    def __init__(self, offset=0):
        self.offset = offset

    def __call__(self, x):
        xs = x if isinstance(x, list) else list(x)
        out = []
        for im in xs:
            m = float(im.mean())
            h, w = im.shape[-2:]
            out.append({"boxes": torch.tensor([[1.0, 2.0, w / 2, h / 2]]), "scores": torch.tensor([abs(m) % 1]),
                        "labels": torch.tensor([1 + self.offset]), "class_probs": torch.tensor([[0.2, 0.8]])})
        return out


def _images(n=7, size=(40, 48)):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, *size, 3), dtype=np.uint8)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_batching_keeps_order_and_values(batch_size):
    images = _images()
    ref = TorchDetector(MeanBox(), batch_size=64).predict(images)
    out = TorchDetector(MeanBox(), batch_size=batch_size).predict(list(images))
    assert len(out) == 7
    for a, b in zip(ref, out):
        assert a["boxes"].dtype == np.float64 and a["labels"].dtype == np.int64
        np.testing.assert_allclose(a["scores"], b["scores"])
    assert len({float(f["scores"][0]) for f in out}) == 7  # one frame per image, in order


def test_resizing_preprocess_maps_boxes_back_to_image_pixels():
    images = [_images(1, (40, 60))[0], _images(1, (80, 30))[0]]
    det = TorchDetector(MeanBox(), preprocess=ImagePreprocess(size=(20, 20)))
    a, b = det.predict(images)
    np.testing.assert_allclose(a["boxes"], [[3.0, 4.0, 30.0, 20.0]])  # 10 x 10 in a 20 x 20 input -> 60 x 40
    np.testing.assert_allclose(b["boxes"], [[1.5, 8.0, 15.0, 40.0]])


def test_label_offset_list_input_and_checks():
    images = _images(3)
    f = TorchDetector(MeanBox(offset=1), label_offset=1, input_format="list", num_classes=2).predict(images)
    assert [int(x["labels"][0]) for x in f] == [1, 1, 1] and f[0]["class_probs"].shape == (1, 2)
    with pytest.raises(ValueError, match="num_classes"):
        TorchDetector(MeanBox(offset=1), num_classes=2).predict(images)
    with pytest.raises(ValueError, match="label_offset"):
        TorchDetector(MeanBox(), label_offset=3).predict(images)
    with pytest.raises(TypeError, match="list of 3 dicts"):
        TorchDetector(lambda x: x, batch_size=3).predict(images)
    with pytest.raises(ValueError, match="lacks"):
        TorchDetector(lambda x: [{"boxes": torch.zeros(0, 4)}] * len(x)).predict(images)
    with pytest.raises(TypeError, match="uint8"):
        TorchDetector(MeanBox()).predict(images.astype(np.float32))
    with pytest.raises(ValueError, match="input_format"):
        TorchDetector(MeanBox(), input_format="dict").predict(images)


def test_small_centernet_through_the_adapter_feeds_conformal_detection():
    torch.manual_seed(0)
    net = SmallCenterNet(num_classes=3, score_threshold=0.0, max_detections=5).eval()
    images = _images(6, (64, 64))
    one = TorchDetector(net, batch_size=1).predict(images)
    many = TorchDetector(net, batch_size=6).predict(images)
    for a, b in zip(one, many):
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=1e-4)
        assert a["class_probs"].shape == (5, 3) and np.allclose(a["class_probs"].sum(1), 1)
        assert np.all(a["boxes"][:, 2:] >= a["boxes"][:, :2]) and a["boxes"].max() <= 64
    gts = [{"boxes": f["boxes"][:2] + 1.0, "labels": f["labels"][:2]} for f in one]
    ConformalDetector(alpha=0.2, alpha_cls=0.2).fit(one, gts).predict(one[0])  # the frames are valid input


def test_docstring_example_runs():
    import doctest

    import adapters.detector

    assert doctest.testmod(adapters.detector).failed == 0
