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


def test_crop_stage_reads_each_candidate_box_and_mixes_class_probs():
    """The second stage of SmallCenterNet: crops are the boxes' pixels (an 8 px box at crop_size 8 and context 1
    is read exactly, then standardised per channel), class_probs = softmax of the crop classifier for every
    candidate (crop_mix 1), the head's softmax (crop_mix 0) or their renormalised geometric mixture; scores and
    labels follow the class_probs; torch.jit.script gives the same outputs."""
    torch.manual_seed(0)
    net = SmallCenterNet(num_classes=3, score_threshold=0.0, max_detections=5, crop_width=4, crop_size=8,
                         crop_context=1.0).eval()
    x = torch.randn(2, 3, 64, 64)
    c = net.crops(x, [torch.tensor([[8.0, 16.0, 16.0, 24.0]]), torch.zeros(0, 4)])
    ref = x[0, :, 16:24, 8:16]
    ref = (ref - ref.mean(dim=(1, 2), keepdim=True)) / (ref.std(dim=(1, 2), keepdim=True) + 0.1)
    assert c.shape == (1, 3, 8, 8) and torch.allclose(c[0], ref, atol=1e-5)
    head_only = SmallCenterNet(num_classes=3, score_threshold=0.0, max_detections=5).eval()
    head_only.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("crop.")})
    with torch.no_grad():
        base = head_only(x)
        crop = net(x)
        crop_probs = torch.softmax(net.crop_logits(x, [o["boxes"] for o in crop]), dim=1)
        net.crop_mix.fill_(0.0)
        head = net(x)
        net.crop_mix.fill_(0.5)
        mixed = net(x)
        scripted = torch.jit.script(net)(x)
    lo = 0
    for b, cr, hd, mx, sc in zip(base, crop, head, mixed, scripted):
        m = b["boxes"].shape[0]
        assert torch.allclose(cr["boxes"], b["boxes"]) and torch.allclose(hd["class_probs"], b["class_probs"])
        assert torch.allclose(cr["class_probs"], crop_probs[lo:lo + m], atol=1e-6)
        geo = torch.sqrt(cr["class_probs"] * b["class_probs"])
        assert torch.allclose(mx["class_probs"], geo / geo.sum(1, keepdim=True), atol=1e-5)
        heat = b["scores"] / b["class_probs"].max(1).values
        for o in (cr, hd, mx):
            assert torch.equal(o["labels"], o["class_probs"].argmax(1))
            assert torch.allclose(o["scores"], heat * o["class_probs"].max(1).values, atol=1e-6)
        for k in mx:
            assert torch.allclose(mx[k], sc[k], atol=1e-5), k
        lo += m
    assert not torch.allclose(crop[0]["class_probs"], base[0]["class_probs"])  # the crop stage is used
    with pytest.raises(ValueError, match="crop_mix"):
        SmallCenterNet(crop_width=4, crop_mix=1.5)


def test_jittered_training_boxes_overlap_their_object():
    from adapters.train_detector import jitter_boxes

    boxes = np.array([[10.0, 10.0, 30.0, 40.0], [0.0, 0.0, 16.0, 16.0], [50.0, 60.0, 130.0, 128.0]] * 200)
    out = jitter_boxes(boxes, np.random.default_rng(0))
    iw = np.clip(np.minimum(out[:, 2], boxes[:, 2]) - np.maximum(out[:, 0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(out[:, 3], boxes[:, 3]) - np.maximum(out[:, 1], boxes[:, 1]), 0, None)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    iou = iw * ih / (area(out) + area(boxes) - iw * ih)
    assert iou.min() >= 0.5 and np.mean(iou < 0.9) > 0.5  # moved, but each still on its object
    np.testing.assert_array_equal(out, jitter_boxes(boxes, np.random.default_rng(0)))
