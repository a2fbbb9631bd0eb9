"""Point-cloud and LiDAR corruptions (ModelNet40-C objects, driving scans) and point-cloud helpers.

open3d is imported only inside the functions that ray-cast or read .ply/.pcd files, so this module
imports with numpy + numba alone.
"""
from __future__ import annotations

from ._pointcloud_utils import farthest_point_sampling, normalize, read_points

__all__ = ["farthest_point_sampling", "normalize", "read_points"]
