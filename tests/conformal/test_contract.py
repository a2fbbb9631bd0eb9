"""The estimator contract (conformal/_base.py), one test per clause, run over every public estimator.

A user relies on: `sklearn.base.clone` (so grid searches and pipelines work), get_params/set_params round trips
(nested ``score__lam`` included), NotFittedError before fit, save/load giving identical predictions, a repr that
shows (and rebuilds) the parameters, validate_params naming a bad parameter without any data, and predict leaving
the fitted estimator untouched. `test_every_public_estimator_is_covered` fails when a new estimator is added to
the library without a case here.
"""
from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import warnings

import numpy as np
import pytest
from sklearn.base import clone

import conformal
from adapters.datasets import make_scenes
from conformal import (
    APS,
    LAC,
    RAPS,
    SAPS,
    ClassConditionalConformalClassifier,
    DualThresholdConformal,
    Energy,
    InputQuality,
    KNNDistance,
    Mahalanobis,
    NotFittedError,
    ShiftAwareAbstention,
    SplitConformalClassifier,
    TopK,
)
from conformal._base import BaseEstimator
from conformal.detection import BoxIntervalCalibrator, ConformalDetector, DetectionAbstention, RecallRiskControl
from conformal.detection.metrics import IsotonicCalibrator
from conformal.io import dumps_state


def _probs(n=600, k=6, seed=0):
    rng = np.random.default_rng(seed)
    z = 2.0 * rng.normal(size=(n, k))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.minimum((p.cumsum(1) > rng.random((n, 1))).argmax(1), k - 1).astype(np.int64)
    return p, y


P, Y = _probs()
# side inputs of the fitted statistics (synthetic): features, logits and small uint8 images, one per row of P
FEATS = np.random.default_rng(5).normal(size=(P.shape[0], 8)) + np.log(P)[:, :1]
LOGITS = np.log(P)
IMAGES = np.random.default_rng(6).integers(0, 256, size=(P.shape[0], 12, 12), dtype=np.uint8)
SCENES = make_scenes(160, rng=0, bias=2.0)
_DETECTOR = {}


def _detector():
    if "d" not in _DETECTOR:
        _DETECTOR["d"] = ConformalDetector(alpha=0.1, alpha_cls=0.1, score_threshold=0.2).fit(SCENES[0][:100],
                                                                                             SCENES[1][:100])
    return _DETECTOR["d"]


def _boxes(seed=1, n=300):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    pred = np.concatenate([xy, xy + wh], 1)
    return pred, pred + rng.normal(0, 1, pred.shape).clip(-2, 2), rng.integers(0, 3, n)


class FakeAdapter:
    """Stands in for a model adapter: the inputs are already probabilities."""

    def predict_proba(self, x):
        return np.asarray(x, dtype=np.float64)


def _arrays(out):
    """Predictions as a flat list of arrays, for exact comparison."""
    if isinstance(out, tuple):
        return [np.asarray(o) for o in out]
    if hasattr(out, "__dataclass_fields__"):
        return [np.asarray(getattr(out, f)) for f in out.__dataclass_fields__ if getattr(out, f) is not None]
    return [np.asarray(out)]


