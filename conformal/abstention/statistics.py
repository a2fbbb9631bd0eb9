"""Label-free abstention statistics: functions of the model's probabilities only; larger = more uncertain.

Every entry of `STATISTICS` maps a name to ``f(probs, conformal=None) -> float64 (n,)``. Three of them need a
fitted `SplitConformalClassifier` (its threshold or calibration scores) and say so in `NEEDS_CONFORMAL`;
`DualThresholdConformal` passes the one it fitted. No statistic here takes, or could take, a label: the
label-using research statistic lives in `conformal.abstention.research` and is refused by the estimator.
"""
from __future__ import annotations

import inspect

import numpy as np

from conformal._kernels import statistics as _k
from conformal._validation import as_array, check_scores_matrix

__all__ = ["STATISTICS", "NEEDS_CONFORMAL", "statistic_names", "get_statistic", "compute_statistic"]


def _need(conformal, name):
    if conformal is None or not hasattr(conformal, "qhat_"):
        raise ValueError(f"statistic {name!r} needs a fitted SplitConformalClassifier as `conformal=`")
    if np.ndim(conformal.qhat_) != 0:
        raise TypeError(f"statistic {name!r} needs a marginal SplitConformalClassifier (scalar qhat_); "
                        f"got {type(conformal).__name__}")
    return conformal


def max_prob(probs, conformal=None) -> np.ndarray:
    """1 - max_y p_y (one minus the maximum softmax probability, Hendrycks & Gimpel 2017)."""
    return _k.max_prob(check_scores_matrix(probs))


def margin(probs, conformal=None) -> np.ndarray:
    """1 - (p_(1) - p_(2)): one minus the gap between the two largest probabilities."""
    return _k.margin(check_scores_matrix(probs))


def entropy(probs, conformal=None) -> np.ndarray:
    """Shannon entropy of p divided by log K, in [0, 1]."""
    return _k.entropy(check_scores_matrix(probs))


def set_size(probs, conformal=None) -> np.ndarray:
    """Size of the conformal prediction set of `conformal` (float64)."""
    c = _need(conformal, "set_size")
    return c.predict_sets(as_array(probs, "probs")).sum(axis=1).astype(np.float64)


def top1_score(probs, conformal=None) -> np.ndarray:
    """Nonconformity score of the predicted (top-1) label under the conformal score (non-randomized)."""
    c = _need(conformal, "top1_score")
    p = check_scores_matrix(probs, n_classes=c.n_classes_)
    return c.score_.label_scores(p, np.argmax(p, axis=1))


def credibility(probs, conformal=None) -> np.ndarray:
    """1 - credibility, where credibility is the largest conformal p-value over labels (Vovk et al. 2005).

    The scores are rank-monotone, so the largest p-value is the top-1 label's; it is computed from the
    top-1 score and the sorted calibration scores: p = (1 + #{s_i >= s}) / (n + 1).
    """
    c = _need(conformal, "credibility")
    s = top1_score(probs, c)
    cal = c.calibration_scores_
    n = cal.shape[0]
    ge = n - np.searchsorted(cal, s, side="left")
    return 1.0 - (1.0 + ge) / (n + 1.0)


STATISTICS = {"max_prob": max_prob, "margin": margin, "entropy": entropy, "set_size": set_size,
              "credibility": credibility, "top1_score": top1_score}
NEEDS_CONFORMAL = frozenset({"set_size", "credibility", "top1_score"})


def statistic_names() -> list[str]:
    return sorted(STATISTICS)


def get_statistic(statistic):
    """(name, function) for a registry name or a user callable ``probs -> (n,)``."""
    if isinstance(statistic, str):
        if statistic not in STATISTICS:
            raise ValueError(f"unknown `statistic` {statistic!r}; valid names are: {', '.join(statistic_names())}, "
                             f"or a callable probs -> (n,) array")
        return statistic, STATISTICS[statistic]
    if not callable(statistic):
        raise TypeError(f"`statistic` must be a name or a callable probs -> (n,) array; got "
                        f"{type(statistic).__name__}")
    if getattr(statistic, "_uses_labels", False):
        raise TypeError("`statistic` uses the true label, which does not exist at prediction time; it is a research "
                        "comparison only (conformal.abstention.research) and cannot be used for abstention")
    try:
        sig = inspect.signature(statistic)
    except (TypeError, ValueError):  # builtins without a signature: accept, checked on output
        return getattr(statistic, "__name__", "callable"), statistic
    required = [p for p in sig.parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if len(required) != 1 or required[0].kind == inspect.Parameter.KEYWORD_ONLY:
        raise TypeError(f"a `statistic` callable must take exactly one required argument, the probabilities "
                        f"(n, K); got signature {sig}. A statistic cannot receive labels: none exist when the "
                        f"model is deployed")
    return getattr(statistic, "__name__", "callable"), statistic


def compute_statistic(fn, name, probs, conformal=None) -> np.ndarray:
    """Apply a statistic and check its output: finite float (n,)."""
    if name in STATISTICS and fn is STATISTICS[name]:
        return fn(probs, conformal)
    out = np.asarray(fn(probs))
    n = probs.shape[0]
    if out.shape != (n,):
        raise ValueError(f"the `statistic` callable must return shape ({n},); got {out.shape}")
    if out.dtype.kind not in "fiu":
        raise TypeError(f"the `statistic` callable must return real numbers; got dtype {out.dtype}")
    out = out.astype(np.float64, copy=False)
    if not np.isfinite(out).all():
        raise ValueError("the `statistic` callable returned NaN or inf")
    return out
