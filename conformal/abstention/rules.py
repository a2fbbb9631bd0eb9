"""Threshold rules: each picks tau (abstain iff statistic > tau) from one calibration fold.

Plain functions; `DualThresholdConformal` wraps them. Guarantees (exchangeable calibration and test data):

- ``youden_tau``: none. It maximises TPR - FPR on the fold (the research's rule, here on held-out data).
- ``fpr_tau``: P(abstain | negative) <= max_fpr (a conformal quantile of the negatives' statistic).
- ``budget_tau``: P(abstain) <= max_abstain (a conformal quantile of the statistic).
- ``ltt_fixed_sequence``: P(selective risk of tau > delta) <= epsilon (Learn-then-Test, exact binomial p-values,
  fixed-sequence testing over a grid fixed before the fold's labels are looked at).
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from conformal.calibrators import conformal_quantile
from conformal.metrics import roc_curve
from conformal.stats import binom_cdf

__all__ = ["youden_tau", "fpr_tau", "budget_tau", "min_accepted_to_certify", "candidate_grid", "testing_order",
           "ltt_fixed_sequence"]


def youden_tau(statistic, positives):
    """tau maximising TPR - FPR over the fold's ROC (ties: the least abstaining). Returns (tau, ROCCurve).

    Without positives it never abstains (+inf); without negatives it always abstains (-inf); both warn.
    """
    n_pos = int(np.count_nonzero(positives))
    if n_pos == 0 or n_pos == positives.shape[0]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            roc = roc_curve(statistic, positives)
        tau = np.inf if n_pos == 0 else -np.inf
        warnings.warn(f"the tau fold has {n_pos} target events out of {positives.shape[0]}: Youden's J is undefined; "
                      f"tau={tau} ({'never' if n_pos == 0 else 'always'} abstain)", UserWarning, stacklevel=3)
        return float(tau), roc
    roc = roc_curve(statistic, positives)
    j = int(np.argmax(roc.tpr - roc.fpr))
    return float(roc.taus[j]), roc


def fpr_tau(statistic, positives, max_fpr: float) -> float:
    """The k-th smallest statistic among negatives, k = ceil((m + 1)(1 - max_fpr)) for m negatives.

    A new negative (a correct prediction, or a covered label) is abstained on with probability <= max_fpr.
    This is the smallest such tau, hence the most positives caught; the fold's own FPR is also <= max_fpr.
    """
    neg = statistic[~positives]
    if neg.shape[0] == 0:
        warnings.warn("the tau fold has no negatives (every prediction is a target event): always abstaining",
                      UserWarning, stacklevel=3)
        return -np.inf
    tau = conformal_quantile(neg, max_fpr)
    if not np.isfinite(tau):
        warnings.warn(f"{neg.shape[0]} negatives in the tau fold are too few to certify FPR <= {max_fpr}: "
                      f"never abstaining", UserWarning, stacklevel=3)
    return float(tau)


def budget_tau(statistic, max_abstain: float) -> float:
    """The k-th smallest statistic, k = ceil((n + 1)(1 - max_abstain)): P(abstain) <= max_abstain."""
    tau = conformal_quantile(statistic, max_abstain)
    if not np.isfinite(tau):
        warnings.warn(f"{statistic.shape[0]} tau-fold points are too few for max_abstain={max_abstain}: "
                      f"never abstaining", UserWarning, stacklevel=3)
    return float(tau)


def min_accepted_to_certify(delta: float, epsilon: float) -> int:
    """Fewest accepted points for which zero observed errors certify risk <= delta: (1-delta)^n <= epsilon."""
    n = max(1, math.ceil(math.log(epsilon) / math.log1p(-delta)))
    while binom_cdf(0, n, delta) > epsilon:
        n += 1
    while n > 1 and binom_cdf(0, n - 1, delta) <= epsilon:
        n -= 1
    return n


def candidate_grid(reference, max_candidates: int) -> np.ndarray:
    """Ascending candidate taus: distinct values of `reference` (thinned evenly by rank), then +inf.

    `reference` must not depend on the fold that is tested (we use the other fold).
    """
    values = np.unique(reference)
    if values.shape[0] > max_candidates - 1:
        idx = np.unique(np.round(np.linspace(0, values.shape[0] - 1, max_candidates - 1)).astype(np.int64))
        values = values[idx]
    return np.concatenate([values, [np.inf]])


def testing_order(candidates, ref_statistic, ref_events, n_test: int, delta: float) -> np.ndarray:
    """Order in which to test the candidates: most promising first, judged on a reference fold.

    For each candidate, the reference fold gives an accepted fraction f and, from its k events among n_acc
    accepted points, a smoothed event rate r = (k + 1) / (n_acc + 2) (smoothing keeps small, lucky candidates
    from being tested first); the candidate's projected evidence on a fold of `n_test` points is
    z = (delta - r) sqrt(f n_test) / sqrt(delta (1 - delta)). Candidates are sorted by z, descending (ties: larger
    tau first). The reference fold must be independent of the tested fold; then any order keeps fixed-sequence
    testing valid, and this one puts the candidates likely to pass first, whichever direction the risk moves in as
    tau grows.
    """
    order = np.argsort(ref_statistic, kind="stable")
    s_sorted = ref_statistic[order]
    cum_events = np.concatenate([[0], np.cumsum(ref_events[order])])
    n_acc = np.searchsorted(s_sorted, candidates, side="right")
    frac = n_acc / ref_statistic.shape[0]
    risk = (cum_events[n_acc] + 1.0) / (n_acc + 2.0)
    z = (delta - risk) * np.sqrt(frac * n_test) / math.sqrt(delta * (1.0 - delta))
    return np.lexsort((-candidates, -z))


def ltt_fixed_sequence(statistic, events, candidates, delta: float, epsilon: float):
    """Learn-then-Test with fixed-sequence testing (Angelopoulos et al. 2021, arXiv 2110.01052).

    For each candidate tau in the given order (which must be fixed without this fold's data, e.g. by
    `testing_order` on another fold), test H_tau: R(tau) > delta, where R(tau) is the
    probability of the target event among accepted points, with the exact binomial p-value
    p = P(Bin(n_acc, delta) <= k) (n_acc accepted points of this fold, k events among them). Stop at the first
    p > epsilon. Fixed-sequence testing controls the family-wise error rate at epsilon for any pre-set order, so
    with probability >= 1 - epsilon every rejected null is false; the largest rejected tau (least abstention)
    is returned, and P(R(tau) > delta) <= epsilon. If the first test fails, tau = -inf (abstain on all).

    Returns (tau, table) with table = dict(taus, n_accepted, n_events, pvalues) of the tests run.
    """
    order = np.argsort(statistic, kind="stable")
    s_sorted = statistic[order]
    cum_events = np.concatenate([[0], np.cumsum(events[order])])
    taus, n_acc_list, k_list, p_list = [], [], [], []
    tau = -np.inf
    for t in candidates:
        n_acc = int(np.searchsorted(s_sorted, t, side="right"))
        k = int(cum_events[n_acc])
        pval = binom_cdf(k, n_acc, delta)
        taus.append(t)
        n_acc_list.append(n_acc)
        k_list.append(k)
        p_list.append(pval)
        if pval > epsilon:
            break
        tau = max(tau, float(t))
    table = {"taus": np.asarray(taus, np.float64), "n_accepted": np.asarray(n_acc_list, np.int64),
             "n_events": np.asarray(k_list, np.int64), "pvalues": np.asarray(p_list, np.float64)}
    return tau, table
