"""LidarClassifier: a point-cloud classifier over variable-size clouds, resampled to a fixed size and normalised."""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from adapters._arrays import to_host
from adapters._base import TorchAdapter, check_int

__all__ = ["LidarClassifier", "resample_cloud"]


def resample_cloud(points: np.ndarray, num_points: int, sampling: str, rng: np.random.Generator) -> np.ndarray:
    """`num_points` rows of `points`: farthest-point sampling (Numba; deterministic, start at index 0) or uniform
    random without replacement; a cloud with fewer points keeps all of them and repeats randomly drawn ones
    (duplicates leave a max-pooled PointNet feature unchanged)."""
    from perturbations.pointcloud import farthest_point_sampling

    n = points.shape[0]
    if n >= num_points:
        idx = farthest_point_sampling(points, num_points) if sampling == "fps" else \
            np.sort(rng.choice(n, size=num_points, replace=False))
    else:
        idx = np.concatenate([np.arange(n), rng.integers(0, n, size=num_points - n)])
    return points[idx]


def cloud_rng(random_state, points: np.ndarray) -> np.random.Generator:
    """The generator that samples one cloud: seeded by `random_state` *and the cloud's own bytes*, so a cloud gets
    the same points (and probabilities) wherever it sits in a batch. None: fresh entropy; a Generator is used as
    given (then draws depend on the order of the clouds)."""
    if random_state is None or isinstance(random_state, np.random.Generator):
        return np.random.default_rng(random_state)
    h = hashlib.blake2b(np.ascontiguousarray(points).tobytes(), digest_size=8)
    h.update(f"{points.shape}{points.dtype.str}".encode())
    return np.random.default_rng([int(random_state), int.from_bytes(h.digest(), "little")])


class LidarClassifier(TorchAdapter):
    """Wrap a point-cloud classifier (PointNet-style: input (b, num_points, C) float32 -> logits (b, K)).

    Parameters
    ----------
    model : torch.nn.Module or callable
    num_points : int
        Points per cloud fed to the model.
    sampling : "fps" or "random"
        Farthest-point sampling (Numba, `perturbations.pointcloud.farthest_point_sampling`) or uniform random
        sampling from a generator seeded by `random_state` (same input, same output).
    normalize : bool
        Centre xyz on the bounding box and scale the longest side to 2 (`perturbations.pointcloud.normalize`).
    device, batch_size, num_classes, progress : as in `CameraClassifier`.
    columns : 3 or 4
        Columns fed to the model: xyz, or xyz + intensity (then every cloud needs 4 columns).
    random_state : int or None
        Seed for random sampling and for padding clouds with fewer than `num_points` points. Each cloud's
        generator is seeded by this *and the cloud's bytes* (`cloud_rng`), so a cloud's probabilities do not depend
        on its position in the batch or on the other clouds.
    feature_layer : str or None
        As in `CameraClassifier`: the module whose output `predict_outputs` returns as features (None: the input
        of the last ``nn.Linear``).

    Inputs: a list of float (N_i, 3) or (N_i, 4) arrays (N_i may differ), or one float (n, N, C) array; torch
    tensors are read as the same arrays (CUDA ones copied to the host first). Empty
    clouds, NaN/inf coordinates and integer dtypes are errors.
    """

    def __init__(self, model, num_points: int = 1024, sampling: str = "fps", normalize: bool = True, device="cpu",
                 batch_size: int = 64, *, columns: int = 3, random_state: int | None = 0, num_classes=None,
                 progress="auto", feature_layer: str | None = None):
        super().__init__(model, device=device, batch_size=batch_size, num_classes=num_classes, progress=progress,
                         feature_layer=feature_layer)
        self.num_points = num_points
        self.sampling = sampling
        self.normalize = normalize
        self.columns = columns
        self.random_state = random_state

    def _check_inputs(self, clouds):
        m = check_int(self.num_points, "num_points")
        if self.sampling not in ("fps", "random"):
            raise ValueError(f"`sampling` must be 'fps' or 'random'; got {self.sampling!r}")
        if not isinstance(self.normalize, bool):
            raise TypeError(f"`normalize` must be True or False; got {self.normalize!r}")
        if self.columns not in (3, 4) or isinstance(self.columns, bool):
            raise ValueError(f"`columns` must be 3 (xyz) or 4 (xyz + intensity); got {self.columns!r}")
        clouds = to_host(clouds)  # a tensor (n, N, C) or a list of tensors (CUDA ones copied to the host)
        if isinstance(clouds, np.ndarray):
            if clouds.ndim != 3:
                raise ValueError(f"an array given as `clouds` must be (n, N, C); got shape {clouds.shape}. "
                                 f"For one cloud, pass [cloud]")
        elif not isinstance(clouds, (list, tuple)):
            raise TypeError(f"`clouds` must be a list of (N_i, 3|4) float arrays; got {type(clouds).__name__}")
        if len(clouds) == 0:
            raise ValueError("`clouds` is empty")
        for i, c in enumerate(clouds):
            if not isinstance(c, np.ndarray):
                raise TypeError(f"`clouds[{i}]` must be a numpy array; got {type(c).__name__}")
            if c.dtype.kind != "f":
                raise TypeError(f"`clouds[{i}]` must have a float dtype; got {c.dtype}")
            if c.ndim != 2 or c.shape[1] not in (3, 4):
                raise ValueError(f"`clouds[{i}]` must have shape (N, 3) or (N, 4); got {c.shape}")
            if c.shape[1] < self.columns:
                raise ValueError(f"`clouds[{i}]` has {c.shape[1]} columns but columns={self.columns} (xyz + "
                                 f"intensity) was asked for")
            if c.shape[0] == 0:
                raise ValueError(f"`clouds[{i}]` is empty (0 points); drop it or give it points")
            if not np.all(np.isfinite(c[:, :self.columns])):
                raise ValueError(f"`clouds[{i}]` has NaN or inf values; remove those points first, e.g. "
                                 f"c[np.isfinite(c).all(axis=1)]")
        def batch(lo, hi):
            from perturbations.pointcloud import normalize

            out = np.empty((hi - lo, m, self.columns), dtype=np.float32)
            for j in range(lo, hi):
                c = clouds[j][:, :self.columns]
                needs_rng = self.sampling == "random" or c.shape[0] < m  # hash the cloud only when it is drawn from
                c = resample_cloud(c, m, self.sampling, cloud_rng(self.random_state, c) if needs_rng else None)
                if self.normalize:
                    try:
                        c = normalize(c)
                    except ValueError:
                        raise ValueError(f"`clouds[{j}]` has zero extent (all points equal), so it cannot be "
                                         f"normalised; pass normalize=False or drop it") from None
                out[j - lo] = c
            return torch.from_numpy(out)

        return len(clouds), batch

    def __repr__(self) -> str:
        return (f"LidarClassifier(model={type(self.model).__name__}, num_points={self.num_points!r}, "
                f"sampling={self.sampling!r}, normalize={self.normalize!r}, device={self.device!r}, "
                f"batch_size={self.batch_size!r}, columns={self.columns!r})")
