"""Severity tables of the image corruptions, as data.

Each table lists, for severities 1..5, the parameters of one corruption at two reference scales:
``imagenet`` (ImageNet-C, ``make_imagenet_c.py``, 224 px) and ``cifar`` (CIFAR-10-C, ``make_cifar_c.py``,
32 px). The numbers are Hendrycks & Dietterich's, restated from the reference notes in
``docs/image_corruptions.md``; ``rain`` is ours. In the registry's one table format (five dicts of
numbers, ``perturbations.registry``) the two scales are variants: a row holds ``"imagenet.<param>"`` and
``"cifar.<param>"``. Parameters named in ``SPATIAL`` are lengths in pixels at the reference size;
``perturbations.image`` shrinks them for images smaller than that size.
"""
from __future__ import annotations

from functools import lru_cache
from types import MappingProxyType

import numpy as np

REFERENCE_SIZE = MappingProxyType({"imagenet": 224, "cifar": 32})
SCALE_NAMES = tuple(REFERENCE_SIZE)


@lru_cache(maxsize=32)
def zoom_factors(start: float, stop: float, step: float) -> tuple:
    """The zoom factors of zoom_blur, as the reference computes them with a floating-point arange.

    The arange is kept on purpose: ``np.arange(1, 1.11, .01)`` has 12 entries (it includes 1.11), and the
    severity ordering of the reference depends on these exact counts.
    """
    return tuple(float(z) for z in np.arange(start, stop, step))


def _rows(params: tuple, imagenet: tuple, cifar: tuple) -> tuple:
    """Five rows ``{"imagenet.p": .., "cifar.p": ..}`` from one tuple of values per severity and scale."""
    for scale, rows in (("imagenet", imagenet), ("cifar", cifar)):
        if len(rows) != 5 or any(len(r) != len(params) for r in rows):
            raise ValueError(f"{scale} rows must be 5 tuples of {len(params)} values ({params})")
    return tuple({**{f"imagenet.{k}": v for k, v in zip(params, a)}, **{f"cifar.{k}": v for k, v in zip(params, c)}}
                 for a, c in zip(imagenet, cifar))


# name -> the parameters that are lengths in px at the reference size
SPATIAL = MappingProxyType({
    "defocus_blur": ("radius", "alias_sigma"), "glass_blur": ("sigma", "max_delta"),
    "motion_blur": ("radius", "sigma"), "gaussian_blur": ("sigma",), "snow": ("radius", "sigma"),
    "frost": ("texture_scale",), "spatter": ("sigma",), "rain": ("length", "width"),
    "elastic_transform": ("alpha", "sigma", "affine"),
})

