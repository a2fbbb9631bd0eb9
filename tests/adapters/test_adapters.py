"""Camera and LiDAR adapters: shapes and batching, colour order, temperature scaling, sampling, bad inputs."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("cv2")

from adapters import CameraClassifier, ImagePreprocess, LidarClassifier, reference  # noqa: E402
from adapters.lidar import resample_cloud  # noqa: E402


def test_import_adapters_is_light():
    import subprocess
    import sys

    code = "import sys, adapters; assert not {'torch', 'cv2', 'open3d'} & set(sys.modules), sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("batch_size", [1, 7, 4096])
def test_batching_does_not_change_outputs(fashion_logits, batch_size):
    logits, _, images = fashion_logits
    cam = reference.load("fashion_cnn", batch_size=batch_size, progress=False)
    out = cam.predict_logits(images[:20])
    assert out.shape == (20, 10) and out.dtype == np.float32
    np.testing.assert_allclose(out, logits[:20], rtol=1e-4, atol=1e-4)
    probs = cam.predict_proba(list(images[:3]))  # a list of H x W arrays works too
    assert probs.dtype == np.float64 and np.allclose(probs.sum(1), 1.0)


class ChannelMeans:
    """A 'model' whose logits are the per-channel means of the input: reveals channel order."""

    def __call__(self, x):
        return x.mean(dim=(2, 3))


def test_bgr_and_rgb_inputs_give_the_same_model_input():
    rng = np.random.default_rng(0)
    rgb = [rng.integers(0, 256, size=(12, 9, 3), dtype=np.uint8) for _ in range(4)]
    bgr = [im[:, :, ::-1].copy() for im in rgb]
    pre = ImagePreprocess(mean=0.0, std=1.0)
    a = CameraClassifier(ChannelMeans(), pre, channels="rgb").predict_logits(rgb)
    b = CameraClassifier(ChannelMeans(), pre, channels="bgr").predict_logits(bgr)
    np.testing.assert_allclose(a, b, atol=1e-6)
    # the red channel of the RGB input is logit 0
    np.testing.assert_allclose(a[:, 0], [im[:, :, 0].mean() / 255 for im in rgb], atol=1e-5)
    before = [im.copy() for im in bgr]
    CameraClassifier(ChannelMeans(), pre, channels="bgr").predict_logits(bgr)
    assert all(np.array_equal(x, y) for x, y in zip(before, bgr))  # inputs never modified


def test_resize_and_tensor_input():
    rng = np.random.default_rng(1)
    ims = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in [(40, 30), (28, 28), (64, 50)]]
    net = reference.build_model("fashion_cnn").eval()
    cam = CameraClassifier(net, ImagePreprocess((28, 28), color="gray", mean=0.5, std=0.5), channels="bgr")
    assert cam.predict_logits(ims).shape == (3, 10)
    x = torch.zeros(5, 1, 28, 28)
    with torch.inference_mode():
        expect = net(x).numpy()
    np.testing.assert_allclose(CameraClassifier(net, batch_size=2).predict_logits(x), expect, atol=1e-5)


def test_camera_bad_inputs():
    net = reference.build_model("fashion_cnn")
    cam = CameraClassifier(net, ImagePreprocess((28, 28), color="gray"))
    with pytest.raises(TypeError, match=r"images\[0\].*uint8"):
        cam.predict_logits([np.zeros((28, 28), np.float32)])
    with pytest.raises(ValueError, match=r"images\[1\].*alpha"):
        cam.predict_logits([np.zeros((28, 28), np.uint8), np.zeros((28, 28, 4), np.uint8)])
    with pytest.raises(ValueError, match="empty"):
        cam.predict_logits([])
    with pytest.raises(TypeError, match="images"):
        cam.predict_logits("image.png")
    with pytest.raises(ValueError, match="channels"):
        CameraClassifier(net, channels="hsv").predict_logits([np.zeros((28, 28), np.uint8)])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device.*CUDA"):
            CameraClassifier(net, device="cuda").predict_logits([np.zeros((28, 28), np.uint8)])
    wrong_k = CameraClassifier(net, ImagePreprocess((28, 28), color="gray"), num_classes=7)
    with pytest.raises(ValueError, match="returned 10 classes"):
        wrong_k.predict_logits([np.zeros((28, 28), np.uint8)])
    nan_model = CameraClassifier(lambda x: torch.full((x.shape[0], 3), float("nan")), ImagePreprocess())
    with pytest.raises(ValueError, match="NaN"):
        nan_model.predict_logits([np.zeros((4, 4, 3), np.uint8)])


def test_temperature_lowers_heldout_nll(fashion_logits):
    logits, labels, images = fashion_logits
    cam = reference.load("fashion_cnn", progress=False)
    cam.fit_temperature(images[:1000], labels[:1000])
    assert cam.temperature_ > 0 and cam.nll_after_ <= cam.nll_before_
    z, y = torch.from_numpy(logits[1000:].astype(np.float64)), torch.from_numpy(labels[1000:])
    nll = torch.nn.functional.cross_entropy
    before, after = float(nll(z, y)), float(nll(z / cam.temperature_, y))
    assert after < before
    probs = cam.predict_proba(images[1000:1010])
    np.testing.assert_allclose(probs, torch.softmax(z[:10] / cam.temperature_, 1).numpy(), atol=1e-6)


def _fps_twin(xyz, m):
    """Plain NumPy farthest-point sampling from index 0 (ties to the lowest index)."""
    chosen = [0]
    d = np.full(len(xyz), np.inf)
    for _ in range(m - 1):
        d = np.minimum(d, ((xyz - xyz[chosen[-1]]) ** 2).sum(1))
        d_masked = d.copy()
        d_masked[chosen] = -1
        chosen.append(int(np.argmax(d_masked)))
    return np.array(chosen)


def test_fps_matches_numpy_twin():
    rng = np.random.default_rng(2)
    for n, m in [(50, 10), (300, 64), (64, 64)]:
        pts = rng.normal(size=(n, 3))
        got = resample_cloud(pts, m, "fps", rng)
        np.testing.assert_array_equal(got, pts[_fps_twin(pts, m)])


def test_lidar_adapter_sampling_and_accuracy():
    from adapters.datasets import make_shapes

    clouds, labels, names = make_shapes(8, 700, rng=5)  # seed 5: never used in training
    assert len(names) == 8 and clouds[0].shape == (700, 3)
    lidar = reference.load("shapes_pointnet", batch_size=7, progress=False)
    probs = lidar.predict_proba(clouds)
    assert probs.shape == (64, 8)
    assert (probs.argmax(1) == labels).mean() >= 0.7
    # variable sizes, fewer points than num_points, 4 columns (intensity ignored with columns=3)
    rng = np.random.default_rng(3)
    mixed = [clouds[0][:100], np.c_[clouds[1], rng.random(700)].astype(np.float32), clouds[2]]
    assert lidar.predict_proba(mixed).shape == (3, 8)
    rnd = reference.load("shapes_pointnet", sampling="random", random_state=4, progress=False)
    np.testing.assert_array_equal(rnd.predict_logits(clouds[:5]), rnd.predict_logits(clouds[:5]))


def test_lidar_bad_inputs():
    lidar = LidarClassifier(reference.build_model("shapes_pointnet"), num_points=32)
    good = np.random.default_rng(0).normal(size=(40, 3))
    with pytest.raises(ValueError, match=r"clouds\[1\].*empty"):
        lidar.predict_logits([good, np.zeros((0, 3))])
    bad = good.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"clouds\[0\].*NaN"):
        lidar.predict_logits([bad])
    with pytest.raises(TypeError, match="float dtype"):
        lidar.predict_logits([good.astype(np.int64)])
    with pytest.raises(ValueError, match=r"\(N, 3\) or \(N, 4\)"):
        lidar.predict_logits([good[:, :2]])
    with pytest.raises(ValueError, match="zero extent"):
        lidar.predict_logits([np.ones((40, 3))])
    with pytest.raises(ValueError, match="sampling"):
        LidarClassifier(lidar.model, sampling="grid").predict_logits([good])
