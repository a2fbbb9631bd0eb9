"""Class labels may be any labels (issue 18, section 2): calibrators learn a `classes_` mapping at their boundary
(sorted str labels, or `classes=` in column order), return sets in user labels (`predict_labels`), save and load
it, and keep integer labels 0..K-1 exactly as before."""
from __future__ import annotations

import numpy as np
import pytest

from conformal import ClassConditionalConformalClassifier, SplitConformalClassifier
from conformal.io import StateError

NAMES = ["car", "cyclist", "pedestrian", "truck"]


def _data(n=800, k=4, seed=0):
    rng = np.random.default_rng(seed)
    z = 2.0 * rng.normal(size=(n, k))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return p, np.array([rng.choice(k, p=row) for row in p])


@pytest.mark.parametrize("cls", [SplitConformalClassifier, ClassConditionalConformalClassifier])
def test_string_labels_give_the_same_sets_as_their_indices(cls, tmp_path):
    p, y = _data()
    names = [NAMES[i] for i in y]  # a plain list of str, as labels usually come
    ref = cls(score="lac", alpha=0.1).fit(p[:400], y[:400])
    cp = cls(score="lac", alpha=0.1).fit(p[:400], names[:400])
    assert cp.classes_ == NAMES and ref.classes_ == [0, 1, 2, 3]
    np.testing.assert_array_equal(cp.predict_sets(p[400:]), ref.predict_sets(p[400:]))
    labels = cp.predict_labels(p[400:])
    assert labels == [[NAMES[j] for j in np.flatnonzero(s)] for s in ref.predict_sets(p[400:])]
    cp.save(tmp_path / "cp.json")
    back = cls.load(tmp_path / "cp.json")
    assert back.classes_ == NAMES and back.predict_labels(p[400:]) == labels


def test_classes_argument_gives_the_column_order_and_refuses_unknown_labels():
    p, y = _data()
    order = ["truck", "car", "pedestrian", "cyclist"]  # column j is order[j]
    cp = SplitConformalClassifier(score="lac", alpha=0.1, classes=order).fit(p[:400], [order[i] for i in y[:400]])
    ref = SplitConformalClassifier(score="lac", alpha=0.1).fit(p[:400], y[:400])
    assert cp.classes_ == order and cp.qhat_ == ref.qhat_
    ints = SplitConformalClassifier(score="lac", alpha=0.1, classes=[10, 20, 30, 40]).fit(p[:400], (y[:400] + 1) * 10)
    assert ints.qhat_ == ref.qhat_ and ints.predict_labels(p[400:401])[0][0] in (10, 20, 30, 40)
    with pytest.raises(ValueError, match="not in `classes`"):
        SplitConformalClassifier(classes=order).fit(p[:10], ["car"] * 9 + ["bus"])
    with pytest.raises(ValueError, match="distinct labels but probs have 4 columns"):
        SplitConformalClassifier().fit(p[:10], ["car"] * 5 + ["truck"] * 5)
    with pytest.raises(ValueError, match="`classes`"):
        SplitConformalClassifier(classes=["a", "a", "b", "c"]).validate_params()
    with pytest.raises(TypeError, match="integer array"):
        SplitConformalClassifier().fit(p[:10], y[:10].astype(float))


def test_files_saved_before_classes_existed_load_with_index_labels():
    p, y = _data()
    state = SplitConformalClassifier(score="lac", alpha=0.1).fit(p, y).to_dict()
    del state["fitted"]["classes"]
    assert SplitConformalClassifier.from_dict(state).classes_ == [0, 1, 2, 3]
    state["fitted"]["n_classes"] = "4"
    with pytest.raises(StateError):
        SplitConformalClassifier.from_dict(state)
