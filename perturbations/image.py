"""Camera corruptions: the 19 ImageNet-C corruptions (Hendrycks & Dietterich, ICLR 2019) plus rain.

``corrupt(image, name, severity, rng)`` returns a new image of the same shape and dtype. The severity
tables are data (``perturbations._image_tables``) and every corruption is one plain function, registered in
the package's one registry (``perturbations.registry``; ``REGISTRY`` here is its image view). A call first
*samples* its parameters: ``parameters(name, severity, shape)`` (the table row for this image size) plus the
scalar random draws (motion-blur angle, frost crop, rain angle, elastic affine shift), then *applies* them,
drawing only the per-pixel noise; ``perturbations.registry.corrupt_logged`` records both, so an audit can
log and replay what was applied. Randomness comes only from an explicit ``numpy.random.Generator`` (an int
seed is accepted), so the same seed gives the same image. OpenCV + NumPy + Numba only.

See ``docs/image_corruptions.md`` for the models, parameters per severity and deviations from ImageNet-C.

Examples
--------
>>> import numpy as np
>>> from perturbations.image import corrupt, names
>>> image = np.full((32, 32, 3), 128, np.uint8)
>>> out = corrupt(image, "gaussian_noise", 3, rng=0)
>>> out.shape, out.dtype
((32, 32, 3), dtype('uint8'))
>>> np.array_equal(out, corrupt(image, "gaussian_noise", 3, rng=0))
True
>>> len(names()), len(names("common")), names("extra")
(20, 15, ('speckle_noise', 'gaussian_blur', 'spatter', 'saturate'))
"""
from __future__ import annotations

from functools import lru_cache, partial

import cv2
import numpy as np

from perturbations._common import as_generator, check_name, check_severity
from perturbations._image_tables import REFERENCE_SIZE, SPATIAL, TABLES, zoom_factors
from perturbations._kernels import image as _k
from perturbations._kernels import image_textures as _tex
from perturbations.registry import Corruption, Modality, check_options, register

__all__ = ["corrupt", "corrupt_batch", "names", "parameters", "resolve_scale", "REGISTRY", "Corruption",
           "MIN_SIDE", "SCALES"]

MIN_SIDE = 8
SCALES = ("auto", "cifar", "imagenet")
AUTO_CIFAR_MAX_SIDE = 64
_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float64))


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
    """Gaussian blur, 8-bit quantisation, ImageNet-C's sequential local pixel swaps, Gaussian blur again."""
    x = _cv(_tex.gaussian_blur(_float(img), p["sigma"]), img)
    q = _k.to_uint8(x)
    h, w = q.shape[:2]
    d = int(p["max_delta"])
    offsets = rng.integers(-d, d, size=(int(p["iterations"]), max(h - 2 * d, 0), max(w - 2 * d, 0), 2),
                           dtype=np.int32)
    q = _k.glass_swap(np.ascontiguousarray(q), d, offsets)
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
    """Gaussian blur of std `sigma` px (kernel 2*ceil(4 sigma)+1, replicated border, as scikit-image)."""
    x = _float(img)
    return _cv(_tex.gaussian_blur(x, p["sigma"]), x)


# -------------------------------------------------------------------------------------------- the weather
def snow(img, p, rng):
    """Zoomed, thresholded Gaussian flakes, motion-blurred at U(-135, -45) deg, on a whitened image."""
    x = _float(img)
    h, w = x.shape[:2]
    layer = rng.standard_normal((h, w), dtype=np.float32) * np.float32(p["std"]) + np.float32(p["mean"])
    layer = _tex.clipped_zoom(layer, p["zoom"])
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


def pixelate(img, p, rng):
    """Box-average down to `fraction` of the size, nearest-neighbour back up (imagecorruptions' choice)."""
    h, w = img.shape[:2]
    src = img if img.dtype == np.uint8 else img.astype(np.float32)  # two compiled signatures only
    small = _k.box_downsample(src, max(1, int(h * p["fraction"])), max(1, int(w * p["fraction"])))
    if img.dtype == np.uint8:
        small = _k.to_uint8(small * (1 / 255))
    else:
        small = small.astype(np.float32)
    return _cv(cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST), img)


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


