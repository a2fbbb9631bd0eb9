"""The Numba kernels of perturbations.image against plain NumPy/Python twins (exact equality)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perturbations._kernels import image as K

FAST = settings(max_examples=40, deadline=None)


# ------------------------------------------------------------------------------------------------- twins
def glass_swap_twin(image, max_delta, offsets):
    """ImageNet-C's loop as written there: h from H - d down to d + 1, w likewise, sequential swaps."""
    x = image.copy()
    h_size, w_size = x.shape[:2]
    for p in range(offsets.shape[0]):
        for h in range(h_size - max_delta, max_delta, -1):
            for w in range(w_size - max_delta, max_delta, -1):
                dx, dy = offsets[p, h_size - max_delta - h, w_size - max_delta - w]
                hp, wp = h + dy, w + dx
                x[h, w], x[hp, wp] = x[hp, wp].copy(), x[h, w].copy()
    return x


def sample_levels_twin(image, thr, r):
    out = np.empty(image.shape, np.uint8)
    for idx in np.ndindex(image.shape):
        out[idx] = np.searchsorted(thr[image[idx], :255], r[idx], side="right")
    return out


def gaussian_cdf_twin(std, multiplicative):
    v = np.arange(256)[:, None] / 255.0
    k = np.arange(256)[None, :]
    s = std * v if multiplicative else np.full_like(v, std)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = ((k + 0.5) / 255.0 - v) / s
    erfc = np.vectorize(math.erfc)
    cdf = np.where(s > 0, 0.5 * erfc(-t / math.sqrt(2.0)), (k >= v * 255 - 1e-9).astype(float))
    cdf[:, 255] = 1.0
    return cdf


def poisson_cdf_twin(photons):
    """pmf by the recursion p_j = p_{j-1} * lam / j, levels round(255 j / photons), tail on 255."""
    cdf = np.zeros((256, 256))
    jmax = math.ceil(photons)
    for v in range(256):
        lam = v / 255.0 * photons
        pmf = np.zeros(256)
        p = math.exp(-lam)
        for j in range(jmax):
            if j > 0:
                p = p * lam / j
            pmf[min(int(math.floor(255.0 * j / photons + 0.5)), 255)] += p
        pmf[255] += max(0.0, 1.0 - pmf.sum())
        cdf[v] = np.cumsum(pmf) / pmf.sum()
        cdf[v, 255] = 1.0
    return cdf


