"""DualThresholdConformal: a conformal prediction set (qhat) plus an abstention threshold (tau) on a label-free
uncertainty statistic, both fitted on calibration data only.

How fit uses the calibration data (one seeded permutation, `random_state`):
  qhat fold (1 - abstain_fraction)   the conformal threshold of the sets;
  tau fold  (abstain_fraction)       the abstention threshold, by `rule`.
The folds are disjoint, so tau is chosen on data independent of qhat, and neither sees any test input.
For ``rule="accept_coverage"`` the roles turn: tau comes from the tau fold (or from the user), then qhat is
calibrated on the qhat-fold points that tau accepts, so the coverage guarantee holds *among accepted inputs*.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np

from conformal import _tensor
from conformal._base import (
    Array,
    BaseEstimator,
    Boolean,
    Callable,
    Float,
    InstanceOf,
    Int,
    Interval,
    Mapping,
    Nested,
    Optional,
    Options,
    Tuple,
    check_constraints,
    clone_params,
)
from conformal._kernels import statistics as _k
from conformal._validation import NotFittedError, as_array, check_is_fitted, check_labels, check_scores_matrix
from conformal.abstention import _tensor as _tstat
from conformal.abstention import combined as _comb
from conformal.abstention import rules as _rules
from conformal.abstention.decisions import Decisions
from conformal.abstention.fitted import FittedStatistic
from conformal.abstention.statistics import NEEDS_CONFORMAL, STATISTICS, compute_statistic, get_statistic
from conformal.calibrators import _SCORE, _SEED, SplitConformalClassifier
from conformal.io import StateError, register_kind
from conformal.metrics import ROCCurve, roc_curve, selective_risk
from conformal.scores import get_score
from conformal.utils import check_random_state

__all__ = ["DualThresholdConformal", "RULES", "TARGETS"]

TARGETS = ("error", "miscoverage")
# rule -> its parameters and their defaults
RULES = {
    "youden": {},
    "fpr": {"max_fpr": 0.1},
    "budget": {"max_abstain": 0.1},
    "selective_risk": {"delta": 0.1, "epsilon": 0.1, "max_candidates": 1000},
    "accept_coverage": {"tau": None, "tau_rule": "budget"},
}
_TAU_RULES = ("youden", "fpr", "budget")  # sub-rules allowed for accept_coverage
_PROBABILITY = [Interval(numbers.Real, 0, 1, closed="neither")]
# constraints of the rules' parameters, checked by validate_params like the estimator's own
RULE_PARAM_CONSTRAINTS = {
    "max_fpr": _PROBABILITY, "max_abstain": _PROBABILITY, "delta": _PROBABILITY, "epsilon": _PROBABILITY,
    "max_candidates": [Interval(numbers.Integral, 2, None, closed="left")],
    "tau": [None, Interval(numbers.Real, None, None, allow_inf=True)],
    "tau_rule": [Options(_TAU_RULES)],
}
_KERNEL_STATS = {STATISTICS["max_prob"]: _k.MAX_PROB, STATISTICS["margin"]: _k.MARGIN,
                 STATISTICS["entropy"]: _k.ENTROPY}
_CONVERT = {"max_fpr": float, "max_abstain": float, "delta": float, "epsilon": float, "max_candidates": int,
            "tau": lambda t: None if t is None else float(t), "tau_rule": str}


class _TauSpec:
    """tau_: a float (one statistic) or a float64 (m,) array (a tuple of statistics)."""

    def __call__(self, value, field):
        if isinstance(value, np.ndarray):
            return Array("f", 1)(value, field)
        return Float()(value, field)


class _FittedStatisticsSpec:
    """statistics_: None, or a tuple with a fitted FittedStatistic (or None for a softmax statistic) each."""

    def __call__(self, value, field):
        if value is None:
            return None
        if not isinstance(value, (tuple, list)) or not all(v is None or isinstance(v, FittedStatistic)
                                                           for v in value):
            raise StateError(f"saved field `{field}` must be a list of saved fitted statistics or nulls")
        for i, v in enumerate(value):
            if v is not None and not v.__sklearn_is_fitted__():
                raise StateError(f"saved field `{field}[{i}]` holds an unfitted {type(v).__name__}")
        return tuple(value)


def _validated_statistic(fn, name, p, conformal):
    """A statistic of rows that `fit` has already validated: the compiled statistics skip re-validation."""
    if fn in _KERNEL_STATS:
        return _k.statistic(p, _KERNEL_STATS[fn])
    return compute_statistic(fn, name, p, conformal)


class _TensorStatView:
    """One softmax statistic of a combined estimator, seen as `_tensor.statistic` reads a single one."""

    def __init__(self, est, spec):
        self._stat_fn, self.statistic_name_ = spec.fn, spec.name
        self.calibrator_ = self.statistic_calibrator_ = est.statistic_calibrator_


@register_kind
class DualThresholdConformal(BaseEstimator):
    """Conformal prediction sets with a second, abstention threshold on a label-free statistic.

    Parameters
    ----------
    score : str or Score
        Conformal score of the sets ("raps", "aps", "lac", "saps", "topk" or a `conformal.scores` object).
    score_params : dict or None
        Parameters of the score when `score` is a name (e.g. ``{"lam": 0.02}`` for RAPS).
    alpha : float in (0, 1)
        Miscoverage of the sets.
    statistic : str or callable
        Label-free uncertainty, larger = more uncertain: "max_prob", "margin", "entropy", "set_size",
        "credibility", "top1_score" (see `conformal.abstention.STATISTICS`), or a callable ``probs -> (n,)``
        taking the probabilities only.
    rule : str
        How tau is chosen: "youden", "fpr" (max_fpr), "budget" (max_abstain), "selective_risk" (delta,
        epsilon, max_candidates), "accept_coverage" (tau or tau_rule + its parameters).
    target : "error" or "miscoverage"
        The event abstention should catch: top-1 wrong, or true label outside the set. Defines ROC positives
        and the risk of ``rule="selective_risk"``.
    abstain_fraction : float in (0, 1)
        Fraction of the calibration data in the tau fold.
    random_state : int or None
        Seed of the fold split (the only randomness; sets are non-randomized).
    rule_params : dict or None
        Parameters of `rule` (defaults in `RULES`), e.g. ``{"max_abstain": 0.1}``; anything else is an error.

    Attributes
    ----------
    qhat_ : float               Conformal threshold of the sets.
    tau_ : float                Abstain iff statistic > tau_ (+inf: never, -inf: always).
    calibrator_ : SplitConformalClassifier   Makes the sets.
    statistic_calibrator_ : SplitConformalClassifier or None   The calibrator a statistic that needs one
                                (set_size, credibility, top1_score) or the miscoverage target reads; it is
                                `calibrator_` itself except for accept_coverage (the tau fold's own calibrator).
    statistic_name_ : str       Name of the statistic (a callable's __name__).
    rule_params_ : dict         The rule's parameters with defaults filled in.
    n_calibration_, n_qhat_fold_, n_tau_fold_ : int   Fold sizes.
    n_accepted_calibration_ : int     accept_coverage only: qhat-fold points left after abstention.
    roc_ : ROCCurve or None     ROC of the statistic vs the target on the tau fold (fpr, tpr, taus, auc).
    tau_fold_abstention_rate_ : float
    tau_fold_selective_risk_ : tuple (risk, lower, upper, n_accepted), Clopper-Pearson 95 % on the tau fold.
    ltt_ : dict or None         selective_risk only: the candidates tested in order, accepted counts, events,
                                p-values, and n_min (fewest accepted points that can certify delta).

    Notes
    -----
    Guarantees assume calibration and test data are exchangeable (none holds under distribution shift):
    the sets cover with probability >= 1 - alpha (all rules but accept_coverage: marginally; accept_coverage:
    among accepted inputs); "budget" abstains with probability <= max_abstain; "fpr" abstains on a negative
    with probability <= max_fpr; "selective_risk" has P(risk among accepted > delta) <= epsilon; "youden"
    guarantees nothing about tau. See docs/abstention.md.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> logits = 3 * rng.normal(size=(4000, 10))
    >>> probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    >>> labels = np.array([rng.choice(10, p=row) for row in probs])
    >>> model = DualThresholdConformal(score="aps", alpha=0.1, statistic="entropy", rule="selective_risk",
    ...                                rule_params={"delta": 0.2, "epsilon": 0.1},
    ...                                random_state=0).fit(probs[:2000], labels[:2000])
    >>> d = model.predict(probs[2000:])
    >>> bool(0.0 < d.abstention_rate < 1.0), d.sets.shape
    (True, (2000, 10))
    """

    _parameter_constraints = {
        "score": _SCORE,
        "score_params": [None, InstanceOf(dict)],
        "alpha": [Interval(numbers.Real, 0, 1, closed="neither")],
        "statistic": [InstanceOf(str), Callable("a callable probs -> (n,) array"),
                      InstanceOf(FittedStatistic, description="a fitted-statistic object (KNNDistance(), ...)"),
                      InstanceOf(tuple, description="a tuple of statistics (the union rule)")],
        "level_split": [None, InstanceOf(tuple, description="a tuple of weights summing to 1")],
        "rule": [Options(tuple(RULES), registry="rules")],
        "rule_params": [None, InstanceOf(dict)],
        "target": [Options(TARGETS)],
        "abstain_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "random_state": _SEED,
        "randomized": [Boolean(), Options(("auto",))],
        "allow_empty": [Boolean(), Options(("auto",))],
    }
    _nested_params = {"score": "score_params", "rule": "rule_params"}
    _fitted_marker = "tau_"
    _fitted_attributes = {
        "calibrator_": Nested(SplitConformalClassifier),
        "statistic_calibrator_": Optional(Nested(SplitConformalClassifier)),
        "tau_": _TauSpec(),
        "statistics_": _FittedStatisticsSpec(),
        "n_calibration_": Int(4), "n_classes_": Int(2), "n_qhat_fold_": Int(2, maximum="n_calibration"),
        "n_tau_fold_": Int(0, maximum="n_calibration"),
        "n_accepted_calibration_": Optional(Int(1, maximum="n_qhat_fold")),
        "roc_": Optional(Nested(ROCCurve)),
        "ltt_": Optional(Mapping({"taus": Array("f", 1),
                                  "n_accepted": Array("i", 1, shape=("taus",), low=0, high="n_tau_fold"),
                                  "n_events": Array("i", 1, shape=("taus",), low=0, high="n_accepted"),
                                  "pvalues": Array("f", 1, shape=("taus",), low=0.0, high=1.0), "n_min": Int(1)})),
        "tau_fold_abstention_rate_": Float(allow_nan=True, low=0.0, high=1.0),
        "tau_fold_selective_risk_": Tuple(Float(allow_nan=True, low=0.0, high=1.0), Float(low=0.0, high=1.0),
                                          Float(low=0.0, high=1.0), Int(0, maximum="n_tau_fold")),
    }
    _derived_attributes = ("qhat_", "score_", "statistic_name_", "statistic_names_", "rule_params_")

    def __init__(self, *, score="raps", score_params: dict | None = None, alpha: float = 0.1,
                 statistic="entropy", rule: str = "youden", rule_params: dict | None = None, target: str = "error",
                 abstain_fraction: float = 0.5, random_state=None, level_split: tuple | None = None,
                 randomized="auto", allow_empty="auto"):
        self.score = score
        self.score_params = score_params
        self.alpha = alpha
        self.statistic = statistic
        self.rule = rule
        self.rule_params = rule_params
        self.target = target
        self.abstain_fraction = abstain_fraction
        self.random_state = random_state
        self.level_split = level_split
        self.randomized = randomized
        self.allow_empty = allow_empty

    # --- parameters ----------------------------------------------------------------------------------------
    def _resolved_rule_params(self) -> dict:
        """The rule's parameters with defaults filled in, each checked against RULE_PARAM_CONSTRAINTS."""
        rule, given = self.rule, dict(self.rule_params or {})
        allowed = dict(RULES[rule])
        if rule == "accept_coverage":
            sub = given.get("tau_rule", "budget")
            check_constraints("tau_rule", sub, RULE_PARAM_CONSTRAINTS["tau_rule"])
            allowed.update(RULES[sub])
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise TypeError(f"unknown parameter(s) {unknown} for rule={rule!r}; allowed: {sorted(allowed) or 'none'}")
        params = {**allowed, **given}
        for name, value in params.items():
            check_constraints(name, value, RULE_PARAM_CONSTRAINTS[name])
        return {name: _CONVERT[name](value) for name, value in params.items()}

    def _check_dependent_params(self) -> None:
        get_score(self.score, **(self.score_params or {}))
        if _comb.is_combined(self.statistic):
            specs = _comb.resolve_statistics(self.statistic)
            multi = isinstance(self.statistic, tuple) and len(specs) > 1
            allowed = _comb.MULTI_RULES if multi else (*_comb.MULTI_RULES, "youden")
            if self.rule not in allowed:
                what = "several statistics" if multi else f"the fitted statistic {specs[0].name!r}"
                raise ValueError(f"`rule` {self.rule!r} is not available with {what}; use one of "
                                 f"{', '.join(map(repr, allowed))}")
            if self.level_split is not None:
                _comb.level_weights(self.level_split, len(specs))
        else:
            get_statistic(self.statistic)
            if self.level_split is not None:
                raise ValueError("`level_split` applies to a tuple of statistics only; got one statistic")
        self._resolved_rule_params()

    def required_side_inputs(self) -> tuple:
        """The side inputs ("features", "logits", "inputs") that fit and predict need for `statistic`."""
        self.validate_params()
        if not _comb.is_combined(self.statistic):
            return ()
        need = {spec.requires for spec in _comb.resolve_statistics(self.statistic)} - {None}
        return tuple(s for s in _comb.SIDE_INPUTS if s in need)

    # --- fit -----------------------------------------------------------------------------------------------
    def _events(self, p, y, calibrator):
        if self.target == "error":
            return np.argmax(p, axis=1) != y
        sets = calibrator.predict_sets(p)
        return ~sets[np.arange(p.shape[0]), y]

    def _folds(self, n: int, split: bool):
        """(tau-fold indices, qhat-fold indices), both sorted; no tau fold when tau is fixed and needs no data."""
        if not split:
            return np.empty(0, np.int64), np.arange(n)
        frac = float(self.abstain_fraction)
        n_tau = int(round(frac * n))
        if n_tau < 2 or n - n_tau < 2:
            raise ValueError(f"abstain_fraction={frac} splits {n} calibration points into a tau fold of {n_tau} "
                             f"and a qhat fold of {n - n_tau}; each fold needs at least 2 (use more data)")
        perm = check_random_state(self.random_state, "random_state").permutation(n)
        return np.sort(perm[:n_tau]), np.sort(perm[n_tau:])

    def fit(self, probs, labels, *, features=None, logits=None, inputs=None) -> "DualThresholdConformal":
        """Fit qhat and tau on calibration (probs, labels) that the model was not trained on; returns self.

        `features`, `logits`, `inputs`: the side inputs of fitted statistics (knn, mahalanobis: features;
        energy: logits; input_quality: inputs), one row per row of `probs`; ignored by softmax statistics."""
        self.validate_params()
        if _comb.is_combined(self.statistic):
            return self._fit_combined(probs, labels, {"features": features, "logits": logits, "inputs": inputs})
        score = clone_params(get_score(self.score, **(self.score_params or {})))
        stat_name, stat_fn = get_statistic(self.statistic)
        params = self._resolved_rule_params()
        p = check_scores_matrix(probs, "probs")
        y = check_labels(labels, p.shape[0], p.shape[1])
        needs_cal_for_stat = stat_name in NEEDS_CONFORMAL and stat_fn is STATISTICS.get(stat_name)
        if needs_cal_for_stat and stat_name in ("top1_score", "credibility") and score.name != "lac":
            warnings.warn(f"statistic={stat_name!r} with score={score.name!r}: the top-1 label's non-randomized "
                          f"{score.name} score is (at least) its own probability, so this statistic grows with "
                          f"confidence, not uncertainty; prefer score='lac' for it, or another statistic",
                          UserWarning, stacklevel=2)
        split = not (self.rule == "accept_coverage" and params["tau"] is not None and not needs_cal_for_stat)
        idx_tau, idx_q = self._folds(p.shape[0], split)
        folds = (p[idx_q], y[idx_q], p[idx_tau], y[idx_tau])
        stat = (stat_fn, stat_name)
        if self.rule != "accept_coverage":
            out = self._fit_sets_then_tau(score, stat, params, *folds)
        else:
            out = self._fit_tau_then_sets(score, stat, params, split and (needs_cal_for_stat
                                                                          or self.target == "miscoverage"), *folds)
        cal, stat_cal, tau, ltt, stat_t, events_t, n_acc = out
        self._stat_fn = stat_fn
        self.statistic_name_ = stat_name
        self.statistic_names_ = (stat_name,)
        self.rule_params_ = params
        self.calibrator_ = cal
        self.statistic_calibrator_ = stat_cal
        self._rebuild_from_calibrator()
        self.n_calibration_, self.n_classes_ = int(p.shape[0]), int(p.shape[1])
        self.n_qhat_fold_, self.n_tau_fold_ = int(idx_q.shape[0]), int(idx_tau.shape[0])
        self.n_accepted_calibration_ = n_acc
        self.ltt_ = ltt
        self._set_tau_fold_summary(stat_t, events_t, tau)
        self.tau_ = float(tau)
        self.statistics_ = None
        return self

    def _fit_combined(self, probs, labels, side) -> "DualThresholdConformal":
        """Fitted and/or several statistics: the statistics are fitted on the qhat fold, each threshold is the
        rule's conformal quantile on the tau fold at its share of the level (conformal.abstention.combined)."""
        score = clone_params(get_score(self.score, **(self.score_params or {})))
        specs = _comb.resolve_statistics(self.statistic)
        params = self._resolved_rule_params()
        p = check_scores_matrix(probs, "probs")
        y = check_labels(labels, p.shape[0], p.shape[1])
        _comb.check_side_inputs(specs, side, p.shape[0], "fit")
        idx_tau, idx_q = self._folds(p.shape[0], True)
        cal = self._calibrate(score, p[idx_q], y[idx_q])
        fitted = _comb.fit_statistics(specs, side, idx_q, y[idx_q])
        stats_t = _comb.statistic_matrix(specs, fitted, p, side, idx_tau,
                                         lambda fn, name, rows: _validated_statistic(fn, name, rows, cal))
        events_t = self._events(p[idx_tau], y[idx_tau], cal)
        m = len(specs)
        if self.rule == "youden":
            taus = np.array([_rules.youden_tau(stats_t[:, 0], events_t)[0]])
        else:
            w = _comb.level_weights(self.level_split, m)
            if self.rule == "budget":
                taus = np.array([_rules.budget_tau(stats_t[:, j], w[j] * params["max_abstain"]) for j in range(m)])
            else:
                taus = np.array([_rules.fpr_tau(stats_t[:, j], events_t, w[j] * params["max_fpr"])
                                 for j in range(m)])
        self.rule_params_ = params
        self.calibrator_ = cal
        self.statistic_calibrator_ = cal
        self._rebuild_from_calibrator()
        self._set_names(specs)
        self.n_calibration_, self.n_classes_ = int(p.shape[0]), int(p.shape[1])
        self.n_qhat_fold_, self.n_tau_fold_ = int(idx_q.shape[0]), int(idx_tau.shape[0])
        self.n_accepted_calibration_ = None
        self.ltt_ = None
        self.statistics_ = fitted
        abstain_t = (stats_t > taus[None, :]).any(axis=1)
        if m == 1:
            self._set_tau_fold_summary(stats_t[:, 0], events_t, float(taus[0]))
        else:
            self.roc_ = None  # a union of thresholds is no single ROC curve
            self.tau_fold_abstention_rate_ = float(abstain_t.mean())
            self.tau_fold_selective_risk_ = selective_risk(events_t, abstain_t)
        self.tau_ = taus.astype(np.float64) if isinstance(self.statistic, tuple) else float(taus[0])
        return self

    def _set_names(self, specs) -> None:
        self._specs = specs
        self.statistic_names_ = tuple(s.name for s in specs)
        self.statistic_name_ = "|".join(self.statistic_names_)

    def _calibrate(self, score, p, y) -> SplitConformalClassifier:
        # the sets' mode and, for randomized sets, their seed (random_state) go to the set calibrator
        return SplitConformalClassifier(score=score, alpha=self.alpha, randomized=self.randomized,
                                        allow_empty=self.allow_empty, random_state=self.random_state).fit(p, y)

    def _fit_sets_then_tau(self, score, stat, params, p_q, y_q, p_t, y_t):
        """youden / fpr / budget / selective_risk: qhat on the qhat fold, then tau on the tau fold."""
        cal = self._calibrate(score, p_q, y_q)
        stat_t = _validated_statistic(*stat, p_t, cal)
        events_t = self._events(p_t, y_t, cal)
        tau, ltt = self._choose_tau(self.rule, params, stat_t, events_t, (p_q, y_q, cal, stat))
        return cal, cal, tau, ltt, stat_t, events_t, None

    def _fit_tau_then_sets(self, score, stat, params, own_calibrator, p_q, y_q, p_t, y_t):
        """accept_coverage: tau from the tau fold (or given), then qhat on the qhat-fold points tau accepts."""
        stat_cal = self._calibrate(score, p_t, y_t) if own_calibrator else None
        if params["tau"] is not None:
            tau, stat_t, events_t = params["tau"], None, None
        else:
            stat_t = _validated_statistic(*stat, p_t, stat_cal)
            events_t = self._events(p_t, y_t, stat_cal)
            tau, _ = self._choose_tau(params["tau_rule"], params, stat_t, events_t, None)
        accepted = _validated_statistic(*stat, p_q, stat_cal) <= tau
        n_acc = int(accepted.sum())
        if n_acc == 0:
            raise ValueError(f"tau={tau} accepts none of the {p_q.shape[0]} qhat-fold calibration points, so no "
                             f"coverage among accepted inputs can be calibrated; raise tau or use more data")
        cal = self._calibrate(score, p_q[accepted], y_q[accepted])
        return cal, stat_cal, tau, None, stat_t, events_t, n_acc

    def _set_tau_fold_summary(self, stat_t, events_t, tau) -> None:
        if stat_t is None:
            self.roc_ = None
            self.tau_fold_abstention_rate_ = float("nan")
            self.tau_fold_selective_risk_ = (float("nan"), 0.0, 1.0, 0)
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one-class folds were already warned about by the rule
            self.roc_ = roc_curve(stat_t, events_t)
        abstain_t = stat_t > tau
        self.tau_fold_abstention_rate_ = float(abstain_t.mean())
        self.tau_fold_selective_risk_ = selective_risk(events_t, abstain_t)

    def _choose_tau(self, rule, params, stat_t, events_t, reference):
        """(tau, Learn-then-Test table or None) by `rule`. `reference` = (probs, labels, calibrator, statistic)
        of the qhat fold, which orders the selective_risk candidates."""
        if rule == "youden":
            return _rules.youden_tau(stat_t, events_t)[0], None
        if rule == "fpr":
            return _rules.fpr_tau(stat_t, events_t, params["max_fpr"]), None
        if rule == "budget":
            return _rules.budget_tau(stat_t, params["max_abstain"]), None
        return self._selective_risk_tau(params, stat_t, events_t, reference)

    def _selective_risk_tau(self, params, stat_t, events_t, reference):
        """The candidate grid and the testing order come from the qhat fold (statistic and target events there),
        which is independent of the tau fold; the tests themselves use only the tau fold."""
        p_ref, y_ref, stat_cal, stat = reference
        delta, eps = params["delta"], params["epsilon"]
        n_min = _rules.min_accepted_to_certify(delta, eps)
        n_t = stat_t.shape[0]
        if n_t < n_min:
            raise ValueError(f"the tau fold has {n_t} points, but certifying selective risk <= {delta} with "
                             f"probability {1 - eps} needs at least {n_min} accepted points; use more calibration "
                             f"data, a larger abstain_fraction, or a larger delta/epsilon")
        ref = _validated_statistic(*stat, p_ref, stat_cal)
        grid = _rules.candidate_grid(ref, params["max_candidates"])
        order = _rules.testing_order(grid, ref, self._events(p_ref, y_ref, stat_cal), n_t, delta)
        tau, table = _rules.ltt_fixed_sequence(stat_t, events_t, grid[order], delta, eps)
        if tau == -np.inf:
            warnings.warn(f"no abstention threshold certifies selective risk <= {delta} with probability {1 - eps} "
                          f"on {n_t} tau-fold points: abstaining on every input", UserWarning, stacklevel=5)
        return tau, {**table, "n_min": n_min}

    # --- predict -------------------------------------------------------------------------------------------
    def _statistic(self, p, sets):
        """The fitted statistic of validated rows `p` (`sets`: their sets when already computed, else None)."""
        fn = self._stat_fn
        if fn is STATISTICS["set_size"] and self.statistic_calibrator_ is self.calibrator_:
            if sets is None:
                sets = self.calibrator_.predict_sets(p)
            return sets.sum(axis=1).astype(np.float64)
        if fn in _KERNEL_STATS:
            return _k.statistic(p, _KERNEL_STATS[fn])
        return compute_statistic(fn, self.statistic_name_, p, self.statistic_calibrator_)

    def _combined_matrix(self, p, side) -> np.ndarray:
        _comb.check_side_inputs(self._specs, side, p.shape[0], "predict")
        cal = self.statistic_calibrator_
        return _comb.statistic_matrix(self._specs, self.statistics_, p, side, None,
                                      lambda fn, name, rows: _validated_statistic(fn, name, rows, cal))

    def statistic_of(self, probs, *, features=None, logits=None, inputs=None) -> np.ndarray:
        """The fitted label-free statistic (n,) of new inputs, exactly as `predict` compares it with tau_
        (a tuple of statistics: (n, m), one column per statistic). A torch tensor gives a float64 tensor on its
        device."""
        check_is_fitted(self, "tau_")
        side = None if self.statistics_ is None else {"features": features, "logits": logits, "inputs": inputs}
        if _tensor.is_tensor(probs):
            x = _tensor.check_tensor(probs, "probs", self.n_classes_)
            if not _tensor.on_host(x):  # on the tensor's device, as predict computes it
                d = self._predict_tensor(x, side)
                return d.statistics if d.statistics is not None else d.statistic
            # a CPU tensor: the host kernels on its shared view, the result shared back as a tensor
            p = check_scores_matrix(_tensor.host_view(x), "probs", n_classes=self.n_classes_)
            return _tensor.from_host(x, self._host_statistic(p, side))
        return self._host_statistic(check_scores_matrix(probs, "probs", n_classes=self.n_classes_), side)

    def _host_statistic(self, p, side) -> np.ndarray:
        if side is not None:
            mat = self._combined_matrix(p, side)
            return mat if isinstance(self.statistic, tuple) else mat[:, 0]
        return self._statistic(p, None)

    def predict(self, probs, *, features=None, logits=None, inputs=None) -> Decisions:
        """Decisions for new inputs: sets, abstain flags, top-1 predictions and the statistic. Takes no labels,
        never modifies the estimator (one fitted object can serve several threads). `features`, `logits`,
        `inputs`: the side inputs the fitted statistics need (see `fit`); ignored otherwise. A torch tensor
        `probs` gives Decisions of tensors on its device: a CUDA tensor's computed there, a CPU tensor's by the
        host kernels on its shared view (docs/architecture.md)."""
        check_is_fitted(self, "tau_")
        side = None if self.statistics_ is None else {"features": features, "logits": logits, "inputs": inputs}
        if _tensor.is_tensor(probs):
            x = _tensor.check_tensor(probs, "probs", self.n_classes_)
            if _tensor.on_host(x):  # the NumPy path's arrays, shared back as CPU tensors (not frozen: tensors
                # cannot be read-only, and these arrays belong to the caller alone)
                fields = self._host_decisions(_tensor.host_view(x), side)
                return Decisions(**{k: v if k == "reason_names" else _tensor.from_host(x, v)
                                    for k, v in fields.items()})
            return self._predict_tensor(x, side)  # on its device (conformal/abstention/_tensor.py)
        fields = self._host_decisions(as_array(probs, "probs"), side)
        for k, v in fields.items():
            if k != "reason_names":
                v.setflags(write=False)
        return Decisions(**fields)

    def _host_decisions(self, p, side) -> dict:
        """The Decisions fields of host rows `p` (validated by the calibrator: type, shape, class count,
        finiteness, range, row sums, once; the statistic kernels then read the same view)."""
        sets = self.calibrator_.predict_sets(p)
        prediction = np.argmax(p, axis=1).astype(np.int64, copy=False)
        if side is None:
            stat = self._statistic(p, sets)
            return {"sets": sets, "abstain": stat > self.tau_, "prediction": prediction, "statistic": stat}
        mat = self._combined_matrix(p, side)
        hits = mat > np.atleast_1d(np.asarray(self.tau_, dtype=np.float64))[None, :]
        out = {"sets": sets, "abstain": hits.any(axis=1), "prediction": prediction,
               "statistic": np.ascontiguousarray(mat[:, 0])}
        if isinstance(self.statistic, tuple):
            out.update(reasons=hits, reason_names=self.statistic_names_, statistics=mat)
        return out

    def _predict_tensor(self, x, side) -> Decisions:
        """predict for a checked tensor: sets, statistic, abstain flags and top-1 labels computed with the
        tensor's methods on its device and returned there (fitted statistics read their side inputs on the host)."""
        sets = self.calibrator_.predict_sets(x)  # validates the values (one boolean comes back)
        prediction = x.argmax(dim=1)
        if side is None:
            stat = _tstat.statistic(self, x, sets, prediction)
            return Decisions(sets=sets, abstain=stat > self.tau_, prediction=prediction, statistic=stat)
        mat = self._combined_tensor(x, side, sets, prediction)
        taus = _tensor._f64(x, np.atleast_1d(np.asarray(self.tau_, dtype=np.float64)))
        hits = mat > taus[None, :]
        extra = {}
        if isinstance(self.statistic, tuple):
            extra = {"reasons": hits, "reason_names": self.statistic_names_, "statistics": mat}
        return Decisions(sets=sets, abstain=hits.any(dim=1), prediction=prediction, statistic=mat[:, 0].contiguous(),
                         **extra)

    def _combined_tensor(self, x, side, sets, prediction):
        """(n, m) float64 on x's device: softmax statistics computed there, fitted ones on the host and sent."""
        _comb.check_side_inputs(self._specs, side, x.shape[0], "predict")
        cols = []
        for spec, est in zip(self._specs, self.statistics_):
            if est is None:
                one = _TensorStatView(self, spec)
                cols.append(_tstat.statistic(one, x, sets, prediction))
            else:
                cols.append(_tensor._f64(x, np.asarray(est.statistic(side[spec.requires]), dtype=np.float64)))
        mat = x.new_empty((x.shape[0], len(cols))).double()
        for j, col in enumerate(cols):
            mat[:, j] = col
        return mat

    # --- persistence (the generic path of conformal._base) ---------------------------------------------------
    def _rebuild_from_calibrator(self) -> None:
        self.score_ = self.calibrator_.score_
        self.qhat_ = float(self.calibrator_.qhat_)

    def _rebuild(self) -> None:
        if _comb.is_combined(self.statistic):
            self._set_names(_comb.resolve_statistics(self.statistic))
        else:
            self.statistic_name_, self._stat_fn = get_statistic(self.statistic)
            self.statistic_names_ = (self.statistic_name_,)
        self.rule_params_ = self._resolved_rule_params()
        self._rebuild_from_calibrator()

    @classmethod
    def _from_state(cls, state, where: str):
        fitted = state.get("fitted") if isinstance(state, dict) else None
        if isinstance(fitted, dict) and "statistics" not in fitted:  # saved before fitted statistics existed
            state = {**state, "fitted": {**fitted, "statistics": None}}
        # saved before `randomized` / `allow_empty` were parameters: take them from the set calibrator
        try:
            params, cal = state["params"], state["fitted"]["calibrator"]["params"]
            missing = {k: cal[k] for k in ("randomized", "allow_empty") if k not in params and k in cal}
        except (KeyError, TypeError):
            missing = {}
        if missing:
            state = {**state, "params": {**params, **missing}}
        return super()._from_state(state, where)

    def _check_fitted_state(self) -> None:
        cal = self.calibrator_
        if _comb.is_combined(self.statistic):
            specs, fitted = self._specs, self.statistics_
            if fitted is None or len(fitted) != len(specs):
                raise StateError(f"saved field `statistics` must hold {len(specs)} entries, one per statistic")
            for spec, est in zip(specs, fitted):
                if (spec.template is None) != (est is None) or (est is not None and (
                        type(est) is not type(spec.template) or est.get_params() != spec.template.get_params())):
                    raise StateError(f"saved field `statistics` does not match the statistic {spec.name!r}")
            tau = self.tau_
            if isinstance(self.statistic, tuple) != isinstance(tau, np.ndarray) or np.shape(tau) not in \
                    ((), (len(specs),)):
                want = f"an array of {len(specs)} thresholds" if isinstance(self.statistic, tuple) else "a number"
                raise StateError(f"saved field `tau` must be {want}")
        elif self.statistics_ is not None or not isinstance(self.tau_, float):
            raise StateError("saved fields `statistics` must be null and `tau` a number for this statistic")
        if cal.n_classes_ != self.n_classes_:
            raise StateError(f"saved field `calibrator` has {cal.n_classes_} classes; `n_classes` says "
                             f"{self.n_classes_}")
        if cal.alpha != self.alpha or cal.score_ != get_score(self.score, **(self.score_params or {})) \
                or (cal.randomized, cal.allow_empty) != (self.randomized, self.allow_empty):
            raise StateError("saved field `calibrator` was not fitted with this estimator's score, alpha, "
                             "randomized and allow_empty")
        if self.n_qhat_fold_ + self.n_tau_fold_ != self.n_calibration_:
            raise StateError("saved fields `n_qhat_fold` + `n_tau_fold` must equal `n_calibration`")
        accept = self.rule == "accept_coverage"
        n_cal_expected = self.n_accepted_calibration_ if accept else self.n_qhat_fold_
        if (self.n_accepted_calibration_ is None) == accept or cal.n_calibration_ != n_cal_expected:
            raise StateError("saved fields `n_accepted_calibration` and `calibrator` do not match the rule "
                             f"{self.rule!r}")
        if not accept and self.statistic_calibrator_ is not cal:
            raise StateError(f"saved field `statistic_calibrator` must be the `calibrator` for rule={self.rule!r}")
        if (self.ltt_ is not None) != (self.rule == "selective_risk"):
            raise StateError("saved field `ltt` must be present exactly for rule='selective_risk'")

    @classmethod
    def _upgrade_state(cls, version: int, payload: dict) -> dict:
        """Schema 1: score by name + score_params, the statistic calibrator as None / "same" / a state, the ROC
        curve and the tau-fold risk as plain dict and list."""
        if version != 1:
            return super()._upgrade_state(version, payload)
        try:
            params, f = dict(payload["params"]), dict(payload["fitted"])
            params["score_params"] = dict(params["score_params"]) or None
            params["rule_params"] = dict(params["rule_params"]) or None

            def nested(state):
                return {"__estimator__": "SplitConformalClassifier",
                        **SplitConformalClassifier._upgrade_state(1, state)}

            sc = f.pop("stat_calibrator")
            f["statistic_calibrator"] = (None if sc is None else {"__same_as__": "calibrator"} if sc == "same"
                                         else nested(sc))
            f["calibrator"] = nested(f["calibrator"])
            if f["roc"] is not None:
                f["roc"] = {"__record__": "ROCCurve", "fields": dict(f["roc"])}
            f["tau_fold_selective_risk"] = {"__tuple__": list(f["tau_fold_selective_risk"])}
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"saved DualThresholdConformal state (schema_version 1) is malformed: {exc}") from None
        return {"params": params, "fitted": f}


NotFittedError = NotFittedError
