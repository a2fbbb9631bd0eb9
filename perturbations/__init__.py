"""Corruptions for robustness audits: camera images (`image`), point clouds and LiDAR scans (`pointcloud`)
and the output of a simulated detector (`detector`), in one registry (`registry`: one table format, sample
then apply, JSON records and replay)."""
from perturbations._warmup import warmup

__all__ = ["warmup"]
