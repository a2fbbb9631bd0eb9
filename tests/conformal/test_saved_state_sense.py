"""Loaded saved state is checked for sense, not only for integrity (issue 17, group 4).

A user relies on: a saved file whose checksum was recomputed after an edit (or that a buggy writer produced) is
refused at load with an error naming the field, instead of loading and failing later or silently emptying every
set. The checks are the generic ones of `conformal._base` / `conformal._constraints` (specs that relate fields by
name), so every estimator gets them; the tamper sweep below runs over every estimator of the contract test.
"""
from __future__ import annotations

import copy
import math
import warnings

import numpy as np
import pytest

from adapters.streaming import StreamingConformal
from conformal import ClassConditionalConformalClassifier, DualThresholdConformal, SplitConformalClassifier
from conformal.io import StateError, dumps_state, loads_state
from tests.conformal import test_contract as contract

# fields that may legitimately hold NaN (rates of an empty class, a risk with nothing accepted)
NAN_ALLOWED = {"roc.fields.fpr", "roc.fields.tpr", "roc.fields.auc", "tau_fold_abstention_rate",
               "tau_fold_selective_risk.__tuple__.0"}
# arrays whose length is free (a k-NN feature bank, a reference sample: any size is a valid state)
FREE_LENGTH = {"bank", "statistic_reference", "shift_reference", "train_features",
               "train_targets"}


def _leaves(d, path=()):
    """(path, value) of every number and array in a to_dict()['fitted'] tree, nested estimators included."""
    if isinstance(d, dict):
        if "__estimator__" in d:
            yield from _leaves(d.get("fitted") or {}, path + ("fitted",))
        elif "__record__" in d:
            yield from _leaves(d["fields"], path + ("fields",))
        elif "__same_as__" not in d:
            for k, v in d.items():
                yield from _leaves(v, path + (k,))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _leaves(v, path + (i,))
    elif not isinstance(d, (bool, str)) and d is not None:
        yield path, d


def _set(d, path, value):
    for p in path[:-1]:
        d = d[p]
    d[path[-1]] = value


def _tampers(value):
    if isinstance(value, float):
        yield "nan", float("nan")
    elif isinstance(value, (int, np.integer)):
        yield "negative", -1
    elif isinstance(value, np.ndarray) and value.size:
        yield "short", value[:-1]
        if value.dtype.kind == "f":
            bad = value.copy()
            bad.flat[0] = np.nan
            yield "nan", bad


def _round_trip_through_json(cls, state):
    """What a file does: through conformal.io's JSON (checksum recomputed, as an editor of the file would)."""
    return cls.from_dict(loads_state(dumps_state(cls.__name__, state), cls.__name__))


@pytest.mark.parametrize("name", sorted(set(contract.CASES) - contract.NOT_SAVED))
def test_tampered_fields_are_refused_naming_them(name):
    """Every number and array of every estimator's saved state: NaN (where NaN means nothing), a negative count
    and an array one element short are refused with a StateError naming the field."""
    model = contract._fit(name)
    state = model.to_dict()
    checked = 0
    for path, value in _leaves(state["fitted"]):
        dotted = ".".join(str(p) for p in path if p not in ("fitted", "fields"))
        for what, bad in _tampers(value):
            if what == "nan" and ".".join(map(str, path)).replace(".fitted", "") in NAN_ALLOWED:
                continue
            if what == "short" and path[-1] in FREE_LENGTH:
                continue
            if isinstance(path[-1], int) and "classes" in path:  # user labels: any int or str is a label
                continue
            broken = copy.deepcopy(state)
            _set(broken["fitted"], path, bad)
            with pytest.raises(StateError) as info:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    _round_trip_through_json(type(model), broken)
            field = next(str(p) for p in reversed(path) if isinstance(p, str) and p not in ("__tuple__", "__items__"))
            assert field in str(info.value), (dotted, what, str(info.value))
            checked += 1
    assert checked >= 1


def _probs(n, k=5, seed=0):
    rng = np.random.default_rng(seed)
    z = 2.0 * rng.normal(size=(n, k))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return p, np.array([rng.choice(k, p=row) for row in p])


def test_nan_threshold_is_refused():
    p, y = _probs(400)
    state = SplitConformalClassifier(score="lac", alpha=0.1).fit(p, y).to_dict()
    state["fitted"]["qhat"] = float("nan")
    with pytest.raises(StateError, match="`qhat`"):
        _round_trip_through_json(SplitConformalClassifier, state)


