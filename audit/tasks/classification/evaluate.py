"""Metrics of a classification audit, per split and cell.

Per split r (audit.runner): a dual-threshold calibrator (conformal threshold + abstention threshold) is fitted on
the clean calibration part only, then predicts, without labels, on the test part of every cell. Labels are used
afterwards, only to score the predictions (`cell_metrics`).
"""
from __future__ import annotations

import math

import numpy as np

METRICS = {
    "coverage": "fraction of test points whose true label is in the conformal set",
    "set_size": "mean size of the conformal set",
    "empty_rate": "fraction of empty conformal sets, before the never-empty guard (if enabled)",
    "accuracy": "top-1 accuracy (no abstention)",
    "abstain_rate": "fraction of test points the abstention threshold rejects",
    "selective_risk": "rate of the target event among accepted points",
    "coverage_accepted": "coverage among accepted points",
    "class_coverage_min": "coverage of the worst-covered class (classes with test points); marginal calibrators do "
                          "not promise it",
    "auroc": "AUROC of the label-free statistic for the target event",
    "auroc_miscoverage": "AUROC of the label-free statistic for 'label not in set' (the research's target)",
    "auroc_label_nll": "AUROC of -log p_y (USES THE LABEL, research's statistic) for 'label not in set'",
    "abstain_gridmean_label_nll": "research's reported 'abstention rate': mean over its fixed tau grid of "
                                  "P(-log p_y > tau); USES THE LABEL, no operating point",
    "qhat": "conformal threshold (fitted on clean calibration data)",
    "tau": "abstention threshold (fitted on clean calibration data)",
}


# The research's tau grid for CIFAR-100/ImageNet (paper-method.md, section 2.3): ~148 unique values in [0, 5].
RESEARCH_TAU_GRID = np.unique(np.concatenate([np.linspace(0, 0.1, 50), np.linspace(0.1, 1, 50),
                                              np.exp(np.linspace(0, np.log(5), 50))]))


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """`conformal.metrics.auroc` (exact, ties count 1/2), NaN where a cell's test part holds one class only."""
    from conformal.metrics import auroc as exact

    pos = np.asarray(positives, dtype=bool)
    if pos.all() or not pos.any():
        return math.nan
    return exact(np.asarray(scores, dtype=np.float64), pos)


def class_coverage(covered: np.ndarray, labels: np.ndarray, n_classes: int):
    """(classes with test points, their coverage): per-class mean of `covered`."""
    counts = np.bincount(labels, minlength=n_classes)
    hits = np.bincount(labels, weights=covered.astype(np.float64), minlength=n_classes)
    present = np.flatnonzero(counts)
    return present, hits[present] / counts[present]


def nonempty(sets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Sets with the top-1 class added where a set is empty (a superset: coverage can only rise)."""
    empty = ~sets.any(1)
    if not empty.any():
        return sets
    out = sets.copy()
    out[np.flatnonzero(empty), probs[empty].argmax(1)] = True
    return out


def cell_metrics(decisions, probs: np.ndarray, labels: np.ndarray, target: str, allow_empty: bool = True) -> dict:
    sets, abstain = np.asarray(decisions.sets), np.asarray(decisions.abstain, dtype=bool)
    empty_rate = float((sets.sum(1) == 0).mean())  # before the guard: how often the calibrator gave nothing
    if not allow_empty:
        sets = nonempty(sets, probs)
    pred, stat = np.asarray(decisions.prediction), np.asarray(decisions.statistic, dtype=np.float64)
    n = labels.shape[0]
    covered = sets[np.arange(n), labels]
    error = pred != labels
    event = error if target == "error" else ~covered
    accepted = ~abstain
    p_y = probs[np.arange(n), labels]
    nll = -np.log(np.maximum(p_y, 1e-300))
    return {
        "coverage": float(covered.mean()),
        "set_size": float(sets.sum(1).mean()),
        "empty_rate": empty_rate,
        "accuracy": float((~error).mean()),
        "abstain_rate": float(abstain.mean()),
        "selective_risk": float(event[accepted].mean()) if accepted.any() else math.nan,
        "coverage_accepted": float(covered[accepted].mean()) if accepted.any() else math.nan,
        "class_coverage_min": float(class_coverage(covered, labels, probs.shape[1])[1].min()),
        "auroc": auroc(stat, event),
        "auroc_miscoverage": auroc(stat, ~covered),
        "auroc_label_nll": auroc(nll, ~covered),
        "abstain_gridmean_label_nll": float((nll[:, None] > RESEARCH_TAU_GRID[None, :]).mean()),
    }


def harm_metrics(decisions, probs: np.ndarray, labels: np.ndarray, alpha: float, allow_empty: bool = True) -> dict:
    """harm, safe and the label-using oracle abstention of the config's rule (see shift.SHIFT_METRICS)."""
    from audit.tasks.classification.shift import safe
    from conformal.abstention import required_abstention

    sets = np.asarray(decisions.sets)
    if not allow_empty:
        sets = nonempty(sets, probs)
    abstain = np.asarray(decisions.abstain, dtype=bool)
    n = labels.shape[0]
    covered = sets[np.arange(n), labels]
    acc = ~abstain
    cov = float(covered[acc].mean()) if acc.any() else math.nan
    return {"harm": float((acc & ~covered).mean()), "safe": safe(cov, float(abstain.mean()), alpha),
            "oracle_abstention_uses_label": required_abstention(np.asarray(decisions.statistic, dtype=np.float64),
                                                                covered, alpha)}
