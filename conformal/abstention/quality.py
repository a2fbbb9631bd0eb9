"""Input-quality statistic: how far the raw sensor input's simple statistics are from clean calibration inputs.

Camera (uint8 images, H x W or H x W x C, as the camera adapter takes them; channels averaged to grey in [0, 1]):
  ``mean``      mean intensity                          (fog and brightness raise it, darkness lowers it)
  ``log_std``   log of the RMS contrast (intensity std)  (fog and contrast corruptions lower it)
  ``log_lap``   log variance of the 4-neighbour Laplacian, i.e. high-frequency energy (blur lowers it, noise
                raises it)
LiDAR (float (N, 3) or (N, 4) clouds, as the LiDAR adapter takes them):
  ``log_points`` log point count; ``median_range`` and ``log_range_iqr`` of the point ranges |xyz|; with an
  intensity column also ``intensity_mean`` and ``log_intensity_std``.

`InputQuality` standardises these against the clean calibration inputs (median and MAD: robust z-scores) and
combines them into one score, the Mahalanobis distance of the z-vector under its clean covariance (Ledoit-Wolf
shrinkage). In the reference prototype (docs/abstention.md) such scores rank *errors* barely better than chance
but detect blur and contrast *shifts* well; use them in a union rule or a stream monitor, not alone.
"""
from __future__ import annotations

import numpy as np

from conformal._base import Array, Int, Options
from conformal.abstention.fitted import FittedStatistic, ledoit_wolf_shrinkage
from conformal.io import StateError, register_kind

__all__ = ["InputQuality", "quality_features", "CAMERA_FEATURES", "LIDAR_FEATURES"]

CAMERA_FEATURES = ("mean", "log_std", "log_lap")
LIDAR_FEATURES = ("log_points", "median_range", "log_range_iqr", "intensity_mean", "log_intensity_std")
_EPS = 1e-6


def _modality(inputs) -> str:
    items = inputs if isinstance(inputs, (list, tuple)) else None
    if isinstance(inputs, np.ndarray):
        if inputs.dtype == np.uint8 and inputs.ndim in (3, 4):
            return "camera"
        if inputs.dtype.kind == "f" and inputs.ndim == 3 and inputs.shape[2] in (3, 4):
            return "lidar"
        raise ValueError(f"`inputs` must be uint8 images (n, H, W[, C]) or float point clouds (n, N, 3|4); got "
                         f"an array of dtype {inputs.dtype} and shape {inputs.shape}")
    if items is None:
        raise TypeError(f"`inputs` must be an array or a list of images / point clouds; got {type(inputs).__name__}")
    if len(items) == 0:
        raise ValueError("`inputs` is empty")
    first = items[0]
    if not isinstance(first, np.ndarray):
        raise TypeError(f"`inputs[0]` must be a numpy array; got {type(first).__name__}")
    if first.dtype == np.uint8:
        return "camera"
    if first.dtype.kind == "f" and first.ndim == 2 and first.shape[1] in (3, 4):
        return "lidar"
    raise ValueError(f"`inputs[0]` must be a uint8 image (H x W[ x C]) or a float point cloud (N, 3|4); got "
                     f"dtype {first.dtype} and shape {first.shape}")


def _camera_row(im, i) -> tuple:
    if not isinstance(im, np.ndarray) or im.dtype != np.uint8:
        raise TypeError(f"`inputs[{i}]` must be a uint8 image; got "
                        f"{im.dtype if isinstance(im, np.ndarray) else type(im).__name__}")
    if not (im.ndim == 2 or (im.ndim == 3 and im.shape[2] in (1, 3))) or min(im.shape[:2]) < 3:
        raise ValueError(f"`inputs[{i}]` must be H x W, H x W x 1 or H x W x 3 with H, W >= 3; got {im.shape}")
    g = (im.mean(axis=2) if im.ndim == 3 else im.astype(np.float64)) / 255.0
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    return float(g.mean()), float(np.log(g.std() + _EPS)), float(np.log(lap.var() + _EPS))


