"""The corruptions of a classification audit: built-in names per modality, custom `module:function`
corruptions, and the corruption of a cell's inputs (one generator per cell, inputs in pool order)."""
from __future__ import annotations

import importlib

import numpy as np

from audit.errors import ConfigError

__all__ = ["check_corruption", "corruption_names", "corrupt_inputs"]


def corruption_names(modality: str) -> list:
    """Built-in corruption names for a modality ('image' or 'pointcloud')."""
    if modality == "image":
        from perturbations.image import names

        return list(names())
    if modality == "pointcloud":
        from perturbations.pointcloud import names

        return list(names(level="object"))
    return []


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


def check_corruption(name: str, modality: str, data_name: str, key: str) -> None:
    if ":" in name:
        _custom(name)
        return
    if modality == "outputs":  # precomputed: the names are checked against the file when it is read
        return
    try:
        valid = corruption_names(modality)
    except ImportError as exc:
        raise ConfigError(f"config key `{key}`: the {modality} corruptions cannot be imported ({exc})") from None
    if name not in valid:
        raise ConfigError(f"config key `{key}` is {name!r}, not a {modality} corruption (data {data_name!r}); "
                          f"allowed values: {', '.join(sorted(valid))}, or 'package.module:function'")


def corrupt_inputs(modality: str, inputs, name: str, severity: int, params: dict, rng: np.random.Generator):
    """Corrupt every input of the pool with one generator, in pool order. Returns a new array (images) or a
    new list (point clouds); the inputs are not modified."""
    if ":" in name:
        fn = _custom(name)
    elif modality == "image":
        from perturbations.image import corrupt as fn
    elif modality == "pointcloud":
        from perturbations.pointcloud import corrupt as fn
    else:
        raise ValueError(f"cannot corrupt inputs of modality {modality!r}")
    out = [fn(x, name=name, severity=severity, rng=rng, **params) if ":" not in name
           else fn(x, severity=severity, rng=rng, **params) for x in inputs]
    if modality == "image":
        return np.stack(out)
    return out
