"""Adapters do not guess (issue 17 group 6): one H x W x 3 image given as an array is refused unless its layout
is stated, and a cloud's randomly sampled points (so its probabilities) do not depend on its batch position."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("cv2")

from adapters import CameraClassifier, ImagePreprocess, LidarClassifier, reference  # noqa: E402


def _cam(**kw):
    return CameraClassifier(lambda x: x.mean(dim=(2, 3)), ImagePreprocess(mean=0.0, std=1.0), progress=False, **kw)


def test_one_colour_image_as_an_array_is_refused_not_read_as_a_batch():
    image = np.random.default_rng(0).integers(0, 256, size=(28, 28, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"ambiguous.*layout='image'.*layout='batch'"):
        _cam().predict_logits(image)  # used to return 28 rows, one per image row read as a grey image
    one = _cam(layout="image").predict_logits(image)
    assert one.shape == (1, 3)
    np.testing.assert_allclose(one, _cam().predict_logits([image]), atol=1e-6)
    np.testing.assert_allclose(one, _cam().predict_logits(image[None]), atol=1e-6)
    # the same array stated as a batch of 28 grey 28 x 3 images
    assert _cam(layout="batch").predict_logits(image).shape == (28, 3)
    for shape in [(28, 28, 1), (28, 28, 4)]:
        with pytest.raises(ValueError, match="ambiguous"):
            _cam().predict_logits(np.zeros(shape, np.uint8))


def test_unambiguous_arrays_keep_working_and_layout_is_checked():
    grey = np.zeros((5, 28, 28), np.uint8)
    assert _cam().predict_logits(grey).shape == (5, 3)  # (n, H, W): the last axis is no channel count
    assert _cam().predict_logits(np.zeros((5, 8, 8, 3), np.uint8)).shape == (5, 3)
    assert _cam(layout="image").predict_logits(np.zeros((8, 8), np.uint8)).shape == (1, 3)
    with pytest.raises(ValueError, match="layout='image'"):
        _cam().predict_logits(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="`layout` must be"):
        _cam(layout="NCHW").predict_logits(grey)
    with pytest.raises(ValueError, match="layout='image'.*H x W"):
        _cam(layout="image").predict_logits(grey[None])


def test_random_sampling_does_not_depend_on_batch_position():
    from adapters.datasets import make_shapes

    clouds, _, _ = make_shapes(2, 700, rng=7)
    small = clouds[3][:100]  # fewer points than num_points: padded with random repeats, seeded per cloud too
    lidar = reference.load("shapes_pointnet", sampling="random", random_state=4, batch_size=3, progress=False)
    alone = lidar.predict_proba([clouds[5]])
    mixed = lidar.predict_proba(clouds[:5] + [clouds[5]] + [small])
    np.testing.assert_allclose(mixed[5], alone[0], atol=1e-6)  # used to differ by up to 0.27
    np.testing.assert_allclose(mixed[6], lidar.predict_proba([small])[0], atol=1e-6)
    fps = reference.load("shapes_pointnet", batch_size=3, progress=False)
    np.testing.assert_allclose(fps.predict_proba([clouds[0], small])[1], fps.predict_proba([small])[0], atol=1e-6)
    # another seed draws other points (the seed still matters), and the same call twice gives the same output
    other = LidarClassifier(lidar.model, num_points=512, sampling="random", random_state=5, progress=False)
    same = LidarClassifier(lidar.model, num_points=512, sampling="random", random_state=4, progress=False)
    assert not np.allclose(other.predict_proba([clouds[5]]), alone)
    np.testing.assert_allclose(same.predict_proba([clouds[5]]), alone, atol=1e-6)
