"""Numba kernels of the image corruptions (private; `perturbations.image` validates, draws randomness, calls).

No kernel draws random numbers: the wrappers draw them from a `numpy.random.Generator` and pass them in, so
the same seed gives the same image. Each kernel has a plain NumPy/Python twin in
``tests/perturbations/test_image_kernels.py``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

GUIDE_BITS = 10
GUIDE_SIZE = 1 << GUIDE_BITS


@njit(cache=True, nogil=True)
def level_thresholds(cdf):
    """uint32 thresholds (256, 256) of a level CDF table: a uniform 32-bit integer r gives level k when
    thr[v, k-1] <= r < thr[v, k], so level k has probability (thr[v, k] - thr[v, k-1]) / 2^32, the
    table's own probability to within 2^-32. Column 255 is never read (everything above goes there)."""
    thr = np.empty(cdf.shape, np.uint32)
    top = 4294967295.0
    for v in range(cdf.shape[0]):
        for k in range(cdf.shape[1]):
            thr[v, k] = np.uint32(min(math.floor(cdf[v, k] * 4294967296.0 + 0.5), top))
    return thr


@njit(cache=True, nogil=True)
def level_guide(thr):
    """Guide table (256, GUIDE_SIZE) uint8 for `sample_levels`: entry [v, b] is the smallest level k < 255
    with ``thr[v, k] > b * 2^32 / GUIDE_SIZE``, else 255 (Chen & Asau's guide table for inverse-transform
    sampling: the search starts there and takes about one step)."""
    guide = np.empty((thr.shape[0], GUIDE_SIZE), np.uint8)
    shift = 32 - GUIDE_BITS
    for v in range(thr.shape[0]):
        k = 0
        for b in range(GUIDE_SIZE):
            lo = np.uint64(b) << np.uint64(shift)
            while k < 255 and np.uint64(thr[v, k]) <= lo:
                k += 1
            guide[v, b] = k
    return guide


@njit(cache=True, nogil=True)
def sample_levels(image, thr, guide, r):
    """Inverse-transform sampling of a per-level output distribution, for uint8 noise corruptions.

    ``out.flat[i]`` is the smallest level ``k < 255`` with ``r.flat[i] < thr[image.flat[i], k]``, else 255;
    ``thr = level_thresholds(cdf)``, ``guide = level_guide(thr)``, and ``r`` holds uniform uint32 draws,
    one per element of `image`.
    """
    flat = image.ravel()
    rf = r.ravel()
    out = np.empty(flat.size, np.uint8)
    shift = 32 - GUIDE_BITS
    for i in range(flat.size):
        v = flat[i]
        ri = rf[i]
        k = np.int64(guide[v, ri >> shift])
        while k < 255 and ri >= thr[v, k]:
            k += 1
        out[i] = k
    return out.reshape(image.shape)


@njit(cache=True, nogil=True)
def gaussian_level_cdf(std, multiplicative):
    """CDF table (256, 256) of round(255 * clip(x + s * z, 0, 1)) given x = v / 255, z ~ N(0, 1).

    ``s = std`` (additive, gaussian_noise) or ``s = std * x`` (multiplicative, speckle_noise).
    """
    cdf = np.empty((256, 256))
    for v in range(256):
        x = v / 255.0
        s = std * x if multiplicative else std
        for k in range(256):
            if k == 255:
                cdf[v, k] = 1.0
            elif s == 0.0:
                cdf[v, k] = 1.0 if k >= v else 0.0
            else:  # P(255 * (x + s z) < k + 0.5)
                t = ((k + 0.5) / 255.0 - x) / s
                cdf[v, k] = 0.5 * math.erfc(-t / math.sqrt(2.0))
    return cdf


@njit(cache=True, nogil=True)
def poisson_level_cdf(photons):
    """CDF table (256, 256) of round(255 * clip(Poisson(x * photons) / photons, 0, 1)) given x = v / 255."""
    cdf = np.zeros((256, 256))
    jmax = int(math.ceil(photons))  # every count j >= photons lands on level 255
    for v in range(256):
        lam = v / 255.0 * photons
        pmf = np.zeros(256)
        acc = 0.0
        for j in range(jmax):
            if lam == 0.0:
                p = 1.0 if j == 0 else 0.0
            else:
                p = math.exp(j * math.log(lam) - lam - math.lgamma(j + 1.0))
            level = int(math.floor(255.0 * j / photons + 0.5))
            pmf[min(level, 255)] += p
            acc += p
        pmf[255] += max(0.0, 1.0 - acc)  # the clipped tail
        total = 0.0
        for k in range(256):
            total += pmf[k]
            cdf[v, k] = total
        for k in range(256):
            cdf[v, k] /= total
        cdf[v, 255] = 1.0
    return cdf


