"""Dual-threshold abstention: conformal sets plus an abstention threshold on a label-free statistic.

`DualThresholdConformal` fits both thresholds on calibration data only; `Decisions` is what it predicts.
`STATISTICS` lists the label-free softmax statistics, `FITTED_STATISTICS` the fitted ones (knn, mahalanobis,
energy, input_quality: `conformal.abstention.fitted`, `.quality`), which read a side input (features, logits or
the raw inputs) and combine with softmax ones in one union rule (`conformal.abstention.combined`).
`conformal.metrics` has the exact ROC / AUROC / risk-coverage metrics (re-exported here);
`conformal.abstention.rules` the threshold rules as plain functions. The label-using statistic of the seed paper
is quarantined in `conformal.abstention.research` (comparison only).
"""
from conformal.abstention.combined import FITTED_STATISTICS
from conformal.abstention.decisions import Decisions
from conformal.abstention.dual import RULES, TARGETS, DualThresholdConformal
from conformal.abstention.fitted import Energy, FittedStatistic, KNNDistance, Mahalanobis
from conformal.abstention.quality import InputQuality, quality_features
from conformal.abstention.shift import ShiftAwareAbstention, required_abstention
from conformal.abstention.statistics import NEEDS_CONFORMAL, STATISTICS, get_statistic, statistic_names
from conformal.metrics import ROCCurve, abstention_rate, aurc, auroc, risk_coverage_curve, roc_curve, selective_risk

__all__ = ["DualThresholdConformal", "Decisions", "STATISTICS", "NEEDS_CONFORMAL", "RULES", "TARGETS",
           "ROCCurve", "roc_curve", "auroc", "risk_coverage_curve", "aurc", "selective_risk", "abstention_rate",
           "get_statistic", "statistic_names", "FITTED_STATISTICS", "FittedStatistic", "KNNDistance", "Mahalanobis",
           "Energy", "InputQuality", "quality_features",
           "ShiftAwareAbstention", "required_abstention"]
