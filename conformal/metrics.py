"""Metrics of prediction sets: coverage (with exact confidence intervals), sizes, and their breakdowns.

Set metrics take a boolean (n, K) `sets` array and, where needed, integer `labels` (n,); none modifies them.

Curves of an abstention statistic (larger = more uncertain): a threshold ``tau`` abstains on x exactly when
``statistic(x) > tau`` and accepts it when ``statistic(x) <= tau``; ``tau = +inf`` never abstains, ``tau = -inf``
always abstains. "Positives" are the events abstention should catch (top-1 errors or conformal miscoverage); a
positive that is abstained on is a true positive. Curves come from one stable sort and a Numba counting kernel,
with ties kept together, so they equal scikit-learn's ``roc_curve(positives, statistic, drop_intermediate=False)``
point for point and `auroc` equals ``roc_auc_score`` (ties count one half, the Mann-Whitney convention).
`auroc` is the library's one AUROC.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from conformal._base import Array, Float, Int, Record
from conformal._kernels import curves as _k
from conformal._validation import as_array, check_flags, check_labels, check_sets, check_statistic
from conformal.io import register_kind
from conformal.stats import clopper_pearson

__all__ = ["coverage", "coverage_ci", "mean_set_size", "empty_set_rate", "set_size_histogram",
           "size_stratified_coverage", "class_conditional_coverage",
           # curves of abstention statistics
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


@register_kind
@dataclass(frozen=True)
class ROCCurve(Record):
    """ROC of "abstain iff statistic > tau" as a detector of positives, one point per distinct threshold.

    fpr[j], tpr[j] are the rates at ``taus[j]``: taus[0] = +inf (abstain on nothing, the point (0, 0)), then the
    distinct statistic values from the second largest down, then -inf (abstain on everything, the point (1, 1)).
    taus[j] is the largest threshold giving point j, so every sample with statistic <= taus[j] is accepted.
    These are scikit-learn's ``roc_curve`` thresholds shifted by one. `auc` is the exact area.
    Rates are NaN when there are no positives (tpr) or no negatives (fpr).
    """

    _field_specs: ClassVar[dict] = {"fpr": Array("f", 1, no_nan=False, low=0.0, high=1.0),
                                    "tpr": Array("f", 1, no_nan=False, shape=("fpr",), low=0.0, high=1.0),
                                    "taus": Array("f", 1, shape=("fpr",)),
                                    "auc": Float(allow_nan=True, low=0.0, high=1.0), "n_positives": Int(0),
                                    "n_negatives": Int(0)}
    fpr: np.ndarray
    tpr: np.ndarray
    taus: np.ndarray
    auc: float
    n_positives: int
    n_negatives: int


def _counts_desc(statistic, positives):
    s = check_statistic(statistic)
    pos = check_flags(positives, "positives", s.shape[0])
    order = np.argsort(-s, kind="stable")
    return _k.group_counts(s[order], pos[order]), s, pos


def roc_curve(statistic, positives) -> ROCCurve:
    """Exact ROC curve; see the module docstring for the threshold convention.

    Examples
    --------
    >>> c = roc_curve(np.array([0.1, 0.4, 0.35, 0.8]), np.array([False, False, True, True]))
    >>> c.tpr.tolist(), c.fpr.tolist(), c.auc
    ([0.0, 0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5, 1.0], 0.75)
    """
    (cum_n, cum_pos, values), s, pos = _counts_desc(statistic, positives)
    n_pos = int(cum_pos[-1])
    n_neg = int(s.shape[0] - n_pos)
    tp = cum_pos.astype(np.float64)
    fp = (cum_n - cum_pos).astype(np.float64)
    if n_pos == 0 or n_neg == 0:
        warnings.warn(f"ROC is undefined with {n_pos} positives and {n_neg} negatives; rates of the missing class "
                      f"are NaN and auc is NaN", UserWarning, stacklevel=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = tp / n_pos if n_pos else np.full(tp.shape, np.nan)
        fpr = fp / n_neg if n_neg else np.full(fp.shape, np.nan)
    # Point j abstains on the j largest runs, i.e. on statistic > (value of run j+1); the last point on all.
    taus = np.concatenate([[np.inf], values[1:], [-np.inf]])
    auc = _auroc_sorted(s, pos) if (n_pos and n_neg) else float("nan")
    return ROCCurve(fpr=fpr, tpr=tpr, taus=taus, auc=auc, n_positives=n_pos, n_negatives=n_neg)


def _auroc_sorted(s, pos) -> float:
    order = np.argsort(s, kind="stable")
    total, n_pos = _k.positive_rank_sum(s[order], pos[order])
    n_neg = s.shape[0] - n_pos
    return float((total - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auroc(statistic, positives) -> float:
    """Exact area under the ROC curve from tie-averaged ranks (Mann-Whitney U / (n_pos n_neg)).

    It is the probability that a random positive has a larger statistic than a random negative, ties counting
    one half. Raises ValueError when only one class is present (as scikit-learn does).
    """
    s = check_statistic(statistic)
    pos = check_flags(positives, "positives", s.shape[0])
    n_pos = int(pos.sum())
    if n_pos == 0 or n_pos == s.shape[0]:
        raise ValueError(f"`positives` must contain both classes to define AUROC; got {n_pos} positives out of "
                         f"{s.shape[0]}")
    return _auroc_sorted(s, pos)


def risk_coverage_curve(statistic, errors):
    """Selective risk vs coverage when accepting the samples with the smallest statistic.

    Returns (coverage, risk, taus), one entry per distinct value of the statistic, ascending: accepting
    ``statistic <= taus[j]`` keeps a fraction coverage[j] of the samples, and risk[j] is the fraction of
    errors among them. The last point accepts everything (coverage 1, risk = overall error rate).
    """
    s = check_statistic(statistic)
    err = check_flags(errors, "errors", s.shape[0])
    order = np.argsort(s, kind="stable")
    cum_n, cum_err, values = _k.group_counts(s[order], err[order])
    coverage = cum_n[1:] / s.shape[0]
    risk = cum_err[1:] / cum_n[1:]
    return coverage, risk, values


def aurc(statistic, errors) -> float:
    """Area under the risk-coverage curve, as a step integral over coverage: sum_j risk[j] * (c[j] - c[j-1]).

    Without ties this is the mean over k = 1..n of the error rate among the k most confident samples (the AURC
    of Geifman et al., 2019). Smaller is better; a perfect ranking of errors gives (close to) the minimum.
    """
    coverage, risk, _ = risk_coverage_curve(statistic, errors)
    widths = np.diff(np.concatenate([[0.0], coverage]))
    return float(np.dot(risk, widths))


def selective_risk(errors, abstain, level: float = 0.95) -> tuple[float, float, float, int]:
    """(risk, lower, upper, n_accepted): error rate among accepted samples with its Clopper-Pearson interval.

    With no accepted sample the risk is NaN and the interval (0, 1).
    """
    ab = as_array(abstain, "abstain")
    if ab.dtype != np.bool_ or ab.ndim != 1:
        raise TypeError(f"`abstain` must be a 1-D boolean array; got dtype {ab.dtype}, shape {ab.shape}")
    err = check_flags(errors, "errors", ab.shape[0])
    accepted = ~ab
    n_acc = int(accepted.sum())
    k = int(err[accepted].sum())
    lo, hi = clopper_pearson(k, n_acc, level)
    return (k / n_acc if n_acc else float("nan")), lo, hi, n_acc


def abstention_rate(abstain) -> float:
    """Fraction of samples abstained on."""
    ab = as_array(abstain, "abstain")
    if ab.dtype != np.bool_ or ab.ndim != 1 or ab.shape[0] < 1:
        raise TypeError(f"`abstain` must be a non-empty 1-D boolean array; got dtype {ab.dtype}, shape {ab.shape}")
    return float(ab.mean())