# ------------------------------------------------------------------------------------ the scalar draws
# sample() draws these before apply() runs, in the order the corruption has always drawn them.
def _draw_motion_blur(p, shape, rng):
    return {"angle": rng.uniform(-45.0, 45.0)}


def _draw_frost(p, shape, rng):
    texture = int(rng.integers(len(_tex.FROST_BANK_SEEDS)))
    side = _tex.frost_side(shape[0], shape[1], p["texture_scale"])
    return {"texture": texture, "top": int(rng.integers(0, side - shape[0] + 1)),
            "left": int(rng.integers(0, side - shape[1] + 1))}


def _draw_rain(p, shape, rng):
    return {"angle": rng.uniform(-20.0, 20.0)}


def _draw_elastic_transform(p, shape, rng):
    return {"affine_shift": rng.uniform(-p["affine"], p["affine"], size=(3, 2)).tolist()}


_DRAWS = {"motion_blur": _draw_motion_blur, "frost": _draw_frost, "rain": _draw_rain,
          "elastic_transform": _draw_elastic_transform}


# -------------------------------------------------------------------------------------------- registry
def _sample(name, severity, img, rng, scale="auto"):
    p = parameters(name, severity, img.shape, scale)
    draw = _DRAWS.get(name)
    if draw is not None:
        p.update(draw(p, img.shape, rng))
    return p


def _apply(function, img, params, rng, scale="auto"):
    # `scale` is already resolved into params (their "scale" and lengths); accepted as every option is
    out = function(img, params, rng)
    out, info = out if isinstance(out, tuple) else (out, {})
    return _finish(out, img.dtype, img.shape), info


def _prepare(image, entry, options):
    check_options(entry, options)
    img = _check_image(image)
    resolve_scale(options.get("scale", "auto"), img.shape)
    return img, options


def _reshape(out, image):
    return out.reshape(image.shape)


_ORDER = (
    ("gaussian_noise", "noise", "common"), ("shot_noise", "noise", "common"),
    ("impulse_noise", "noise", "common"), ("defocus_blur", "blur", "common"),
    ("glass_blur", "blur", "common"), ("motion_blur", "blur", "common"), ("zoom_blur", "blur", "common"),
    ("snow", "weather", "common"), ("frost", "weather", "common"), ("fog", "weather", "common"),
    ("brightness", "weather", "common"), ("contrast", "digital", "common"),
    ("elastic_transform", "digital", "common"), ("pixelate", "digital", "common"),
    ("jpeg_compression", "digital", "common"), ("speckle_noise", "noise", "extra"),
    ("gaussian_blur", "blur", "extra"), ("spatter", "weather", "extra"), ("saturate", "digital", "extra"),
    ("rain", "weather", "ours"),
)
_REFERENCE = {"common": "Hendrycks & Dietterich, ICLR 2019 (ImageNet-C / CIFAR-10-C tables)",
              "extra": "Hendrycks & Dietterich, ICLR 2019 (ImageNet-C hold-out corruptions)",
              "ours": "this project (docs/image_corruptions.md)"}


def _entry(name, group, subset):
    fn = globals()[name]
    return Corruption(
        name=name, modality="image", group=group, table=TABLES[name], sample=partial(_sample, name),
        apply=partial(_apply, fn), options=("scale",), tags=(subset,), doc=fn.__doc__.strip().split("\n")[0],
        rule="lengths in px (SPATIAL) scale with min(1, short side / reference size); see `parameters`",
        reference=_REFERENCE[subset], units={f"{s}.{k}": "px" for s in REFERENCE_SIZE for k in SPATIAL.get(name, ())})


_FUNCTIONS = {name: globals()[name] for name, _, _ in _ORDER}
MODALITY = Modality("image", _prepare, _reshape)
REGISTRY = register(MODALITY, [_entry(*row) for row in _ORDER])
_SUBSETS = ("all", "common", "extra", "noise", "blur", "weather", "digital")


