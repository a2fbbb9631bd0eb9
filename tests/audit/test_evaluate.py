"""The audit's own arithmetic: exact AUROC, split indices, per-cell seeds, summaries."""
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from audit.runner.cells import cell_rng, split_indices
from audit.runner.results import summarize
from audit.tasks.classification.evaluate import auroc, nonempty


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=2, max_size=60))
def test_auroc_matches_sklearn_with_ties(pairs):
    scores = np.array([p[0] for p in pairs], dtype=np.float64) / 3.0  # few distinct values: many ties
    pos = np.array([p[1] for p in pairs])
    if pos.all() or not pos.any():
        assert math.isnan(auroc(scores, pos))
    else:
        assert abs(auroc(scores, pos) - roc_auc_score(pos, scores)) < 1e-12


def test_split_indices_disjoint_complete_and_seeded():
    cal, test = split_indices(101, 0.5, seed=4, r=2)
    assert np.intersect1d(cal, test).size == 0
    assert np.array_equal(np.sort(np.r_[cal, test]), np.arange(101))
    assert cal.size == 50 or cal.size == 51
    cal2, _ = split_indices(101, 0.5, seed=4, r=2)
    cal3, _ = split_indices(101, 0.5, seed=4, r=3)
    assert np.array_equal(cal, cal2) and not np.array_equal(cal, cal3)


def test_cell_rng_depends_on_cell_not_on_order():
    a = cell_rng(0, "fog", 3).random(5)
    cell_rng(0, "rain", 1).random(100)  # drawing from another cell first changes nothing
    assert np.array_equal(a, cell_rng(0, "fog", 3).random(5))
    assert not np.array_equal(a, cell_rng(0, "fog", 4).random(5))
    assert not np.array_equal(a, cell_rng(1, "fog", 3).random(5))


def test_summarize_ignores_nan_splits():
    s = summarize(np.array([0.8, np.nan, 0.9, 1.0]))
    assert s["n"] == 3 and abs(s["mean"] - 0.9) < 1e-12
    assert abs(s["se"] - np.std([0.8, 0.9, 1.0], ddof=1) / math.sqrt(3)) < 1e-12
    assert s["lo"] < s["mean"] < s["hi"]
    assert math.isnan(summarize(np.array([np.nan]))["mean"])


def test_nonempty_adds_top1_only_to_empty_sets():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.3, 0.4, 0.3]])
    sets = np.array([[False, False, False], [False, True, False], [False, False, False]])
    out = nonempty(sets, probs)
    assert out.tolist() == [[True, False, False], [False, True, False], [False, True, False]]
    assert sets[0].sum() == 0  # input untouched


def test_linear_softmax_matches_sklearn_predict_proba():
    """The array-only copy of the fitted logistic regression gives scikit-learn's probabilities (2 and 4 classes)."""
    from sklearn.linear_model import LogisticRegression

    from audit.tasks.classification.models import LinearSoftmax, image_features

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 6, 6), dtype=np.uint8)
    for k in (2, 4):
        labels = rng.integers(0, k, size=60)
        x = image_features(images)
        mean, scale = x.mean(0), x.std(0) + 1e-6
        clf = LogisticRegression(max_iter=500).fit((x - mean) / scale, labels)
        ours = LinearSoftmax("image", clf.coef_, clf.intercept_, mean, scale).predict_proba(images)
        np.testing.assert_allclose(ours, clf.predict_proba((x - mean) / scale), atol=1e-6)  # float32 features


def test_fingerprint_sees_array_contents_and_nesting():
    from audit.runner.cache import fingerprint

    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    b = a.copy()
    b[1, 2] = 9
    assert fingerprint(a) == fingerprint(a.copy()) != fingerprint(b)
    assert fingerprint([a, "x"]) != fingerprint([b, "x"])
    assert fingerprint([a]) != fingerprint(a)
    assert fingerprint(a.astype(np.int64)) != fingerprint(a)