# -------------------------------------------------------------------------------------------------- tests
@pytest.mark.twin("perturbations._kernels.image.glass_swap", twin=glass_swap_twin)
@FAST
@given(h=st.integers(3, 12), w=st.integers(3, 12), c=st.sampled_from([1, 3]), d=st.integers(1, 3),
       iters=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_glass_swap_matches_reference_loop(h, w, c, d, iters, seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    offsets = rng.integers(-d, d, (iters, max(h - 2 * d, 0), max(w - 2 * d, 0), 2), dtype=np.int32)
    expected = glass_swap_twin(image, d, offsets)
    got = K.glass_swap(image.copy(), d, offsets)
    np.testing.assert_array_equal(got, expected)
    # a permutation of the pixels: the multiset of colours is unchanged
    np.testing.assert_array_equal(np.sort(got.reshape(-1, c), axis=0), np.sort(image.reshape(-1, c), axis=0))


@pytest.mark.twin("perturbations._kernels.image.gaussian_level_cdf", twin=gaussian_cdf_twin)
@pytest.mark.parametrize("std,mult", [(0.08, False), (0.38, False), (0.04, False), (0.6, True), (0.06, True)])
def test_gaussian_level_cdf_matches_twin(std, mult):
    np.testing.assert_allclose(K.gaussian_level_cdf(std, mult), gaussian_cdf_twin(std, mult), atol=1e-12)


@pytest.mark.twin("perturbations._kernels.image.poisson_level_cdf", twin=poisson_cdf_twin)
@pytest.mark.parametrize("photons", [3, 12, 60, 500])
def test_poisson_level_cdf_matches_twin(photons):
    np.testing.assert_allclose(K.poisson_level_cdf(float(photons)), poisson_cdf_twin(photons), atol=1e-9)


@pytest.mark.twin("perturbations._kernels.image.level_thresholds", "perturbations._kernels.image.level_guide",
                  "perturbations._kernels.image.sample_levels", twin=sample_levels_twin)
@pytest.mark.parametrize("kind,value", [("g", 0.18), ("s", 0.35), ("p", 5.0), ("g", 0.01)])
def test_thresholds_guide_and_sampling_match_numpy(kind, value):
    cdf = {"g": lambda: K.gaussian_level_cdf(value, False), "s": lambda: K.gaussian_level_cdf(value, True),
           "p": lambda: K.poisson_level_cdf(value)}[kind]()
    thr = K.level_thresholds(cdf)
    np.testing.assert_array_equal(thr, np.minimum(np.floor(cdf * 2.0**32 + 0.5), 2.0**32 - 1).astype(np.uint32))
    guide = K.level_guide(thr)
    lo = np.arange(K.GUIDE_SIZE, dtype=np.uint64) << np.uint64(32 - K.GUIDE_BITS)
    twin_guide = np.stack([np.searchsorted(row[:255].astype(np.uint64), lo, side="right") for row in thr])
    np.testing.assert_array_equal(guide, twin_guide.astype(np.uint8))
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (17, 9, 3), dtype=np.uint8)
    r = rng.integers(0, 2**32, image.shape, dtype=np.uint32)
    r.flat[:4] = [0, 2**32 - 1, 2**31, int(lo[3])]  # the ends of the range and a bucket boundary
    np.testing.assert_array_equal(K.sample_levels(image, thr, guide, r), sample_levels_twin(image, thr, r))


@pytest.mark.twin("perturbations._kernels.image.impulse_uint8", twin="inline")
@FAST
@given(shape=st.tuples(st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 3])),
       amount=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_impulse_matches_twin(shape, amount, seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    u = rng.random(shape)
    twin = np.where(u < amount / 2, 255, np.where(u < amount, 0, image)).astype(np.uint8)
    np.testing.assert_array_equal(K.impulse_uint8(image, amount, u), twin)


@pytest.mark.twin("perturbations._kernels.image.to_uint8", twin="inline")
@FAST
@given(shape=st.tuples(st.integers(1, 9), st.integers(1, 9), st.sampled_from([1, 3])), seed=st.integers(0, 2**16))
def test_to_uint8_rounds_and_clips(shape, seed):
    x = np.random.default_rng(seed).uniform(-0.2, 1.2, shape).astype(np.float32)
    x.flat[0] = 0.5 / 255  # a tie rounds up
    twin = np.floor(np.clip(x.astype(np.float64), 0, 1) * 255.0 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(K.to_uint8(x), twin)


def plasma_twin(size, decay, u):
    """The reference's vectorised diamond-square (np.roll on the corner/centre grids), fed the same u."""
    grid = np.zeros((size, size))
    step, wibble, idx = size, 100.0, 0

    def take(shape):
        nonlocal idx
        n = shape[0] * shape[1]
        out = u[idx:idx + n].reshape(shape) * wibble**2
        idx += n
        return out

    while step >= 2:
        half = step // 2
        corners = grid[0:size:step, 0:size:step]
        square = corners + np.roll(corners, -1, axis=0)
        square += np.roll(square, -1, axis=1)
        grid[half:size:step, half:size:step] = square / 4 + take(square.shape)
        centres = grid[half:size:step, half:size:step]
        left = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        grid[0:size:step, half:size:step] = left / 4 + take(left.shape)
        top = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        grid[half:size:step, 0:size:step] = top / 4 + take(top.shape)
        step //= 2
        wibble /= decay
    assert idx == size * size - 1
    grid -= grid.min()
    return grid / grid.max()


@pytest.mark.twin("perturbations._kernels.image.plasma_fractal", twin=plasma_twin)
@pytest.mark.parametrize("size,decay", [(2, 2.0), (8, 3.0), (32, 1.75), (64, 1.4)])
def test_plasma_fractal_matches_reference_algorithm(size, decay):
    u = np.random.default_rng(size).uniform(-1, 1, size * size - 1)
    got = K.plasma_fractal(size, decay, u)
    np.testing.assert_allclose(got, plasma_twin(size, decay, u), rtol=1e-12, atol=1e-12)
    assert got.min() == 0.0 and got.max() == 1.0


def box_twin(image, out_h, out_w):
    """Mean over each fractional box, by integrating a piecewise-constant image exactly (float64)."""
    h, w = image.shape[:2]

    def weights(n_out, n_in):
        m = np.zeros((n_out, n_in))
        for r in range(n_out):
            a, b = r * n_in / n_out, (r + 1) * n_in / n_out
            for k in range(n_in):
                m[r, k] = max(0.0, min(b, k + 1) - max(a, k))
        return m / (n_in / n_out)

    return np.einsum("rk,kxc,sx->rsc", weights(out_h, h), image.astype(np.float64), weights(out_w, w))


@pytest.mark.twin("perturbations._kernels.image.box_downsample", twin=box_twin)
@FAST
@given(h=st.integers(1, 30), w=st.integers(1, 30), c=st.sampled_from([1, 3]), data=st.data())
def test_box_downsample_matches_exact_area_average(h, w, c, data):
    out_h = data.draw(st.integers(1, h))
    out_w = data.draw(st.integers(1, w))
    image = np.random.default_rng(h * 31 + w).integers(0, 256, (h, w, c), dtype=np.uint8)
    for src in (image, image.astype(np.float32) / 255):
        scale = 255.0 if src.dtype == np.uint8 else 1.0
        np.testing.assert_allclose(K.box_downsample(src, out_h, out_w) / scale, box_twin(src, out_h, out_w) / scale,
                                   atol=1e-5)


def pil_box_uint8_twin(image, starts, stops, weights):
    """Pillow's fixed-point BOX pass along axis 1, in plain NumPy integers."""
    sums = np.stack([image[:, a:b].astype(np.int64).sum(axis=1) for a, b in zip(starts, stops)], axis=1)
    return np.clip(((1 << 21) + weights[None, :, None] * sums) >> 22, 0, 255).astype(np.uint8)


@pytest.mark.twin("perturbations._kernels.image.pil_box_uint8", twin=pil_box_uint8_twin)
@FAST
@given(a=st.integers(1, 12), b=st.integers(1, 40), c=st.sampled_from([1, 3, 40]), data=st.data())
def test_pil_box_uint8_matches_integer_sums(a, b, c, data):
    from perturbations._image_corruptions import _pil_box_windows

    n_out = data.draw(st.integers(1, b))
    image = np.random.default_rng(a * 97 + b).integers(0, 256, (a, b, c), dtype=np.uint8)
    starts, stops, counts, fixed = _pil_box_windows(b, n_out)
    assert np.all(counts >= 1) and starts[0] == 0 and stops[-1] <= b
    np.testing.assert_array_equal(K.pil_box_uint8(image, starts, stops, fixed),
                                  pil_box_uint8_twin(image, starts, stops, fixed))


def glass_copy_twin(image, max_delta, offsets):
    """The references' line run literally on NumPy views of RGB pixels (it copies; it does not swap)."""
    x = image.copy()
    h_size, w_size = x.shape[:2]
    for p in range(offsets.shape[0]):
        for h in range(h_size - max_delta, max_delta, -1):
            for w in range(w_size - max_delta, max_delta, -1):
                dx, dy = offsets[p, h_size - max_delta - h, w_size - max_delta - w]
                hp, wp = h + dy, w + dx
                x[h, w], x[hp, wp] = x[hp, wp], x[h, w]
    return x


@pytest.mark.twin("perturbations._kernels.image.glass_copy", twin=glass_copy_twin)
@FAST
@given(h=st.integers(3, 12), w=st.integers(3, 12), c=st.sampled_from([1, 3]), d=st.integers(1, 3),
       iters=st.integers(1, 2), seed=st.integers(0, 2**16))
def test_glass_copy_matches_the_references_view_assignment(h, w, c, d, iters, seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
    offsets = rng.integers(-d, d, (iters, max(h - 2 * d, 0), max(w - 2 * d, 0), 2), dtype=np.int32)
    np.testing.assert_array_equal(K.glass_copy(image.copy(), d, offsets), glass_copy_twin(image, d, offsets))


def test_the_references_swap_line_copies_on_views():
    x = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    x[0, 0], x[1, 1] = x[1, 1], x[0, 0]
    np.testing.assert_array_equal(x[0, 0], [9, 10, 11])
    np.testing.assert_array_equal(x[1, 1], [9, 10, 11])
