"""Point-cloud helpers: input checks, `normalize`, farthest-point sampling and file readers.

Public names are re-exported by `perturbations.pointcloud`. open3d is imported only inside `read_points`
(and only for .ply/.pcd), so everything here works without it.
"""
from __future__ import annotations

import numbers
import os

import numpy as np

from ._common import as_generator
from ._kernels.pointcloud import farthest_point_sampling_kernel


def check_points(points, name: str = "points", *, min_columns: int = 3, require_float: bool = True) -> np.ndarray:
    """`points` as a 2-D ndarray with >= `min_columns` columns, >= 1 row and finite xyz; never copied.

    Raises TypeError for a non-array or (with `require_float`) a non-floating dtype, and ValueError for a
    wrong shape, an empty cloud or NaN/inf in the first three columns.
    """
    if not isinstance(points, np.ndarray):
        raise TypeError(f"`{name}` must be a numpy.ndarray of shape (N, C) with C >= {min_columns}; "
                        f"got {type(points).__name__}. Wrap it with numpy.asarray(...) first.")
    if points.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D with shape (N, C), C >= {min_columns}; got shape {points.shape}")
    if points.shape[1] < min_columns:
        cols = "x, y, z, intensity" if min_columns > 3 else "x, y, z"
        raise ValueError(f"`{name}` must have at least {min_columns} columns ({cols}); got shape {points.shape}")
    if points.shape[0] == 0:
        raise ValueError(f"`{name}` is an empty cloud (shape {points.shape}); at least one point is required")
    if require_float and not np.issubdtype(points.dtype, np.floating):
        raise TypeError(f"`{name}` must have a floating dtype (float32 or float64); got {points.dtype}. "
                        f"Convert with points.astype(numpy.float32).")
    if not (np.issubdtype(points.dtype, np.floating) or np.issubdtype(points.dtype, np.integer)):
        raise TypeError(f"`{name}` must have a real numeric dtype; got {points.dtype}")
    if np.issubdtype(points.dtype, np.floating) and not np.isfinite(points[:, :3]).all():
        bad = int((~np.isfinite(points[:, :3])).any(axis=1).sum())
        raise ValueError(f"`{name}` has NaN or inf coordinates in {bad} of {points.shape[0]} points; "
                         f"remove them first, e.g. points[numpy.isfinite(points[:, :3]).all(axis=1)]")
    return points


def normalize(points: np.ndarray) -> np.ndarray:
    """Centre xyz on the bounding-box mid-point and scale so the longest bounding-box side is 2.

    Parameters
    ----------
    points : ndarray, shape (N, C), C >= 3, floating dtype
        The first three columns are x, y, z; any further columns (intensity, labels, ...) are copied
        through untouched.

    Returns
    -------
    ndarray, shape (N, C), same dtype
        A new array; the cloud then fits in [-1, 1]^3 with at least one axis spanning exactly [-1, 1]
        (up to rounding in the dtype). This is ModelNet40-C's ``normalize``.

    Raises
    ------
    ValueError
        If the cloud has zero extent (all points equal), so no scale is defined.

    Examples
    --------
    >>> import numpy as np
    >>> normalize(np.array([[0., 0., 0., 7.], [4., 2., 1., 9.]]))
    array([[-1.  , -0.5 , -0.25,  7.  ],
           [ 1.  ,  0.5 ,  0.25,  9.  ]])
    """
    check_points(points)
    xyz = points[:, :3].astype(np.float64)
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    extent = float((hi - lo).max())
    if extent <= 0.0:
        raise ValueError("`points` has zero extent (every point is the same), so it cannot be scaled to side 2")
    out = points.copy()
    out[:, :3] = (xyz - (lo + hi) / 2.0) * (2.0 / extent)
    return out


