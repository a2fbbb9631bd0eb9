"""Camera corruptions: the 19 ImageNet-C corruptions (Hendrycks & Dietterich, ICLR 2019) plus rain.

``corrupt(image, name, severity, rng)`` returns a new image of the same shape and dtype. The severity
tables are data (``perturbations._image_tables``), every corruption is one plain function
(``perturbations._image_corruptions``) registered in the package's one registry
(``perturbations.registry``; ``REGISTRY`` here is its image view). A call first
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

from functools import partial

import numpy as np

from perturbations import _image_corruptions as _functions
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
    return {"affine_shift": rng.uniform(-p["affine"], p["affine"], size=(3, 2))}


_DRAWS = {"motion_blur": _draw_motion_blur, "frost": _draw_frost, "rain": _draw_rain,
          "elastic_transform": _draw_elastic_transform}


# -------------------------------------------------------------------------------------------- registry
def _with_draws(name, p, shape, rng):
    draw = _DRAWS.get(name)
    if draw is not None:
        p.update(draw(p, shape, rng))
    return p


# per-corruption options beyond `scale`: name -> {option: (type, default)}
_OPTIONS = {"glass_blur": {"true_swap": (bool, False)}}


def _check_extra(name, options) -> dict:
    """The corruption-specific options of `name`, type-checked; unknown ones are refused by name."""
    allowed = _OPTIONS.get(name, {})
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"`{name}` does not accept the option(s) {', '.join(unknown)}; it accepts: "
                        f"{', '.join(('scale',) + tuple(allowed))}")
    for k, v in options.items():
        if not isinstance(v, allowed[k][0]):
            raise TypeError(f"`{k}` must be {allowed[k][0].__name__}; got {type(v).__name__}")
    return dict(options)


def _sample(name, severity, img, rng, scale="auto", **extra):
    # the extra options change what `apply` does, not what is sampled
    return _with_draws(name, parameters(name, severity, img.shape, scale), img.shape, rng)


def _apply(function, img, params, rng, scale="auto", **extra):
    # `scale` is already resolved into params (their "scale" and lengths); accepted as every option is
    out = function(img, {**params, **extra} if extra else params, rng)
    out, info = out if isinstance(out, tuple) else (out, {})
    return _finish(out, img.dtype, img.shape), info


def _prepare(image, entry, options):
    check_options(entry, options)
    _check_extra(entry.name, {k: v for k, v in options.items() if k != "scale"})
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
    fn = getattr(_functions, name)
    return Corruption(
        name=name, modality="image", group=group, table=TABLES[name], sample=partial(_sample, name),
        apply=partial(_apply, fn), options=("scale", *_OPTIONS.get(name, ())), tags=(subset,),
        doc=fn.__doc__.strip().split("\n")[0],
        rule="lengths in px (SPATIAL) scale with min(1, short side / reference size); see `parameters`",
        reference=_REFERENCE[subset], units={f"{s}.{k}": "px" for s in REFERENCE_SIZE for k in SPATIAL.get(name, ())})


_FUNCTIONS = {name: getattr(_functions, name) for name, _, _ in _ORDER}
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


def _is_bgr(channels, x, channel_axis: int) -> bool:
    """Whether `x` is a 3-channel BGR image (or batch) to corrupt through its RGB view."""
    if channels not in ("rgb", "bgr"):
        raise ValueError(f"`channels` must be 'rgb' or 'bgr'; got {channels!r}")
    return channels == "bgr" and isinstance(x, np.ndarray) and x.ndim == channel_axis + 1 and x.shape[-1] == 3


def corrupt(image: np.ndarray, name: str, severity: int, rng=None, scale: str = "auto", *,
            channels: str = "rgb", **options) -> np.ndarray:
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
    channels : {"rgb", "bgr"}
        Channel order of a 3-channel image; "bgr" (OpenCV's ``cv2.imread``) gives exactly the BGR view of what
        the same RGB image gets (colour corruptions such as saturate and fog act on the right channels).
    **options
        Corruption-specific options: glass_blur's ``true_swap`` (bool, default False: copy pixels as
        ImageNet-C's published code does; True: exchange them, as its swap line was meant to).

    Returns
    -------
    ndarray
        Same shape and dtype; uint8 results are rounded, float results clipped to [0, 1].
    """
    if _is_bgr(channels, image, 2):
        return np.ascontiguousarray(corrupt(image[..., ::-1], name, severity, rng, scale, **options)[..., ::-1])
    name = check_name(name, REGISTRY)
    severity = check_severity(severity)
    extra = _check_extra(name, options) if options else {}
    img = _check_image(image)
    params = parameters(name, severity, img.shape, scale)  # validates `scale` before `rng`, as it always did
    gen = as_generator(rng)
    # REGISTRY[name].sample and .apply, called directly (no partials on the per-image path)
    out, _ = _apply(_FUNCTIONS[name], img, _with_draws(name, params, img.shape, gen), gen, **extra)
    return out if out.shape == image.shape else out.reshape(image.shape)


def corrupt_batch(images: np.ndarray, name: str, severity: int, rng=None, scale: str = "auto", *,
                  channels: str = "rgb", **options) -> np.ndarray:
    """`corrupt` applied to each image of an (N, H, W, C) array, or an (N, H, W) greyscale batch (as `corrupt`
    takes (H, W)), drawing from one Generator in order; `channels="bgr"` for OpenCV frames (see `corrupt`).

    The same seed gives the same batch; image i of the batch differs from ``corrupt(images[i], ..., rng)``
    with the same seed (the draws of the earlier images come first). Returns a new array.
    """
    if not isinstance(images, np.ndarray):
        raise TypeError(f"`images` must be a numpy.ndarray; got {type(images).__name__}")
    if not (images.ndim == 3 or (images.ndim == 4 and images.shape[3] in (1, 3))):
        raise ValueError(f"`images` must have shape (N, H, W) (greyscale) or (N, H, W, C) with C 1 or 3; got "
                         f"{images.shape}")
    if _is_bgr(channels, images, 3):
        return np.ascontiguousarray(corrupt_batch(images[..., ::-1], name, severity, rng, scale, **options)[..., ::-1])
    if images.dtype not in _DTYPES:
        raise ValueError(f"`images` must have dtype uint8 (0..255) or float32/float64 (0..1); got {images.dtype}")
    if min(images.shape[1:3]) < MIN_SIDE:
        raise ValueError(f"`images` must be at least {MIN_SIDE} x {MIN_SIDE} px; got {images.shape[1:3]}")
    name = check_name(name, REGISTRY)
    severity = check_severity(severity)
    _check_extra(name, options)
    resolve_scale(scale, images.shape[1:3])
    gen = as_generator(rng)
    out = np.empty_like(images)
    for i in range(images.shape[0]):
        try:
            out[i] = corrupt(images[i], name, severity, gen, scale, **options)
        except ValueError as err:  # name the image of the batch
            raise ValueError(f"`images[{i}]`: {err}") from None
    return out
