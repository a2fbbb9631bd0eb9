"""conformal: split conformal prediction for perception models (numpy + numba only).

Public API: the scores (`conformal.scores`), the calibrators, dual-threshold abstention, the finite-sample rank
and quantile (`conformal.quantile`), online conformal (`conformal.online`), metrics, exact binomial statistics,
checksummed persistence and small helpers (`conformal.utils`). Every estimator follows one contract
(`conformal._base.BaseEstimator`: keyword-only parameters, get_params / set_params, validate_params, generic
save / load). Nothing here imports torch, OpenCV or open3d.
"""
from conformal import metrics, online, quantile, scores, stats, utils
from conformal._base import InvalidParameterError
from conformal._validation import NotFittedError
from conformal._version import __version__
from conformal._warmup import warmup
from conformal.abstention import (
    Decisions,
    DualThresholdConformal,
    Energy,
    InputQuality,
    KNNDistance,
    Mahalanobis,
)
from conformal.abstention.shift import ShiftAwareAbstention
from conformal.calibrators import ClassConditionalConformalClassifier, SplitConformalClassifier
from conformal.io import StateError, load
from conformal.quantile import conformal_quantile, conformal_rank
from conformal.scores import APS, LAC, RAPS, SAPS, TopK, get_score

__all__ = ["APS", "ClassConditionalConformalClassifier", "Decisions", "DualThresholdConformal", "Energy",
           "InputQuality", "InvalidParameterError", "KNNDistance", "LAC", "Mahalanobis", "NotFittedError", "RAPS",
           "SAPS", "ShiftAwareAbstention", "SplitConformalClassifier", "StateError", "TopK", "__version__",
           "conformal_quantile", "conformal_rank", "get_score", "load", "metrics", "online", "quantile", "scores",
           "stats", "utils", "warmup"]