def names(subset: str = "all") -> tuple:
    """Names of the corruptions in `subset`, in ImageNet-C's order (rain last).

    Subsets: "all" (20), "common" (the 15 of ImageNet-C), "extra" (its 4 hold-out ones: speckle_noise,
    gaussian_blur, spatter, saturate; "validation" is accepted as imagecorruptions' name for it), and the
    groups "noise", "blur", "weather" (includes spatter and rain) and "digital".
    """
    if subset == "validation":
        subset = "extra"
    if not isinstance(subset, str) or subset not in _SUBSETS:
        raise ValueError(f"`subset` must be one of {', '.join(_SUBSETS)}; got {subset!r}")
    return tuple(c.name for c in REGISTRY.values()
                 if subset == "all" or subset == c.group or subset in c.tags)


def resolve_scale(scale: str, shape) -> str:
    """"cifar" or "imagenet": `scale` itself, or for "auto" cifar when the short side is <= 64 px."""
    if not isinstance(scale, str) or scale not in SCALES:
        raise ValueError(f"`scale` must be one of {', '.join(SCALES)}; got {scale!r}")
    if scale == "auto":
        return "cifar" if min(shape[:2]) <= AUTO_CIFAR_MAX_SIDE else "imagenet"
    return scale


_INT_SPATIAL = ("max_delta", "radius")


def parameters(name: str, severity: int, shape=(224, 224), scale: str = "auto") -> dict:
    """The exact parameters `corrupt` uses for `name` at `severity` on an image of `shape` (H, W, ...).

    Lengths in pixels (the table's ``spatial`` entries) are multiplied by
    ``spatial_factor = min(1, short side / reference size)``, the reference size being 224 px (imagenet) or
    32 px (cifar), so a blur covers the same fraction of a small image as of the reference one; integer
    lengths are rounded and kept >= 1. The returned dict also holds "name", "severity", "scale" and
    "spatial_factor", so it is a complete record of what was applied apart from the random draws (which
    ``perturbations.registry.corrupt_logged`` records too).
    """
    name = check_name(name, REGISTRY)
    severity = check_severity(severity)
    try:
        side = min(int(shape[0]), int(shape[1]))
    except (TypeError, IndexError, ValueError):
        raise ValueError(f"`shape` must start with (height, width); got {shape!r}") from None
    scale = resolve_scale(scale, shape)
    factor = min(1.0, side / REFERENCE_SIZE[scale])
    row = REGISTRY[name].row(severity, scale)
    if name == "zoom_blur":
        row = {"zooms": zoom_factors(row["zoom_start"], row["zoom_stop"], row["zoom_step"])}
    for key in SPATIAL.get(name, ()):
        if name == "defocus_blur" and key == "radius" or key not in _INT_SPATIAL:
            row[key] = row[key] * factor
        else:
            row[key] = max(1, int(round(row[key] * factor)))
    if name == "spatter" and row["mud"] == 1:
        row["intensity"] = row["intensity"] * factor  # in mud mode it is a blur std in px
    return {"name": name, "severity": severity, "scale": scale, "spatial_factor": factor, **row}


