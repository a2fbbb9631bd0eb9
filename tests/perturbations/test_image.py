"""perturbations.image: the contract every corruption keeps, bad input, the registry and the parameters."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from sklearn.datasets import load_sample_image

from perturbations._image_tables import TABLES, zoom_factors
from perturbations.image import REGISTRY, corrupt, corrupt_batch, names, parameters

ALL = names()
# These draw no random numbers: the same output for every seed.
DETERMINISTIC = {"defocus_blur", "zoom_blur", "gaussian_blur", "brightness", "contrast", "pixelate",
                 "jpeg_compression", "saturate"}
# These act on each channel alone (same random draws whatever the channel count).
CHANNELWISE = {"defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur", "contrast",
               "elastic_transform", "pixelate", "fog"}


@pytest.fixture(scope="module")
def photo():
    image = load_sample_image("china.jpg")[100:356, 150:406]  # 256 x 256 of the real photo
    return np.ascontiguousarray(cv2.resize(image, (48, 40), interpolation=cv2.INTER_AREA))


# ------------------------------------------------------------------------------------------- the contract
@pytest.mark.parametrize("name", ALL)
def test_contract_shape_dtype_input_untouched_and_seeds(name, photo):
    """Shape and dtype kept for every input form; the input is never written; same seed, same image."""
    gray = np.ascontiguousarray(photo[..., 1])
    forms = [photo, gray, gray[..., None], photo.astype(np.float32) / 255, photo.astype(np.float64) / 255,
             photo[:, ::-1], np.ascontiguousarray(photo[:8, :13])]
    for image in forms:
        frozen = image.copy()
        image.setflags(write=False)  # any in-place write would raise
        out = corrupt(image, name, 4, rng=7)
        assert out.shape == image.shape and out.dtype == image.dtype
        assert out is not image and not np.shares_memory(out, image)
        np.testing.assert_array_equal(image, frozen)
        if out.dtype != np.uint8:
            assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
        np.testing.assert_array_equal(out, corrupt(image, name, 4, rng=np.random.default_rng(7)))
    a, b = corrupt(photo, name, 3, rng=1), corrupt(photo, name, 3, rng=2)
    if name in DETERMINISTIC:
        np.testing.assert_array_equal(a, b)
    else:
        assert not np.array_equal(a, b), "different seeds must give different images"


@pytest.mark.parametrize("name", sorted(CHANNELWISE))
def test_grey_and_rgb_agree_for_channelwise_corruptions(name, photo):
    """A grey image repeated into RGB gives, in every channel, the grey image's result (same seed)."""
    gray = np.ascontiguousarray(photo[..., 1])
    rgb = np.repeat(gray[..., None], 3, axis=2)
    out_gray = corrupt(gray, name, 3, rng=5).astype(int)
    out_rgb = corrupt(rgb, name, 3, rng=5).astype(int)
    for c in range(3):
        assert np.abs(out_rgb[..., c] - out_gray).max() <= 1  # float32 summation order may differ by 1 level


def test_batch_matches_sequential_calls_and_is_seeded(photo):
    batch = np.stack([photo, photo[::-1], photo[:, ::-1]])
    out = corrupt_batch(batch, "glass_blur", 2, rng=3)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    gen = np.random.default_rng(3)
    for i in range(3):
        np.testing.assert_array_equal(out[i], corrupt(batch[i], "glass_blur", 2, rng=gen))
    np.testing.assert_array_equal(out, corrupt_batch(batch, "glass_blur", 2, rng=3))
    with pytest.raises(ValueError, match="images"):
        corrupt_batch(photo, "fog", 1)
    with pytest.raises(ValueError, match="dtype"):
        corrupt_batch(batch.astype(np.int32), "fog", 1)
    bad = batch.astype(np.float32) / 255
    bad[2, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"images\[2\].*NaN"):
        corrupt_batch(bad, "fog", 1)
    with pytest.raises(TypeError, match="images"):
        corrupt_batch(list(batch), "fog", 1)
    assert corrupt_batch(batch[:0], "fog", 1).shape == (0, *batch.shape[1:])


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("image,match", [
    (np.zeros((16, 16, 3), np.int64), "dtype"),
    (np.zeros((16, 16, 3), np.uint16), "dtype"),
    (np.zeros((16, 16), bool), "dtype"),
    (np.zeros((16, 16), np.float16), "dtype"),
    (np.full((16, 16), np.nan, np.float32), "NaN"),
    (np.full((16, 16), np.inf), "NaN"),
    (np.full((16, 16), 2.0), r"\[0, 1\]"),
    (np.full((16, 16), -0.1, np.float32), r"\[0, 1\]"),
    (np.zeros((2, 16, 16, 3), np.uint8), "corrupt_batch"),
    (np.zeros((16, 16, 2), np.uint8), "shape"),
    (np.zeros((16, 16, 4), np.uint8), "shape"),
    (np.zeros(16, np.uint8), "shape"),
    (np.zeros((7, 100), np.uint8), "at least 8"),
    (np.zeros((100, 7, 3), np.uint8), "at least 8"),
])
def test_bad_images_raise_value_error(image, match):
    with pytest.raises(ValueError, match=match):
        corrupt(image, "fog", 1)