@njit(cache=True, nogil=True)
def impulse_uint8(image, amount, u):
    """Salt-and-pepper per element: ``u < amount / 2`` gives 255, ``u < amount`` gives 0, else unchanged."""
    flat = image.ravel()
    uf = u.ravel()
    out = np.empty(flat.size, np.uint8)
    half = 0.5 * amount
    for i in range(flat.size):
        if uf[i] < half:
            out[i] = 255
        elif uf[i] < amount:
            out[i] = 0
        else:
            out[i] = flat[i]
    return out.reshape(image.shape)


@njit(cache=True, nogil=True)
def glass_swap(image, max_delta, offsets):
    """ImageNet-C's local pixel shuffle of glass_blur, in place on a uint8 (H, W, C) copy.

    For each pass ``p``, h runs from H - max_delta down to max_delta + 1 and, inside, w from
    W - max_delta down to max_delta + 1; pixel (h, w) is swapped with (h + dy, w + dx), where
    ``offsets[p, i, j] = (dx, dy)`` for h = H - max_delta - i, w = W - max_delta - j. The swaps are
    sequential, so the order matters; the offsets lie in [-max_delta, max_delta - 1] like the reference's.
    """
    h_size, w_size, n_channels = image.shape
    for p in range(offsets.shape[0]):
        for i in range(offsets.shape[1]):
            h = h_size - max_delta - i
            for j in range(offsets.shape[2]):
                w = w_size - max_delta - j
                hp = h + offsets[p, i, j, 1]
                wp = w + offsets[p, i, j, 0]
                for c in range(n_channels):
                    tmp = image[h, w, c]
                    image[h, w, c] = image[hp, wp, c]
                    image[hp, wp, c] = tmp
    return image


@njit(cache=True, nogil=True)
def glass_copy(image, max_delta, offsets):
    """glass_blur's loop as the references run it, in place on a uint8 (H, W, C) copy: (h, w) <- (h', w').

    ImageNet-C's and imagecorruptions' line ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` assigns NumPy
    views of the RGB pixels, so (h', w') is copied over (h, w) and (h', w') keeps its value: no swap.
    Same loop order and offsets as `glass_swap`.
    """
    h_size, w_size, n_channels = image.shape
    for p in range(offsets.shape[0]):
        for i in range(offsets.shape[1]):
            h = h_size - max_delta - i
            for j in range(offsets.shape[2]):
                w = w_size - max_delta - j
                hp = h + offsets[p, i, j, 1]
                wp = w + offsets[p, i, j, 0]
                for c in range(n_channels):
                    image[h, w, c] = image[hp, wp, c]
    return image


@njit(cache=True, nogil=True)
def to_uint8(x):
    """round(255 * clip(x, 0, 1)) as uint8, in one pass (x is float32 or float64, any shape)."""
    flat = x.ravel()
    out = np.empty(flat.size, np.uint8)
    for i in range(flat.size):
        v = min(max(flat[i], 0.0), 1.0)
        out[i] = np.uint8(v * 255.0 + 0.5)
    return out.reshape(x.shape)


