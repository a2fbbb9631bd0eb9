"""Checks and helpers shared by the image and point-cloud corruptions."""
from __future__ import annotations

import numbers

import numpy as np

from conformal.utils import check_random_state

SEVERITIES = (1, 2, 3, 4, 5)


def as_generator(rng) -> np.random.Generator:
    """`rng` as a `numpy.random.Generator` (None, an int seed >= 0 or a Generator): the project's one rng
    coercion, `conformal.utils.check_random_state`, so no corruption can fall back to global state."""
    return check_random_state(rng, "rng")


def check_severity(severity) -> int:
    """Severity as an int in 1..5, or a ValueError/TypeError naming the argument."""
    if type(severity) is int and 1 <= severity <= 5:  # the common case, on every call: no ABC checks
        return severity
    if isinstance(severity, bool) or not isinstance(severity, numbers.Integral):
        raise TypeError(f"`severity` must be an int in 1..5; got {type(severity).__name__} {severity!r}")
    if int(severity) not in SEVERITIES:
        raise ValueError(f"`severity` must be in 1..5; got {severity}")
    return int(severity)


def check_name(name, valid) -> str:
    """`name` if it is one of `valid`, else a ValueError that lists the valid names."""
    if type(name) is str and name in valid:
        return name
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a str; got {type(name).__name__}")
    if name not in valid:
        raise ValueError(f"unknown corruption `name` {name!r}; valid names are: {', '.join(sorted(valid))}")
    return name
