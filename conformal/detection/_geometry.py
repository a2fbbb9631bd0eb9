"""Angles of 3D boxes: yaw residuals and intervals live on the circle (period 2*pi, or pi heading-agnostic)."""
from __future__ import annotations

import math

import numpy as np

TWO_PI = 2.0 * math.pi


def wrap_angle(a, period: float = TWO_PI):
    """Map angles into [-period/2, period/2)."""
    return (a + 0.5 * period) % period - 0.5 * period


def wrapped_yaw(boxes: np.ndarray, period: float = TWO_PI) -> np.ndarray:
    """The boxes with yaws beyond +-period wrapped into [-period/2, period/2) (a copy), or the boxes themselves:
    the same boxes, and margins added to a wrapped yaw keep their width (1e17 + 0.1 is 1e17 in float64)."""
    big = np.abs(boxes[:, 6]) > period
    if not big.any():
        return boxes  # the common case: untouched, bit for bit
    out = boxes.copy()
    out[big, 6] = wrap_angle(out[big, 6], period)
    return out
