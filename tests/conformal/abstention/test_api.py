"""What users rely on: no label reaches predict, thresholds come from calibration only, clear errors,
save/load, per-sample output, and the import rule of the core."""
import inspect
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

from conformal import Decisions, DualThresholdConformal, NotFittedError
from conformal._kernels import statistics as K
from conformal.abstention import RULES, STATISTICS
from conformal.abstention.research import compare_with_leaky_statistic, leaky_true_label_nll
from conformal.io import StateError

from . import _naive


def _data(seed=0, n=1200, k=8, scale=2.5):
    rng = np.random.default_rng(seed)
    logits = scale * rng.normal(size=(n, k))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.minimum((p.cumsum(1) > rng.random((n, 1))).argmax(1), k - 1).astype(np.int64)
    return p, y


CONFIGS = [dict(rule="youden"), dict(rule="fpr", rule_params=dict(max_fpr=0.2)),
           dict(rule="budget", rule_params=dict(max_abstain=0.2)),
           dict(rule="selective_risk", rule_params=dict(delta=0.3, epsilon=0.1)),
           dict(rule="accept_coverage", rule_params=dict(tau_rule="budget", max_abstain=0.2)),
           dict(rule="accept_coverage", rule_params=dict(tau=0.6))]


def _fit(p, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DualThresholdConformal(randomized=False, allow_empty=True, random_state=0, **kw).fit(p, y)


def test_predict_takes_no_labels():
    # issue 14 added keyword-only side inputs (features, logits, inputs); still no label, nothing positional
    sig = inspect.signature(DualThresholdConformal.predict).parameters
    assert list(sig)[:2] == ["self", "probs"]
    assert {n: p.kind for n, p in list(sig.items())[2:]} == dict.fromkeys(("features", "logits", "inputs"),
                                                                           inspect.Parameter.KEYWORD_ONLY)
    for name, fn in STATISTICS.items():
        assert list(inspect.signature(fn).parameters) == ["probs", "conformal"], name


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
@pytest.mark.parametrize("statistic", ["entropy", "set_size"])
def test_decisions_do_not_depend_on_test_labels_or_batch(cfg, statistic):
    p, y = _data()
    m = _fit(p[:800], y[:800], statistic=statistic, **cfg)
    state = m.to_dict()
    test = p[800:]
    d = m.predict(test)
    # test labels permuted, or absent: there is nowhere to pass them, and refitting on the same calibration data
    # with any test labels around gives the same thresholds
    m2 = _fit(p[:800], y[:800], statistic=statistic, **cfg)
    assert (m2.tau_, m2.qhat_) == (m.tau_, m.qhat_)
    # each row's decision is its own: alone, or in a shuffled batch
    perm = np.random.default_rng(1).permutation(len(test))
    d_perm = m.predict(test[perm])
    for field in ("sets", "abstain", "prediction", "statistic"):
        np.testing.assert_array_equal(getattr(d_perm, field), getattr(d, field)[perm])
    one = m.predict(test[5:6])
    assert one.to_dicts() == d.to_dicts()[5:6]
    # predict never modifies the fitted object
    assert _json(m.to_dict()) == _json(state)


def _json(state):
    from conformal.io import dumps_state
    return dumps_state("x", state)


def test_callable_statistic_only_ever_sees_probabilities():
    p, y = _data()
    seen = []

    def spy(probs):
        seen.append(probs)
        return 1.0 - probs.max(axis=1)

    m = _fit(p[:800], y[:800], statistic=spy, rule="budget")
    m.predict(p[800:])
    assert seen and all(a.ndim == 2 and a.shape[1] == p.shape[1] and a.dtype == p.dtype for a in seen)
    assert not any(np.array_equal(a.ravel()[:len(y)], y) for a in seen)
    np.testing.assert_array_equal(m.predict(p[800:]).statistic, _naive.max_prob(p[800:]))


def test_label_using_statistics_are_refused():
    p, y = _data()
    with pytest.raises(TypeError, match="true label"):
        DualThresholdConformal(randomized=False, allow_empty=True, statistic=leaky_true_label_nll).fit(p, y)
    with pytest.raises(TypeError, match="one required argument"):
        DualThresholdConformal(randomized=False, allow_empty=True,
                               statistic=lambda probs, labels: probs[:, 0]).fit(p, y)
    with pytest.raises(ValueError, match="unknown `statistic`"):
        DualThresholdConformal(randomized=False, allow_empty=True, statistic="nll").fit(p, y)
    assert "leaky_true_label_nll" not in STATISTICS and not any("nll" in k for k in STATISTICS)


def test_research_helper_shows_the_leak():
    p, y = _data(n=3000)
    m = _fit(p[:1000], y[:1000], score="lac", statistic="entropy", target="miscoverage")
    d = m.predict(p[1000:])
    miss = ~d.sets[np.arange(2000), y[1000:]]
    aucs = compare_with_leaky_statistic(p[1000:], y[1000:], miss, {"entropy": d.statistic})
    assert aucs["leaky_true_label_nll"] > 0.95 > aucs["entropy"]


def test_statistics_registry_values():
    p, y = _data()
    m = _fit(p[:800], y[:800], score="lac", statistic="credibility")
    q = p[800:]
    np.testing.assert_array_equal(STATISTICS["max_prob"](q), _naive.max_prob(q))
    np.testing.assert_array_equal(STATISTICS["margin"](q), _naive.margin(q))
    np.testing.assert_allclose(STATISTICS["entropy"](q), _naive.entropy(q), rtol=1e-12)
    cal = m.calibrator_
    np.testing.assert_array_equal(STATISTICS["set_size"](q, cal), cal.predict_sets(q).sum(1))
    np.testing.assert_allclose(STATISTICS["credibility"](q, cal), 1.0 - cal.predict_pvalues(q).max(1), rtol=1e-12)
    np.testing.assert_allclose(STATISTICS["top1_score"](q, cal), 1.0 - q.max(1), rtol=1e-12)  # LAC: 1 - p_y
    with pytest.raises(ValueError, match="needs a fitted"):
        STATISTICS["set_size"](q)


@pytest.mark.twin("conformal._kernels.statistics._stat_parallel", twin=_naive.max_prob)
@pytest.mark.twin("conformal._kernels.statistics._stat_parallel", twin=_naive.margin)
def test_parallel_and_serial_statistic_kernels_agree():
    p = np.random.default_rng(0).dirichlet(np.ones(64), size=(K.PARALLEL_MIN_ENTRIES // 64) + 3)
    for kind in (K.MAX_PROB, K.MARGIN, K.ENTROPY):
        np.testing.assert_array_equal(K._stat_serial(p, kind), K._stat_parallel(p, kind))
    np.testing.assert_array_equal(K._stat_parallel(p, K.MAX_PROB), _naive.max_prob(p))
    np.testing.assert_array_equal(K._stat_parallel(p, K.MARGIN), _naive.margin(p))


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_save_load_roundtrip(tmp_path, cfg):
    p, y = _data()
    m = _fit(p[:800], y[:800], statistic="margin", **cfg)
    m.save(tmp_path / "m.json")
    m2 = DualThresholdConformal.load(tmp_path / "m.json")
    d, d2 = m.predict(p[800:]), m2.predict(p[800:])
    for field in ("sets", "abstain", "prediction", "statistic"):
        np.testing.assert_array_equal(getattr(d, field), getattr(d2, field))
    assert (m2.tau_, m2.qhat_, m2.n_tau_fold_, m2.n_accepted_calibration_) == \
        (m.tau_, m.qhat_, m.n_tau_fold_, m.n_accepted_calibration_)
    text = (tmp_path / "m.json").read_text()
    (tmp_path / "bad.json").write_text(text.replace('"tau": ', '"tau": 1', 1) if '"tau": ' in text else text + "x")
    with pytest.raises(StateError):
        DualThresholdConformal.load(tmp_path / "bad.json")
    d.save(tmp_path / "d.json")
    d3 = Decisions.load(tmp_path / "d.json")
    assert d3.to_dicts() == d.to_dicts()
    import conformal
    assert conformal.load(tmp_path / "d.json").to_dicts() == d.to_dicts()
    assert conformal.load(tmp_path / "m.json").tau_ == m.tau_


def test_callable_statistic_cannot_be_saved(tmp_path):
    p, y = _data()
    m = _fit(p, y, statistic=lambda probs: probs[:, 0], rule="budget")
    with pytest.raises(TypeError, match="cannot be saved"):
        m.save(tmp_path / "m.json")


def test_decisions_output():
    p, y = _data()
    m = _fit(p[:800], y[:800], statistic="entropy", rule="budget", rule_params={"max_abstain": 0.3})
    d = m.predict(p[800:])
    assert d.sets.dtype == bool and d.abstain.dtype == bool and d.prediction.dtype == np.int64
    assert d.statistic.dtype == np.float64 and len(d) == 400
    assert not d.sets.flags.writeable
    np.testing.assert_array_equal(d.abstain, d.statistic > m.tau_)
    np.testing.assert_array_equal(d.prediction, p[800:].argmax(1))
    row = d.to_dicts()[0]
    assert set(row) == {"prediction", "set", "abstain", "statistic"}
    assert row["set"] == np.flatnonzero(d.sets[0]).tolist() and isinstance(row["abstain"], bool)


def test_fitted_roc_matches_tau_fold():
    p, y = _data()
    m = _fit(p, y, statistic="entropy", rule="youden")
    roc = m.roc_
    j = int(np.argmax(roc.tpr - roc.fpr))
    assert m.tau_ == roc.taus[j]
    assert roc.n_positives + roc.n_negatives == m.n_tau_fold_ == 600
    assert 0.5 < roc.auc < 1.0


def test_concurrent_predict_is_safe():
    p, y = _data()
    m = _fit(p[:800], y[:800], statistic="entropy")
    ref = m.predict(p[800:]).abstain
    out = [None] * 4

    def work(i):
        out[i] = m.predict(p[800:]).abstain

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(o, ref) for o in out)


# --- bad input ---------------------------------------------------------------------------------------------

def test_not_fitted():
    with pytest.raises(NotFittedError, match="fit"):
        DualThresholdConformal().predict(np.full((1, 3), 1 / 3))


def test_bad_inputs_are_named():
    p, y = _data()
    p0, y0 = p.copy(), y.copy()
    with pytest.raises(ValueError, match="labels"):
        DualThresholdConformal().fit(p, np.where(y == 0, 99, y))
    with pytest.raises(ValueError, match="labels"):
        DualThresholdConformal().fit(p, y[:-1])
    m = _fit(p, y)
    with pytest.raises(ValueError, match="classes"):
        m.predict(p[:, :-1])
    with pytest.raises(ValueError, match="abstain_fraction"):
        DualThresholdConformal(randomized=False, allow_empty=True, abstain_fraction=0.999).fit(p[:100], y[:100])
    with pytest.raises(ValueError, match="abstain_fraction"):
        DualThresholdConformal(randomized=False, allow_empty=True, abstain_fraction=1.5).fit(p, y)
    with pytest.raises(ValueError, match="tau fold has"):
        DualThresholdConformal(randomized=False, allow_empty=True, rule="selective_risk",
                               rule_params={"delta": 0.01, "epsilon": 0.01}).fit(p[:200], y[:200])
    with pytest.raises(TypeError, match="unknown parameter"):
        DualThresholdConformal(randomized=False, allow_empty=True,
                               rule="youden", rule_params={"max_fpr": 0.1}).fit(p, y)
    with pytest.raises(ValueError, match="unknown `rule`"):
        DualThresholdConformal(randomized=False, allow_empty=True, rule="roc").fit(p, y)
    with pytest.raises(ValueError, match="target"):
        DualThresholdConformal(randomized=False, allow_empty=True, target="loss").fit(p, y)
    with pytest.raises(ValueError, match="delta"):
        DualThresholdConformal(randomized=False, allow_empty=True,
                               rule="selective_risk", rule_params={"delta": 0}).fit(p, y)
    with pytest.raises(ValueError, match="tau_rule"):
        DualThresholdConformal(randomized=False, allow_empty=True,
                               rule="accept_coverage", rule_params={"tau_rule": "selective_risk"}).fit(p, y)
    with pytest.raises(ValueError, match="accepts none"):
        DualThresholdConformal(randomized=False, allow_empty=True,
                               rule="accept_coverage", rule_params={"tau": -1.0}).fit(p, y)
    # lists are accepted where arrays are (issue 18): the same fit as the float64 array
    a = DualThresholdConformal(random_state=0).fit(p.tolist(), y.tolist())
    b = DualThresholdConformal(random_state=0).fit(p.astype(np.float64), y)
    assert a.qhat_ == b.qhat_ and a.tau_ == b.tau_
    with pytest.raises(TypeError, match="`probs` given as a list must hold numbers"):
        DualThresholdConformal().fit([[str(v) for v in row] for row in p.tolist()], y)
    np.testing.assert_array_equal(p, p0)
    np.testing.assert_array_equal(y, y0)


def test_one_class_tau_folds_warn_and_act_safely():
    p, _ = _data()
    right = p.argmax(1)
    wrong = (right + 1) % p.shape[1]
    with pytest.warns(UserWarning, match="never abstain"):
        m = DualThresholdConformal(randomized=False, allow_empty=True, rule="youden", random_state=0).fit(p, right)
    assert m.tau_ == np.inf and not m.predict(p).abstain.any()
    with pytest.warns(UserWarning, match="always abstain"):
        m = DualThresholdConformal(randomized=False, allow_empty=True, rule="youden", random_state=0).fit(p, wrong)
    assert m.tau_ == -np.inf and m.predict(p).abstain.all()
    with pytest.warns(UserWarning, match="no negatives"):
        DualThresholdConformal(randomized=False, allow_empty=True, rule="fpr", random_state=0).fit(p, wrong)
    with pytest.warns(UserWarning, match="abstaining on every input"):
        m = DualThresholdConformal(randomized=False, allow_empty=True,
                                   rule="selective_risk", rule_params={"delta": 0.1}, random_state=0).fit(p, wrong)
    assert m.predict(p).abstain.all()


def test_rank_score_top1_statistics_warn():
    p, y = _data()
    with pytest.warns(UserWarning, match="grows with"):
        DualThresholdConformal(randomized=False, allow_empty=True,
                               score="aps", statistic="top1_score", random_state=0).fit(p, y)


def test_rules_registry_is_complete():
    assert set(RULES) == {"youden", "fpr", "budget", "selective_risk", "accept_coverage"}


def test_core_imports_without_torch_cv2_open3d_and_scipy():
    code = ("import sys\n"
            "for m in ('torch', 'cv2', 'open3d', 'scipy', 'sklearn', 'yaml'):\n"
            "    sys.modules[m] = None\n"
            "import conformal, conformal.abstention, conformal.abstention.research\n"
            "print(conformal.DualThresholdConformal.__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
