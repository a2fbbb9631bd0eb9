"""Detection metrics: coverage breakdowns, D-ECE / LaECE against their formulas, isotonic vs scikit-learn."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.datasets import make_scenes
from conformal.detection import _kernels as K
from conformal.detection.metrics import (
    IsotonicCalibrator,
    box_coverage,
    detection_ece,
    detection_targets,
    isotonic_regression,
    laece,
    outer_box_coverage,
    range_bins,
    size_bins,
    stratified_coverage,
)

from . import _naive


@pytest.mark.twin("conformal.detection._kernels.pav", twin=_naive.pav)
@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=30), st.integers(0, 10 ** 6))
def test_pav_kernel_matches_naive(y, seed):
    y = np.array(y)
    w = np.random.default_rng(seed).uniform(0.1, 3, y.size)
    np.testing.assert_allclose(K.pav(y, w, np.empty_like(y)), _naive.pav(y, w), rtol=1e-10, atol=1e-10)


def test_isotonic_matches_sklearn():
    from sklearn.isotonic import IsotonicRegression
    rng = np.random.default_rng(0)
    x = np.round(rng.uniform(size=2000), 3)  # ties in x
    y = (rng.uniform(size=2000) < x ** 2).astype(float)
    ours = IsotonicCalibrator().fit(x, y)
    ref = IsotonicRegression(out_of_bounds="clip").fit(x, y)
    xt = rng.uniform(size=500)
    np.testing.assert_allclose(ours.predict(xt), ref.predict(xt), atol=1e-10)
    np.testing.assert_allclose(isotonic_regression(y[np.argsort(x)]),
                               IsotonicRegression().fit(np.arange(2000), y[np.argsort(x)]).predict(np.arange(2000)),
                               atol=1e-10)


def _naive_gap(conf, target, n_bins):
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        sel = (conf >= lo) & ((conf < hi) if b < n_bins - 1 else (conf <= hi))
        if sel.any():
            total += sel.sum() / conf.size * abs(conf[sel].mean() - target[sel].mean())
    return total


def test_dece_and_laece_match_their_formulas():
    rng = np.random.default_rng(1)
    conf = rng.uniform(size=3000)
    tp = rng.uniform(size=3000) < conf ** 1.5
    iou = np.where(tp, rng.uniform(0.5, 1, 3000), 0.0)
    labels = rng.integers(0, 3, 3000)
    assert detection_ece(conf, tp, 10) == pytest.approx(_naive_gap(conf, tp.astype(float), 10), abs=1e-12)
    ref = np.mean([_naive_gap(conf[labels == k], iou[labels == k], 25) for k in range(3)])
    assert laece(conf, labels, iou, 25) == pytest.approx(ref, abs=1e-12)


def test_isotonic_baseline_reduces_laece_on_held_out_frames():
    preds, gts = make_scenes(1200, rng=2)
    cal = detection_targets(preds[:600], gts[:600])
    test = detection_targets(preds[600:], gts[600:])
    iso = IsotonicCalibrator(class_wise=True).fit(cal["scores"], cal["iou"], cal["labels"])
    before = laece(test["scores"], test["labels"], test["iou"])
    after = laece(iso.predict(test["scores"], test["labels"]), test["labels"], test["iou"])
    assert after < 0.5 * before, (before, after)


def test_coverage_helpers():
    pred = np.array([[0.0, 0, 10, 10], [0, 0, 10, 10]])
    lo = pred - 1
    hi = pred + 1
    true = np.array([[0.5, 0.5, 10.5, 9.5], [0, 0, 12, 10]])
    cov = box_coverage(pred, lo, hi, true)
    assert cov["joint"] == 0.5 and cov["upper"].tolist() == [1, 1, 0.5, 1] and cov["n"] == 2
    outer = np.concatenate([lo[:, :2], hi[:, 2:]], axis=1)
    assert outer_box_coverage(outer, true).tolist() == [True, False]
    s = stratified_coverage(np.array([True, False, True]), np.array([0, 0, 1]))
    assert s[0][0] == 0.5 and s[1][3] == 1 and 0 < s[1][1] < 1
    assert size_bins(np.array([[0.0, 0, 10, 10], [0, 0, 50, 50], [0, 0, 100, 100]])).tolist() == [0, 1, 2]
    assert range_bins(np.array([[5.0, 0, 0, 1, 1, 1, 0], [30, 0, 0, 1, 1, 1, 0], [0, 50, 0, 1, 1, 1, 0]])).tolist() \
        == [0, 1, 2]
