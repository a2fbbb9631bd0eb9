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
import os
import warnings

import numpy as np

from conformal._validation import (NotFittedError, as_array, check_alpha, check_is_fitted, check_labels, check_positive_int,
                                   check_scores_matrix)
from conformal.abstention import _kernels as _k
from conformal.abstention import rules as _rules
from conformal.abstention.curves import ROCCurve, roc_curve, selective_risk
from conformal.abstention.decisions import Decisions
from conformal.abstention.statistics import NEEDS_CONFORMAL, STATISTICS, compute_statistic, get_statistic
from conformal.calibrators import SplitConformalClassifier
from conformal.io import load_state, register_kind, save_state
from conformal.scores import get_score

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
_KERNEL_STATS = {STATISTICS["max_prob"]: _k.MAX_PROB, STATISTICS["margin"]: _k.MARGIN,
                 STATISTICS["entropy"]: _k.ENTROPY}


def _validated_statistic(fn, name, p, conformal):
    """A statistic of rows that `fit` has already validated: the compiled statistics skip re-validation."""
    if fn in _KERNEL_STATS:
        return _k.statistic(p, _KERNEL_STATS[fn])
    return compute_statistic(fn, name, p, conformal)


def _prob_param(value, name, *, open_low=True):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a float in (0, 1); got {type(value).__name__}")
    value = float(value)
    if not 0.0 < value < 1.0:
        raise ValueError(f"`{name}` must be in (0, 1); got {value}")
    return value


