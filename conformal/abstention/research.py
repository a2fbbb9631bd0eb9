"""Research comparison only: the label-using abstention statistic of the seed paper. NOT deployable.

The seed repository (Kumar et al., arXiv 2502.07255) thresholds s(x, y) = -log p_y(x), which needs the true
label y of the test input. No label exists when a robot runs the model, so this statistic cannot make a
decision; using it to "detect" conformal miscoverage also makes the AUROC nearly tautological, because
miscoverage (y outside the set) is itself a function of p_y. It is kept here, taking labels explicitly, only
to reproduce and explain the paper's numbers next to the label-free statistics.

`DualThresholdConformal` refuses it as `statistic=`; it is deliberately absent from `STATISTICS`.
"""
from __future__ import annotations

import numpy as np

from conformal._validation import check_labels, check_scores_matrix
from conformal.metrics import auroc

__all__ = ["leaky_true_label_nll", "compare_with_leaky_statistic"]


def leaky_true_label_nll(probs, labels) -> np.ndarray:
    """-log p_y(x) of the TRUE label y (clipped at p = 1e-300). Uses the label: research comparison only."""
    p = check_scores_matrix(probs)
    y = check_labels(labels, p.shape[0], p.shape[1])
    py = p[np.arange(p.shape[0]), y].astype(np.float64)
    return -np.log(np.maximum(py, 1e-300))


leaky_true_label_nll._uses_labels = True  # get_statistic refuses anything carrying this flag


def compare_with_leaky_statistic(probs, labels, positives, statistics) -> dict[str, float]:
    """AUROC of each label-free statistic and of the leaky -log p_y for the same positives (e.g. miscoverage).

    `statistics` maps names to arrays (n,) computed without labels. Returns {name: auroc}, with the leaky one
    under "leaky_true_label_nll". The gap between them is what the label leak adds, not detection skill.
    """
    out = {name: auroc(s, positives) for name, s in statistics.items()}
    out["leaky_true_label_nll"] = auroc(leaky_true_label_nll(probs, labels), positives)
    return out
