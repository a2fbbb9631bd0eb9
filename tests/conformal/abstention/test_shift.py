"""ShiftAwareAbstention (conformal.abstention.shift) on synthetic classifier outputs (labelled synthetic): the
oracle against brute force, trailing windows against per-window recomputation, the clean budget over many
splits, abstention rising after a change point, and named errors. Real-data checks: tests/adapters/test_shift.py."""
import math

import numpy as np
import pytest

from conformal import ShiftAwareAbstention
from conformal.abstention import required_abstention


def _data(rng, n, k=10, sharp=2.5):
    """Synthetic outputs; labels drawn from the probabilities (a calibrated model). sharp < 2.5: flatter outputs
    and a less accurate model (a degraded sensor)."""
    z = sharp * rng.normal(size=(n, k))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return p, (p.cumsum(1) > rng.random((n, 1))).argmax(1)


def test_required_abstention_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        s, c = rng.random(n), rng.random(n) < rng.uniform(0.3, 1.0)
        alpha = float(rng.uniform(0.05, 0.5))
        order = np.argsort(s, kind="mergesort")
        best = 1.0
        for n_acc in range(n, 0, -1):
            if c[order[:n_acc]].mean() >= 1 - alpha - 1e-12:
                best = 1 - n_acc / n
                break
        assert required_abstention(s, c, alpha) == pytest.approx(best)
    with pytest.raises(ValueError, match="same non-zero length"):
        required_abstention(np.ones(3), np.ones(2, bool), 0.1)


def test_trailing_windows_equal_per_window_recomputation():
    rng = np.random.default_rng(1)
    p, y = _data(rng, 1000)
    shift = rng.normal(size=1000)
    xw, rw = rng.random((30, 6)), rng.random(30) * 0.5
    est = ShiftAwareAbstention(window=40, min_window=10, estimator="max", n_neighbors=4).fit(
        p, y, shift_statistic=shift, window_features=xw, required_abstention=rw)
    pt, _ = _data(rng, 120, sharp=1.5)
    st = rng.normal(size=120) + 1.0
    r = est.abstention_level(pt, shift_statistic=st)
    dec = est.predict(pt, shift_statistic=st)
    stat = est.statistic_of(pt)
    for i in range(120):
        lo = max(0, i - 39)
        if i + 1 - lo < 10:
            assert math.isnan(r[i])
            assert dec.abstain[i] == (stat[i] > est.tau_)
            continue
        one = ShiftAwareAbstention(window=i + 1 - lo, min_window=1, estimator="max", n_neighbors=4).fit(
            p, y, shift_statistic=shift, window_features=xw, required_abstention=rw)
        whole = one.abstention_level(pt[lo:i + 1], shift_statistic=st[lo:i + 1], window=False)[0]
        assert r[i] == pytest.approx(whole, abs=1e-12)
        np.testing.assert_allclose(est.window_features(pt[lo:i + 1], shift_statistic=st[lo:i + 1]),
                                   one.window_features(pt[lo:i + 1], shift_statistic=st[lo:i + 1]))
        n_acc = math.floor((1 - r[i]) * (i + 1 - lo) + 1e-9)
        w = np.sort(stat[lo:i + 1])
        extra = r[i] > 0 and (n_acc <= 0 or (n_acc < w.size and stat[i] > w[n_acc - 1]))
        assert dec.abstain[i] == (stat[i] > est.tau_ or extra)


def test_clean_budget_holds_over_many_splits():
    """Exchangeable (clean) data: the clean tau abstains with probability <= max_abstain (averaged over 200
    splits, within 3 standard errors), and the window rule on clean windows adds little (ATC's deadband)."""
    rng = np.random.default_rng(2)
    tau_rates, rule_rates = [], []
    for _ in range(200):
        p, y = _data(rng, 600)
        est = ShiftAwareAbstention(max_abstain=0.1, window=100, min_window=100).fit(p[:400], y[:400])
        stat = est.statistic_of(p[400:])
        tau_rates.append(np.mean(stat > est.tau_))
        if len(rule_rates) < 20:
            rule_rates.append(est.predict(p[400:]).abstention_rate)
    assert np.mean(tau_rates) <= 0.1 + 3 * np.std(tau_rates) / math.sqrt(200)
    assert np.mean(rule_rates) <= 0.15


def test_abstention_rises_after_a_change_point():
    rng = np.random.default_rng(3)
    p, y = _data(rng, 2000)
    est = ShiftAwareAbstention(window=200, min_window=50).fit(p, y)
    clean, _ = _data(rng, 400)
    shifted, ys = _data(rng, 400, sharp=1.0)
    dec = est.predict(np.concatenate([clean, shifted]))
    assert dec.abstain[:400].mean() <= 0.2
    assert dec.abstain[600:].mean() >= 0.8  # once the window holds only shifted inputs
    r = est.abstention_level(np.concatenate([clean, shifted]))
    assert np.median(r[100:400]) == 0.0 and r[-1] > 0.5  # the estimate follows the window across the change


def test_errors_are_named():
    rng = np.random.default_rng(4)
    p, y = _data(rng, 300)
    with pytest.raises(ValueError, match="window_features"):
        ShiftAwareAbstention(estimator="regressor").fit(p, y)
    with pytest.raises(ValueError, match="go together"):
        ShiftAwareAbstention().fit(p, y, window_features=np.zeros((20, 3)))
    with pytest.raises(ValueError, match=r"\(w, 3\)"):
        ShiftAwareAbstention().fit(p, y, window_features=np.zeros((20, 6)), required_abstention=np.zeros(20))
    with pytest.raises(ValueError, match="min_window"):
        ShiftAwareAbstention(window=10, min_window=20).fit(p, y)
    with pytest.raises(ValueError, match="probabilities alone"):
        ShiftAwareAbstention(statistic="set_size").fit(p, y)
    est = ShiftAwareAbstention().fit(p, y, shift_statistic=rng.random(300))
    with pytest.raises(ValueError, match="shift_statistic"):
        est.predict(p)
    with pytest.raises(ValueError, match="shift_statistic"):
        ShiftAwareAbstention().fit(p, y).predict(p, shift_statistic=np.zeros(300))
    with pytest.raises(ValueError, match="shift_statistic"):
        ShiftAwareAbstention().fit(p, y, shift_statistic=np.zeros(5))
    import inspect
    for method in ("predict", "abstention_level", "window_features", "statistic_of"):
        assert not any("label" in name for name in inspect.signature(getattr(est, method)).parameters)