@njit(cache=True, nogil=True)
def plasma_fractal(size, decay, u):
    """Diamond-square plasma fractal on a periodic size x size grid (size a power of two), in [0, 1].

    ImageNet-C's fog map: start with wibble 100; each new point is the mean of its four neighbours plus
    wibble^2 * u (u ~ U(-1, 1), i.e. wibble * U(-wibble, wibble)); wibble /= decay after each level; then
    min-max scaling. ``u`` holds size^2 - 1 uniforms, used level by level: squares, then the diamonds on
    the rows of the corners, then those on the columns, each row-major (the reference's order).
    """
    grid = np.zeros((size, size))
    step = size
    wibble = 100.0
    idx = 0
    while step >= 2:
        half = step // 2
        n = size // step
        amp = wibble * wibble
        for i in range(n):
            for j in range(n):
                y0, x0 = i * step, j * step
                y1, x1 = (y0 + step) % size, (x0 + step) % size
                grid[y0 + half, x0 + half] = (grid[y0, x0] + grid[y1, x0] + grid[y0, x1] + grid[y1, x1]) / 4 \
                    + amp * u[idx]
                idx += 1
        for i in range(n):
            for j in range(n):
                y, x = i * step, j * step + half
                up = (y - half) % size
                grid[y, x] = (grid[y + half, x] + grid[up, x] + grid[y, x - half] + grid[y, (x + half) % size]) / 4 \
                    + amp * u[idx]
                idx += 1
        for i in range(n):
            for j in range(n):
                y, x = i * step + half, j * step
                left = (x - half) % size
                grid[y, x] = (grid[y, x + half] + grid[y, left] + grid[y - half, x] + grid[(y + half) % size, x]) / 4 \
                    + amp * u[idx]
                idx += 1
        step //= 2
        wibble /= decay
    lo = grid.min()
    hi = grid.max() - lo
    for i in range(size):
        for j in range(size):
            grid[i, j] = (grid[i, j] - lo) / hi if hi > 0 else 0.0
    return grid


@njit(cache=True, nogil=True)
def box_downsample(image, out_h, out_w):
    """Area (box) average of a C-contiguous (H, W, C) image to (out_h, out_w, C) float32.

    Output pixel (r, s) is the mean of the input over [r H/out_h, (r+1) H/out_h) x [s W/out_w, ...),
    partly covered input pixels weighted by their covered fraction (PIL's BOX, OpenCV's INTER_AREA);
    exact for fractional ratios up to float32 rounding.
    """
    h, w, n_channels = image.shape
    flat = image.reshape((h, w * n_channels))
    sy, sx = h / out_h, w / out_w
    rows = np.zeros((out_h, w * n_channels), np.float32)
    for r in range(out_h):
        y0, y1 = r * sy, (r + 1) * sy
        for k in range(int(y0), min(int(math.ceil(y1)), h)):
            wgt = np.float32(min(y1, k + 1.0) - max(y0, float(k)))
            src = flat[k]
            dst = rows[r]
            for i in range(w * n_channels):
                dst[i] += wgt * np.float32(src[i])
    out = np.zeros((out_h, out_w, n_channels), np.float32)
    norm = 1.0 / (sy * sx)
    for s in range(out_w):
        x0, x1 = s * sx, (s + 1) * sx
        for k in range(int(x0), min(int(math.ceil(x1)), w)):
            wgt = np.float32((min(x1, k + 1.0) - max(x0, float(k))) * norm)
            for r in range(out_h):
                for c in range(n_channels):
                    out[r, s, c] += wgt * rows[r, k * n_channels + c]
    return out


@njit(cache=True, nogil=True)
def pil_box_uint8(image, starts, stops, weights):
    """Pillow's 8-bit BOX pass along axis 1 of a C-contiguous (A, B, C) uint8 array -> (A, len(starts), C).

    Output j is (2^21 + weights[j] * sum(image[:, starts[j]:stops[j]])) >> 22, clipped to 0..255: Pillow's
    fixed-point resampling (22 fractional bits, ``ResampleHorizontal_8bpc``) with its equal box weights.
    With many channels (the vertical pass, called on (1, H, W*C)) the sums run along the contiguous last
    axis, which vectorises (5-7x faster on that pass at 224 px); with few, one window at a time.
    """
    a, _, n_channels = image.shape
    n_out = starts.shape[0]
    out = np.empty((a, n_out, n_channels), np.uint8)
    if n_channels >= 16:
        acc = np.empty(n_channels, np.int64)
        for i in range(a):
            for j in range(n_out):
                acc[:] = 0
                for k in range(starts[j], stops[j]):
                    for c in range(n_channels):
                        acc[c] += image[i, k, c]
                w = weights[j]
                for c in range(n_channels):
                    out[i, j, c] = np.uint8(min(max((np.int64(2097152) + w * acc[c]) >> 22, 0), 255))
        return out
    for i in range(a):
        for j in range(n_out):
            for c in range(n_channels):
                acc1 = 0
                for k in range(starts[j], stops[j]):
                    acc1 += np.int64(image[i, k, c])
                v = (np.int64(2097152) + weights[j] * acc1) >> 22
                out[i, j, c] = np.uint8(min(max(v, 0), 255))
    return out