def _lidar_row(c, i, columns) -> tuple:
    if not isinstance(c, np.ndarray) or c.dtype.kind != "f" or c.ndim != 2 or c.shape[1] not in (3, 4):
        raise ValueError(f"`inputs[{i}]` must be a float (N, 3) or (N, 4) point cloud; got "
                         f"{c.shape if isinstance(c, np.ndarray) else type(c).__name__}")
    if c.shape[1] < columns:
        raise ValueError(f"`inputs[{i}]` has {c.shape[1]} columns; the statistic was fitted on {columns}")
    if c.shape[0] == 0 or not np.isfinite(c[:, :columns]).all():
        raise ValueError(f"`inputs[{i}]` is empty or holds NaN / inf")
    r = np.sqrt((c[:, :3].astype(np.float64) ** 2).sum(axis=1))
    q1, med, q3 = np.percentile(r, [25, 50, 75])
    row = (float(np.log(c.shape[0])), float(med), float(np.log(q3 - q1 + _EPS)))
    if columns == 4:
        inten = c[:, 3].astype(np.float64)
        row += (float(inten.mean()), float(np.log(inten.std() + _EPS)))
    return row


def quality_features(inputs, *, modality: str | None = None, columns: int | None = None) -> np.ndarray:
    """float64 (n, f): the raw quality features of camera images or LiDAR clouds (see the module docstring).

    `modality` ("camera" or "lidar") is inferred from the inputs when None; `columns` (3 or 4) is the LiDAR
    column count to use (None: that of the first cloud).
    """
    found = _modality(inputs)
    if modality is not None and found != modality:
        raise ValueError(f"`inputs` look like {found} data, but the statistic was fitted on {modality} data")
    if found == "camera":
        return np.array([_camera_row(im, i) for i, im in enumerate(inputs)], dtype=np.float64)
    cols = int(inputs[0].shape[1]) if columns is None else columns
    return np.array([_lidar_row(c, i, cols) for i, c in enumerate(inputs)], dtype=np.float64)


