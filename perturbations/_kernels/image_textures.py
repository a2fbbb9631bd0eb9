"""Filter kernels and procedural textures for the image corruptions (OpenCV + NumPy; private).

Every function takes its randomness as an explicit `numpy.random.Generator` (or none at all).
"""
from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np


def disk_kernel(radius: float, alias_sigma: float) -> np.ndarray:
    """ImageNet-C's defocus kernel: a disk X^2 + Y^2 <= r^2 normalised to sum 1, then smoothed.

    Support 17 x 17 and a 3 x 3 Gaussian for r <= 8; (2r+1)^2 and 5 x 5 above, as in the reference.
    """
    if radius <= 8:
        half, ksize = 8, (3, 3)
    else:
        half, ksize = int(math.ceil(radius)), (5, 5)
    grid = np.arange(-half, half + 1, dtype=np.float32)
    xx, yy = np.meshgrid(grid, grid)
    disk = (xx ** 2 + yy ** 2 <= radius ** 2).astype(np.float32)
    disk /= disk.sum()
    return cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_sigma)


def _dft_pad(n: int) -> int:
    """Zeros to add on each side of a kernel so that the DFT length n + 2 * pad is an OpenCV-optimal size.

    Measured on 224 px images: cv2.filter2D is about 2x slower when H + k - 1 falls short of
    cv2.getOptimalDFTSize (e.g. 258..266 -> 270) than when it equals an optimal size.
    """
    target = cv2.getOptimalDFTSize(n)
    while (target - n) % 2:
        target = cv2.getOptimalDFTSize(target + 1)
    return (target - n) // 2


def filter2d(image: np.ndarray, kernel: np.ndarray, border: int = cv2.BORDER_REFLECT_101) -> np.ndarray:
    """cv2.filter2D (correlation, anchor at the centre) with the kernel zero-padded to a fast DFT size.

    For large kernels OpenCV filters through a DFT of length H + k - 1, and some lengths are about twice
    as slow as a slightly larger one. Padding the kernel symmetrically with zeros changes nothing in the
    result (the anchor stays at the centre) and picks the fast length.
    """
    kh, kw = kernel.shape
    h, w = image.shape[:2]
    if kh * kw >= 130 and kh <= h and kw <= w:  # OpenCV's threshold for its DFT path (float32)
        ph = _dft_pad(h + kh - 1)
        pw = _dft_pad(w + kw - 1)
        if (ph or pw) and kh + 2 * ph <= h and kw + 2 * pw <= w:
            kernel = cv2.copyMakeBorder(kernel, ph, ph, pw, pw, cv2.BORDER_CONSTANT, value=0)
    out = cv2.filter2D(image, -1, kernel, borderType=border)
    return out.reshape(image.shape) if out.ndim != image.ndim else out


def gaussian_ksize(sigma: float, truncate: float) -> tuple:
    """The odd kernel size 2*int(truncate*sigma + 0.5)+1 that SciPy/scikit-image use (truncate 4 or 3).

    SciPy's ``gaussian_filter1d`` rounds the radius (``int(truncate * sd + 0.5)``); a radius of 0 is the
    identity there, and a 1 x 1 kernel here.
    """
    half = int(truncate * sigma + 0.5)
    return (2 * half + 1, 2 * half + 1)


def gaussian_blur(image: np.ndarray, sigma: float, truncate: float = 4.0,
                  border: int = cv2.BORDER_REPLICATE) -> np.ndarray:
    """cv2.GaussianBlur with scikit-image's kernel size; sigma 0 returns a copy."""
    if sigma <= 0:
        return image.copy()
    return cv2.GaussianBlur(image, gaussian_ksize(sigma, truncate), sigmaX=sigma, sigmaY=sigma,
                            borderType=border)


def motion_taps(radius: int, sigma: float, angle_deg: float):
    """Offsets (dy, dx) and weights of imagecorruptions' one-sided Gaussian motion-blur line.

    Width 2r+1 taps with weights exp(-i^2 / 2 sigma^2), normalised; tap i samples the pixel
    ceil(i sin - 1/2), ceil(i cos - 1/2) ahead along the angle (so the blur trails behind).
    """
    width = 2 * int(radius) + 1
    i = np.arange(width, dtype=np.float64)
    weights = np.exp(-i ** 2 / (2.0 * sigma ** 2))
    weights /= weights.sum()
    theta = np.deg2rad(angle_deg)
    dy = np.ceil(i * np.sin(theta) - 0.5).astype(np.int64)
    dx = np.ceil(i * np.cos(theta) - 0.5).astype(np.int64)
    return dy, dx, weights