def farthest_point_sampling(points: np.ndarray, n_samples: int, start: int | None = None, rng=None) -> np.ndarray:
    """Indices of `n_samples` points chosen by greedy farthest-point sampling on xyz (Numba).

    Each step picks the point whose squared distance to the already chosen set is largest; ties go to the
    lowest index. The chosen indices are always distinct.

    Parameters
    ----------
    points : ndarray, shape (N, C), C >= 3, real numeric dtype
        Only the first three columns are used; the array is not modified.
    n_samples : int, 1 <= n_samples <= N
        How many points to choose. Asking for more points than the cloud has is a ValueError (sample with
        replacement yourself if you need more).
    start : int, optional
        Index of the first point. If None: drawn uniformly from `rng` when `rng` is given, else 0 (so the
        default is deterministic, like open3d's ``farthest_point_down_sample``).
    rng : None, int or numpy.random.Generator
        Used only to draw the start index when `start` is None.

    Returns
    -------
    ndarray of int64, shape (n_samples,)
        ``points[idx]`` is the subsampled cloud; ``idx[0] == start``.

    Examples
    --------
    >>> import numpy as np
    >>> farthest_point_sampling(np.array([[0., 0, 0], [1, 0, 0], [5, 0, 0], [2, 0, 0]]), 3)
    array([0, 2, 3])
    """
    check_points(points, require_float=False)
    n = points.shape[0]
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral):
        raise TypeError(f"`n_samples` must be an int; got {type(n_samples).__name__}")
    if not 1 <= n_samples <= n:
        raise ValueError(f"`n_samples` must be in 1..{n} (the number of points); got {n_samples}. "
                         f"Farthest-point sampling chooses distinct points, so it cannot return more than N.")
    if start is None:
        start = 0 if rng is None else int(as_generator(rng).integers(n))
    elif isinstance(start, bool) or not isinstance(start, numbers.Integral):
        raise TypeError(f"`start` must be None or an int index; got {type(start).__name__}")
    elif not 0 <= start < n:
        raise ValueError(f"`start` must be an index in 0..{n - 1}; got {start}")
    xyz = np.ascontiguousarray(points[:, :3], dtype=np.float64)
    return farthest_point_sampling_kernel(xyz, int(n_samples), int(start))


def read_points(path) -> np.ndarray:
    """Read a point cloud file into an (N, C) float array.

    Formats, chosen by the file extension:

    - ``.bin``: KITTI Velodyne scan, raw little-endian float32 records (x, y, z, reflectance) -> (N, 4)
      float32. A file whose size is not a multiple of 16 bytes is a ValueError.
    - ``.npy``: a 2-D array with >= 3 columns, loaded with ``allow_pickle=False``; dtype kept.
    - ``.ply`` / ``.pcd``: read with open3d's tensor API (imported here only). Returns xyz, plus an
      intensity column when the file has a scalar ``intensity`` field -> (N, 3) or (N, 4), in the file's
      float dtype. For a mesh .ply the vertices are returned.

    Raises FileNotFoundError for a missing file, ValueError for an unknown extension, an empty cloud or a
    malformed file, and ImportError (saying what to install) when open3d is needed but missing.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"point-cloud file not found: {path!r}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".bin":
        size = os.path.getsize(path)
        if size % 16 != 0:
            raise ValueError(f"{path!r}: a KITTI .bin scan holds float32 (x, y, z, reflectance) records of 16 bytes; "
                             f"file size {size} is not a multiple of 16")
        pts = np.fromfile(path, dtype="<f4").reshape(-1, 4)
    elif ext == ".npy":
        pts = np.load(path, allow_pickle=False)
    elif ext in (".ply", ".pcd"):
        try:
            import open3d as o3d
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("reading .ply/.pcd needs open3d: pip install open3d-cpu "
                              "(and apt-get install libusb-1.0-0 on Debian)") from exc
        pcd = o3d.t.io.read_point_cloud(path)
        if "positions" not in pcd.point or pcd.point.positions.shape[0] == 0:
            raise ValueError(f"{path!r}: open3d read no points from this file")
        xyz = pcd.point.positions.numpy()
        cols = [xyz]
        if "intensity" in pcd.point:
            inten = pcd.point.intensity.numpy().reshape(xyz.shape[0], -1)[:, :1]
            cols.append(inten.astype(xyz.dtype))
        pts = np.concatenate(cols, axis=1) if len(cols) > 1 else np.array(xyz)
    else:
        raise ValueError(f"unsupported point-cloud file extension {ext!r} for {path!r}; "
                         f"expected one of .bin (KITTI), .npy, .ply, .pcd")
    check_points(pts, name=f"the cloud read from {path!r}", require_float=False)
    return pts
