"""Several label-free statistics in one abstention rule (the union rule), and the registry of fitted statistics.

`DualThresholdConformal(statistic=("entropy", "knn"), rule="budget", max_abstain=0.1)` abstains when ANY
statistic exceeds its own threshold. Each statistic j gets the level w_j * level (the rule's max_abstain or
max_fpr; w = `level_split`, equal weights by default, sum 1), and its threshold is the conformal quantile of its
tau-fold values at that level. By the union (Bonferroni) bound, on data exchangeable with the calibration data

    P(abstain) <= sum_j P(s_j > tau_j) <= sum_j w_j max_abstain = max_abstain       (rule="budget")

and the same for P(abstain | negative) <= max_fpr (rule="fpr"). The bound is conservative: when the statistics
agree (entropy and max_prob), the union abstains less than the level; when they are independent, close to it.
Fitted statistics (knn, mahalanobis, energy, input_quality) are fitted on the qhat fold, which the tau fold never
sees, so the tau fold's values stay exchangeable with the test values given the fitted state. None of this holds
under distribution shift: the union only makes abstention *react* to shift (docs/abstention.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from conformal._base import clone_params
from conformal.abstention.fitted import SIDE_INPUTS, Energy, FittedStatistic, KNNDistance, Mahalanobis
from conformal.abstention.quality import InputQuality
from conformal.abstention.statistics import STATISTICS, get_statistic

__all__ = ["FITTED_STATISTICS", "StatisticSpec", "resolve_statistics", "is_combined", "take_rows",
           "check_side_inputs"]

FITTED_STATISTICS = {"knn": KNNDistance, "mahalanobis": Mahalanobis, "energy": Energy,
                     "input_quality": InputQuality}
MULTI_RULES = ("budget", "fpr")  # rules with a union bound; "youden" too, for a single fitted statistic


@dataclass(frozen=True)
class StatisticSpec:
    """One resolved statistic: a softmax function (`fn`) or an unfitted fitted-statistic template."""

    name: str
    fn: object = None
    template: FittedStatistic | None = None

    @property
    def requires(self) -> str | None:
        return None if self.template is None else self.template.requires


def is_combined(statistic) -> bool:
    """True when `statistic` goes through the union / fitted-statistic path (a tuple, or a fitted statistic)."""
    return isinstance(statistic, tuple) or isinstance(statistic, FittedStatistic) or \
        (isinstance(statistic, str) and statistic in FITTED_STATISTICS)


def _resolve_one(s, where: str) -> StatisticSpec:
    if isinstance(s, FittedStatistic):
        s.validate_params()
        return StatisticSpec(s.name, template=s)
    if isinstance(s, str) and s in FITTED_STATISTICS:
        return StatisticSpec(s, template=FITTED_STATISTICS[s]())
    if isinstance(s, str) and s not in STATISTICS:
        raise ValueError(f"unknown `{where}` {s!r}; valid names are: "
                         f"{', '.join(sorted([*STATISTICS, *FITTED_STATISTICS]))}, a fitted statistic object "
                         f"(conformal.abstention.KNNDistance(...), ...) or a callable probs -> (n,) array")
    name, fn = get_statistic(s)
    return StatisticSpec(name, fn=fn)


def resolve_statistics(statistic) -> list[StatisticSpec]:
    """The statistics of a `statistic` parameter (a tuple or one of them), validated; names must be distinct."""
    if isinstance(statistic, tuple):
        if len(statistic) == 0:
            raise ValueError("`statistic` must name at least one statistic; got an empty tuple")
        specs = [_resolve_one(s, f"statistic[{i}]") for i, s in enumerate(statistic)]
    else:
        specs = [_resolve_one(statistic, "statistic")]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"`statistic` lists a statistic twice: {names}; each needs its own name")
    return specs


def check_side_inputs(specs, side: dict, n: int, where: str) -> None:
    """Every side input a statistic needs is given, with one item per row of `probs`."""
    for spec in specs:
        req = spec.requires
        if req is None:
            continue
        value = side.get(req)
        if value is None:
            hint = {"features": "the model's penultimate features, e.g. CameraClassifier.predict_outputs(x).features",
                    "logits": "the model's logits, e.g. CameraClassifier.predict_outputs(x).logits",
                    "inputs": "the raw sensor inputs (uint8 images or point clouds)"}[req]
            raise ValueError(f"statistic {spec.name!r} needs `{req}=` in {where} ({hint}); got None")
        try:
            length = len(value)
        except TypeError:
            raise TypeError(f"`{req}` must be an array or a list with one item per row of `probs`; got "
                            f"{type(value).__name__}") from None
        if length != n:
            raise ValueError(f"`{req}` has {length} rows but `probs` has {n}; give one per input")


def take_rows(value, idx: np.ndarray):
    """Rows `idx` of an array, or items of a list (for `inputs` of variable-size images / clouds)."""
    if isinstance(value, (list, tuple)):
        return [value[i] for i in idx]
    return np.asarray(value)[idx] if not isinstance(value, np.ndarray) else value[idx]


def fit_statistics(specs, side: dict, idx_fit: np.ndarray, labels_fit: np.ndarray) -> tuple:
    """Clone and fit each fitted statistic on rows `idx_fit` (the qhat fold); None for softmax statistics."""
    out = []
    for spec in specs:
        if spec.template is None:
            out.append(None)
            continue
        est = clone_params(spec.template)
        x = take_rows(side[spec.requires], idx_fit)
        est.fit(x, labels_fit if est.fit_uses_labels else None)
        out.append(est)
    return tuple(out)


def statistic_matrix(specs, fitted: tuple, p, side: dict, rows, softmax_fn) -> np.ndarray:
    """float64 (n, m): every statistic of rows `rows` (None: all) of `p` and the side inputs.

    `softmax_fn(fn, name, p_rows)` computes a softmax statistic (the estimator passes its calibrator)."""
    cols = []
    for spec, est in zip(specs, fitted):
        if est is None:
            cols.append(softmax_fn(spec.fn, spec.name, p if rows is None else p[rows]))
        else:
            x = side[spec.requires]
            cols.append(np.asarray(est.statistic(x if rows is None else take_rows(x, rows)), dtype=np.float64))
    return np.column_stack(cols)


def level_weights(level_split, m: int) -> np.ndarray:
    """The weights w_j (sum 1) that split the rule's level across m statistics (equal: Bonferroni)."""
    if level_split is None:
        return np.full(m, 1.0 / m)
    w = np.asarray(level_split, dtype=np.float64)
    if w.shape != (m,) or not np.all(w > 0) or not np.isfinite(w).all() or abs(w.sum() - 1.0) > 1e-9:
        raise ValueError(f"`level_split` must hold {m} positive weights summing to 1 (one per statistic); got "
                         f"{level_split!r}")
    return w


SIDE_INPUTS = SIDE_INPUTS
