"""The union rule: several label-free statistics in one DualThresholdConformal (issue 14).

What a user relies on: on exchangeable data, ``rule="budget"`` abstains with probability <= max_abstain and
``rule="fpr"`` abstains on a correct prediction with probability <= max_fpr, however many statistics share the
level (checked over 200 random calibration/test splits with a stated tolerance); one statistic in a tuple
behaves exactly like that statistic alone; decisions say which statistic triggered; missing side inputs are
named; predict takes no label.
"""
import inspect
import warnings

import numpy as np
import pytest

from conformal import DualThresholdConformal, KNNDistance
from conformal.io import StateError

N_SPLITS = 200


def _population(seed, n, d=8, k=6):
    """SYNTHETIC exchangeable data: Gaussian features, logits linear in them, labels drawn from the softmax."""
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(123).normal(size=(d, k)) * 0.8
    f = rng.normal(size=(n, d))
    z = f @ w
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.minimum((p.cumsum(1) > rng.random((n, 1))).argmax(1), k - 1).astype(np.int64)
    return p, y, f, z


def _fit(p, y, f=None, z=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DualThresholdConformal(score="lac", alpha=0.1, **kw).fit(p, y, features=f, logits=z)


@pytest.mark.parametrize("statistic", [("entropy", "knn"), ("entropy", "knn", "energy"),
                                       ("max_prob", "mahalanobis", "knn")], ids="+".join)
def test_budget_bounds_abstention_over_many_splits(statistic):
    """Mean test abstention over 200 splits (1000 calibration, 1000 test points each) <= max_abstain + 0.006
    (about 4 standard errors of the mean); and >= 0.06, so the level is really spent (not max_abstain / m^2)."""
    rates = []
    for s in range(N_SPLITS):
        p, y, f, z = _population(s, 2000)
        m = _fit(p[:1000], y[:1000], f[:1000], z[:1000], statistic=statistic, rule="budget",
                 rule_params={"max_abstain": 0.1}, random_state=s)
        rates.append(m.predict(p[1000:], features=f[1000:], logits=z[1000:]).abstention_rate)
    mean = float(np.mean(rates))
    assert 0.06 <= mean <= 0.1 + 0.006, mean


def test_fpr_bounds_abstention_on_correct_predictions_over_many_splits():
    hits = negatives = 0
    for s in range(N_SPLITS):
        p, y, f, z = _population(1000 + s, 2000)
        m = _fit(p[:1000], y[:1000], f[:1000], z[:1000], statistic=("margin", "knn"), rule="fpr",
                 rule_params={"max_fpr": 0.1}, level_split=(0.7, 0.3), random_state=s)
        d = m.predict(p[1000:], features=f[1000:])
        neg = d.prediction == y[1000:]
        hits += int(d.abstain[neg].sum())
        negatives += int(neg.sum())
    rate = hits / negatives
    se = np.sqrt(0.1 * 0.9 / negatives)
    assert rate <= 0.1 + 0.006 + 3 * se, rate
    assert rate >= 0.06, rate


@pytest.mark.parametrize("rule,params", [("budget", {"max_abstain": 0.15}), ("fpr", {"max_fpr": 0.2})])
def test_one_statistic_in_a_tuple_is_that_statistic(rule, params):
    p, y, _, _ = _population(0, 1500)
    one = _fit(p[:1000], y[:1000], statistic="entropy", rule=rule, rule_params=params, random_state=3)
    tup = _fit(p[:1000], y[:1000], statistic=("entropy",), rule=rule, rule_params=params, random_state=3)
    assert tup.tau_.shape == (1,) and tup.tau_[0] == one.tau_ and tup.qhat_ == one.qhat_
    a, b = one.predict(p[1000:]), tup.predict(p[1000:])
    np.testing.assert_array_equal(a.abstain, b.abstain)
    np.testing.assert_array_equal(a.sets, b.sets)
    np.testing.assert_array_equal(a.statistic, b.statistic)
    assert a.reasons is None and b.reason_names == ("entropy",)


def test_reasons_say_which_statistic_triggered():
    p, y, f, z = _population(1, 3000)
    m = _fit(p[:2000], y[:2000], f[:2000], z[:2000], statistic=("entropy", "knn", "energy"), rule="budget",
             rule_params={"max_abstain": 0.3}, random_state=0)
    d = m.predict(p[2000:], features=f[2000:], logits=z[2000:])
    assert d.reasons.shape == (1000, 3) and d.reason_names == ("entropy", "knn", "energy")
    np.testing.assert_array_equal(d.reasons, d.statistics > m.tau_[None, :])
    np.testing.assert_array_equal(d.abstain, d.reasons.any(1))
    np.testing.assert_array_equal(d.statistic, d.statistics[:, 0])
    np.testing.assert_array_equal(m.statistic_of(p[2000:], features=f[2000:], logits=z[2000:]), d.statistics)
    rows = d.to_dicts()
    i = int(np.flatnonzero(d.reasons[:, 1])[0])
    assert "knn" in rows[i]["reasons"] and set(rows[i]["statistics"]) == {"entropy", "knn", "energy"}
    assert all(r["abstain"] == bool(r["reasons"]) for r in rows)
    assert m.statistic_name_ == "entropy|knn|energy" and m.roc_ is None
    assert 0.0 < m.tau_fold_abstention_rate_ <= 0.3


def test_a_prefitted_template_is_cloned_and_fitted_on_the_qhat_fold():
    p, y, f, _ = _population(2, 1200)
    template = KNNDistance(k=3, aggregate="mean")
    m = _fit(p, y, f, statistic=("entropy", template), rule="budget", random_state=0)
    assert not template.__sklearn_is_fitted__()  # the parameter is left unfitted (scikit-learn's rule)
    knn = m.statistics_[1]
    assert knn.k == 3 and knn.bank_.shape == (m.n_qhat_fold_, 8)


def test_missing_or_wrong_side_inputs_are_named():
    p, y, f, z = _population(3, 600)
    kw = dict(statistic=("entropy", "knn", "energy"), rule="budget", random_state=0)
    with pytest.raises(ValueError, match="'knn' needs `features=` in fit"):
        _fit(p, y, None, z, **kw)
    with pytest.raises(ValueError, match="'energy' needs `logits=` in fit"):
        _fit(p, y, f, None, **kw)
    with pytest.raises(ValueError, match="`features` has 599 rows but `probs` has 600"):
        _fit(p, y, f[:599], z, **kw)
    m = _fit(p, y, f, z, **kw)
    with pytest.raises(ValueError, match="'knn' needs `features=` in predict"):
        m.predict(p, logits=z)
    with pytest.raises(ValueError, match="'input_quality' needs `inputs=`"):
        _fit(p, y, f, z, statistic=("entropy", "input_quality"), rule="budget")


def test_bad_configurations_are_refused_without_data():
    bad = [(dict(statistic=("entropy", "knn"), rule="selective_risk"), "`rule` 'selective_risk'"),
           (dict(statistic=("entropy", "knn"), rule="youden"), "`rule` 'youden'"),
           (dict(statistic="knn", rule="accept_coverage"), "fitted statistic 'knn'"),
           (dict(statistic=("entropy", "entropy"), rule="budget"), "twice"),
           (dict(statistic=(), rule="budget"), "at least one"),
           (dict(statistic=("entropy", "nope"), rule="budget"), r"unknown `statistic\[1\]` 'nope'"),
           (dict(statistic=("entropy", "knn"), rule="budget", level_split=(0.5, 0.6)), "`level_split`"),
           (dict(statistic="entropy", rule="budget", level_split=(1.0,)), "`level_split`")]
    for kw, msg in bad:
        with pytest.raises((ValueError, TypeError), match=msg):
            DualThresholdConformal(**kw).validate_params()
    assert DualThresholdConformal(statistic="knn", rule="youden").required_side_inputs() == ("features",)
    assert DualThresholdConformal(statistic="entropy").required_side_inputs() == ()


def test_no_predict_signature_takes_a_label():
    for fn in (DualThresholdConformal.predict, DualThresholdConformal.statistic_of):
        names = list(inspect.signature(fn).parameters)
        assert names == ["self", "probs", "features", "logits", "inputs"], names
        assert not {"labels", "label", "y", "targets"} & set(names)


def test_saved_union_state_is_checked(tmp_path):
    p, y, f, z = _population(4, 800)
    m = _fit(p, y, f, z, statistic=("entropy", "knn"), rule="budget", random_state=0)
    state = m.to_dict()
    wrong = {**state, "fitted": {**state["fitted"], "tau": 0.5}}
    with pytest.raises(StateError, match="`tau`"):
        DualThresholdConformal.from_dict(wrong)
    swapped = {**state, "fitted": {**state["fitted"], "statistics": {"__tuple__": [None, None]}}}
    with pytest.raises(StateError, match="statistics"):
        DualThresholdConformal.from_dict(swapped)
    m.save(tmp_path / "u.json")
    back = DualThresholdConformal.load(tmp_path / "u.json")
    np.testing.assert_array_equal(back.predict(p, features=f).abstain, m.predict(p, features=f).abstain)