# name -> (make unfitted, fit it, predict with it, (bad parameter, bad value))
CASES = {
    "SplitConformalClassifier": (
        lambda: SplitConformalClassifier(score="raps", score_params={"lam": 0.02, "k_reg": 1}, alpha=0.2,
                                         randomized=True, random_state=3),
        lambda m: m.fit(P[:300], Y[:300]),
        lambda m: (m.predict_sets(P[300:]), m.predict_pvalues(P[300:])),
        ("alpha", 1.5)),
    "ClassConditionalConformalClassifier": (
        lambda: ClassConditionalConformalClassifier(score=SAPS(weight=0.3), alpha=0.2, fallback="marginal",
                                                    random_state=0),
        lambda m: m.fit(P[:300], Y[:300]),
        lambda m: (m.predict_sets(P[300:]), m.predict_pvalues(P[300:])),
        ("fallback", "sometimes")),
    "DualThresholdConformal": (
        lambda: DualThresholdConformal(score="lac", alpha=0.1, statistic="margin", rule="selective_risk",
                                       rule_params={"delta": 0.4, "epsilon": 0.2}, random_state=0),
        lambda m: m.fit(P[:400], Y[:400]),
        lambda m: m.predict(P[400:]),
        ("rule_params", {"delta": 2.0})),
    "DualThresholdConformal[union]": (
        lambda: DualThresholdConformal(score="lac", alpha=0.1, statistic=("entropy", "knn", "energy"), rule="budget",
                                       rule_params={"max_abstain": 0.2}, level_split=(0.5, 0.25, 0.25),
                                       random_state=0),
        lambda m: m.fit(P[:400], Y[:400], features=FEATS[:400], logits=LOGITS[:400]),
        lambda m: m.predict(P[400:], features=FEATS[400:], logits=LOGITS[400:]),
        ("level_split", (0.9, 0.9, 0.9))),
    "KNNDistance": (
        lambda: KNNDistance(k=4, aggregate="mean", normalize=True, backend="exact"),
        lambda m: m.fit(FEATS[:300]),
        lambda m: m.statistic(FEATS[300:]),
        ("k", 0)),
    "Mahalanobis": (
        lambda: Mahalanobis(shrinkage="ledoit_wolf", normalize=False),
        lambda m: m.fit(FEATS[:300], Y[:300]),
        lambda m: m.statistic(FEATS[300:]),
        ("shrinkage", 2.0)),
    "Energy": (
        lambda: Energy(temperature=2.0),
        lambda m: m.fit(LOGITS[:300]),
        lambda m: m.statistic(LOGITS[300:]),
        ("temperature", 0.0)),
    "InputQuality": (
        lambda: InputQuality(modality="camera"),
        lambda m: m.fit(IMAGES[:300]),
        lambda m: m.statistic(IMAGES[300:]),
        ("modality", "radar")),
    "BoxIntervalCalibrator": (
        lambda: BoxIntervalCalibrator(alpha=0.2, scale="size", class_conditional=True, sides="outer"),
        lambda m: m.fit(*_boxes()[:2], _boxes()[2], n_classes=3),
        lambda m: m.predict(_boxes(seed=2, n=20)[0], np.eye(3, dtype=bool)[_boxes(seed=2, n=20)[2]]),
        ("correction", "sidak")),
    "RecallRiskControl": (
        lambda: RecallRiskControl(alpha=0.3, delta=0.2, grid=np.linspace(0, 1, 21)),
        lambda m: m.fit(SCENES[0][:100], SCENES[1][:100]),
        lambda m: m.predict(np.linspace(0, 1, 9)),
        ("delta", 0.0)),
    "ConformalDetector": (
        lambda: ConformalDetector(alpha=0.2, alpha_cls=0.2, recall_alpha=0.3, random_state=0, scale="size"),
        lambda m: m.fit(SCENES[0][:100], SCENES[1][:100]),
        lambda m: m.predict(SCENES[0][150]),
        ("match_method", "closest")),
    "DetectionAbstention": (
        lambda: DetectionAbstention(statistic="interval_size", level="image", rule="budget",
                                    rule_params={"max_abstain": 0.3}),
        lambda m: m.fit(_detector(), SCENES[0][100:150], SCENES[1][100:150]),
        lambda m: np.array([m.predict(_detector().predict(f)) for f in SCENES[0][150:]]),
        ("level", "scene")),
    "IsotonicCalibrator": (
        lambda: IsotonicCalibrator(class_wise=True),
        lambda m: m.fit(np.linspace(0, 1, 50) ** 2, np.linspace(0, 1, 50), np.arange(50) % 3),
        lambda m: m.predict(np.linspace(0, 1, 7), np.arange(7) % 4),
        ("class_wise", "yes")),
    "ShiftAwareAbstention": (
        lambda: ShiftAwareAbstention(alpha=0.2, window=50, min_window=10, estimator="max", n_neighbors=3),
        lambda m: m.fit(P[:300], Y[:300], shift_statistic=np.linspace(0, 1, 300),
                        window_features=np.random.default_rng(0).random((20, 6)),
                        required_abstention=np.linspace(0, 0.5, 20)),
        lambda m: (m.predict(P[300:], shift_statistic=np.linspace(0, 2, 300)).abstain,
                   m.abstention_level(P[300:], shift_statistic=np.linspace(0, 2, 300))),
        ("deadband", -1.0)),
    "ConformalModel": (
        lambda: _conformal_model(),
        lambda m: m.fit(P[:300], Y[:300]),
        lambda m: m.predict(P[300:]),
        ("temperature_fraction", 1.0)),
}
SCORES = {"LAC": LAC(), "APS": APS(), "RAPS": RAPS(lam=0.05, k_reg=2), "SAPS": SAPS(weight=0.3), "TopK": TopK()}
SCORE_BAD = {"RAPS": ("lam", -1.0), "SAPS": ("weight", 0.0)}
NOT_SAVED = {"ConformalModel"}  # holds a model: its to_dict refuses (tested below)


