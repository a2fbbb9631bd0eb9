"""Point-cloud and LiDAR corruptions (ModelNet40-C objects, driving scans) and point-cloud helpers.

Two levels:

- ``"object"``: the 15 ModelNet40-C corruptions for object clouds (about 1k points, any C >= 3 columns).
  They act in ModelNet40-C's frame, the unit sphere ModelNet40 ships its clouds in (centroid at 0,
  farthest point at 1), with its absolute magnitudes; the nine that renormalise there (uniform, impulse,
  upsampling, background, rotation, shear, ffd, rbf, inv_rbf) bounding-box-normalise the result (longest
  side 2), as ModelNet40-C does. The result is mapped back by the input's centroid and radius, so a
  ModelNet40 cloud gets ModelNet40-C's output, scale included, and any other cloud the same up to a
  similarity.
- ``"scene"``: 9 LiDAR weather and sensor models for driving scans (N x C, C >= 4: x, y, z, intensity,
  sensor at the origin, z up).

``corrupt`` returns a new array with the input's dtype and column count; ``corrupt_with_index`` also
returns, for every output row, the input row it came from or -1 for a point that is not a return from
its source surface (added, or replaced by a scatter/crosstalk return), so per-point labels are never
lost. Randomness comes only from `rng` (None, int seed or numpy Generator): one seed, one output. A call
samples its parameters first (the severity row plus the scalar draws: anchors, angles, viewpoint, control
points, failed rings) and then applies them, drawing only per-point noise; `REGISTRY` is the point-cloud
view of the package's one registry (``perturbations.registry``), whose ``corrupt_logged`` records both.

open3d is imported only inside the functions that ray-cast or read .ply/.pcd files, so this module
imports with numpy + numba alone. Models, parameters and sources: docs/pointcloud_corruptions.md.
"""
from __future__ import annotations

import inspect
from functools import partial

import numpy as np

from . import _pointcloud_object, _pointcloud_raycast, _pointcloud_scene
from ._common import as_generator, check_name, check_severity
from ._pointcloud_tables import OBJECT_TABLES, SCENE_TABLES
from ._pointcloud_utils import check_points, farthest_point_sampling, normalize, read_points
from .registry import Corruption, Modality, check_options, register

__all__ = ["corrupt", "corrupt_with_index", "names", "parameters", "REGISTRY", "farthest_point_sampling",
           "normalize", "read_points", "OBJECT_CORRUPTIONS", "SCENE_CORRUPTIONS"]

# ModelNet40-C's order
OBJECT_CORRUPTIONS = ("occlusion", "lidar", "density_inc", "density_dec", "cutout", "uniform", "gaussian",
                      "impulse", "upsampling", "background", "rotation", "shear", "ffd", "rbf", "inv_rbf")
SCENE_CORRUPTIONS = ("fog", "rain", "snow", "wet_ground", "beam_missing", "crosstalk", "incomplete_echo",
                     "motion_distortion", "beam_reduction")

_FUNCTIONS = {**_pointcloud_object.FUNCTIONS, **_pointcloud_raycast.FUNCTIONS, **_pointcloud_scene.FUNCTIONS}
_SAMPLERS = {**_pointcloud_object.SAMPLERS, **_pointcloud_raycast.SAMPLERS, **_pointcloud_scene.SAMPLERS}


def _options_of(name: str) -> tuple[str, ...]:
    sig = inspect.signature(_FUNCTIONS[name])
    return tuple(k for k, v in sig.parameters.items() if v.kind is inspect.Parameter.KEYWORD_ONLY
                 or (k not in ("pts", "rng", "p") and v.default is not inspect.Parameter.empty))


def _sample(name, severity, points, rng, **options):
    p = parameters(name, severity)
    draw = _SAMPLERS.get(name)
    if draw is not None:
        p.update(draw(len(points), p, rng, **options))
    return p


def _apply(name, points, params, rng, **options):
    """((out, index), applied) of a validated cloud; object level in the unit frame, mapped back."""
    function = _FUNCTIONS[name]
    work = points.astype(np.float64)  # always a copy: the input is never modified
    if name in SCENE_CORRUPTIONS:
        out, idx, applied = function(work, rng, params, **options)
    else:
        centre, half = _object_frame(name, work[:, :3])
        if half <= 0.0:
            raise ValueError("`points` has zero extent (every point is the same); object-level corruptions "
                             "need a cloud with a non-degenerate bounding box")
        work[:, :3] = (work[:, :3] - centre) / half
        if options.get("mesh") is not None:
            v, t = _pointcloud_raycast.mesh_arrays(options["mesh"])
            options = {**options, "mesh": ((v - centre) / half, t)}
        out, idx, applied = function(work, rng, params, **options)
        if name in _pointcloud_raycast.FUNCTIONS:  # the output is ModelNet40-C's: back from its unit-sphere frame
            centre, half = _object_frame("gaussian", points[:, :3].astype(np.float64))
        out[:, :3] = out[:, :3] * half + centre
        if "eye" in applied:  # report the viewpoint in the output's frame
            applied["eye"] = applied["eye"] * half + centre
    return (out.astype(points.dtype, copy=False), np.asarray(idx, dtype=np.int64)), applied


