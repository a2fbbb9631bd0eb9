"""Severity tables of the image corruptions, as data.

Each table lists, for severities 1..5, the parameters of one corruption at two reference scales:
``imagenet`` (ImageNet-C, ``make_imagenet_c.py``, 224 px) and ``cifar`` (CIFAR-10-C, ``make_cifar_c.py``,
32 px). The numbers are Hendrycks & Dietterich's, restated from the reference notes in
``docs/image_corruptions.md``; ``rain`` is ours. Parameters named in ``spatial`` are lengths in pixels at
the reference size; ``perturbations.image`` shrinks them for images smaller than that size.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

REFERENCE_SIZE = MappingProxyType({"imagenet": 224, "cifar": 32})


@dataclass(frozen=True)
class Table:
    """Parameters of one corruption for severities 1..5 at both reference scales.

    Attributes
    ----------
    params : tuple of str
        Parameter names, in the order of each row.
    imagenet, cifar : tuple of tuple
        One row per severity (index 0 is severity 1).
    spatial : tuple of str
        The parameters that are lengths in pixels at the reference size.
    """

    params: tuple
    imagenet: tuple
    cifar: tuple
    spatial: tuple = ()

    def row(self, severity: int, scale: str) -> dict:
        """The parameters of `severity` (1..5) at `scale` ("imagenet" or "cifar") as a dict."""
        return dict(zip(self.params, getattr(self, scale)[severity - 1]))


def zoom_factors(start: float, stop: float, step: float) -> tuple:
    """The zoom factors of zoom_blur, as the reference computes them with a floating-point arange.

    The arange is kept on purpose: ``np.arange(1, 1.11, .01)`` has 12 entries (it includes 1.11), and the
    severity ordering of the reference depends on these exact counts.
    """
    return tuple(float(z) for z in np.arange(start, stop, step))


TABLES = MappingProxyType({
    # --- noise -------------------------------------------------------------------------------------------
    "gaussian_noise": Table(("std",), ((.08,), (.12,), (.18,), (.26,), (.38,)),
                            ((.04,), (.06,), (.08,), (.09,), (.10,))),
    "shot_noise": Table(("photons",), ((60,), (25,), (12,), (5,), (3,)),
                        ((500,), (250,), (100,), (75,), (50,))),
    "impulse_noise": Table(("amount",), ((.03,), (.06,), (.09,), (.17,), (.27,)),
                           ((.01,), (.02,), (.03,), (.05,), (.07,))),
    "speckle_noise": Table(("std",), ((.15,), (.2,), (.35,), (.45,), (.6,)),
                           ((.06,), (.1,), (.12,), (.16,), (.2,))),
    # --- blur --------------------------------------------------------------------------------------------
    "defocus_blur": Table(("radius", "alias_sigma"),
                          ((3, .1), (4, .5), (6, .5), (8, .5), (10, .5)),
                          ((.3, .4), (.4, .5), (.5, .6), (1, .2), (1.5, .1)),
                          spatial=("radius", "alias_sigma")),
    "glass_blur": Table(("sigma", "max_delta", "iterations"),
                        ((.7, 1, 2), (.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
                        ((.05, 1, 1), (.25, 1, 1), (.4, 1, 1), (.25, 1, 2), (.4, 1, 2)),
                        spatial=("sigma", "max_delta")),
    "motion_blur": Table(("radius", "sigma"),
                         ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
                         ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
                         spatial=("radius", "sigma")),
    "zoom_blur": Table(("zooms",),
                       ((zoom_factors(1, 1.11, .01),), (zoom_factors(1, 1.16, .01),),
                        (zoom_factors(1, 1.21, .02),), (zoom_factors(1, 1.26, .02),),
                        (zoom_factors(1, 1.31, .03),)),
                       ((zoom_factors(1, 1.06, .01),), (zoom_factors(1, 1.11, .01),),
                        (zoom_factors(1, 1.16, .01),), (zoom_factors(1, 1.21, .01),),
                        (zoom_factors(1, 1.26, .01),))),
    "gaussian_blur": Table(("sigma",), ((1,), (2,), (3,), (4,), (6,)),
                           ((.4,), (.6,), (.7,), (.8,), (1,)), spatial=("sigma",)),
    # --- weather -----------------------------------------------------------------------------------------
    "snow": Table(("mean", "std", "zoom", "threshold", "radius", "sigma", "blend"),
                  ((.1, .3, 3, .5, 10, 4, .8), (.2, .3, 2, .5, 12, 4, .7), (.55, .3, 4, .9, 12, 8, .7),
                   (.55, .3, 4.5, .85, 12, 8, .65), (.55, .3, 2.5, .85, 12, 12, .55)),
                  ((.1, .2, 1, .6, 8, 3, .95), (.1, .2, 1, .5, 10, 4, .9), (.15, .3, 1.75, .55, 10, 4, .9),
                   (.25, .3, 2.25, .6, 12, 6, .85), (.3, .3, 1.25, .65, 14, 12, .8)),
                  spatial=("radius", "sigma")),
    # `texture_scale` is the size of the frost texture's features in px (ours: the texture is procedural).
    "frost": Table(("image_weight", "frost_weight", "texture_scale"),
                   ((1, .4, 12), (.8, .6, 12), (.7, .7, 12), (.65, .7, 12), (.6, .75, 12)),
                   ((1, .2, 2.5), (1, .3, 2.5), (.9, .4, 2.5), (.85, .4, 2.5), (.75, .45, 2.5)),
                   spatial=("texture_scale",)),
    "fog": Table(("strength", "decay"),
                 ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
                 ((.2, 3), (.5, 3), (.75, 2.5), (1, 2), (1.5, 1.75))),
    "brightness": Table(("shift",), ((.1,), (.2,), (.3,), (.4,), (.5,)),
                        ((.05,), (.1,), (.15,), (.2,), (.3,))),
    "spatter": Table(("mean", "std", "sigma", "threshold", "intensity", "mud"),
                     ((.65, .3, 4, .69, .6, 0), (.65, .3, 3, .68, .6, 0), (.65, .3, 2, .68, .5, 0),
                      (.65, .3, 1, .65, 1.5, 1), (.67, .4, 1, .65, 1.5, 1)),
                     ((.62, .1, .7, .7, .5, 0), (.65, .1, .8, .7, .5, 0), (.65, .3, 1, .69, .5, 0),
                      (.65, .1, .7, .69, .6, 1), (.65, .1, .5, .68, .6, 1)),
                     spatial=("sigma",)),
    # Ours (not in ImageNet-C): streaks per pixel, streak length and width in px, streak opacity, and how
    # much the scene is darkened towards the grey of overcast rain.
    "rain": Table(("density", "length", "width", "opacity", "dimming"),
                  ((.003, 12, 1, .5, .05), (.004, 14, 1, .57, .1), (.006, 18, 1.5, .65, .15),
                   (.009, 24, 1.5, .72, .2), (.012, 30, 2, .8, .25)),
                  ((.01, 3, .8, .45, .05), (.015, 4, .8, .55, .1), (.02, 5, 1, .65, .15),
                   (.03, 6, 1, .72, .2), (.04, 8, 1.2, .8, .25)),
                  spatial=("length", "width")),
    # --- digital -----------------------------------------------------------------------------------------
    "contrast": Table(("factor",), ((.4,), (.3,), (.2,), (.1,), (.05,)),
                      ((.75,), (.5,), (.4,), (.3,), (.15,))),
    # Hendrycks multiplies by 244 (his comment: "should have been 224"); kept, the table is the standard.
    "elastic_transform": Table(("alpha", "sigma", "affine"),
                               ((244 * 2, 244 * .7, 244 * .1), (244 * 2, 244 * .08, 244 * .2),
                                (244 * .05, 244 * .01, 244 * .02), (244 * .07, 244 * .01, 244 * .02),
                                (244 * .12, 244 * .01, 244 * .02)),
                               ((32 * 0, 32 * 0, 32 * .08), (32 * .05, 32 * .2, 32 * .07),
                                (32 * .08, 32 * .06, 32 * .06), (32 * .1, 32 * .04, 32 * .05),
                                (32 * .1, 32 * .03, 32 * .03)),
                               spatial=("alpha", "sigma", "affine")),
    "pixelate": Table(("fraction",), ((.6,), (.5,), (.4,), (.3,), (.25,)),
                      ((.95,), (.9,), (.85,), (.75,), (.65,))),
    "jpeg_compression": Table(("quality",), ((25,), (18,), (15,), (10,), (7,)),
                              ((80,), (65,), (58,), (50,), (40,))),
    "saturate": Table(("factor", "offset"), ((.3, 0), (.1, 0), (2, 0), (5, .1), (20, .2)),
                      ((.3, 0), (.1, 0), (1.5, 0), (2, .1), (2.5, .2))),
})