@register_kind
class DualThresholdConformal:
    """Conformal prediction sets with a second, abstention threshold on a label-free statistic.

    Parameters
    ----------
    score : str or Score
        Conformal score of the sets ("raps", "aps", "lac", "saps", "topk" or a `conformal.scores` object).
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
    **rule_params
        Parameters of `rule` (defaults in `RULES`); anything else is an error.

    Attributes
    ----------
    qhat_ : float               Conformal threshold of the sets.
    tau_ : float                Abstain iff statistic > tau_ (+inf: never, -inf: always).
    calibrator_ : SplitConformalClassifier   Makes the sets.
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
    ...                                delta=0.2, epsilon=0.1, random_state=0).fit(probs[:2000], labels[:2000])
    >>> d = model.predict(probs[2000:])
    >>> bool(0.0 < d.abstention_rate < 1.0), d.sets.shape
    (True, (2000, 10))
    """

    _kind = "DualThresholdConformal"

    def __init__(self, score="raps", alpha: float = 0.1, *, statistic="entropy", rule: str = "youden",
                 target: str = "error", abstain_fraction: float = 0.5, random_state=None, **rule_params):
        self.score = score
        self.alpha = alpha
        self.statistic = statistic
        self.rule = rule
        self.target = target
        self.abstain_fraction = abstain_fraction
        self.random_state = random_state
        self.rule_params = rule_params

    # --- parameters ----------------------------------------------------------------------------------------
    def _resolved_rule_params(self) -> dict:
        rule = self.rule
        if not isinstance(rule, str) or rule not in RULES:
            raise ValueError(f"unknown `rule` {rule!r}; valid rules are: {', '.join(RULES)}")
        allowed = dict(RULES[rule])
        if rule == "accept_coverage":
            sub = self.rule_params.get("tau_rule", "budget")
            if sub not in _TAU_RULES:
                raise ValueError(f"`tau_rule` must be one of {', '.join(_TAU_RULES)}; got {sub!r}")
            allowed.update(RULES[sub])
        unknown = sorted(set(self.rule_params) - set(allowed))
        if unknown:
            raise TypeError(f"unknown parameter(s) {unknown} for rule={rule!r}; allowed: {sorted(allowed) or 'none'}")
        params = {**allowed, **self.rule_params}
        for name in ("max_fpr", "max_abstain", "delta", "epsilon"):
            if name in params:
                params[name] = _prob_param(params[name], name)
        if "max_candidates" in params:
            params["max_candidates"] = check_positive_int(params["max_candidates"], "max_candidates", minimum=2)
        if params.get("tau") is not None:
            t = params["tau"]
            if isinstance(t, bool) or not isinstance(t, numbers.Real) or np.isnan(t):
                raise TypeError(f"`tau` must be a real number (or None to choose it by `tau_rule`); got {t!r}")
            params["tau"] = float(t)
        return params

    def _check_params(self):
        alpha = check_alpha(self.alpha)
        score = get_score(self.score)
        stat_name, stat_fn = get_statistic(self.statistic)
        if self.target not in TARGETS:
            raise ValueError(f"`target` must be one of {TARGETS}; got {self.target!r}")
        frac = _prob_param(self.abstain_fraction, "abstain_fraction")
        if self.random_state is not None and (isinstance(self.random_state, bool)
                                              or not isinstance(self.random_state, (int, np.integer))):
            raise TypeError(f"`random_state` must be None or an int; got {type(self.random_state).__name__}")
        return alpha, score, stat_name, stat_fn, frac, self._resolved_rule_params()

    # --- fit -----------------------------------------------------------------------------------------------
    def _events(self, p, y, calibrator):
        if self.target == "error":
            return np.argmax(p, axis=1) != y
        sets = calibrator.predict_sets(p)
        return ~sets[np.arange(p.shape[0]), y]

    def fit(self, probs, labels) -> "DualThresholdConformal":
        """Fit qhat and tau on calibration (probs, labels) that the model was not trained on; returns self."""
        alpha, score, stat_name, stat_fn, frac, params = self._check_params()
        p = check_scores_matrix(probs, "probs")
        y = check_labels(labels, p.shape[0], p.shape[1])
        n, k = p.shape
        rule = self.rule
        needs_cal_for_stat = stat_name in NEEDS_CONFORMAL and stat_fn is STATISTICS.get(stat_name)
        if needs_cal_for_stat and stat_name in ("top1_score", "credibility") and score.name != "lac":
            warnings.warn(f"statistic={stat_name!r} with score={score.name!r}: the top-1 label's non-randomized "
                          f"{score.name} score is (at least) its own probability, so this statistic grows with "
                          f"confidence, not uncertainty; prefer score='lac' for it, or another statistic",
                          UserWarning, stacklevel=2)
        split = not (rule == "accept_coverage" and params["tau"] is not None and not needs_cal_for_stat)
        if split:
            n_tau = int(round(frac * n))
            if n_tau < 2 or n - n_tau < 2:
                raise ValueError(f"abstain_fraction={frac} splits {n} calibration points into a tau fold of {n_tau} "
                                 f"and a qhat fold of {n - n_tau}; each fold needs at least 2 (use more data)")
            perm = np.random.default_rng(self.random_state).permutation(n)
            idx_tau, idx_q = np.sort(perm[:n_tau]), np.sort(perm[n_tau:])
        else:
            idx_tau, idx_q = np.empty(0, np.int64), np.arange(n)
        p_q, y_q, p_t, y_t = p[idx_q], y[idx_q], p[idx_tau], y[idx_tau]

        def conformal(pp, yy):
            return SplitConformalClassifier(score=score, alpha=alpha).fit(pp, yy)

        self.ltt_ = None
        self.n_accepted_calibration_ = None
        if rule != "accept_coverage":
            cal = conformal(p_q, y_q)
            stat_cal = cal
            stat_t = _validated_statistic(stat_fn, stat_name, p_t, stat_cal)
            events_t = self._events(p_t, y_t, cal)
            tau = self._choose_tau(rule, params, stat_t, events_t, p_q, y_q, stat_cal, stat_fn, stat_name)
        else:
            stat_cal = conformal(p_t, y_t) if (split and (needs_cal_for_stat or self.target == "miscoverage")) \
                else None
            if params["tau"] is not None:
                tau = params["tau"]
                stat_t = events_t = None
            else:
                stat_t = _validated_statistic(stat_fn, stat_name, p_t, stat_cal)
                events_t = self._events(p_t, y_t, stat_cal)
                tau = self._choose_tau(params["tau_rule"], params, stat_t, events_t, None, None, stat_cal,
                                       stat_fn, stat_name)
            accepted = _validated_statistic(stat_fn, stat_name, p_q, stat_cal) <= tau
            n_acc = int(accepted.sum())
            if n_acc == 0:
                raise ValueError(f"tau={tau} accepts none of the {p_q.shape[0]} qhat-fold calibration points, so no "
                                 f"coverage among accepted inputs can be calibrated; raise tau or use more data")
            cal = conformal(p_q[accepted], y_q[accepted])
            self.n_accepted_calibration_ = n_acc
        self.calibrator_ = cal
        self._stat_cal = stat_cal
        self._stat_fn = stat_fn
        self.statistic_name_ = stat_name
        self.score_ = cal.score_
        self.qhat_ = float(cal.qhat_)
        self.tau_ = float(tau)
        self.n_calibration_ = int(n)
        self.n_classes_ = int(k)
        self.n_qhat_fold_ = int(idx_q.shape[0])
        self.n_tau_fold_ = int(idx_tau.shape[0])
        self.rule_params_ = params
        if stat_t is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # one-class folds were already warned about by the rule
                self.roc_ = roc_curve(stat_t, events_t)
            abstain_t = stat_t > tau
            self.tau_fold_abstention_rate_ = float(abstain_t.mean())
            self.tau_fold_selective_risk_ = selective_risk(events_t, abstain_t)
        else:
            self.roc_ = None
            self.tau_fold_abstention_rate_ = float("nan")
            self.tau_fold_selective_risk_ = (float("nan"), 0.0, 1.0, 0)
        return self

    def _choose_tau(self, rule, params, stat_t, events_t, p_ref, y_ref, stat_cal, stat_fn, stat_name) -> float:
        if rule == "youden":
            return _rules.youden_tau(stat_t, events_t)[0]
        if rule == "fpr":
            return _rules.fpr_tau(stat_t, events_t, params["max_fpr"])
        if rule == "budget":
            return _rules.budget_tau(stat_t, params["max_abstain"])
        # selective_risk. The candidate grid and the testing order come from the qhat fold (statistic and target
        # events there), which is independent of the tau fold; the tests themselves use only the tau fold.
        delta, eps = params["delta"], params["epsilon"]
        n_min = _rules.min_accepted_to_certify(delta, eps)
        n_t = stat_t.shape[0]
        if n_t < n_min:
            raise ValueError(f"the tau fold has {n_t} points, but certifying selective risk <= {delta} with "
                             f"probability {1 - eps} needs at least {n_min} accepted points; use more calibration "
                             f"data, a larger abstain_fraction, or a larger delta/epsilon")
        ref = _validated_statistic(stat_fn, stat_name, p_ref, stat_cal)
        grid = _rules.candidate_grid(ref, params["max_candidates"])
        order = _rules.testing_order(grid, ref, self._events(p_ref, y_ref, stat_cal), n_t, delta)
        tau, table = _rules.ltt_fixed_sequence(stat_t, events_t, grid[order], delta, eps)
        self.ltt_ = {**table, "n_min": n_min}
        if tau == -np.inf:
            warnings.warn(f"no abstention threshold certifies selective risk <= {delta} with probability {1 - eps} "
                          f"on {n_t} tau-fold points: abstaining on every input", UserWarning, stacklevel=3)
        return tau

    # --- predict -------------------------------------------------------------------------------------------
    def predict(self, probs) -> Decisions:
        """Decisions for new inputs: sets, abstain flags, top-1 predictions and the statistic. Takes no labels,
        never modifies the estimator (one fitted object can serve several threads)."""
        check_is_fitted(self, "tau_")
        # The calibrator validates probs (type, shape, class count, finiteness, range, row sums) once; the
        # statistic kernels then read the same validated view.
        sets = self.calibrator_.predict_sets(probs)
        p = as_array(probs, "probs")
        fn = self._stat_fn
        if fn is STATISTICS["set_size"] and self._stat_cal is self.calibrator_:
            stat = sets.sum(axis=1).astype(np.float64)
        elif fn in _KERNEL_STATS:
            stat = _k.statistic(p, _KERNEL_STATS[fn])
        else:
            stat = compute_statistic(fn, self.statistic_name_, p, self._stat_cal)
        abstain = stat > self.tau_
        prediction = np.argmax(p, axis=1).astype(np.int64, copy=False)
        for arr in (sets, abstain, prediction, stat):
            arr.setflags(write=False)
        return Decisions(sets=sets, abstain=abstain, prediction=prediction, statistic=stat)

    # --- persistence ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        check_is_fitted(self, "tau_")
        if not isinstance(self.statistic, str):
            raise TypeError("a DualThresholdConformal with a callable `statistic` cannot be saved (code is never "
                            "serialised); register the statistic by name or refit after loading")
        score = self.score_
        params = {"score": score.name, "score_params": score.get_params(), "alpha": float(self.alpha),
                  "statistic": self.statistic, "rule": self.rule, "target": self.target,
                  "abstain_fraction": float(self.abstain_fraction), "random_state": self.random_state,
                  "rule_params": dict(self.rule_params)}
        roc = None if self.roc_ is None else {"fpr": self.roc_.fpr, "tpr": self.roc_.tpr, "taus": self.roc_.taus,
                                              "auc": self.roc_.auc, "n_positives": self.roc_.n_positives,
                                              "n_negatives": self.roc_.n_negatives}
        fitted = {"calibrator": self.calibrator_.to_dict(),
                  "stat_calibrator": (None if self._stat_cal is None else
                                      "same" if self._stat_cal is self.calibrator_ else self._stat_cal.to_dict()),
                  "tau": self.tau_, "n_calibration": self.n_calibration_, "n_classes": self.n_classes_,
                  "n_qhat_fold": self.n_qhat_fold_, "n_tau_fold": self.n_tau_fold_,
                  "n_accepted_calibration": self.n_accepted_calibration_, "roc": roc, "ltt": self.ltt_,
                  "tau_fold_abstention_rate": self.tau_fold_abstention_rate_,
                  "tau_fold_selective_risk": list(self.tau_fold_selective_risk_)}
        return {"params": params, "fitted": fitted}

    @classmethod
    def from_dict(cls, state: dict) -> "DualThresholdConformal":
        try:
            params = dict(state["params"])
            fitted = state["fitted"]
            score = get_score(params.pop("score"), **params.pop("score_params"))
            obj = cls(score=score, **{k: params[k] for k in ("alpha", "statistic", "rule", "target",
                                                               "abstain_fraction", "random_state")},
                      **params["rule_params"])
            obj._check_params()
            obj.rule_params_ = obj._resolved_rule_params()
            obj.calibrator_ = SplitConformalClassifier.from_dict(fitted["calibrator"])
            sc = fitted["stat_calibrator"]
            obj._stat_cal = None if sc is None else obj.calibrator_ if sc == "same" else \
                SplitConformalClassifier.from_dict(sc)
            obj.statistic_name_, obj._stat_fn = get_statistic(obj.statistic)
            obj.score_ = obj.calibrator_.score_
            obj.qhat_ = float(obj.calibrator_.qhat_)
            obj.tau_ = float(fitted["tau"])
            for name in ("n_calibration", "n_classes", "n_qhat_fold", "n_tau_fold"):
                setattr(obj, name + "_", int(fitted[name]))
            nac = fitted["n_accepted_calibration"]
            obj.n_accepted_calibration_ = None if nac is None else int(nac)
            r = fitted["roc"]
            obj.roc_ = None if r is None else ROCCurve(fpr=r["fpr"], tpr=r["tpr"], taus=r["taus"], auc=float(r["auc"]),
                                                       n_positives=int(r["n_positives"]),
                                                       n_negatives=int(r["n_negatives"]))
            obj.ltt_ = fitted["ltt"]
            obj.tau_fold_abstention_rate_ = float(fitted["tau_fold_abstention_rate"])
            obj.tau_fold_selective_risk_ = tuple(fitted["tau_fold_selective_risk"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"saved DualThresholdConformal state is missing or has a malformed field: {exc}") \
                from None
        if obj.calibrator_.n_classes_ != obj.n_classes_:
            raise ValueError("saved DualThresholdConformal state is inconsistent (class counts differ)")
        return obj

    def save(self, path) -> None:
        """Save as checksummed JSON (conformal.io); never pickle."""
        save_state(path, "DualThresholdConformal", self.to_dict())

    @classmethod
    def load(cls, path) -> "DualThresholdConformal":
        return cls.from_dict(load_state(os.fspath(path), "DualThresholdConformal"))

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.rule_params.items())
        return (f"DualThresholdConformal(score={self.score!r}, alpha={self.alpha!r}, statistic={self.statistic!r}, "
                f"rule={self.rule!r}, target={self.target!r}, abstain_fraction={self.abstain_fraction!r}, "
                f"random_state={self.random_state!r}{extra})")


NotFittedError = NotFittedError