def _object_frame(name, xyz):
    """(centre, scale) of the frame an object-level corruption works in, ModelNet40-C's own.

    ModelNet40-C corrupts the ModelNet40 clouds as shipped, normalised into the unit sphere (centroid at
    0, farthest point at distance 1), with absolute magnitudes, and bounding-box-normalises the result of
    the nine corruptions that renormalise. So: the centroid and the largest distance to it. occlusion and
    lidar ray-cast in the bounding-box frame (centre, half the longest side), as ModelNet40-C normalises
    the mesh it renders; their output, in that frame as ModelNet40-C's is, is mapped back from the
    unit-sphere frame like every other object corruption (same output scale as the reference on
    ModelNet40's clouds; lidar rows then overlay the input only when its radius equals its half-extent).
    """
    if name in _pointcloud_raycast.FUNCTIONS:
        lo, hi = xyz.min(axis=0), xyz.max(axis=0)
        return (lo + hi) / 2.0, float((hi - lo).max()) / 2.0
    centre = xyz.mean(axis=0)
    return centre, float(np.sqrt(((xyz - centre) ** 2).sum(axis=1).max()))


def _prepare(points, entry, options):
    is_scene = entry.group == "scene"
    check_points(points, min_columns=4 if is_scene else 3)
    if is_scene and not np.isfinite(points[:, 3]).all():
        raise ValueError("`points` column 3 (intensity) has NaN or inf values; scene-level corruptions need a finite "
                         "intensity for every return")
    check_options(entry, options)
    return points, options


def _same(out, points):
    return out


_REFERENCE = {"object": "Sun et al., ModelNet40-C (2022), re-derived (docs/pointcloud_corruptions.md)",
              "scene": "Dong et al. CVPR'23, Robo3D (Kong et al. ICCV'23), and the physics papers named in "
                       "docs/pointcloud_corruptions.md"}


def _entry(name, level, table):
    fn = _FUNCTIONS[name]
    doc = (fn.__doc__ or "").strip().split("\n")[0] or f"ModelNet40-C {name!r}"
    return Corruption(name=name, modality="pointcloud", group=level, table=table, sample=partial(_sample, name),
                      apply=partial(_apply, name), options=_options_of(name), doc=doc, reference=_REFERENCE[level])


MODALITY = Modality("pointcloud", _prepare, _same)
REGISTRY = register(MODALITY, [*(_entry(n, "object", OBJECT_TABLES[n]) for n in OBJECT_CORRUPTIONS),
                               *(_entry(n, "scene", SCENE_TABLES[n]) for n in SCENE_CORRUPTIONS)])


def names(level: str = "all") -> tuple:
    """Names of the corruptions of one level: ``"object"`` (15, ModelNet40-C's order), ``"scene"`` (9), ``"all"``."""
    if level == "object":
        return OBJECT_CORRUPTIONS
    if level == "scene":
        return SCENE_CORRUPTIONS
    if level == "all":
        return OBJECT_CORRUPTIONS + SCENE_CORRUPTIONS
    raise ValueError(f"`level` must be 'object', 'scene' or 'all'; got {level!r}")


def parameters(name: str, severity: int) -> dict:
    """A copy of the parameter row `corrupt` uses for `name` at `severity` (1..5).

    >>> parameters("fog", 5)
    {'alpha': 0.06, 'beta': 0.00092, 'robo3d_beta': 0.2}
    """
    check_name(name, REGISTRY)
    return REGISTRY[name].row(check_severity(severity))


def corrupt(points: np.ndarray, name: str, severity: int, rng=None, **options) -> np.ndarray:
    """Corrupt a point cloud; returns a new (M, C) array of the input's dtype.

    Parameters
    ----------
    points : ndarray (N, C), floating dtype
        Object level: C >= 3 (x, y, z, then any per-point columns, which travel with their point).
        Scene level: C >= 4 (x, y, z, intensity, ...), sensor at the origin, z up.
    name : str
        One of ``names("all")``.
    severity : int in 1..5
    rng : None, int or numpy.random.Generator
        The only source of randomness; the same seed gives the same output.
    **options
        Per-corruption options, an error when not accepted by `name` (see docs/pointcloud_corruptions.md):
        ``mesh`` (occlusion, lidar); ``preset`` (fog: "dong2023" or "robo3d";
        crosstalk: "dong2023" or "uniform"; motion_distortion: "rolling_shutter" or "robo3d");
        ``intensity_max``, ``ring``, ``n_rings``, ``fov_deg``, ``ground_mask``,
        ``object_mask`` (scene models that need them).

    Examples
    --------
    >>> import numpy as np
    >>> cloud = np.random.default_rng(0).normal(size=(1024, 3)).astype(np.float32)
    >>> out = corrupt(cloud, "cutout", 3, rng=0)
    >>> out.shape, out.dtype
    ((874, 3), dtype('float32'))
    """
    return corrupt_with_index(points, name, severity, rng, **options)[0]


def corrupt_with_index(points: np.ndarray, name: str, severity: int, rng=None, *, return_params: bool = False,
                       **options):
    """Like `corrupt`, also returning the source row of each output row (-1 for added points).

    Returns ``(out, index)``, or ``(out, index, applied)`` with `return_params`, where `applied` holds the
    severity row and the values sampled for this call (angles, anchors, viewpoint, ...), so an audit can
    log exactly what was applied. ``index`` is int64 (M,); where ``index[j] >= 0`` the row carries the
    source row's extra columns and, for corruptions that only remove points, equals the source row.
    """
    check_name(name, REGISTRY)
    severity = check_severity(severity)
    entry = REGISTRY[name]
    points, options = _prepare(points, entry, options)
    gen = as_generator(rng)
    (out, idx), applied = entry.apply(points, entry.sample(severity, points, gen, **options), gen, **options)
    if return_params:
        return out, idx, {"name": name, "severity": severity, "params": parameters(name, severity), **applied}
    return out, idx
