"""Detection inputs are never guessed (issue 17, group 6, detection part): labels outside the class range are
refused at fit (predicted and unmatched ground-truth ones too), NaN in `class_probs` is an error naming
`class_probs`, and a huge yaw keeps its interval width (it is wrapped before any arithmetic)."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from adapters.datasets import make_scenes
from conformal.detection import BoxIntervalCalibrator, ConformalDetector

PREDS, GTS = make_scenes(120, rng=0, bias=2.0)[:2]
K = PREDS[0]["class_probs"].shape[1]


def _fit(preds, gts):
    return ConformalDetector(alpha=0.1, alpha_cls=0.1, score_threshold=0.2).fit(preds, gts)


@pytest.mark.parametrize("kind", ["prediction", "ground truth"])
def test_labels_outside_the_class_range_are_refused(kind):
    preds, gts = copy.deepcopy(PREDS), copy.deepcopy(GTS)
    frames = preds if kind == "prediction" else gts
    i = next(i for i, f in enumerate(frames) if len(f["labels"]))
    frames[i]["labels"] = np.array(frames[i]["labels"]).copy()
    frames[i]["labels"][-1] = K  # one past the last class
    if kind == "ground truth":  # and make it an unmatched box: far from every prediction
        frames[i]["boxes"] = np.array(frames[i]["boxes"], dtype=np.float64).copy()
        frames[i]["boxes"][-1] = [5000.0, 5000.0, 5001.0, 5001.0]
    with pytest.raises(ValueError, match=f"{kind} frame {i}: `labels` must be < {K}"):
        _fit(preds, gts)


def test_nan_in_class_probs_names_class_probs():
    det = _fit(PREDS, GTS)
    frame = copy.deepcopy(PREDS[0])
    frame["class_probs"] = np.array(frame["class_probs"], dtype=np.float64).copy()
    frame["class_probs"][0, 0] = np.nan
    with pytest.raises(ValueError, match="`class_probs` must be finite; row 0"):
        det.predict(frame)
    preds = copy.deepcopy(PREDS)
    preds[3] = frame
    with pytest.raises(ValueError, match="prediction frame 3: `class_probs` must be finite"):
        _fit(preds, GTS)


def test_a_huge_yaw_keeps_its_interval_width():
    rng = np.random.default_rng(0)
    n = 400
    pred = np.column_stack([rng.uniform(0, 40, (n, 3)), rng.uniform(1, 4, (n, 3)), rng.uniform(-3, 3, n)])
    true = pred + np.column_stack([rng.normal(0, 0.2, (n, 6)), rng.normal(0, 0.1, n)])
    cal = BoxIntervalCalibrator(dim=3, alpha=0.1).fit(pred, true)
    new = pred[:5].copy()
    lo, hi = cal.predict(new)
    width = hi[:, 6] - lo[:, 6]
    assert np.all(width > 0.1)
    for shift in (2 * np.pi * 1e6, 2 * np.pi * 1e15, 1e17):
        big = new.copy()
        big[:, 6] += shift
        blo, bhi = cal.predict(big)
        np.testing.assert_allclose(bhi[:, 6] - blo[:, 6], width, rtol=1e-9)
        np.testing.assert_array_equal(bhi[:, :6] - blo[:, :6], hi[:, :6] - lo[:, :6])
        assert np.all(blo[:, 6] <= bhi[:, 6]) and np.all(np.abs(blo[:, 6]) < 4 * np.pi)  # around the wrapped yaw