def test_bad_arguments(photo):
    with pytest.raises(TypeError, match="image"):
        corrupt(photo.tolist(), "fog", 1)
    with pytest.raises(ValueError, match="gaussian_noise") as err:
        corrupt(photo, "gausian_noise", 1)
    assert "zoom_blur" in str(err.value) and "rain" in str(err.value)  # the valid names are listed
    for severity in (0, 6, -1):
        with pytest.raises(ValueError, match="severity"):
            corrupt(photo, "fog", severity)
    for severity in (2.0, True, "3"):
        with pytest.raises(TypeError, match="severity"):
            corrupt(photo, "fog", severity)
    with pytest.raises(TypeError, match="rng"):
        corrupt(photo, "fog", 1, rng=np.random.RandomState(0))
    with pytest.raises(ValueError, match="scale"):
        corrupt(photo, "fog", 1, scale="imagenet-c")
    with pytest.raises(ValueError, match="subset"):
        names("noises")


# ----------------------------------------------------------------------------------- registry, parameters
def test_names_and_subsets():
    assert len(ALL) == 20 and ALL[-1] == "rain" and set(ALL) == set(REGISTRY) == set(TABLES)
    assert names("common") == ALL[:15]
    assert names("extra") == names("validation") == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    assert names("noise") == ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise")
    assert names("blur") == ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur")
    assert names("weather") == ("snow", "frost", "fog", "brightness", "spatter", "rain")
    assert names("digital") == ("contrast", "elastic_transform", "pixelate", "jpeg_compression", "saturate")
    groups = [names(g) for g in ("noise", "blur", "weather", "digital")]
    assert sorted(sum(groups, ())) == sorted(ALL)


def test_parameters_are_the_tables_at_reference_size_and_scale_with_small_images():
    def row(name, sev, scale):  # the table row as `parameters` states it (zoom_blur: the factors themselves)
        r = REGISTRY[name].row(sev, scale)
        return {"zooms": zoom_factors(r["zoom_start"], r["zoom_stop"], r["zoom_step"])} if name == "zoom_blur" else r

    for name in ALL:
        for sev in range(1, 6):
            p = parameters(name, sev, (224, 224), "imagenet")
            assert p["scale"] == "imagenet" and p["spatial_factor"] == 1.0 and p["severity"] == sev
            assert {k: p[k] for k in row(name, sev, "imagenet")} == row(name, sev, "imagenet")
            q = parameters(name, sev, (32, 40))
            assert q["scale"] == "cifar" and {k: q[k] for k in row(name, sev, "cifar")} == row(name, sev, "cifar")
    # half the reference size: lengths in px halve, integer ones rounded and kept >= 1
    p = parameters("motion_blur", 5, (112, 300), "imagenet")
    assert p["spatial_factor"] == 0.5 and p["radius"] == 10 and p["sigma"] == 7.5
    assert parameters("glass_blur", 1, (8, 8))["max_delta"] == 1
    assert parameters("gaussian_blur", 5, (16, 16))["sigma"] == pytest.approx(0.5)
    assert parameters("fog", 5, (8, 8))["strength"] == REGISTRY["fog"].row(5, "cifar")["strength"]
    # "auto": cifar up to 64 px on the short side
    assert parameters("fog", 1, (64, 500))["scale"] == "cifar"
    assert parameters("fog", 1, (65, 65))["scale"] == "imagenet"
    assert len(parameters("zoom_blur", 1, (224, 224), "imagenet")["zooms"]) == 12  # the float arange quirk is kept


def test_runs_without_scipy_skimage_pillow():
    """Run time needs only OpenCV, NumPy and Numba."""
    code = ("import sys\n"
            "for m in ('scipy', 'skimage', 'PIL', 'wand', 'torch'):\n"
            "    sys.modules[m] = None\n"
            "import numpy as np\n"
            "from perturbations.image import corrupt, names\n"
            "x = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)\n"
            "for n in names():\n"
            "    corrupt(x, n, 5, rng=0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert out.returncode == 0, out.stderr


def test_corrupt_batch_takes_greyscale_batches_and_bgr_frames():
    """`corrupt_batch` takes (N, H, W) like `corrupt` takes (H, W); `channels="bgr"` corrupts an OpenCV frame
    exactly as its RGB twin (colour corruptions act on the right channels)."""
    from perturbations.image import corrupt, corrupt_batch

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, size=(3, 32, 32), dtype=np.uint8)
    out = corrupt_batch(grey, "gaussian_noise", 3, rng=1)
    assert out.shape == grey.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, corrupt_batch(grey[..., None], "gaussian_noise", 3, rng=1)[..., 0])
    rgb = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    bgr = rgb[..., ::-1].copy()
    for name in ("saturate", "fog", "contrast"):
        a = corrupt_batch(rgb, name, 4, rng=2)
        b = corrupt_batch(bgr, name, 4, rng=2, channels="bgr")
        np.testing.assert_array_equal(b, a[..., ::-1])
        np.testing.assert_array_equal(corrupt(bgr[0], name, 4, rng=3, channels="bgr"),
                                      corrupt(rgb[0], name, 4, rng=3)[..., ::-1])
    assert not np.array_equal(corrupt_batch(bgr, "saturate", 4, rng=2), b)  # the order matters for saturate
    with pytest.raises(ValueError, match="channels"):
        corrupt_batch(rgb, "fog", 1, channels="hsv")
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        corrupt_batch(rgb[0, :, :, 0], "fog", 1)