TABLES = MappingProxyType({
    # --- noise -------------------------------------------------------------------------------------------
    "gaussian_noise": _rows(("std",), ((.08,), (.12,), (.18,), (.26,), (.38,)),
                            ((.04,), (.06,), (.08,), (.09,), (.10,))),
    "shot_noise": _rows(("photons",), ((60,), (25,), (12,), (5,), (3,)),
                        ((500,), (250,), (100,), (75,), (50,))),
    "impulse_noise": _rows(("amount",), ((.03,), (.06,), (.09,), (.17,), (.27,)),
                           ((.01,), (.02,), (.03,), (.05,), (.07,))),
    "speckle_noise": _rows(("std",), ((.15,), (.2,), (.35,), (.45,), (.6,)),
                           ((.06,), (.1,), (.12,), (.16,), (.2,))),
    # --- blur --------------------------------------------------------------------------------------------
    "defocus_blur": _rows(("radius", "alias_sigma"),
                          ((3, .1), (4, .5), (6, .5), (8, .5), (10, .5)),
                          ((.3, .4), (.4, .5), (.5, .6), (1, .2), (1.5, .1))),
    "glass_blur": _rows(("sigma", "max_delta", "iterations"),
                        ((.7, 1, 2), (.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
                        ((.05, 1, 1), (.25, 1, 1), (.4, 1, 1), (.25, 1, 2), (.4, 1, 2))),
    "motion_blur": _rows(("radius", "sigma"),
                         ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
                         ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))),
    # the zoom factors are zoom_factors(zoom_start, zoom_stop, zoom_step), ImageNet-C's float arange
    "zoom_blur": _rows(("zoom_start", "zoom_stop", "zoom_step"),
                       ((1, 1.11, .01), (1, 1.16, .01), (1, 1.21, .02), (1, 1.26, .02), (1, 1.31, .03)),
                       ((1, 1.06, .01), (1, 1.11, .01), (1, 1.16, .01), (1, 1.21, .01), (1, 1.26, .01))),
    "gaussian_blur": _rows(("sigma",), ((1,), (2,), (3,), (4,), (6,)),
                           ((.4,), (.6,), (.7,), (.8,), (1,))),
    # --- weather -----------------------------------------------------------------------------------------
    "snow": _rows(("mean", "std", "zoom", "threshold", "radius", "sigma", "blend"),
                  ((.1, .3, 3, .5, 10, 4, .8), (.2, .3, 2, .5, 12, 4, .7), (.55, .3, 4, .9, 12, 8, .7),
                   (.55, .3, 4.5, .85, 12, 8, .65), (.55, .3, 2.5, .85, 12, 12, .55)),
                  ((.1, .2, 1, .6, 8, 3, .95), (.1, .2, 1, .5, 10, 4, .9), (.15, .3, 1.75, .55, 10, 4, .9),
                   (.25, .3, 2.25, .6, 12, 6, .85), (.3, .3, 1.25, .65, 14, 12, .8))),
    # `texture_scale` is the size of the frost texture's features in px (ours: the texture is procedural).
    "frost": _rows(("image_weight", "frost_weight", "texture_scale"),
                   ((1, .4, 12), (.8, .6, 12), (.7, .7, 12), (.65, .7, 12), (.6, .75, 12)),
                   ((1, .2, 2.5), (1, .3, 2.5), (.9, .4, 2.5), (.85, .4, 2.5), (.75, .45, 2.5))),
    "fog": _rows(("strength", "decay"),
                 ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
                 ((.2, 3), (.5, 3), (.75, 2.5), (1, 2), (1.5, 1.75))),
    "brightness": _rows(("shift",), ((.1,), (.2,), (.3,), (.4,), (.5,)),
                        ((.05,), (.1,), (.15,), (.2,), (.3,))),
    "spatter": _rows(("mean", "std", "sigma", "threshold", "intensity", "mud"),
                     ((.65, .3, 4, .69, .6, 0), (.65, .3, 3, .68, .6, 0), (.65, .3, 2, .68, .5, 0),
                      (.65, .3, 1, .65, 1.5, 1), (.67, .4, 1, .65, 1.5, 1)),
                     ((.62, .1, .7, .7, .5, 0), (.65, .1, .8, .7, .5, 0), (.65, .3, 1, .69, .5, 0),
                      (.65, .1, .7, .69, .6, 1), (.65, .1, .5, .68, .6, 1))),
    # Ours (not in ImageNet-C): streaks per pixel, streak length and width in px, streak opacity, and how
    # much the scene is darkened towards the grey of overcast rain.
    "rain": _rows(("density", "length", "width", "opacity", "dimming"),
                  ((.003, 12, 1, .5, .05), (.004, 14, 1, .57, .1), (.006, 18, 1.5, .65, .15),
                   (.009, 24, 1.5, .72, .2), (.012, 30, 2, .8, .25)),
                  ((.01, 3, .8, .45, .05), (.015, 4, .8, .55, .1), (.02, 5, 1, .65, .15),
                   (.03, 6, 1, .72, .2), (.04, 8, 1.2, .8, .25))),
    # --- digital -----------------------------------------------------------------------------------------
    "contrast": _rows(("factor",), ((.4,), (.3,), (.2,), (.1,), (.05,)),
                      ((.75,), (.5,), (.4,), (.3,), (.15,))),
    # Hendrycks multiplies by 244 (his comment: "should have been 224"); kept, the table is the standard.
    "elastic_transform": _rows(("alpha", "sigma", "affine"),
                               ((244 * 2, 244 * .7, 244 * .1), (244 * 2, 244 * .08, 244 * .2),
                                (244 * .05, 244 * .01, 244 * .02), (244 * .07, 244 * .01, 244 * .02),
                                (244 * .12, 244 * .01, 244 * .02)),
                               ((32 * 0, 32 * 0, 32 * .08), (32 * .05, 32 * .2, 32 * .07),
                                (32 * .08, 32 * .06, 32 * .06), (32 * .1, 32 * .04, 32 * .05),
                                (32 * .1, 32 * .03, 32 * .03))),
    "pixelate": _rows(("fraction",), ((.6,), (.5,), (.4,), (.3,), (.25,)),
                      ((.95,), (.9,), (.85,), (.75,), (.65,))),
    "jpeg_compression": _rows(("quality",), ((25,), (18,), (15,), (10,), (7,)),
                              ((80,), (65,), (58,), (50,), (40,))),
    "saturate": _rows(("factor", "offset"), ((.3, 0), (.1, 0), (2, 0), (5, .1), (20, .2)),
                      ((.3, 0), (.1, 0), (1.5, 0), (2, .1), (2.5, .2))),
})