def test_inconsistent_n_classes_is_refused():
    p, y = _probs(400)
    state = ClassConditionalConformalClassifier(score="lac", alpha=0.2).fit(p, y).to_dict()
    state["fitted"]["n_classes"] = 6
    with pytest.raises(StateError, match="n_classes"):
        _round_trip_through_json(ClassConditionalConformalClassifier, state)
    dual = DualThresholdConformal(score="lac", alpha=0.1, rule="selective_risk", random_state=0,
                                  rule_params={"delta": 0.4}).fit(p, y).to_dict()
    dual["fitted"]["ltt"]["n_accepted"] = dual["fitted"]["ltt"]["n_accepted"][:-1]  # loaded before the fix
    with pytest.raises(StateError, match=r"`ltt\.n_accepted`"):
        _round_trip_through_json(DualThresholdConformal, dual)
    dual = DualThresholdConformal(score="lac", alpha=0.1, rule="selective_risk", random_state=0,
                                  rule_params={"delta": 0.4}).fit(p, y).to_dict()
    dual["fitted"]["tau_fold_selective_risk"] = (0.1, 0.0, 0.3, 10 ** 6)  # more accepted than the fold holds
    with pytest.raises(StateError, match="n_tau_fold"):
        _round_trip_through_json(DualThresholdConformal, dual)


def _stream_state(method="aci", window=None):
    p, y = _probs(700)
    cal = SplitConformalClassifier(score="lac", alpha=0.1).fit(p[:300], y[:300])
    s = StreamingConformal(cal, method=method, window=window, reference=p[:300], max_pending=8)
    for i in range(12):
        s.step(p[300 + i])
        if i % 3 == 0:
            s.feedback(i, int(y[300 + i]))
    return s.to_dict()


def _load_stream(state):
    return StreamingConformal.from_dict(loads_state(dumps_state("StreamingConformal", state), "StreamingConformal"))


@pytest.mark.parametrize("method,window", [("aci", None), ("aci", 20), ("fixed", None)])
def test_streaming_threshold_must_match_its_state(method, window):
    state = _stream_state(method, window)
    _load_stream(state)  # the untouched snapshot loads
    for bad in (float("nan"), state["state"]["q_t"] + 0.05):
        broken = copy.deepcopy(state)
        broken["state"]["q_t"] = bad
        with pytest.raises(StateError, match=r"`state\.q_t`"):
            _load_stream(broken)


@pytest.mark.parametrize("field,value,named", [
    ("n_miss", 10 ** 6, "state.n_miss"), ("n_feedback", 10 ** 6, "state.n_feedback"),
    ("n_expired", 10 ** 6, "state.n_expired"), ("next_id", 10 ** 6, "state.next_id"),
    ("n_steps", 1, "n_steps"), ("n_miss", -1, "state.n_miss")])
def test_streaming_counters_out_of_range_are_refused(field, value, named):
    broken = _stream_state()
    broken["state"][field] = value
    with pytest.raises(StateError, match=named.replace(".", r"\.")):
        _load_stream(broken)


def test_streaming_short_pending_arrays_are_refused():
    for field in ("pending_scores", "pending_q"):
        broken = _stream_state()
        broken["state"][field] = broken["state"][field][:-1]
        with pytest.raises(StateError, match=field):
            _load_stream(broken)
    assert math.isfinite(_load_stream(_stream_state()).q_t_)


def test_classes_must_match_n_classes():
    """`classes_` (the user's labels) and `n_classes` are checked against each other (a lone n_classes + 1 in a
    SplitConformalClassifier file loaded before `classes_` existed)."""
    p, y = _probs(400)
    state = SplitConformalClassifier(score="lac", alpha=0.1).fit(p, y).to_dict()
    state["fitted"]["n_classes"] = 6
    with pytest.raises(StateError, match="`classes` has 5 labels; `n_classes` = 6"):
        _round_trip_through_json(SplitConformalClassifier, state)
    state = SplitConformalClassifier(score="lac", alpha=0.1).fit(p, y).to_dict()
    state["fitted"]["classes"] = [0, 1, 2, 3, 3]
    with pytest.raises(StateError, match="distinct"):
        _round_trip_through_json(SplitConformalClassifier, state)
