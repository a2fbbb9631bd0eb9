"""Files written by conformal 0.1.0 (schema_version 1, one hand-written layout per class) still load, through the
upgrade step of conformal.io, and predict exactly what the same model fitted by the current code predicts.

The files in data/schema_v1 were written by data/schema_v1/make_files.py at commit 90c0e4b; the fits below
repeat its calls with the current API (score_params / rule_params dicts instead of keyword arguments).
"""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import conformal
from adapters.datasets import make_scenes
from conformal import ClassConditionalConformalClassifier, DualThresholdConformal, SplitConformalClassifier
from conformal.detection import ConformalDetector
from conformal.io import StateError, dumps_state

V1 = Path(__file__).resolve().parent / "data" / "schema_v1"


def _data(seed=0, n=600, k=6):  # as make_files.data
    rng = np.random.default_rng(seed)
    z = 2.0 * rng.normal(size=(n, k))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.minimum((p.cumsum(1) > rng.random((n, 1))).argmax(1), k - 1).astype(np.int64)
    return p, y


P, Y = _data()
SCENES = make_scenes(300, rng=0, bias=2.0)


def _dual(**kw):
    return DualThresholdConformal(randomized=False, allow_empty=True, random_state=0, **kw).fit(P[:300], Y[:300])


REFITS = {
    "split_raps.json": lambda: SplitConformalClassifier(randomized=False, allow_empty=True,
                                                        score="raps", alpha=0.1, score_params={"lam": 0.02, "k_reg": 1})
    .fit(P[:300], Y[:300]),
    "split_lac_randomized.json": lambda: SplitConformalClassifier(score="lac", alpha=0.1, randomized=True,
                                                                  random_state=3).fit(P[:300], Y[:300]),
    "class_conditional.json": lambda: ClassConditionalConformalClassifier(
        randomized=False, allow_empty=True, score="aps", alpha=0.1).fit(P[:300], Y[:300]),
    "dual_selective_risk.json": lambda: _dual(score="raps", alpha=0.1, statistic="entropy", rule="selective_risk",
                                              rule_params={"delta": 0.5, "epsilon": 0.1}),
    "dual_budget_credibility.json": lambda: _dual(score="lac", alpha=0.1, statistic="credibility", rule="budget",
                                                  rule_params={"max_abstain": 0.2}),
    "dual_accept_coverage.json": lambda: _dual(score="aps", alpha=0.1, statistic="set_size", rule="accept_coverage",
                                               rule_params={"tau_rule": "budget", "max_abstain": 0.3}),
    "dual_accept_fixed_tau.json": lambda: _dual(score="aps", alpha=0.1, statistic="margin", rule="accept_coverage",
                                                rule_params={"tau": 0.9}),
    "detector_recall.json": lambda: ConformalDetector(alpha=0.1, alpha_cls=0.1, recall_alpha=0.3, random_state=0)
    .fit(SCENES[0][:250], SCENES[1][:250]),
    "detector_class_conditional.json": lambda: ConformalDetector(alpha=0.1, alpha_cls=0.1, class_conditional=True,
                                                                 scale="size", score_threshold=0.3)
    .fit(SCENES[0][:250], SCENES[1][:250]),
}


def _predictions(model):
    if isinstance(model, ConformalDetector):
        outs = [model.predict(f) for f in SCENES[0][250:]]
        return [np.concatenate([getattr(o, k) for o in outs]) for k in ("keep", "lower", "upper", "class_sets")]
    if isinstance(model, DualThresholdConformal):
        d = model.predict(P[300:])
        return [d.sets, d.abstain, d.statistic]
    return [model.predict_sets(P[300:]), model.predict_pvalues(P[300:], rng=np.random.default_rng(1))]


def test_the_files_are_schema_version_1():
    for f in V1.glob("*.json"):
        assert json.loads(f.read_text())["schema_version"] == 1, f.name
    assert conformal.io.SCHEMA_VERSION == 2


@pytest.mark.parametrize("name", sorted(REFITS))
def test_schema_1_files_load_and_predict_like_a_fresh_fit(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh = REFITS[name]()
    old = conformal.load(V1 / name)
    assert type(old) is type(fresh) and type(old).load(V1 / name).get_params(deep=False).keys() == \
        fresh.get_params(deep=False).keys()
    for a, b in zip(_predictions(old), _predictions(fresh)):
        np.testing.assert_array_equal(a, b)
    # every fitted number survives: the upgraded state saves as the fresh fit's (up to how the score was given)
    o, f = old.to_dict()["fitted"], fresh.to_dict()["fitted"]
    assert set(o) == set(f)
    for key in o:
        if key not in ("calibrator", "statistic_calibrator", "classes", "recall", "boxes", "score"):
            _same_numbers(json.loads(dumps_state("x", {"v": o[key]}))["payload"]["v"],
                          json.loads(dumps_state("x", {"v": f[key]}))["payload"]["v"], key)


def _same_numbers(a, b, where):
    """Equal structure, integers, strings and booleans; floats equal to 1e-12 relative. The files' numbers were
    computed on another CPU: NumPy's SIMD `exp` (the data's softmax) may round the last bit differently from one
    CPU to another (an AMD EPYC gave 1-ulp different calibration scores), so a fresh fit can differ there."""
    assert type(a) is type(b) or {type(a), type(b)} <= {int, float}, where
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same_numbers(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same_numbers(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b)), (where, a, b)
    else:
        assert a == b, where


def test_schema_1_decisions_load():
    d = conformal.load(V1 / "decisions.json")
    fresh = _dual(score="aps", alpha=0.1, rule="budget", rule_params={"max_abstain": 0.2}).predict(P[300:310])
    assert d.to_dicts() == fresh.to_dicts()


def test_other_versions_and_tampered_files_are_refused(tmp_path):
    doc = json.loads((V1 / "split_raps.json").read_text())
    doc["schema_version"] = 7
    (tmp_path / "v7.json").write_text(json.dumps(doc))
    with pytest.raises(StateError, match="schema_version 7"):
        SplitConformalClassifier.load(tmp_path / "v7.json")
    text = (V1 / "split_raps.json").read_text().replace('"alpha": 0.1', '"alpha": 0.2')
    (tmp_path / "t.json").write_text(text)
    with pytest.raises(StateError, match="checksum"):
        SplitConformalClassifier.load(tmp_path / "t.json")
    # a schema-1 payload that the checksum accepts but that is inconsistent is refused by the field checks
    import hashlib

    from conformal.io import FORMAT
    bad = json.loads((V1 / "split_raps.json").read_text())
    bad["payload"]["fitted"]["qhat"] = 0.123
    bad.pop("sha256")
    bad["sha256"] = hashlib.sha256(json.dumps(bad, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert bad["format"] == FORMAT
    (tmp_path / "q.json").write_text(json.dumps(bad))
    with pytest.raises(StateError, match="`qhat`"):
        SplitConformalClassifier.load(tmp_path / "q.json")
