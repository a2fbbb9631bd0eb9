"""The 20 image corruptions as plain functions: ``function(image, params, rng) -> image``.

Each takes a validated (H, W, C) uint8 or float image, the params `perturbations.image` sampled (the
severity row for this image size plus the scalar draws) and a Generator used for the per-pixel noise
only, and returns float32 in [0, 1]-ish or uint8; `perturbations.image` rounds, clips and restores the
dtype. A function that draws a scalar after its noise (snow's angle) returns ``(image, info)``.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from perturbations._kernels import image as _k
from perturbations._kernels import image_textures as _tex


# ----------------------------------------------------------------------------------------------- helpers
def _float(img: np.ndarray) -> np.ndarray:
    """float32 copy in [0, 1] of a validated (H, W, C) image."""
    if img.dtype == np.uint8:
        return img.astype(np.float32) * np.float32(1.0 / 255.0)
    return img.astype(np.float32)  # always a copy, so in-place work never reaches the caller's array


def _cv(out: np.ndarray, like: np.ndarray) -> np.ndarray:
    """OpenCV drops a trailing channel axis of size 1; put it back."""
    return out.reshape(like.shape) if out.ndim != like.ndim else out


def _luma(x: np.ndarray) -> np.ndarray:
    """(H, W, 1) grey of an (H, W, C) float32 image (ITU-R 601 weights, as cv2.COLOR_RGB2GRAY)."""
    if x.shape[2] == 1:
        return x
    return cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None]


@lru_cache(maxsize=64)
def _level_tables(kind: str, value: float) -> tuple:
    """(thresholds, guide) of the output level given the input level, for a uint8 noise corruption."""
    if kind == "poisson":
        cdf = _k.poisson_level_cdf(float(value))
    else:
        cdf = _k.gaussian_level_cdf(float(value), kind == "speckle")
    thr = _k.level_thresholds(cdf)
    guide = _k.level_guide(thr)
    thr.setflags(write=False)
    guide.setflags(write=False)
    return thr, guide


_RAW64 = (np.random.PCG64, np.random.PCG64DXSM, np.random.SFC64, np.random.Philox)


def _uint32_draws(rng: np.random.Generator, shape) -> np.ndarray:
    """Uniform uint32 draws; from 64-bit bit generators, the raw output split in halves (twice as fast)."""
    n = int(np.prod(shape))
    if isinstance(rng.bit_generator, _RAW64):
        return rng.bit_generator.random_raw((n + 1) // 2).view(np.uint32)[:n].reshape(shape)
    return rng.integers(0, 1 << 32, size=shape, dtype=np.uint32)


def _sample_levels(img, kind, value, rng):
    return _k.sample_levels(img, *_level_tables(kind, value), _uint32_draws(rng, img.shape))


def _hsv_channel(x: np.ndarray, channel: int, factor: float, offset: float) -> np.ndarray:
    """RGB -> HSV, channel <- clip(channel * factor + offset, 0, 1), -> RGB (float32 cv2: S, V in [0, 1])."""
    hsv = cv2.cvtColor(x, cv2.COLOR_RGB2HSV)
    plane = hsv[..., channel]
    np.clip(plane * np.float32(factor) + np.float32(offset), 0.0, 1.0, out=plane)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


# ------------------------------------------------------------------------------------------- the noises
# uint8 input: the output level is sampled exactly from its distribution given the input level (the
# formula's noise, clipping and rounding folded into a 256 x 256 CDF table), one uniform per element.
def gaussian_noise(img, p, rng):
    """x + N(0, std^2), per pixel and channel."""
    if img.dtype == np.uint8:
        return _sample_levels(img, "gaussian", p["std"], rng)
    return _float(img) + np.float32(p["std"]) * rng.standard_normal(img.shape, dtype=np.float32)


def shot_noise(img, p, rng):
    """Poisson(x * photons) / photons, per pixel and channel."""
    if img.dtype == np.uint8:
        return _sample_levels(img, "poisson", p["photons"], rng)
    return (rng.poisson(img.astype(np.float64) * p["photons"]) / p["photons"]).astype(np.float32)


def impulse_noise(img, p, rng):
    """Salt and pepper: each element independently becomes 1 (prob amount/2) or 0 (prob amount/2)."""
    u = rng.random(img.shape)
    if img.dtype == np.uint8:
        return _k.impulse_uint8(img, p["amount"], u)
    x = img.copy()  # float32 or float64: untouched elements keep their exact value
    x[u < p["amount"]] = 0.0
    x[u < 0.5 * p["amount"]] = 1.0
    return x


def speckle_noise(img, p, rng):
    """x + x * N(0, std^2), per pixel and channel."""
    if img.dtype == np.uint8:
        return _sample_levels(img, "speckle", p["std"], rng)
    x = _float(img)
    return x + x * (np.float32(p["std"]) * rng.standard_normal(img.shape, dtype=np.float32))


# ---------------------------------------------------------------------------------------------- the blurs
def defocus_blur(img, p, rng):
    """Convolution with an anti-aliased disk of radius `radius` (BORDER_REFLECT_101, as cv2.filter2D)."""
    x = _float(img)
    return _tex.filter2d(x, _tex.disk_kernel(p["radius"], p["alias_sigma"]))


def glass_blur(img, p, rng):
    """Gaussian blur, 8-bit quantisation, ImageNet-C's sequential local pixel moves, Gaussian blur again.

    By default each move copies pixel (h', w') over (h, w), which is what ImageNet-C's and
    imagecorruptions' swap line does on NumPy views (the published numbers were made with it);
    ``true_swap=True`` exchanges the two pixels, as the line was meant to (weaker by 0.2-1.6 dB).
    """
    x = _cv(_tex.gaussian_blur(_float(img), p["sigma"]), img)
    q = _k.to_uint8(x)
    h, w = q.shape[:2]
    d = int(p["max_delta"])
    offsets = rng.integers(-d, d, size=(int(p["iterations"]), max(h - 2 * d, 0), max(w - 2 * d, 0), 2),
                           dtype=np.int32)
    move = _k.glass_swap if p.get("true_swap", False) else _k.glass_copy
    q = move(np.ascontiguousarray(q), d, offsets)
    return _cv(_tex.gaussian_blur(q.astype(np.float32) * np.float32(1 / 255), p["sigma"]), x)


def motion_blur(img, p, rng):
    """One-sided Gaussian line blur (imagecorruptions' model of ImageMagick's), angle ~ U(-45, 45) deg."""
    x = _float(img)
    kernel = _tex.motion_kernel(int(p["radius"]), p["sigma"], p["angle"])
    return _tex.filter2d(x, kernel, cv2.BORDER_REPLICATE)


def zoom_blur(img, p, rng):
    """Mean of the image and its centre zooms by each factor in `zooms`."""
    x = _float(img)
    out = x.copy()
    for z in p["zooms"]:
        out += _tex.clipped_zoom(x, z)
    out *= np.float32(1.0 / (len(p["zooms"]) + 1))
    return out


def gaussian_blur(img, p, rng):
    """Gaussian blur of std `sigma` px (kernel 2*int(4 sigma + .5)+1, replicated border, as scikit-image)."""
    x = _float(img)
    return _cv(_tex.gaussian_blur(x, p["sigma"]), x)


# -------------------------------------------------------------------------------------------- the weather
def snow(img, p, rng):
    """Zoomed, thresholded Gaussian flakes, motion-blurred at U(-135, -45) deg, on a whitened image."""
    x = _float(img)
    h, w = x.shape[:2]
    layer = rng.standard_normal((h, w), dtype=np.float32) * np.float32(p["std"]) + np.float32(p["mean"])
    layer = _tex.clipped_zoom_corners(layer, p["zoom"])  # scipy's corner alignment, as the reference
    layer[layer < p["threshold"]] = 0.0
    np.clip(layer, 0.0, 1.0, out=layer)
    angle = rng.uniform(-135.0, -45.0)  # drawn after the flake noise, so apply draws it and reports it
    kernel = _tex.motion_kernel(int(p["radius"]), p["sigma"], angle)
    layer = _tex.filter2d(layer, kernel, cv2.BORDER_REPLICATE)
    layer = (np.rint(layer * 255.0) * np.float32(1 / 255))[..., None]
    blend = np.float32(p["blend"])
    x = blend * x + (1 - blend) * np.maximum(x, _luma(x) * np.float32(1.5) + np.float32(0.5))
    return x + layer + layer[::-1, ::-1], {"angle": angle}


def frost(img, p, rng):
    """image_weight * x + frost_weight * F, F a crop of a procedural ice texture (not ImageNet-C's photos)."""
    x = _float(img)
    tex = _tex.frost_crop(x.shape[0], x.shape[1], p["texture_scale"], p["texture"], p["top"], p["left"])[..., None]
    tint = _tex.FROST_TINT if x.shape[2] == 3 else _tex.FROST_TINT[None, None, :] @ np.float32([.299, .587, .114])
    return np.float32(p["image_weight"]) * x + np.float32(p["frost_weight"]) * tex * tint


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def fog(img, p, rng):
    """x + strength * plasma fractal, rescaled by max(x) / (max(x) + strength)."""
    x = _float(img)
    h, w = x.shape[:2]
    size = _next_pow2(max(h, w))
    plasma = _k.plasma_fractal(size, float(p["decay"]), rng.uniform(-1.0, 1.0, size * size - 1))
    plasma = plasma[:h, :w, None].astype(np.float32)
    peak = float(x.max())
    c = np.float32(p["strength"])
    return (x + c * plasma) * np.float32(peak / (peak + p["strength"]))


def brightness(img, p, rng):
    """V <- clip(V + shift) in HSV (grey images: x + shift)."""
    x = _float(img)
    if x.shape[2] == 1:
        return x + np.float32(p["shift"])
    return _hsv_channel(x, 2, 1.0, p["shift"])


def spatter(img, p, rng):
    """Water drops (embossed blobs, pale turquoise) for `mud` = 0, mud splashes (brown) for `mud` = 1."""
    x = _float(img)
    h, w = x.shape[:2]
    liquid = rng.standard_normal((h, w), dtype=np.float32) * np.float32(p["std"]) + np.float32(p["mean"])
    liquid = _tex.gaussian_blur(liquid, p["sigma"])
    liquid[liquid < p["threshold"]] = 0.0
    if p["mud"] == 0:
        liquid8 = (np.clip(liquid, 0.0, 1.0) * 255).astype(np.uint8)  # truncation, as the reference
        dist = cv2.distanceTransform(255 - cv2.Canny(liquid8, 50, 150), cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
        emboss = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.float32)
        dist = cv2.blur(cv2.filter2D(dist, cv2.CV_8U, emboss), (3, 3)).astype(np.float32)
        m = liquid * dist
        peak = m.max()
        m = (m / peak if peak > 0 else m) * np.float32(p["intensity"])
        colour = np.float32([175, 238, 238]) / 255  # pale turquoise
    else:
        m = _tex.gaussian_blur((liquid > p["threshold"]).astype(np.float32), p["intensity"])
        m[m < 0.8] = 0.0
        x = x * (1 - m)[..., None]
        colour = np.float32([63, 42, 20]) / 255  # mud brown
    if x.shape[2] == 1:
        colour = colour[None, :] @ np.float32([.299, .587, .114])
    return x + m[..., None] * colour


def rain(img, p, rng):
    """Anti-aliased streaks at one random angle U(-20, 20) deg from vertical over a dimmed, greyer scene.

    ``round(density * H * W)`` streak centres are uniform over the image, each with brightness U(0.6, 1);
    the streak layer S is their impulse image filtered with the streak kernel (`length` x `width` px) and
    clipped to 1. out = base * (1 - opacity * S) + opacity * S * 0.9, base = (1 - dimming) * x +
    dimming * 0.7 * mean(x).
    """
    x = _float(img)
    h, w = x.shape[:2]
    angle = p["angle"]
    n = max(1, int(round(p["density"] * h * w)))
    idx = rng.integers(0, h * w, n)
    level = rng.uniform(0.6, 1.0, n)
    drops = np.bincount(idx, weights=level, minlength=h * w).astype(np.float32).reshape(h, w)
    kernel = _tex.rain_kernel(p["length"], p["width"], angle)
    streaks = np.clip(_tex.filter2d(drops, kernel, cv2.BORDER_CONSTANT), 0.0, 1.0)
    s = (np.float32(p["opacity"]) * streaks)[..., None]
    dim = np.float32(p["dimming"])
    base = (1 - dim) * x + dim * np.float32(0.7) * x.mean()
    return base * (1 - s) + s * np.float32(0.9)


# -------------------------------------------------------------------------------------------- the digital
def contrast(img, p, rng):
    """(x - channel mean) * factor + channel mean."""
    c = np.float32(p["factor"])
    if img.dtype == np.uint8:  # a per-channel affine map of the levels: one lookup table per channel
        means = np.array(cv2.mean(img)[:img.shape[2]]) / 255.0
        levels = np.arange(256, dtype=np.float64)[:, None] / 255.0
        lut = _k.to_uint8((levels - means) * p["factor"] + means)
        out = cv2.LUT(img, np.ascontiguousarray(lut.reshape(1, 256, -1)))
        return _cv(out, img)
    x = _float(img)
    means = x.mean(axis=(0, 1), keepdims=True)
    return (x - means) * c + means


def elastic_transform(img, p, rng):
    """Random affine (3 points moved by U(-affine, affine)), then a smooth random displacement field.

    The field is Gaussian-smoothed U(-1, 1) noise (std `sigma` px, truncate 3, reflected borders) times
    `alpha`; the image is resampled bilinearly with reflected borders.
    """
    x = _float(img)
    h, w = x.shape[:2]
    centre = np.float32([h, w]) // 2
    half = min(h, w) // 3
    src = np.float32([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    dst = (src + np.asarray(p["affine_shift"], dtype=np.float64)).astype(np.float32)
    x = _cv(cv2.warpAffine(x, cv2.getAffineTransform(src, dst), (w, h), borderMode=cv2.BORDER_REFLECT_101), x)
    fields = []
    for _ in range(2):
        noise = rng.uniform(-1.0, 1.0, size=(h, w)).astype(np.float32)
        fields.append(_tex.gaussian_blur(noise, p["sigma"], truncate=3.0, border=cv2.BORDER_REFLECT)
                      * np.float32(p["alpha"]))
    dx, dy = fields
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = cv2.remap(x, gx + dx, gy + dy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return _cv(out, x)


@lru_cache(maxsize=64)
def _pil_box_windows(in_size: int, out_size: int) -> tuple:
    """(start, stop, count, fixed-point weight) per output pixel of Pillow's BOX resize along one axis.

    Pillow (``precompute_coeffs``) gives input pixel x weight 1 when (x + 0.5 - centre) / scale lies in
    (-0.5, 0.5], centre = (out + 0.5) * scale, so every window has equal weights 1/n; for uint8 it uses
    them as round(2^22 / n) (``normalize_coeffs_8bpc``).
    """
    scale = in_size / out_size
    support = 0.5 * max(scale, 1.0)
    centre = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum((centre - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum((centre + support + 0.5).astype(np.int64), in_size)
    starts, stops = np.empty(out_size, np.int64), np.empty(out_size, np.int64)
    for i in range(out_size):
        x = np.arange(xmin[i], xmax[i])
        u = (x - centre[i] + 0.5) / max(scale, 1.0)
        inside = x[(u > -0.5) & (u <= 0.5)]
        starts[i], stops[i] = inside[0], inside[-1] + 1
    counts = stops - starts
    fixed = (0.5 + (1.0 / counts) * (1 << 22)).astype(np.int64)
    for a in (starts, stops, counts, fixed):
        a.setflags(write=False)
    return starts, stops, counts, fixed


def _pil_box_axis(x: np.ndarray, axis: int, out_size: int) -> np.ndarray:
    """One pass of Pillow's BOX resize along `axis` of a float64 image (Pillow's float mode: no rounding)."""
    starts, stops, counts, _ = _pil_box_windows(x.shape[axis], out_size)
    csum = np.cumsum(x, axis=axis)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 0)
    csum = np.pad(csum, pad)
    sums = np.take(csum, stops, axis=axis) - np.take(csum, starts, axis=axis)
    shape = [1] * x.ndim
    shape[axis] = out_size
    return sums / counts.reshape(shape)


def pixelate(img, p, rng):
    """Box-average down to `fraction` of the size, nearest-neighbour back up (imagecorruptions' choice).

    Both steps are Pillow's, as imagecorruptions calls them: ``BOX`` (equal weights over the input pixels
    whose centres fall in the output pixel; horizontal pass first, each pass rounded to uint8) and
    ``NEAREST`` (pixel centres, which ``cv2.INTER_NEAREST_EXACT`` reproduces; plain ``INTER_NEAREST``
    maps top-left corners and shifts the blocks by half a block at fractions .6/.4/.3).
    """
    h, w = img.shape[:2]
    oh, ow = max(1, int(h * p["fraction"])), max(1, int(w * p["fraction"]))
    if img.dtype == np.uint8:  # Pillow's fixed-point passes, bit for bit (Pillow itself is not a dependency)
        small = np.ascontiguousarray(img)
        if ow != w:
            starts, stops, _, fixed = _pil_box_windows(w, ow)
            small = _k.pil_box_uint8(small, starts, stops, fixed)
        if oh != h:
            starts, stops, _, fixed = _pil_box_windows(h, oh)
            small = _k.pil_box_uint8(small.reshape(1, h, -1), starts, stops, fixed).reshape(oh, ow, -1)
    else:
        small = img.astype(np.float64)
        if ow != w:
            small = _pil_box_axis(small, 1, ow)
        if oh != h:
            small = _pil_box_axis(small, 0, oh)
        small = small.astype(np.float32)
    return _cv(cv2.resize(np.ascontiguousarray(small), (w, h), interpolation=cv2.INTER_NEAREST_EXACT), img)


def jpeg_compression(img, p, rng):
    """JPEG encode/decode round trip at `quality` (OpenCV's libjpeg; 4:2:0 chroma for colour)."""
    q = img if img.dtype == np.uint8 else _cv(_k.to_uint8(img.astype(np.float32)), img)
    colour = q.shape[2] == 3
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(q, cv2.COLOR_RGB2BGR) if colour else q,
                           [cv2.IMWRITE_JPEG_QUALITY, int(p["quality"])])
    if not ok:  # pragma: no cover - OpenCV only fails here on an unsupported build
        raise ValueError("OpenCV could not JPEG-encode the image")
    if colour:
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)[..., None]


def saturate(img, p, rng):
    """S <- clip(S * factor + offset) in HSV. Grey images are processed as RGB and returned as luma."""
    x = _float(img)
    if x.shape[2] == 1:
        return _luma(_hsv_channel(np.repeat(x, 3, axis=2), 1, p["factor"], p["offset"]))
    return _hsv_channel(x, 1, p["factor"], p["offset"])
