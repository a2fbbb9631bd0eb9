"""conformal: split conformal prediction for perception models (numpy + numba only).

Public API: the scores (`conformal.scores`), the calibrators, the finite-sample quantile, metrics, exact binomial
statistics and checksummed persistence. Nothing here imports torch, OpenCV or open3d.
"""
from conformal import metrics, scores, stats
from conformal._validation import NotFittedError
from conformal._version import __version__
from conformal.calibrators import ClassConditionalConformalClassifier, SplitConformalClassifier, conformal_quantile
from conformal.io import StateError, load
from conformal.scores import APS, LAC, RAPS, SAPS, TopK, get_score

__all__ = ["APS", "ClassConditionalConformalClassifier", "LAC", "NotFittedError", "RAPS", "SAPS",
           "SplitConformalClassifier", "StateError", "TopK", "__version__", "conformal_quantile", "get_score",
           "load", "metrics", "scores", "stats"]
from conformal.abstention import Decisions, DualThresholdConformal; __all__ += ["Decisions", "DualThresholdConformal"]  # noqa: E402,E702 (issue 3)
