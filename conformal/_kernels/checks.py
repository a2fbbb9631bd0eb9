"""Numba kernels of the input checks in conformal._validation (private): one compiled pass over an array instead of
several NumPy reductions. Twins: tests/reference/checks.py."""
from __future__ import annotations

import math

from numba import njit


@njit(cache=True, nogil=True)
def box_errors(boxes, dim):
    """First invalid row of a (M, D) float64 box array and why: (row, 0) if all valid; code 1 non-finite,
    2 x2 < x1 or y2 < y1 (2D), 3 a negative size (3D)."""
    m, d = boxes.shape
    for i in range(m):
        for j in range(d):
            if not math.isfinite(boxes[i, j]):
                return i, 1
        if dim == 2:
            if boxes[i, 2] < boxes[i, 0] or boxes[i, 3] < boxes[i, 1]:
                return i, 2
        elif boxes[i, 3] < 0.0 or boxes[i, 4] < 0.0 or boxes[i, 5] < 0.0:
            return i, 3
    return -1, 0
