"""Compile (or load from Numba's cache) the corruption kernels ahead of the first real call; see
`conformal.warmup` for why and where the cache lives."""
from __future__ import annotations

import time
import warnings

import numpy as np

__all__ = ["warmup"]


def warmup(*, image: bool = True, pointcloud: bool = True, verbose: bool = False) -> dict:
    """Run every image corruption (uint8 grey and RGB, float32) and every point-cloud corruption (object and
    scene level) once at severity 3 on small inputs. Returns {step: seconds}; changes no state.

    The point-cloud part needs open3d only for the ray-cast corruptions (occlusion, lidar); they are skipped,
    and say so in the returned dict, when open3d cannot be imported.
    """
    times: dict = {}
    rng = np.random.default_rng(0)

    def timed(name, fn):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fn()
        times[name] = time.perf_counter() - t0
        if verbose:
            print(f"[warmup] {name}: {times[name]:.3f} s")

    if image:
        import perturbations.image as im

        grey = rng.integers(0, 256, (32, 32), dtype=np.uint8)
        rgb = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)

        def images():
            for name in im.names():
                for x in (grey, rgb, rgb.astype(np.float32) / 255):
                    im.corrupt(x, name, 3, rng=0)

        timed("image corruptions", images)
    if pointcloud:
        import perturbations.pointcloud as pc

        cloud = rng.normal(size=(256, 3)).astype(np.float32)
        r = rng.uniform(3, 40, 2048)
        az, el = rng.uniform(-np.pi, np.pi, 2048), rng.uniform(-0.4, 0.05, 2048)
        scan = np.stack([r * np.cos(el) * np.cos(az), r * np.cos(el) * np.sin(az), r * np.sin(el) + 1.7,
                         rng.uniform(0, 1, 2048)], axis=1).astype(np.float32)

        def clouds():
            for name in pc.names("object"):
                try:
                    pc.corrupt(cloud, name, 3, rng=0)
                except ImportError:  # occlusion / lidar ray-cast with open3d
                    times[f"skipped {name} (open3d not importable)"] = 0.0
            for name in pc.names("scene"):
                pc.corrupt(scan, name, 3, rng=0)

        timed("point-cloud corruptions", clouds)
    return times
