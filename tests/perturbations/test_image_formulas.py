"""The simple corruptions against their formulas: noise std, contrast factor, brightness shift, blurs, fog.

Statistical checks use a constant image of 96 x 96 x 3 = 27,648 elements and a tolerance of 4 standard
errors (or 3 % on a standard deviation, about 8 of its standard errors), with fixed seeds.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from perturbations._kernels import image_textures as T
from perturbations.image import corrupt, parameters

SHAPE = (96, 96, 3)
N = np.prod(SHAPE)


def const(value, dtype):
    if dtype == np.uint8:
        return np.full(SHAPE, value, np.uint8)
    return np.full(SHAPE, value / 255, dtype)


def noise_stats(name, sev, value, dtype):
    out = corrupt(const(value, dtype), name, sev, rng=11, scale="imagenet")
    x = out.astype(np.float64) / (255 if dtype == np.uint8 else 1)
    return x.mean(), x.std(), parameters(name, sev, SHAPE, "imagenet")


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("sev", [1, 2])
def test_gaussian_noise_std(sev, dtype):
    mean, std, p = noise_stats("gaussian_noise", sev, 128, dtype)
    rounding = 1 / 12 / 255**2 if dtype == np.uint8 else 0.0  # variance of rounding to a level
    expected = np.sqrt(p["std"] ** 2 + rounding)
    assert abs(std / expected - 1) < 0.03
    assert abs(mean - 128 / 255) < 4 * expected / np.sqrt(N)


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
@pytest.mark.parametrize("sev", [1, 3])
def test_speckle_noise_std(sev, dtype):
    mean, std, p = noise_stats("speckle_noise", sev, 100, dtype)
    rounding = 1 / 12 / 255**2 if dtype == np.uint8 else 0.0
    expected = np.sqrt((p["std"] * 100 / 255) ** 2 + rounding)
    assert abs(std / expected - 1) < 0.03
    assert abs(mean - 100 / 255) < 4 * expected / np.sqrt(N)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("sev", [1, 3, 5])
def test_shot_noise_is_poisson(sev, dtype):
    mean, std, p = noise_stats("shot_noise", sev, 60, dtype)
    x, c = 60 / 255, p["photons"]
    # exact moments of clip(Poisson(x c) / c, 0, 1), rounded to a level for uint8
    lam = x * c
    j = np.arange(int(lam + 20 * np.sqrt(lam) + 20))
    pmf = np.exp(-lam + j * np.log(lam) - np.array([math.lgamma(k + 1) for k in j]))
    values = np.minimum(j / c, 1.0)
    if dtype == np.uint8:
        values = np.floor(values * 255 + 0.5) / 255
    exp_mean = (pmf * values).sum()
    exp_std = np.sqrt((pmf * (values - exp_mean) ** 2).sum())
    assert abs(std / exp_std - 1) < 0.03
    assert abs(mean - exp_mean) < 4 * exp_std / np.sqrt(N)
    if sev == 1:  # little clipping here: the plain Poisson formula, mean x and variance x / c
        assert abs(std / np.sqrt(x / c) - 1) < 0.03


@pytest.mark.parametrize("dtype", [np.uint8, np.float64])
def test_impulse_noise_rates_per_channel(dtype):
    p = parameters("impulse_noise", 5, SHAPE, "imagenet")
    out = corrupt(const(128, dtype), "impulse_noise", 5, rng=3, scale="imagenet").astype(np.float64)
    top = 255 if dtype == np.uint8 else 1
    half = p["amount"] / 2
    se = np.sqrt(half * (1 - half) / N)
    assert abs((out == top).mean() - half) < 4 * se
    assert abs((out == 0).mean() - half) < 4 * se
    assert np.isin(out, [0, top, 128 if dtype == np.uint8 else 128 / 255]).all()
    # independent per channel: all three channels flipped together at rate amount^3
    all3 = ((out == 0) | (out == top)).all(axis=2).mean()
    assert abs(all3 - p["amount"] ** 3) < 4 * np.sqrt(p["amount"] ** 3 / (N / 3))


def test_contrast_formula():
    rng = np.random.default_rng(0)
    x = rng.random((40, 50, 3))
    for sev in range(1, 6):
        c = parameters("contrast", sev, x.shape)["factor"]
        m = x.mean(axis=(0, 1), keepdims=True)
        np.testing.assert_allclose(corrupt(x, "contrast", sev), np.clip((x - m) * c + m, 0, 1), atol=1e-6)
        x8 = (x * 255).round().astype(np.uint8)
        m8 = x8.mean(axis=(0, 1), keepdims=True) / 255
        expected = np.clip((x8 / 255 - m8) * c + m8, 0, 1) * 255
        assert np.abs(corrupt(x8, "contrast", sev).astype(float) - expected).max() <= 0.5 + 1e-6


def test_brightness_shift():
    rng = np.random.default_rng(0)
    x = rng.random((40, 50, 3)).astype(np.float32) * 0.6
    gray = x[..., 0].copy()
    for sev in range(1, 6):
        c = parameters("brightness", sev, x.shape, "imagenet")["shift"]
        np.testing.assert_allclose(corrupt(gray, "brightness", sev, scale="imagenet"), np.clip(gray + c, 0, 1),
                                   atol=1e-6)
        out = corrupt(x, "brightness", sev, scale="imagenet")
        np.testing.assert_allclose(out.max(axis=2), np.clip(x.max(axis=2) + c, 0, 1), atol=1e-5)  # V = max
        assert np.abs(out.min(axis=2) / out.max(axis=2) - x.min(axis=2) / x.max(axis=2)).max() < 1e-4  # S kept


def gaussian_blur_twin(x, sigma):
    """Separable Gaussian, truncate 4, edge padding: scikit-image's gaussian(mode='nearest')."""
    r = int(np.ceil(4 * sigma))
    k = np.exp(-np.arange(-r, r + 1) ** 2 / (2 * sigma**2))
    k /= k.sum()
    pad = np.pad(x, ((r, r), (r, r), (0, 0)), mode="edge")
    rows = sum(k[i] * pad[i:i + x.shape[0]] for i in range(2 * r + 1))
    return sum(k[i] * rows[:, i:i + x.shape[1]] for i in range(2 * r + 1))


