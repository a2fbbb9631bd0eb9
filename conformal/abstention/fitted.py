"""Fitted label-free statistics: larger = further from the clean calibration data. None reads a label at predict.

The softmax statistics of `conformal.abstention.statistics` are functions of the probabilities alone; under
sensor corruption a model becomes confidently wrong and they stay low (docs/abstention.md). The statistics here
read a *side input* and are fitted on clean calibration data only:

============== ================ ===================================================================================
name           side input       statistic
============== ================ ===================================================================================
knn            ``features``     k-th (or mean of the k) nearest L2 distance of L2-normalised features to a clean
                                feature bank (Sun et al. 2022, arXiv 2204.06507); exact Numba kernel, or faiss
mahalanobis    ``features``     min over classes of the Mahalanobis distance to the class means, one shared
                                shrinkage covariance (Lee et al. 2018); the labels are used in `fit` only
energy         ``logits``       -T logsumexp(logits / T) (Liu et al. 2020, arXiv 2010.03759)
input_quality  ``inputs``       camera: mean intensity, log RMS contrast, log Laplacian variance; LiDAR: log point
                                count, median and spread of the range, intensity mean and spread; robust z-scores
                                against the clean data, combined by their Mahalanobis distance
                                (`conformal.abstention.quality`)
============== ================ ===================================================================================

Each is an estimator (`conformal._base`): ``fit(X, labels=None)`` then ``statistic(X) -> float64 (n,)``; its
fitted state saves as checksummed JSON (never pickle) and is checked on load. `DualThresholdConformal` clones and
fits them on its qhat fold, so its tau fold stays independent of the fitted state (docs/abstention.md).
"""
from __future__ import annotations

import numbers

import numpy as np

from conformal._base import Array, Float, Int, Interval, Options
from conformal._kernels import knn as _kk
from conformal._validation import check_labels
from conformal.abstention._fitted_base import SIDE_INPUTS, FittedStatistic, check_matrix
from conformal.io import StateError, register_kind

__all__ = ["FittedStatistic", "KNNDistance", "Mahalanobis", "Energy", "SIDE_INPUTS", "faiss_available",
           "check_matrix", "ledoit_wolf_shrinkage"]

FAISS_MIN_BANK = 100_000  # backend="auto" uses faiss (when installed) from this many bank rows on


def faiss_available() -> bool:
    """True when the optional faiss package (pip install faiss-cpu) can be imported."""
    try:
        import faiss  # noqa: F401 - optional accelerator, the only non-NumPy import of the core, never required
    except ImportError:
        return False
    return True


