"""Metrics of prediction sets: coverage (with exact confidence intervals), sizes, and their breakdowns.

All functions take a boolean (n, K) `sets` array and, where needed, integer `labels` (n,); none modifies them.
"""
from __future__ import annotations

import numpy as np

from conformal._validation import check_labels, check_sets
from conformal.stats import clopper_pearson

__all__ = ["coverage", "coverage_ci", "mean_set_size", "empty_set_rate", "set_size_histogram",
           "size_stratified_coverage", "class_conditional_coverage",
           # abstention metrics (defined in conformal.abstention.curves, re-exported here)
           "ROCCurve", "roc_curve", "auroc", "risk_coverage_curve", "aurc", "selective_risk", "abstention_rate"]


def _covered(sets, labels) -> np.ndarray:
    s = check_sets(sets)
    y = check_labels(labels, s.shape[0], s.shape[1])
    return s[np.arange(s.shape[0]), y]


def coverage(sets, labels) -> float:
    """Fraction of rows whose set holds the true label."""
    return float(_covered(sets, labels).mean())


def coverage_ci(sets, labels, level: float = 0.95) -> tuple[float, float, float]:
    """(coverage, lower, upper): empirical coverage with its exact Clopper-Pearson interval at `level`."""
    covered = _covered(sets, labels)
    k, n = int(covered.sum()), int(covered.shape[0])
    lo, hi = clopper_pearson(k, n, level)
    return k / n, lo, hi


def mean_set_size(sets) -> float:
    return float(check_sets(sets).sum(axis=1).mean())


def empty_set_rate(sets) -> float:
    return float((~check_sets(sets).any(axis=1)).mean())


def set_size_histogram(sets) -> np.ndarray:
    """Counts of set sizes 0..K as an int64 array of length K + 1."""
    s = check_sets(sets)
    return np.bincount(s.sum(axis=1), minlength=s.shape[1] + 1).astype(np.int64)


def size_stratified_coverage(sets, labels) -> dict[int, tuple[int, float]]:
    """{set size: (number of rows with that size, coverage among them)} for the sizes that occur.

    Coverage far below 1 - alpha for some size shows that the sets adapt poorly (Angelopoulos et al. 2021).
    """
    covered = _covered(sets, labels)
    sizes = check_sets(sets).sum(axis=1)
    out = {}
    for size in np.unique(sizes):
        mask = sizes == size
        out[int(size)] = (int(mask.sum()), float(covered[mask].mean()))
    return out


def class_conditional_coverage(sets, labels) -> np.ndarray:
    """Coverage per true class (K,), NaN for classes absent from `labels`."""
    covered = _covered(sets, labels)
    s = check_sets(sets)
    y = np.asarray(labels)
    k = s.shape[1]
    hits = np.bincount(y, weights=covered.astype(np.float64), minlength=k)
    counts = np.bincount(y, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)


from conformal.abstention.curves import (ROCCurve, abstention_rate, aurc, auroc, risk_coverage_curve,  # noqa: E402
                                         roc_curve, selective_risk)