@pytest.mark.parametrize("sev", [1, 3])
def test_gaussian_blur_matches_formula(sev):
    x = np.random.default_rng(1).random((48, 60, 3))
    sigma = parameters("gaussian_blur", sev, x.shape, "cifar")["sigma"]
    np.testing.assert_allclose(corrupt(x, "gaussian_blur", sev, scale="cifar"), gaussian_blur_twin(x, sigma),
                               atol=1e-5)


def test_defocus_matches_direct_correlation():
    x = np.random.default_rng(2).random((40, 40, 3)).astype(np.float32)
    p = parameters("defocus_blur", 4, x.shape, "cifar")
    k = T.disk_kernel(p["radius"], p["alias_sigma"]).astype(np.float64)
    r = k.shape[0] // 2
    pad = np.pad(x.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="reflect")  # = BORDER_REFLECT_101
    expected = sum(k[i, j] * pad[i:i + 40, j:j + 40] for i in range(k.shape[0]) for j in range(k.shape[1]))
    np.testing.assert_allclose(corrupt(x, "defocus_blur", 4, scale="cifar"), np.clip(expected, 0, 1), atol=1e-5)


@pytest.mark.parametrize("ksize", [13, 37, 43, 49, 61])
def test_fast_dft_padding_does_not_change_filter2d(ksize):
    rng = np.random.default_rng(ksize)
    x = rng.random((100, 130, 3), dtype=np.float32)
    k = rng.random((ksize, ksize), dtype=np.float32)
    for border in (cv2.BORDER_REPLICATE, cv2.BORDER_REFLECT_101):
        np.testing.assert_allclose(T.filter2d(x, k, border), cv2.filter2D(x, -1, k, borderType=border),
                                   rtol=1e-4, atol=1e-4)


def test_zoom_and_motion_blur_keep_a_constant_image():
    x = np.full((50, 70, 3), 0.4)
    for name in ("zoom_blur", "motion_blur", "glass_blur", "defocus_blur"):
        np.testing.assert_allclose(corrupt(x, name, 5, rng=0), x, atol=2e-3)


def test_fog_range_follows_formula():
    x = np.full((64, 64, 3), 0.5)  # a power-of-two side uses the whole plasma map, which spans [0, 1]
    for sev in (1, 5):
        c = parameters("fog", sev, x.shape, "imagenet")["strength"]
        out = corrupt(x, "fog", sev, rng=sev, scale="imagenet")
        np.testing.assert_allclose([out.min(), out.max()], np.clip([0.5 * 0.5 / (0.5 + c),
                                                                    (0.5 + c) * 0.5 / (0.5 + c)], 0, 1), atol=1e-6)


def test_rain_streak_coverage_and_opacity_rise_with_severity():
    black = np.zeros((128, 128, 3), np.float32)
    covered, peaks = [], []
    for sev in range(1, 6):
        p = parameters("rain", sev, black.shape, "imagenet")
        out = np.mean([corrupt(black, "rain", sev, rng=k, scale="imagenet") for k in range(3)], axis=0)
        covered.append((out > 0.05).mean())
        peaks.append(out.max())
        assert out.max() <= 0.9 * p["opacity"] + 1e-6  # streak colour 0.9 at the streak's opacity
    assert covered == sorted(covered) and peaks == sorted(peaks)


def test_jpeg_quality_and_grey_chroma():
    rng = np.random.default_rng(3)
    gray = cv2.GaussianBlur(rng.integers(0, 256, (64, 64), dtype=np.uint8), (5, 5), 2)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    out = corrupt(rgb, "jpeg_compression", 3, scale="imagenet")
    assert np.abs(out[..., 0].astype(int) - out[..., 2].astype(int)).max() <= 2  # no colour from grey
    q = parameters("jpeg_compression", 3, rgb.shape, "imagenet")["quality"]
    ok, buf = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, q])
    assert np.abs(corrupt(gray, "jpeg_compression", 3, scale="imagenet").astype(int)
                  - cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(int)).max() == 0


def test_uint8_noise_with_a_32_bit_bit_generator():
    """MT19937 gives 32-bit raw output; the uint32 draws must still be uniform over 32 bits."""
    gen = np.random.Generator(np.random.MT19937(5))
    out = corrupt(const(128, np.uint8), "gaussian_noise", 1, rng=gen, scale="imagenet").astype(np.float64) / 255
    assert abs(out.std() / np.sqrt(0.08**2 + 1 / 12 / 255**2) - 1) < 0.03
    assert abs(out.mean() - 128 / 255) < 4 * 0.08 / np.sqrt(N)