def _conformal_model():
    from adapters.conformal_model import ConformalModel
    return ConformalModel(adapter=FakeAdapter(), conformal=SplitConformalClassifier(score="aps", alpha=0.2))


def _fit(name):
    make, fit, _, _ = CASES[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(make())


def _params_equal(a: dict, b: dict, arrays_close: bool = False) -> bool:
    """Equal parameters: values equal, nested estimators with equal parameters, other objects (a model adapter,
    deep-copied by clone) of the same type; arrays exactly equal (or, for a printed repr, to print precision)."""
    if set(a) != set(b):
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if not (np.allclose(x, y, rtol=1e-8, atol=0) if arrays_close else np.array_equal(x, y)):
                return False
        elif isinstance(x, FakeAdapter):
            if type(y) is not FakeAdapter:
                return False
        elif type(x) is not type(y) and not (isinstance(x, BaseEstimator) and isinstance(y, BaseEstimator)):
            return False
        elif isinstance(x, BaseEstimator):
            if type(x) is not type(y) or not _params_equal(x.get_params(), y.get_params()):
                return False
        elif x != y:
            return False
    return True


def test_every_public_estimator_is_covered():
    """Every public BaseEstimator subclass of conformal (and adapters.ConformalModel) has a contract case."""
    found = set()
    for mod in pkgutil.walk_packages(conformal.__path__, "conformal."):
        if ".audit" in mod.name or mod.name.rsplit(".", 1)[1].startswith("_"):
            continue
        m = importlib.import_module(mod.name)
        for name, obj in vars(m).items():
            if inspect.isclass(obj) and issubclass(obj, BaseEstimator) and not name.startswith("_") \
                    and obj.__module__ == m.__name__:
                found.add(name)
    found.add("ConformalModel")
    scores = {n for n in found if issubclass(getattr(conformal.scores, n, object), conformal.scores.Score)}
    classes = {name.split("[")[0] for name in CASES}  # "Class[variant]": another configuration of Class
    assert found - scores - {"Score"} == classes, sorted(found - scores - {"Score"} ^ classes)
    assert scores - {"Score"} == set(SCORES)


@pytest.mark.parametrize("name", CASES)
def test_init_takes_keyword_only_params_and_stores_them(name):
    est = CASES[name][0]()
    sig = inspect.signature(type(est).__init__)
    for p in list(sig.parameters.values())[1:]:
        assert p.kind is p.KEYWORD_ONLY, (name, p.name)
    assert not any(p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in sig.parameters.values())
    assert not [k for k in vars(est) if k.endswith("_") and not k.startswith("_")], "__init__ must not fit"


@pytest.mark.parametrize("name", CASES)
def test_sklearn_clone_gives_equal_params_and_an_unfitted_copy(name):
    fitted = _fit(name)
    c = clone(fitted)
    assert type(c) is type(fitted) and _params_equal(c.get_params(deep=False), fitted.get_params(deep=False))
    with pytest.raises(NotFittedError):
        CASES[name][2](c)


@pytest.mark.parametrize("name", CASES)
def test_get_params_set_params_round_trip(name):
    est = CASES[name][0]()
    params = est.get_params(deep=True)
    fresh = clone(est)
    for k in list(fresh.get_params(deep=False)):  # reset to another value, then restore from the dict
        if k not in ("adapter", "conformal"):
            setattr(fresh, k, None)
    assert fresh.set_params(**params) is fresh
    assert _params_equal(fresh.get_params(deep=False), est.get_params(deep=False))
    with pytest.raises(ValueError, match="invalid parameter `nope`"):
        est.set_params(nope=1)


def test_nested_score_params():
    m = SplitConformalClassifier(score="raps")
    m.set_params(score__lam=0.5)
    assert m.score_params == {"lam": 0.5} and m.get_params()["score__lam"] == 0.5
    obj = SplitConformalClassifier(score=RAPS(lam=0.1))
    obj.set_params(score__k_reg=2)
    assert obj.score.k_reg == 2 and obj.get_params()["score__k_reg"] == 2
    d = DualThresholdConformal(rule="budget").set_params(rule__max_abstain=0.3)
    assert d.rule_params == {"max_abstain": 0.3}
    with pytest.raises(ValueError, match="`lam`"):
        SplitConformalClassifier(score="raps").set_params(score__lam=-1.0).validate_params()


@pytest.mark.parametrize("name", CASES)
def test_not_fitted_error_before_fit(name):
    est = CASES[name][0]()
    with pytest.raises(NotFittedError, match=f"{type(est).__name__}.*call fit first"):
        CASES[name][2](est)
    if name not in NOT_SAVED:
        with pytest.raises(NotFittedError):
            est.to_dict()


@pytest.mark.parametrize("name", sorted(set(CASES) - NOT_SAVED))
def test_save_load_round_trip_gives_identical_predictions(name, tmp_path):
    fitted = _fit(name)
    predict = CASES[name][2]
    fitted.save(tmp_path / "m.json")
    for back in (type(fitted).load(tmp_path / "m.json"), conformal.load(tmp_path / "m.json")):
        assert type(back) is type(fitted)
        for a, b in zip(_arrays(predict(fitted)), _arrays(predict(back))):
            np.testing.assert_array_equal(a, b)
        assert dumps_state("x", back.to_dict()) == dumps_state("x", fitted.to_dict())  # state is bit-identical
        assert _params_equal(back.get_params(deep=False), fitted.get_params(deep=False))


def test_conformal_model_is_not_saved_as_json():
    with pytest.raises(TypeError, match="conformal_"):
        _fit("ConformalModel").to_dict()


@pytest.mark.parametrize("name", sorted(set(CASES) - NOT_SAVED))
def test_loaded_states_are_checked_field_by_field(name):
    state = _fit(name).to_dict()
    fitted = state["fitted"]
    key = sorted(fitted)[0]
    broken = {**state, "fitted": {k: v for k, v in fitted.items() if k != key}}
    with pytest.raises(ValueError, match=key):
        type(_fit(name)).from_dict(broken)
    with pytest.raises(ValueError, match="unknown parameter"):
        type(_fit(name)).from_dict({**state, "params": {**state["params"], "bogus": 1}})


@pytest.mark.parametrize("name", CASES)
def test_repr_shows_and_rebuilds_the_params(name):
    est = CASES[name][0]()
    text = repr(est)
    assert text.startswith(type(est).__name__ + "(")
    for k in est.get_params(deep=False):
        assert f"{k}=" in text, k
    if name == "ConformalModel":
        return  # its adapter is an arbitrary object
    namespace = {**{n: getattr(conformal, n) for n in conformal.__all__}, "array": np.array, "inf": np.inf,
                 "nan": np.nan, type(est).__name__: type(est)}
    rebuilt = eval(text, namespace)  # noqa: S307 - our own repr
    assert _params_equal(rebuilt.get_params(deep=False), est.get_params(deep=False), arrays_close=True)


@pytest.mark.parametrize("name", CASES)
def test_validate_params_rejects_a_bad_value_naming_it(name):
    est = CASES[name][0]()
    assert est.validate_params() is est
    param, value = CASES[name][3]
    est.set_params(**{param: value})
    with pytest.raises((ValueError, TypeError)) as info:
        est.validate_params()
    shown = "delta" if param == "rule_params" else param
    assert f"`{shown}`" in str(info.value), str(info.value)
    with pytest.raises((ValueError, TypeError), match=f"`{shown}`"):
        CASES[name][1](est)  # fit validates the same way


@pytest.mark.parametrize("name", CASES)
def test_predict_does_not_mutate_the_estimator(name):
    fitted = _fit(name)
    before = (set(vars(fitted)), None if name in NOT_SAVED else dumps_state("x", fitted.to_dict()))
    CASES[name][2](fitted)
    after = (set(vars(fitted)), None if name in NOT_SAVED else dumps_state("x", fitted.to_dict()))
    assert before == after


@pytest.mark.parametrize("name", CASES)
def test_fit_returns_self(name):
    est = CASES[name][0]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert CASES[name][1](est) is est


@pytest.mark.parametrize("name", SCORES)
def test_scores_follow_the_contract(name):
    score = SCORES[name]
    c = clone(score)
    assert c == score and c is not score and _params_equal(c.get_params(), score.get_params())
    assert eval(repr(score), {name: type(score)}) == score  # noqa: S307
    assert type(score)().set_params(**score.get_params()) == score
    kind, lam, k_reg, weight = score.kernel_params()
    assert isinstance(kind, int) and isinstance(lam, float) and isinstance(k_reg, int) and isinstance(weight, float)
    if name in SCORE_BAD:
        param, value = SCORE_BAD[name]
        with pytest.raises(ValueError, match=f"`{param}`"):
            type(score)(**{param: value})
        with pytest.raises(ValueError, match=f"`{param}`"):
            clone(score).set_params(**{param: value})


def test_validate_params_checks_without_data_what_fit_would_reject():
    """The audit checks a config with validate_params: every rule fit enforces on parameters is there."""
    bad = [
        (DualThresholdConformal(rule="youden", rule_params={"max_fpr": 0.1}), TypeError, "unknown parameter"),
        (DualThresholdConformal(rule="accept_coverage", rule_params={"tau_rule": "selective_risk"}), ValueError,
         "`tau_rule`"),
        (DualThresholdConformal(statistic="nll"), ValueError, "unknown `statistic`"),
        (DualThresholdConformal(rule="roc"), ValueError, "unknown `rule`"),
        (DualThresholdConformal(score="raps", score_params={"lam": -1}), ValueError, "`lam`"),
        (DualThresholdConformal(score="raps", score_params={"gamma": 1}), TypeError, "gamma"),
        (SplitConformalClassifier(score="nope"), ValueError, "unknown `score`"),
        (SplitConformalClassifier(temperature=2.0), ValueError, "applies to logits only"),
        (SplitConformalClassifier(random_state=-1), ValueError, "`random_state`"),
        (ConformalDetector(dim=3, scale="size", sides="outer"), ValueError, "`sides`"),
        (ConformalDetector(match_threshold=1.5), ValueError, "IoU"),
        (BoxIntervalCalibrator(dim=2, scale="range"), ValueError, "`scale`"),
        (DetectionAbstention(rule="fpr", rule_params={"max_abstain": 0.1}), TypeError, "unknown parameter"),
        (RecallRiskControl(grid=np.array([np.nan])), ValueError, "`grid`"),
    ]
    for est, exc, msg in bad:
        with pytest.raises(exc, match=msg):
            est.validate_params()


def test_saved_state_is_the_generic_layout(tmp_path):
    m = _fit("DualThresholdConformal")
    m.save(tmp_path / "m.json")
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["schema_version"] == conformal.io.SCHEMA_VERSION == 2
    fitted = doc["payload"]["fitted"]
    assert fitted["calibrator"]["__estimator__"] == "SplitConformalClassifier"
    assert fitted["statistic_calibrator"] == {"__same_as__": "calibrator"}  # one object, saved once
    back = DualThresholdConformal.load(tmp_path / "m.json")
    assert back.statistic_calibrator_ is back.calibrator_ and back.score_ is back.calibrator_.score_