def _normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (float64, summed in column order), then rounded to float32; a zero row stays
    zero (`conformal._kernels.knn.normalize_rows`, the same arithmetic as the one-frame path)."""
    out = np.empty(x.shape, np.float32)
    _kk.normalize_rows(np.ascontiguousarray(x) if x.dtype in (np.float32, np.float64) else x.astype(np.float64),
                       out)
    return out


@register_kind
class KNNDistance(FittedStatistic):
    """Distance of a feature vector to its k nearest neighbours in a clean feature bank.

    Parameters
    ----------
    k : int >= 1
        Neighbours (the reference prototype used 10).
    aggregate : "kth" or "mean"
        The k-th smallest distance, or the mean of the k smallest.
    normalize : bool
        L2-normalise bank and query rows first (cosine geometry; recommended for penultimate features).
    backend : "auto", "exact" or "faiss"
        "exact": the Numba kernel (`conformal._kernels.knn`, exact in float32, for banks up to ~100k rows);
        "faiss": faiss.IndexFlatL2 (optional extra, ``pip install faiss-cpu``; the same neighbours, distances
        equal to float32 rounding); "auto": faiss from 100,000 bank rows on when it is installed, else exact.

    Attributes
    ----------
    bank_ : float64 (m, d)   The fitted bank rows (normalised and rounded to float32 values).
    n_features_ : int

    Notes
    -----
    ``save("bank.npz")`` stores the bank binary (NPZ, checksummed, read back without pickle); ``save("x.json")``
    as JSON text (about 17 MB and 2 s for a 10,000 x 64 bank). Bank and query rows are compared as float32,
    accumulated in float32 in a fixed order (the NumPy twin in tests/reference/knn.py gives identical values).
    A query that *is* a bank row has distance 0 to itself, so score data that is not in the bank
    (DualThresholdConformal fits the bank on its qhat fold and thresholds on its tau fold).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> knn = KNNDistance(k=5).fit(rng.normal(size=(500, 16)))
    >>> near, far = knn.statistic(rng.normal(size=(3, 16))), knn.statistic(rng.normal(size=(3, 16)) + 5)
    >>> bool(np.all(far > near))
    True
    """

    name = "knn"
    requires = "features"

    _parameter_constraints = {
        "k": [Interval(numbers.Integral, 1, None, closed="left")],
        "aggregate": [Options(("kth", "mean"))],
        "normalize": [Options((True, False))],
        "backend": [Options(("auto", "exact", "faiss"))],
    }
    _fitted_marker = "bank_"
    _fitted_attributes = {"bank_": Array("f", 2, finite=True), "n_features_": Int(1)}

    def __init__(self, *, k: int = 10, aggregate: str = "kth", normalize: bool = True, backend: str = "auto"):
        self.k = k
        self.aggregate = aggregate
        self.normalize = normalize
        self.backend = backend

    def _prepare(self, x: np.ndarray) -> np.ndarray:
        return _normalize_rows(x) if self.normalize else x.astype(np.float32)

    def fit(self, X, labels=None) -> "KNNDistance":
        """Store the (normalised) clean calibration features `X` (n, d) as the bank; `labels` are ignored."""
        self.validate_params()
        x = check_matrix(X, "features")
        if x.shape[0] < self.k:
            raise ValueError(f"`features` has {x.shape[0]} rows, fewer than k={self.k}; use more calibration "
                             f"data or a smaller k")
        if self.backend == "faiss" and not faiss_available():
            raise ImportError("backend='faiss' needs the faiss package: pip install faiss-cpu (or use "
                              "backend='exact')")
        self.bank_ = self._prepare(x).astype(np.float64)
        self.n_features_ = int(x.shape[1])
        self._rebuild()
        return self

    def _rebuild(self) -> None:
        self._bank_t = np.ascontiguousarray(self.bank_.T.astype(np.float32))
        self._index = None

    def _check_fitted_state(self) -> None:
        if self.bank_.shape[1] != self.n_features_ or self.bank_.shape[0] < self.k:
            raise StateError(f"saved field `bank` has shape {self.bank_.shape}; expected (>= k={self.k}, "
                             f"n_features={self.n_features_})")
        if not np.array_equal(self.bank_.astype(np.float32).astype(np.float64), self.bank_):
            raise StateError("saved field `bank` must hold float32 values")

    def resolved_backend(self) -> str:
        """The backend `statistic` uses now ("exact" or "faiss")."""
        if self.backend == "auto":
            big = self.bank_.shape[0] >= FAISS_MIN_BANK
            return "faiss" if big and faiss_available() else "exact"
        return self.backend

    def statistic(self, X) -> np.ndarray:
        """float64 (n,): k-th (or mean k) nearest-neighbour distance of each row of `X` to the bank."""
        self._check_is_fitted()
        x = check_matrix(X, "features", n_columns=self.n_features_)
        faiss = self.resolved_backend() == "faiss"
        if x.shape[0] == 1 and not faiss:  # one frame: normalisation and search in one call, no thread launch
            k = int(self.k)
            acc, top, qbuf = np.empty(_kk._BLOCK, np.float32), np.empty(k, np.float32), np.empty(x.shape[1], np.float32)
            return np.array([_kk.knn_distance_one_raw(x, bool(self.normalize), self._bank_t, k,
                                                      self.aggregate == "mean", acc, top, qbuf)])
        q = np.ascontiguousarray(self._prepare(x))
        if faiss:
            return self._faiss_distances(q)
        return _kk.knn_distances(q, self._bank_t, int(self.k), self.aggregate == "mean")

    def _faiss_distances(self, q: np.ndarray) -> np.ndarray:
        try:
            import faiss  # optional extra
        except ImportError:
            raise ImportError("backend='faiss' needs the faiss package: pip install faiss-cpu") from None
        index = self._index
        if index is None:  # built once per object; predict never changes fitted state
            index = faiss.IndexFlatL2(self.n_features_)
            index.add(np.ascontiguousarray(self.bank_.astype(np.float32)))
            self._index = index
        d2, _ = index.search(q, int(self.k))
        d = np.sqrt(np.maximum(d2.astype(np.float64), 0.0))
        return d.mean(axis=1) if self.aggregate == "mean" else d[:, -1].copy()


def ledoit_wolf_shrinkage(x: np.ndarray) -> float:
    """Ledoit-Wolf (2004) shrinkage of the empirical covariance of centred rows `x` toward mu * I (in [0, 1])."""
    n, d = x.shape
    x2 = x ** 2
    emp_trace = x2.sum(axis=0) / n
    mu = emp_trace.sum() / d
    beta_ = float(np.sum(x2.T @ x2))
    delta_ = float(np.sum((x.T @ x) ** 2)) / n ** 2
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * emp_trace.sum() + d * mu ** 2) / d
    beta = min(beta, delta)
    return 0.0 if beta <= 0 or delta <= 0 else float(beta / delta)


@register_kind
class Mahalanobis(FittedStatistic):
    """Smallest Mahalanobis distance of a feature vector to the class means (Lee et al. 2018, tied covariance).

    `fit(features, labels)` uses the calibration labels for the class means only; `statistic(features)` takes
    no label (the minimum runs over all fitted classes).

    Parameters
    ----------
    shrinkage : "ledoit_wolf" or float in [0, 1]
        Shrinkage of the pooled within-class covariance S toward (tr S / d) I: (1 - s) S + s (tr S / d) I.
    normalize : bool
        L2-normalise feature rows first.

    Attributes
    ----------
    means_ : float64 (C, d)   Means of the classes seen in calibration.
    classes_ : int64 (C,)
    precision_ : float64 (d, d)   Inverse of the shrunk covariance.
    shrinkage_ : float
    n_features_ : int
    """

    name = "mahalanobis"
    requires = "features"
    fit_uses_labels = True

    _parameter_constraints = {
        "shrinkage": [Options(("ledoit_wolf",)), Interval(numbers.Real, 0, 1, closed="both")],
        "normalize": [Options((True, False))],
    }
    _fitted_marker = "precision_"
    _fitted_attributes = {"means_": Array("f", 2, finite=True), "classes_": Array("i", 1),
                          "precision_": Array("f", 2, finite=True), "shrinkage_": Float(low=0.0, high=1.0),
                          "n_features_": Int(1)}

    def __init__(self, *, shrinkage="ledoit_wolf", normalize: bool = False):
        self.shrinkage = shrinkage
        self.normalize = normalize

    def _prepare(self, x):
        return _normalize_rows(x).astype(np.float64) if self.normalize else x.astype(np.float64)

    def fit(self, X, labels=None) -> "Mahalanobis":
        """Class means and the shared shrinkage covariance of clean calibration `features` with their `labels`."""
        self.validate_params()
        x = self._prepare(check_matrix(X, "features"))
        if labels is None:
            raise ValueError("Mahalanobis.fit needs the calibration `labels` (for the class means); predict never "
                             "does")
        y = check_labels(labels, x.shape[0], int(np.max(labels)) + 1 if np.size(labels) else 1)
        classes = np.unique(y)
        if x.shape[0] - classes.shape[0] < 2:
            raise ValueError(f"`features` has {x.shape[0]} rows for {classes.shape[0]} classes; the pooled "
                             f"covariance needs more rows than classes")
        means = np.stack([x[y == c].mean(axis=0) for c in classes])
        centred = x - means[np.searchsorted(classes, y)]
        d = x.shape[1]
        s = ledoit_wolf_shrinkage(centred) if self.shrinkage == "ledoit_wolf" else float(self.shrinkage)
        cov = centred.T @ centred / (x.shape[0] - classes.shape[0])
        mu = np.trace(cov) / d
        shrunk = (1.0 - s) * cov + s * mu * np.eye(d)
        try:
            precision = np.linalg.inv(shrunk)
        except np.linalg.LinAlgError:
            raise ValueError("the pooled feature covariance is singular; use shrinkage > 0") from None
        self.means_, self.classes_ = means, classes.astype(np.int64)
        self.precision_ = (precision + precision.T) / 2.0
        self.shrinkage_, self.n_features_ = float(s), int(d)
        self._rebuild()
        return self

    def _rebuild(self) -> None:
        try:
            self._chol = np.linalg.cholesky(self.precision_)  # precision = L L^T, so d^2 = |(x - m) L|^2
        except np.linalg.LinAlgError:
            raise StateError("saved field `precision` is not positive definite") from None
        self._means_l = self.means_ @ self._chol

    def _check_fitted_state(self) -> None:
        d = self.n_features_
        if self.precision_.shape != (d, d) or self.means_.shape != (self.classes_.shape[0], d):
            raise StateError(f"saved fields `precision` {self.precision_.shape} and `means` {self.means_.shape} "
                             f"do not match n_features={d} and {self.classes_.shape[0]} classes")

    def statistic(self, X) -> np.ndarray:
        """float64 (n,): min over classes of sqrt((x - mean_c)^T precision (x - mean_c))."""
        self._check_is_fitted()
        z = self._prepare(check_matrix(X, "features", n_columns=self.n_features_)) @ self._chol
        d2 = (z ** 2).sum(1)[:, None] - 2.0 * z @ self._means_l.T + (self._means_l ** 2).sum(1)[None, :]
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0))


@register_kind
class Energy(FittedStatistic):
    """Free energy of the logits, -T logsumexp(logits / T) (Liu et al. 2020): larger = less in-distribution.

    Parameters
    ----------
    temperature : float > 0

    Attributes
    ----------
    n_classes_ : int   The number of logit columns seen in `fit` (new logits must have as many).
    """

    name = "energy"
    requires = "logits"

    _parameter_constraints = {"temperature": [Interval(numbers.Real, 0, None, closed="neither")]}
    _fitted_marker = "n_classes_"
    _fitted_attributes = {"n_classes_": Int(2)}

    def __init__(self, *, temperature: float = 1.0):
        self.temperature = temperature

    def fit(self, X, labels=None) -> "Energy":
        """Record the number of classes of the calibration `logits` (nothing else is learnt)."""
        self.validate_params()
        z = check_matrix(X, "logits", what="classes")
        if z.shape[1] < 2:
            raise ValueError(f"`logits` must have at least 2 columns; got {z.shape[1]}")
        self.n_classes_ = int(z.shape[1])
        return self

    def statistic(self, X) -> np.ndarray:
        """float64 (n,): -T logsumexp(logits / T), computed stably in float64."""
        self._check_is_fitted()
        z = check_matrix(X, "logits", n_columns=self.n_classes_, what="classes").astype(np.float64)
        t = float(self.temperature)
        s = z / t
        top = s.max(axis=1)
        return -t * (top + np.log(np.exp(s - top[:, None]).sum(axis=1)))
