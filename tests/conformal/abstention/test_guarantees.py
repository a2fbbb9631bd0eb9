"""The guarantees, checked statistically over many random calibration draws.

Ground truth: for real model outputs (digits + logistic regression) the *population* is a fixed held-out
pool of outputs; each repetition draws calibration data i.i.d. from it (with replacement) and computes the
true risk / coverage of the fitted thresholds exactly on the whole pool. For synthetic data the model is
calibrated by construction (y ~ Categorical(p)), so the probability of an error or a miss given the
probabilities is known exactly and a large sample gives the population values.
Repetitions R = 200; tolerances are 3 binomial (or empirical) standard errors.
"""
import math
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from conformal import DualThresholdConformal
from conformal._kernels import statistics as K

R = 200


@pytest.fixture(scope="module")
def digits_pool():
    """Probabilities of a deliberately weak model (~10 % top-1 error) on ~1700 held-out digits."""
    X, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(y))
    train, pool = perm[:100], perm[100:]
    model = LogisticRegression(C=1.0, max_iter=2000).fit(X[train] / 16.0, y[train])
    return model.predict_proba(X[pool] / 16.0), y[pool].astype(np.int64)


def _fit_quiet(model, p, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(p, y)


def _pool_events(model, p, y, target):
    d = model.predict(p)
    if target == "error":
        return d, d.prediction != y
    return d, ~d.sets[np.arange(len(y)), y]


def _violation_rate(pool_p, pool_y, n_cal, target, delta, eps, statistic, score, seed0, plug_in=False, reps=R):
    rng = np.random.default_rng(seed0)
    violations = 0
    abstained_all = 0
    for r in range(reps):
        idx = rng.integers(0, len(pool_y), n_cal)
        m = DualThresholdConformal(randomized=False, allow_empty=True,
                                   score=score, alpha=0.1, statistic=statistic, rule="selective_risk",
                                   target=target, rule_params={"delta": delta, "epsilon": eps}, random_state=r)
        _fit_quiet(m, pool_p[idx], pool_y[idx])
        if plug_in:  # the uncertified rule: largest tau whose tau-fold empirical risk is <= delta
            m.tau_ = _plug_in(m, pool_p[idx], pool_y[idx], target)
        d, ev = _pool_events(m, pool_p, pool_y, target)
        acc = ~d.abstain
        if not acc.any():
            abstained_all += 1
            continue
        violations += ev[acc].mean() > delta
    return violations / reps, abstained_all / reps


def _plug_in(model, p, y, target):
    """tau of the naive rule on the same tau fold the certified rule used (refit folds with the same seed)."""
    perm = np.random.default_rng(model.random_state).permutation(len(y))
    fold = np.sort(perm[:int(round(model.abstain_fraction * len(y)))])
    d, ev = _pool_events(model, p[fold], y[fold], target)
    order = np.argsort(d.statistic, kind="stable")
    risk = np.cumsum(ev[order]) / np.arange(1, len(order) + 1)
    ok = np.flatnonzero(risk <= model.rule_params_["delta"])
    tau = d.statistic[order][ok[-1]] if ok.size else -np.inf
    return tau


def _tol(p, reps=R):
    return 3.0 * math.sqrt(p * (1 - p) / reps)


@pytest.mark.parametrize("statistic,target,delta", [("max_prob", "error", 0.05), ("entropy", "error", 0.05),
                                                    ("margin", "miscoverage", 0.08)])
def test_selective_risk_digits_violates_delta_at_most_epsilon(digits_pool, statistic, target, delta):
    p, y = digits_pool
    eps = 0.1
    rate, all_abstain = _violation_rate(p, y, 1000, target, delta, eps, statistic, "lac", seed0=11)
    assert rate <= eps + _tol(eps), f"risk > delta in {rate:.3f} of {R} draws (allowed {eps} + tolerance)"
    assert all_abstain < 0.5  # the rule must also be useful: it certifies some tau most of the time


def test_plug_in_rule_would_fail_this_test(digits_pool):
    """The same check catches an uncertified rule, so the test above can fail."""
    p, y = digits_pool
    rate, _ = _violation_rate(p, y, 1000, "error", 0.05, 0.1, "max_prob", "lac", seed0=11, plug_in=True, reps=100)
    assert rate > 0.1 + _tol(0.1, 100)


def test_accept_coverage_digits_coverage_among_accepted(digits_pool):
    p, y = digits_pool
    rng = np.random.default_rng(5)
    alpha = 0.1
    covs, n_acc = [], []
    for r in range(R):
        idx = rng.integers(0, len(y), 600)
        m = _fit_quiet(DualThresholdConformal(randomized=False, allow_empty=True,
                                              score="aps", alpha=alpha, statistic="entropy", rule="accept_coverage",
                                              rule_params={"tau_rule": "budget", "max_abstain": 0.3}, random_state=r),
                       p[idx], y[idx])
        d = m.predict(p)
        acc = ~d.abstain
        covs.append(d.sets[np.arange(len(y)), y][acc].mean())
        n_acc.append(m.n_accepted_calibration_)
    covs = np.array(covs)
    se = covs.std(ddof=1) / math.sqrt(R)
    assert covs.mean() >= 1 - alpha - 3 * se, f"mean coverage among accepted {covs.mean():.4f}"
    assert 150 < np.mean(n_acc) < 300  # ~70 % of the 300-point qhat fold is accepted


# --- synthetic, calibrated model ----------------------------------------------------------------------------

def _synthetic(rng, n, k=10, scale=3.0):
    logits = scale * rng.normal(size=(n, k))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return p, np.minimum(y, k - 1).astype(np.int64)


@pytest.fixture(scope="module")
def population():
    return _synthetic(np.random.default_rng(123), 100_000)


def test_youden_sets_keep_marginal_coverage_and_tau_ignores_test_data(population):
    pop_p, _ = population
    rng = np.random.default_rng(7)
    alpha, n = 0.1, 800
    covs, n_q = [], None
    for r in range(R):
        p, y = _synthetic(rng, n)
        m = _fit_quiet(DualThresholdConformal(randomized=False, allow_empty=True,
                                              score="aps", alpha=alpha, statistic="entropy", rule="youden",
                                              random_state=r), p, y)
        n_q = m.n_qhat_fold_
        sets = m.predict(pop_p[:5000]).sets
        covs.append(float((sets * pop_p[:5000]).sum(1).mean()))  # exact P(Y in set | x), averaged
    covs = np.array(covs)
    se = covs.std(ddof=1) / math.sqrt(R)
    assert 1 - alpha - 3 * se <= covs.mean() <= 1 - alpha + 1 / (n_q + 1) + 3 * se


def test_budget_and_fpr_rules_bound_their_rates(population):
    pop_p, _ = population
    pop_stat = K.max_prob(pop_p)
    pop_err = 1.0 - pop_p.max(1)  # P(top-1 wrong | x)
    rng = np.random.default_rng(8)
    abst, fprs = [], []
    for r in range(R):
        p, y = _synthetic(rng, 400)
        mb = _fit_quiet(DualThresholdConformal(randomized=False, allow_empty=True,
                                               statistic="max_prob", rule="budget", rule_params={"max_abstain": 0.2},
                                               random_state=r), p, y)
        abst.append(np.mean(pop_stat > mb.tau_))
        mf = _fit_quiet(DualThresholdConformal(randomized=False, allow_empty=True,
                                               statistic="max_prob", rule="fpr", rule_params={"max_fpr": 0.1},
                                               random_state=r), p, y)
        w = 1.0 - pop_err  # P(negative | x)
        fprs.append(float((w * (pop_stat > mf.tau_)).sum() / w.sum()))
    for name, vals, level in (("abstention", abst, 0.2), ("FPR", fprs, 0.1)):
        vals = np.array(vals)
        se = vals.std(ddof=1) / math.sqrt(R)
        assert vals.mean() <= level + 3 * se, f"mean {name} {vals.mean():.4f} > {level}"
        assert vals.mean() >= level - 0.03  # and not trivially conservative


def _overconfident(rng, n, k=10, true_scale=1.0):
    """Shifted data: the model reports softmax(3 z) but labels follow softmax(true_scale * z) (overconfident)."""
    z = rng.normal(size=(n, k))
    p = np.exp(3 * z - 3 * z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    q = np.exp(true_scale * (z - z.max(1, keepdims=True)))
    q /= q.sum(1, keepdims=True)
    y = np.minimum((q.cumsum(1) > rng.random((n, 1))).argmax(1), k - 1).astype(np.int64)
    return p, q, y


def test_selective_risk_under_shift_needs_recalibration():
    """Calibrated on clean data and applied to shifted (overconfident) data, the certificate breaks: there is
    no guarantee under shift. Recalibrating on data from the shifted distribution restores it."""
    rng = np.random.default_rng(9)
    sp, sq, _ = _overconfident(np.random.default_rng(10), 100_000)
    shifted_stat = K.entropy(sp)
    shifted_err = 1.0 - sq[np.arange(len(sq)), sp.argmax(1)]  # P(top-1 wrong | x) on shifted data
    delta, eps, n = 0.2, 0.1, R // 2

    def true_risk(m):
        acc = shifted_stat <= m.tau_
        return shifted_err[acc].mean() if acc.any() else 0.0

    clean_viol = shifted_viol = 0
    for r in range(n):
        p, y = _synthetic(rng, 1000)
        m = _fit_quiet(DualThresholdConformal(randomized=False, allow_empty=True,
                                              statistic="entropy", rule="selective_risk",
                                              rule_params={"delta": delta, "epsilon": eps}, random_state=r), p, y)
        clean_viol += true_risk(m) > delta
        p2, _, y2 = _overconfident(rng, 1000)
        m2 = _fit_quiet(DualThresholdConformal(randomized=False, allow_empty=True,
                                               statistic="entropy", rule="selective_risk",
                                               rule_params={"delta": delta, "epsilon": eps}, random_state=r), p2, y2)
        shifted_viol += true_risk(m2) > delta
    assert clean_viol / n > 0.5  # calibrated on clean data: the shifted risk exceeds delta most of the time
    assert shifted_viol / n <= eps + 3 * math.sqrt(eps * (1 - eps) / n)