# ---------------------------------------------------------------------------------------- public entry
def _check_image(image, arg: str = "image") -> np.ndarray:
    """The validated image as a C-contiguous (H, W, C) view or copy; raises naming `arg`."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"`{arg}` must be a numpy.ndarray; got {type(image).__name__}")
    if image.dtype not in _DTYPES:
        raise ValueError(f"`{arg}` must have dtype uint8 (0..255) or float32/float64 (0..1); got {image.dtype}")
    if image.ndim == 4:
        raise ValueError(f"`{arg}` must be one image (H, W) or (H, W, C); got 4-D shape {image.shape}: "
                         "use corrupt_batch for (N, H, W, C) batches")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise ValueError(f"`{arg}` must have shape (H, W), (H, W, 1) or (H, W, 3); got {image.shape}")
    if min(image.shape[:2]) < MIN_SIDE:
        raise ValueError(f"`{arg}` must be at least {MIN_SIDE} x {MIN_SIDE} px; got {image.shape[:2]}")
    if image.dtype != np.uint8:
        lo, hi = float(image.min()), float(image.max())  # NaN propagates through min/max
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError(f"`{arg}` contains NaN or inf")
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"float `{arg}` must lie in [0, 1]; got values in [{lo:g}, {hi:g}] "
                             "(divide uint8-range floats by 255)")
    img = image if image.ndim == 3 else image[..., None]
    return np.ascontiguousarray(img)


def _finish(out: np.ndarray, dtype: np.dtype, shape: tuple) -> np.ndarray:
    if dtype == np.uint8:
        out = out if out.dtype == np.uint8 else _k.to_uint8(np.ascontiguousarray(out, dtype=np.float32))
    else:
        out = out.astype(np.float32) * np.float32(1 / 255) if out.dtype == np.uint8 else out
        out = np.clip(out, 0.0, 1.0).astype(dtype, copy=False)
    return out.reshape(shape)


def corrupt(image: np.ndarray, name: str, severity: int, rng=None, scale: str = "auto") -> np.ndarray:
    """Corrupt one image with `name` at `severity` (1..5); returns a new array of the same shape and dtype.

    Parameters
    ----------
    image : ndarray
        (H, W), (H, W, 1) or (H, W, 3) RGB; uint8 (0..255) or float32/float64 in [0, 1]; H, W >= 8.
        Never modified.
    name : str
        One of ``names()``.
    severity : int
        1 (mild) .. 5 (strong).
    rng : None, int or numpy.random.Generator
        Source of every random draw; an int seeds a fresh Generator (same seed, same output).
    scale : {"auto", "cifar", "imagenet"}
        Parameter table; "auto" uses cifar for a short side <= 64 px. See `parameters`.

    Returns
    -------
    ndarray
        Same shape and dtype; uint8 results are rounded, float results clipped to [0, 1].
    """
    name = check_name(name, REGISTRY)
    severity = check_severity(severity)
    img = _check_image(image)
    params = parameters(name, severity, img.shape, scale)  # validates `scale` before `rng`, as it always did
    gen = as_generator(rng)
    draw = _DRAWS.get(name)
    if draw is not None:
        params.update(draw(params, img.shape, gen))
    out, _ = _apply(_FUNCTIONS[name], img, params, gen)  # = REGISTRY[name].apply, without the indirection
    return out if out.shape == image.shape else out.reshape(image.shape)


def corrupt_batch(images: np.ndarray, name: str, severity: int, rng=None, scale: str = "auto") -> np.ndarray:
    """`corrupt` applied to each image of an (N, H, W, C) array, drawing from one Generator in order.

    The same seed gives the same batch; image i of the batch differs from ``corrupt(images[i], ..., rng)``
    with the same seed (the draws of the earlier images come first). Returns a new array.
    """
    if not isinstance(images, np.ndarray):
        raise TypeError(f"`images` must be a numpy.ndarray; got {type(images).__name__}")
    if images.ndim != 4 or images.shape[3] not in (1, 3):
        raise ValueError(f"`images` must have shape (N, H, W, C) with C 1 or 3; got {images.shape}")
    if images.dtype not in _DTYPES:
        raise ValueError(f"`images` must have dtype uint8 (0..255) or float32/float64 (0..1); got {images.dtype}")
    if min(images.shape[1:3]) < MIN_SIDE:
        raise ValueError(f"`images` must be at least {MIN_SIDE} x {MIN_SIDE} px; got {images.shape[1:3]}")
    name = check_name(name, REGISTRY)
    severity = check_severity(severity)
    resolve_scale(scale, images.shape[1:3])
    gen = as_generator(rng)
    out = np.empty_like(images)
    for i in range(images.shape[0]):
        try:
            out[i] = corrupt(images[i], name, severity, gen, scale)
        except ValueError as err:  # name the image of the batch
            raise ValueError(f"`images[{i}]`: {err}") from None
    return out