def motion_kernel(radius: int, sigma: float, angle_deg: float) -> np.ndarray:
    """The motion taps as a dense correlation kernel for cv2.filter2D (anchor at the centre)."""
    dy, dx, weights = motion_taps(radius, sigma, angle_deg)
    half = int(max(np.abs(dy).max(), np.abs(dx).max()))
    kernel = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    np.add.at(kernel, (dy + half, dx + half), weights.astype(np.float32))
    return kernel


def clipped_zoom(image: np.ndarray, zoom: float) -> np.ndarray:
    """Zoom into the centre by `zoom` (>= 1) and keep the image size, like ImageNet-C's clipped_zoom.

    The central ceil(H / z) x ceil(W / z) window is resized (bilinear) to round(side * z) and the top-left
    H x W is kept, as the reference does with scipy.ndimage.zoom.
    """
    h, w = image.shape[:2]
    ch, cw = int(math.ceil(h / zoom)), int(math.ceil(w / zoom))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = image[top:top + ch, left:left + cw]
    out_h, out_w = max(h, int(round(ch * zoom))), max(w, int(round(cw * zoom)))
    out = cv2.resize(crop, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    if out.ndim < image.ndim:
        out = out[..., None]
    return out[:h, :w]


def clipped_zoom_corners(layer: np.ndarray, zoom: float) -> np.ndarray:
    """imagecorruptions' clipped_zoom of a 2-D float layer, geometry included (snow's flakes).

    The central ceil(H / z) x ceil(W / z) window is zoomed to round(side * z) with
    ``scipy.ndimage.zoom(order=1)``'s corner-aligned mapping (output o samples input o (n - 1) / (m - 1))
    by two exact linear passes, and the top-left H x W kept. `clipped_zoom` aligns pixel centres instead,
    which moves the thresholded flake coverage by +28 % / -15 % at zooms 3 / 2.
    """
    h, w = layer.shape
    out = layer[(h - int(math.ceil(h / zoom))) // 2:, (w - int(math.ceil(w / zoom))) // 2:]
    out = out[:int(math.ceil(h / zoom)), :int(math.ceil(w / zoom))]
    for axis, keep in ((0, h), (1, w)):
        n = out.shape[axis]
        m = int(round(n * zoom))
        pos = np.arange(min(m, keep)) * ((n - 1) / (m - 1) if m > 1 else 0.0)
        i0 = np.minimum(pos.astype(np.int64), max(n - 2, 0))
        frac = (pos - i0).astype(layer.dtype)
        i1 = np.minimum(i0 + 1, n - 1)
        if axis == 0:
            out = out[i0] * (1 - frac)[:, None] + out[i1] * frac[:, None]
        else:
            out = out[:, i0] * (1 - frac) + out[:, i1] * frac
    return out


def smooth_noise(h: int, w: int, cell: float, rng: np.random.Generator) -> np.ndarray:
    """Value noise in [0, 1]: uniform values on a grid with spacing `cell` px, bicubically upsampled."""
    gh, gw = int(math.ceil(h / cell)) + 3, int(math.ceil(w / cell)) + 3
    coarse = rng.random((gh, gw), dtype=np.float32)
    big = cv2.resize(coarse, (int(round(gw * cell)), int(round(gh * cell))), interpolation=cv2.INTER_CUBIC)
    oy, ox = int(cell), int(cell)
    return np.clip(big[oy:oy + h, ox:ox + w], 0.0, 1.0)


# Mean colour of frost on a window (RGB, [0, 1]): the ImageNet-C frost photographs average about this.
FROST_TINT = np.array([0.80, 0.90, 1.0], np.float32)


def frost_texture(h: int, w: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """A procedural ice texture (H, W) in [0, 1] that looks like photographed window frost.

    Dense needle crystals, about 22 per (3 `scale`)^2: each a tapered blade (a wide faint root over its
    first 55 %, a bright 1 px edge to the tip) of log-normal length (median 1.8 `scale`), growing along a
    locally coherent direction field (crystals in one patch grow alike, as on a pane) with a patchy
    density; a third carry 2-6 short side needles at 55-70 degrees (dendrites). Brighter crystals lie on
    top. Then a soft glow of the crystal mass, a faint relief lit from the upper left (the glassy sheen of
    ice), film grain and a haze. Drawn anti-aliased with cv2.polylines (1/16 px), batched by brightness.
    This stands in for the ImageNet-C frost photographs (not shipped: their provenance is unstated); its
    mean (about 0.65, as the previous fern texture, which matched their statistics within 0.1 dB) and
    spread (about 0.14) are close to theirs (0.48-0.84, 0.09-0.17).
    """
    scale = max(float(scale), 1.0)
    direction = 4 * np.pi * smooth_noise(h, w, 10 * scale, rng)
    density = smooth_noise(h, w, 7 * scale, rng)
    n = max(8, int(round(22.0 * h * w / (3.0 * scale) ** 2)))
    ys, xs = rng.uniform(0, h, n), rng.uniform(0, w, n)
    iy, ix = ys.astype(np.int64).clip(0, h - 1), xs.astype(np.int64).clip(0, w - 1)
    keep = rng.random(n) < 0.25 + 0.75 * density[iy, ix]
    ys, xs, iy, ix = ys[keep], xs[keep], iy[keep], ix[keep]
    n = len(ys)
    ang = direction[iy, ix] + rng.normal(0.0, 0.35, n)
    length = scale * rng.lognormal(math.log(1.8), 0.55, n)
    level = rng.uniform(0.25, 1.0, n) ** 1.5
    thick = rng.choice(np.array([1, 1, 1, 2, 2, 3]), n)
    x1, y1 = xs + length * np.cos(ang), ys + length * np.sin(ang)
    xm, ym = xs + 0.55 * (x1 - xs), ys + 0.55 * (y1 - ys)
    # side needles of the dendrites: up to 6 per crystal, on the thick ones and 40 % of the others
    k = rng.integers(2, 7, n)
    branched = (thick > 1) | (rng.random(n) < 0.4)
    t = rng.uniform(0.15, 0.9, (n, 6))
    side = rng.choice(np.array([-1.0, 1.0]), (n, 6))
    b_ang = ang[:, None] + side * rng.uniform(0.95, 1.25, (n, 6))
    b_len = (1 - t) * length[:, None] * rng.uniform(0.2, 0.5, (n, 6))
    bx, by = xs[:, None] + t * (x1 - xs)[:, None], ys[:, None] + t * (y1 - ys)[:, None]
    use = branched[:, None] & (np.arange(6)[None, :] < k[:, None])

    def seg(ax, ay, bx_, by_):
        return np.round(np.stack([np.stack([ax, ay], -1), np.stack([bx_, by_], -1)], -2) * 16).astype(np.int32)

    roots, edges = seg(xs, ys, xm, ym), seg(xs, ys, x1, y1)
    needles = seg(bx, by, bx + b_len * np.cos(b_ang), by + b_len * np.sin(b_ang))
    height = np.zeros((h, w), np.float32)
    bins = np.minimum((level * 8).astype(np.int64), 7)
    for b in range(8):  # dimmer batches first, so brighter crystals end on top
        lv = (b + 0.5) / 8
        for th in (1, 2, 3):
            sel = (bins == b) & (thick == th)
            if sel.any():
                cv2.polylines(height, list(roots[sel]), False, 0.7 * lv, th + 1, cv2.LINE_AA, 4)
        sel = bins == b
        nd = needles[sel][use[sel]]
        if len(nd):
            cv2.polylines(height, list(nd), False, 0.85 * lv, 1, cv2.LINE_AA, 4)
        if sel.any():
            cv2.polylines(height, list(edges[sel]), False, lv, 1, cv2.LINE_AA, 4)
    np.clip(height, 0.0, 1.0, out=height)
    gy, gx = np.gradient(gaussian_blur(height, 0.6))
    sheen = np.clip(-(gx + gy), -0.12, 0.12)
    glow = gaussian_blur(height, 2.0 * scale)
    grain = rng.standard_normal((h, w), dtype=np.float32) * np.float32(0.025)
    haze = smooth_noise(h, w, 5 * scale, rng)
    return np.clip(0.365 + 0.14 * haze + 0.32 * height + 0.55 * glow + sheen + grain, 0.0, 1.0)


FROST_BANK_SIZE = 512
FROST_BANK_SCALE = 12.0
FROST_BANK_SEEDS = (0, 1, 2, 3, 4)


@lru_cache(maxsize=len(FROST_BANK_SEEDS))
def _frost_bank(index: int) -> np.ndarray:
    tex = frost_texture(FROST_BANK_SIZE, FROST_BANK_SIZE, FROST_BANK_SCALE,
                        np.random.default_rng(FROST_BANK_SEEDS[index]))
    tex.setflags(write=False)
    return tex


@lru_cache(maxsize=16)
def _frost_resized(index: int, side: int) -> np.ndarray:
    tex = _frost_bank(index)
    if side == FROST_BANK_SIZE:
        return tex
    interp = cv2.INTER_AREA if side < FROST_BANK_SIZE else cv2.INTER_CUBIC
    out = np.clip(cv2.resize(tex, (side, side), interpolation=interp), 0.0, 1.0)
    out.setflags(write=False)
    return out


def frost_side(h: int, w: int, scale: float) -> int:
    """Side in px of the square frost texture an (H, W) image is cut from: 512 px x scale / 12, or 1.1 x
    the image size when that would not cover the image."""
    side = int(round(FROST_BANK_SIZE * max(float(scale), 0.5) / FROST_BANK_SCALE))
    if side < max(h, w):
        side = int(math.ceil(1.1 * max(h, w)))
    return side


def frost_crop(h: int, w: int, scale: float, index: int, top: int, left: int) -> np.ndarray:
    """An (H, W) frost crop, the way ImageNet-C uses its photographs: texture `index` of 5, resized to
    `frost_side`, cut at (`top`, `left`).

    The 5 textures are `frost_texture` at 512 px with feature size 12 px, generated once per process from
    the fixed seeds 0..4 (so every user gets the same 5). ``perturbations.image`` draws the index and the
    window uniformly.
    """
    side = frost_side(h, w, scale)
    if not (0 <= index < len(FROST_BANK_SEEDS) and 0 <= top <= side - h and 0 <= left <= side - w):
        raise ValueError(f"frost crop (texture {index}, top {top}, left {left}) is outside the {side} px textures "
                         f"(0..{len(FROST_BANK_SEEDS) - 1}, top <= {side - h}, left <= {side - w})")
    tex = _frost_resized(int(index), side)
    return tex[top:top + h, left:left + w]


def rain_kernel(length: float, width: float, angle_deg: float) -> np.ndarray:
    """A rain streak as a filter kernel: an anti-aliased line of `length` x `width` px at `angle_deg`
    from vertical, brightest in the middle and fading at both ends; a fully covered pixel has value 1.

    Drawn on a 4x supersampled canvas with cv2.line (LINE_AA) and area-downsampled, so sub-pixel widths
    give fainter, thinner streaks instead of aliased stair steps.
    """
    ss = 4
    half = int(math.ceil(length / 2 + width)) + 1
    size = 2 * half + 1
    canvas = np.zeros((size * ss, size * ss), np.float32)
    theta = np.deg2rad(angle_deg)
    dy, dx = 0.5 * length * np.cos(theta), 0.5 * length * np.sin(theta)
    centre = (size * ss) / 2.0
    n_pieces = 8  # piecewise line so intensity can fade towards the ends
    for k in range(n_pieces):
        a, b = k / n_pieces, (k + 1) / n_pieces
        mid = 0.5 * (a + b)
        level = float(np.sin(np.pi * mid) ** 0.5)
        p0 = (centre + ss * dx * (2 * a - 1), centre + ss * dy * (2 * a - 1))
        p1 = (centre + ss * dx * (2 * b - 1), centre + ss * dy * (2 * b - 1))
        cv2.line(canvas, (int(round(p0[0] * 16)), int(round(p0[1] * 16))),
                 (int(round(p1[0] * 16)), int(round(p1[1] * 16))), level,
                 max(1, int(round(ss * width))), cv2.LINE_AA, 4)
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
