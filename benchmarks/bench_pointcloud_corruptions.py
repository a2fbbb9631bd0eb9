"""Time every point-cloud corruption at severity 3: object level on a 1,024-point cloud, scene level on a
~120,000-point synthetic street scan. Writes the `pointcloud_corruptions` section of docs/benchmarks.md.

Targets (2-core machine): object level <= 1 ms median (ray-cast occlusion/lidar <= 15 ms), scene level
<= 50 ms. Peer: open3d's own farthest_point_down_sample vs our Numba farthest-point sampling, same run.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.datasets import street_scan  # noqa: E402
from benchmarks._report import machine_line, timeit, versions, write_section  # noqa: E402
from perturbations import pointcloud as pc  # noqa: E402


def object_cloud(n=1024, seed=0):
    """1,024 points on a unit sphere (normalised), float32."""
    x = np.random.default_rng(seed).normal(size=(n, 3))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main(repeat: int = 7) -> str:
    obj = object_cloud()
    scan = street_scan(64, 1890, rng=0)
    rows = []
    for name in tqdm(pc.names("all"), desc="pointcloud corruptions"):
        level = "object" if name in pc.OBJECT_CORRUPTIONS else "scene"
        pts = obj if level == "object" else scan
        seeds = iter(range(10_000))
        sec = timeit(lambda: pc.corrupt(pts, name, 3, rng=next(seeds)), repeat=repeat, warmup=1)
        target = 15.0 if name in ("occlusion", "lidar") else (1.0 if level == "object" else 50.0)
        rows.append((name, level, len(pts), sec * 1e3, target))
    # peer: farthest-point sampling, 1,024 of the scan's points, ours vs open3d's
    import open3d as o3d
    sub = scan[:: max(1, len(scan) // 20000), :3].astype(np.float64)
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(sub))
    ours = timeit(lambda: pc.farthest_point_sampling(sub, 1024), repeat=repeat)
    theirs = timeit(lambda: pcd.farthest_point_down_sample(1024), repeat=repeat)

    lines = [
        "## Point-cloud corruptions (`benchmarks/bench_pointcloud_corruptions.py`)",
        "",
        f"Machine: {machine_line()}. Versions: {versions('numpy', 'numba', 'open3d')}.",
        f"Median of {repeat} runs after one warm-up, severity 3, a fresh seed per run. Object level: 1,024 points "
        f"on a sphere; scene level: synthetic 64-ring street scan with {len(scan):,} points (x, y, z, intensity). "
        f"Load average when the run ended: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (the machine is shared, "
        f"so times above ~1 load per core are inflated).",
        "",
        "| corruption | level | input points | median ms | target ms | within target |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name, level, n, ms, target in rows:
        lines.append(f"| {name} | {level} | {n:,} | {ms:.2f} | {target:g} | {'yes' if ms <= target else 'NO'} |")
    lines += ["", f"Farthest-point sampling, 1,024 of {len(sub):,} points: ours (Numba) {ours * 1e3:.1f} ms, "
              f"open3d `farthest_point_down_sample` {theirs * 1e3:.1f} ms (ratio open3d / ours = {theirs / ours:.2f})."]
    md = "\n".join(lines)
    write_section("pointcloud_corruptions", md)
    return md


if __name__ == "__main__":
    print(main())
