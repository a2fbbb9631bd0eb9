"""The corruptions of a classification audit: built-in names per modality, custom `module:function`
corruptions, and the corruption of a cell's inputs (one generator per cell, inputs in pool order)."""
from __future__ import annotations

import importlib

import numpy as np

from audit.errors import ConfigError

__all__ = ["check_corruption", "corruption_names", "scene_corruption_names", "corrupt_inputs", "corrupt_scenes"]


def corruption_names(modality: str, scene_input: bool = False) -> list:
    """Built-in corruption names for a modality ('image' or 'pointcloud'); with `scene_input` (a source that keeps
    whole LiDAR scans) the LiDAR scene corruptions too."""
    if modality == "image":
        from perturbations.image import names

        return list(names())
    if modality == "pointcloud":
        from perturbations.pointcloud import names

        return list(names(level="object")) + (scene_corruption_names() if scene_input else [])
    return []


def scene_corruption_names() -> list:
    """The LiDAR scene corruptions (fog, rain, snow, ...): they act on a whole scan, not on one object's cloud."""
    from perturbations.pointcloud import names

    return list(names("scene"))


def _custom(name: str):
    mod_name, _, attr = name.partition(":")
    try:
        fn = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"custom corruption {name!r} cannot be imported ({exc}); write it as "
                          "'package.module:function' with function(x, severity, rng, **params)") from None
    if not callable(fn):
        raise ConfigError(f"custom corruption {name!r} is not callable")
    return fn


