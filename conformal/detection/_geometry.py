"""Angles of 3D boxes: yaw residuals and intervals live on the circle (period 2*pi, or pi heading-agnostic)."""
from __future__ import annotations

import math

TWO_PI = 2.0 * math.pi


def wrap_angle(a, period: float = TWO_PI):
    """Map angles into [-period/2, period/2)."""
    return (a + 0.5 * period) % period - 0.5 * period
