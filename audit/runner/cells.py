"""Cells and splits: the grid every audit task runs over, and the seeded generators behind it.

A cell is the clean data or one (corruption, severity). Its generator is fixed by the seed and the names only,
never by the order in which cells run or by the executor, so local, process and Ray runs agree. A split r
permutes the pool with a seed fixed by (seed, r): the first part is clean calibration, the rest is test.
"""
from __future__ import annotations

import zlib

import numpy as np

from audit.schema import cell_id

__all__ = ["cell_list", "cell_rng", "split_indices"]


def cell_list(corruptions: list) -> list:
    """[{cell, name, severity, params}]: the clean cell first, then every corruption at each of its severities."""
    cells = [{"cell": "clean", "name": "clean", "severity": 0, "params": {}}]
    for c in corruptions:
        for s in c["severities"]:
            cells.append({"cell": cell_id(c["name"], s), "name": c["name"], "severity": s, "params": c["params"]})
    return cells


def cell_rng(seed: int, name: str, severity: int) -> np.random.Generator:
    """The generator of one (corruption, severity) cell (independent of run order and executor)."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode()), severity]))


def split_indices(n: int, calibration_fraction: float, seed: int, r: int):
    """Sorted (calibration, test) indices of split r of a pool of n items."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 5000, r]))
    perm = rng.permutation(n)
    n_cal = int(round(calibration_fraction * n))
    return np.sort(perm[:n_cal]), np.sort(perm[n_cal:])