def _accepted_options(name: str, modality: str):
    """The keyword options a corruption accepts: a set, or None for "anything" (a custom **kwargs function)."""
    import inspect

    if ":" in name:
        sig = inspect.signature(_custom(name))
        if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return None
        return {k for k, p in sig.parameters.items() if k not in ("x", "severity", "rng")
                and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    if modality == "image":
        return {"scale"}
    if modality == "pointcloud":
        from audit.tasks.classification.data import SCENE_FACTS
        from perturbations.pointcloud import REGISTRY

        return set(REGISTRY[name].options) - set(SCENE_FACTS)  # per-scan facts come from the source
    return set()


def check_params(name: str, modality: str, params: dict, key: str) -> None:
    """Every parameter must be one the corruption takes (checked at load, not when every cell fails)."""
    allowed = _accepted_options(name, modality)
    if allowed is None:
        return
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ConfigError(f"config key `{key}` has parameter(s) {', '.join(unknown)} that corruption {name!r} does "
                          f"not take; allowed: {', '.join(sorted(allowed)) or 'none'}")
    if modality == "image" and ":" not in name and "scale" in params:
        from perturbations.image import SCALES

        if params["scale"] not in SCALES:
            raise ConfigError(f"config key `{key}.scale` is {params['scale']!r}; allowed values: "
                              f"{', '.join(SCALES)}")


def check_corruption(name: str, modality: str, data_name: str, key: str, params: dict | None = None,
                     scene_input: bool = False) -> None:
    params = params or {}
    path = key[: -len(".name")] + ".params" if key.endswith(".name") else key
    if ":" in name:
        _custom(name)
        check_params(name, modality, params, path)
        return
    if modality == "outputs":  # precomputed: the names are checked against the file when it is read
        return
    try:
        valid = corruption_names(modality, scene_input)
    except ImportError as exc:
        raise ConfigError(f"config key `{key}`: the {modality} corruptions cannot be imported ({exc})") from None
    if modality == "pointcloud" and not scene_input and name in scene_corruption_names():
        raise ConfigError(f"config key `{key}` is {name!r}, a LiDAR scene corruption: it acts on a whole scan, and "
                          f"data {data_name!r} gives object clouds with no scene-level input. Use data "
                          "'lidar_objects' (clusters cut from corrupted scans) or an object-level corruption: "
                          f"{', '.join(sorted(valid))}")
    if name not in valid:
        raise ConfigError(f"config key `{key}` is {name!r}, not a {modality} corruption (data {data_name!r}); "
                          f"allowed values: {', '.join(sorted(valid))}, or 'package.module:function'")
    check_params(name, modality, params, path)


def _read_only(x):
    """A read-only view: a corruption that writes into its input fails loudly instead of poisoning the pool
    shared by every later cell (and the cache)."""
    v = x.view() if isinstance(x, np.ndarray) else np.asarray(x).view()
    v.flags.writeable = False
    return v


def _check_output(out, x, name: str, index: int, modality: str):
    """A corruption's output must be an array like its input: same dtype, same shape (images) or the same
    columns (point clouds), finite, and in [0, 1] for float images. Anything else is the corruption's fault."""
    where = f"corruption {name!r} on input {index}"
    if not isinstance(out, np.ndarray):
        raise ValueError(f"{where} returned {type(out).__name__}; expected a numpy array like its input")
    if out.dtype != x.dtype:
        raise ValueError(f"{where} returned dtype {out.dtype}; expected the input's {x.dtype}")
    if modality == "image" and out.shape != x.shape:
        raise ValueError(f"{where} returned shape {out.shape}; expected the input's {x.shape}")
    if modality == "pointcloud" and (out.ndim != 2 or out.shape[1] != x.shape[1] or out.shape[0] == 0):
        raise ValueError(f"{where} returned shape {out.shape}; expected a non-empty (M, {x.shape[1]}) cloud")
    if out.dtype.kind == "f":
        if not np.isfinite(out).all():
            raise ValueError(f"{where} returned NaN or inf values")
        if modality == "image" and (out.min() < 0.0 or out.max() > 1.0):
            raise ValueError(f"{where} returned float values outside [0, 1]")
    return out


def corrupt_inputs(modality: str, inputs, name: str, severity: int, params: dict, rng: np.random.Generator):
    """Corrupt every input of the pool with one generator, in pool order. Returns (new array of images or new list
    of clouds, one JSON-able record per input). Each corruption sees a read-only view of its input, and its output
    is checked.

    A built-in corruption's record is `perturbations.registry.corrupt_logged`'s: the generator state before the
    call and every parameter applied, so `perturbations.registry.replay(pool[i], record)` gives the same corrupted
    input bit for bit. A custom corruption's record holds the generator state before the call, so calling it again
    with a generator in that state replays it."""
    from perturbations.registry import corrupt_logged, to_json

    custom = _custom(name) if ":" in name else None
    if custom is None and modality not in ("image", "pointcloud"):
        raise ValueError(f"cannot corrupt inputs of modality {modality!r}")
    out, records = [], []
    for i, x in enumerate(inputs):
        try:
            if custom is None:
                y, rec = corrupt_logged(_read_only(x), name, severity, rng, modality, **params)
                if modality == "pointcloud":
                    y = y[0]  # (points, source index)
            else:
                rec = {"custom": name, "severity": severity, "params": to_json(params),
                       "rng": to_json(rng.bit_generator.state)}
                y = custom(_read_only(x), severity=severity, rng=rng, **params)
        except ValueError as exc:
            if "read-only" in str(exc):
                raise ValueError(f"corruption {name!r} writes into its input (input {i}); a corruption "
                                 f"must return a new array and leave its input unchanged") from exc
            raise
        out.append(_check_output(y, np.asarray(x), name, i, modality))
        records.append(rec)
    if modality == "image":
        return np.stack(out), records
    return out, records


def corrupt_scenes(scenes: dict, name: str, severity: int, params: dict, rng: np.random.Generator):
    """A scene corruption of a scene-level source (`data.LidarObjects`): corrupt every clean scan with one
    generator, in scan order, then cut the clusters again from the corrupted scans (in pool order).

    Returns (clusters, one `corrupt_logged` record per scan: `perturbations.registry.replay(scans[i], record,
    **per-scan options)` gives the corrupted scan bit for bit)."""
    from audit.tasks.classification.data import cut_clusters, scene_options
    from perturbations.registry import corrupt_logged

    cut, records = [], []
    for scan, facts, boxes in zip(scenes["scans"], scenes["facts"], scenes["boxes"]):
        opts = {**scene_options(name, facts, scenes["n_rings"]), **params}
        (out, _index), rec = corrupt_logged(_read_only(scan), name, severity, rng, "pointcloud", **opts)
        if out.ndim != 2 or out.shape[1] != scan.shape[1] or out.dtype != scan.dtype:
            raise ValueError(f"corruption {name!r} returned a scan of shape {out.shape} / {out.dtype}; expected "
                             f"(M, {scan.shape[1]}) {scan.dtype}")
        cut.append(cut_clusters(out, boxes))
        records.append(rec)
    return [cut[i][j] for i, j in scenes["index"]], records