@register_kind
class InputQuality(FittedStatistic):
    """Distance of an input's quality features from those of clean calibration inputs (label-free).

    Parameters
    ----------
    modality : "auto", "camera" or "lidar"
        "auto" infers it in `fit` from the inputs (uint8 images: camera; float (N, 3|4) clouds: LiDAR).

    Attributes
    ----------
    modality_ : str
    n_columns_ : int        LiDAR: columns used (3 or 4); camera: 0.
    center_, scale_ : float64 (f,)   Median and 1.4826 MAD of each feature on the clean inputs.
    precision_ : float64 (f, f)      Inverse shrunk covariance of the clean z-scores.
    """

    name = "input_quality"
    requires = "inputs"

    _parameter_constraints = {"modality": [Options(("auto", "camera", "lidar"))]}
    _fitted_marker = "precision_"
    _fitted_attributes = {"modality_": lambda v, f: _check_modality(v, f), "n_columns_": Int(0),
                          "center_": Array("f", 1, finite=True), "scale_": Array("f", 1, finite=True),
                          "precision_": Array("f", 2, finite=True)}

    def __init__(self, *, modality: str = "auto"):
        self.modality = modality

    @property
    def feature_names(self) -> tuple:
        self._check_is_fitted()
        return CAMERA_FEATURES if self.modality_ == "camera" else LIDAR_FEATURES[:self.center_.shape[0]]

    def fit(self, X, labels=None) -> "InputQuality":
        """Fit the standardisation on clean calibration `inputs` (images or clouds); `labels` are ignored."""
        self.validate_params()
        modality = _modality(X)
        if self.modality != "auto" and modality != self.modality:
            raise ValueError(f"`inputs` look like {modality} data but modality={self.modality!r}")
        cols = 0 if modality == "camera" else int(min(c.shape[1] for c in X))
        return self._fit_features(quality_features(X, modality=modality, columns=cols or None), modality, cols)

    def fit_features(self, feats) -> "InputQuality":
        """Fit on precomputed raw `quality_features` rows of clean inputs (float (n, f)), e.g. when the inputs
        themselves are not kept; needs an explicit `modality` ("camera": f = 3; "lidar": f = 3 for (N, 3) clouds,
        5 with intensity). The same state as `fit` on those inputs."""
        self.validate_params()
        if self.modality == "auto":
            raise ValueError("`fit_features` needs modality='camera' or 'lidar' (features do not show it); got "
                             "modality='auto'")
        x = _feature_rows(feats)
        f = x.shape[1]
        if (self.modality == "camera" and f != 3) or (self.modality == "lidar" and f not in (3, 5)):
            raise ValueError(f"`feats` must have {'3' if self.modality == 'camera' else '3 or 5'} columns "
                             f"(quality_features of {self.modality} inputs); got {f}")
        cols = 0 if self.modality == "camera" else (3 if f == 3 else 4)
        return self._fit_features(x, self.modality, cols)

    def _fit_features(self, feats, modality: str, cols: int) -> "InputQuality":
        if feats.shape[0] < feats.shape[1] + 2:
            raise ValueError(f"`inputs` has {feats.shape[0]} items; fitting {feats.shape[1]} quality features "
                             f"needs at least {feats.shape[1] + 2}")
        center = np.median(feats, axis=0)
        scale = 1.4826 * np.median(np.abs(feats - center), axis=0)
        scale = np.where(scale > _EPS, scale, np.maximum(feats.std(axis=0), _EPS))
        z = (feats - center) / scale
        zc = z - z.mean(axis=0)
        s = ledoit_wolf_shrinkage(zc)
        cov = zc.T @ zc / zc.shape[0]
        cov = (1.0 - s) * cov + s * (np.trace(cov) / cov.shape[0]) * np.eye(cov.shape[0])
        cov += 1e-9 * np.eye(cov.shape[0])
        precision = np.linalg.inv(cov)
        self.modality_, self.n_columns_ = modality, cols
        self.center_, self.scale_ = center, scale
        self.precision_ = (precision + precision.T) / 2.0
        return self

    def _check_fitted_state(self) -> None:
        f = 3 if self.modality_ == "camera" else (3 if self.n_columns_ == 3 else 5)
        if self.modality_ == "lidar" and self.n_columns_ not in (3, 4):
            raise StateError(f"saved field `n_columns` must be 3 or 4 for LiDAR; got {self.n_columns_}")
        if self.center_.shape != (f,) or self.scale_.shape != (f,) or self.precision_.shape != (f, f):
            raise StateError(f"saved fields `center`, `scale`, `precision` must have {f} features")
        if np.any(self.scale_ <= 0):
            raise StateError("saved field `scale` must be positive")

    def zscores(self, X) -> np.ndarray:
        """float64 (n, f): robust z-scores of each quality feature (columns: `feature_names`)."""
        self._check_is_fitted()
        feats = quality_features(X, modality=self.modality_, columns=self.n_columns_ or None)
        return (feats - self.center_) / self.scale_

    def statistic(self, X) -> np.ndarray:
        """float64 (n,): sqrt(z^T precision z) of the robust z-scores."""
        return self._distance(self.zscores(X))

    def statistic_from_features(self, feats) -> np.ndarray:
        """`statistic` from precomputed raw `quality_features` rows (float (n, f), f = the fitted feature count)."""
        self._check_is_fitted()
        x = _feature_rows(feats)
        if x.shape[1] != self.center_.shape[0]:
            raise ValueError(f"`feats` must have {self.center_.shape[0]} columns ({', '.join(self.feature_names)}); "
                             f"got {x.shape[1]}")
        return self._distance((x - self.center_) / self.scale_)

    def _distance(self, z) -> np.ndarray:
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", z, self.precision_, z), 0.0))


def _feature_rows(feats) -> np.ndarray:
    if not isinstance(feats, np.ndarray) or feats.dtype.kind != "f":
        raise TypeError(f"`feats` must be a float numpy array of quality_features rows; got "
                        f"{getattr(feats, 'dtype', type(feats).__name__)}")
    if feats.ndim != 2 or not np.isfinite(feats).all():
        raise ValueError(f"`feats` must be a 2-D array (n, f) of finite values; got shape {feats.shape}")
    return feats.astype(np.float64, copy=False)


def _check_modality(value, field):
    if value not in ("camera", "lidar"):
        raise StateError(f"saved field `{field}` must be 'camera' or 'lidar'; got {value!r}")
    return value
