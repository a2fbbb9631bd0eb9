"""The audit's one-pass detection scoring (`audit.tasks.detection.evaluate.score_split`: frames validated once per
cell, matchings memoised over the splits, the baseline reusing them) gives exactly the numbers of the reference
path, `metrics(conformal.detection.evaluate_detector(...))` plus `symmetric_coverage(...)`, split for split."""
import math
import warnings

import numpy as np
import pytest

from adapters.datasets import make_scenes
from audit.tasks.detection import evaluate
from conformal.detection import ConformalDetector, evaluate_detector


def _reference(det, margins, preds, gts, test):
    tp, tg = [preds[i] for i in test], [gts[i] for i in test]
    m = evaluate.metrics(evaluate_detector(det, tp, tg), det.dim)
    m["box_coverage_symmetric"], m["interval_size_symmetric"] = evaluate.symmetric_coverage(det, margins, tp, tg)
    return m


def _same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k], (k, a[k], b[k])


@pytest.mark.parametrize("dim, kw, scene_kw", [
    (2, {"alpha_cls": 0.1, "class_score": "aps", "recall_alpha": 0.3}, {"bias": 2.0}),
    (2, {"alpha_cls": 0.1, "class_conditional": True, "recall_alpha": None, "score_threshold": 0.4}, {}),
    (2, {"alpha_cls": None, "recall_alpha": 0.2, "scale": "uncertainty"}, {"noise_growth": 1.0}),
    (3, {"alpha_cls": 0.1, "recall_alpha": 0.3}, {}),
])
def test_one_pass_scoring_equals_the_reference(dim, kw, scene_kw):
    clean = make_scenes(300, dim=dim, rng=5, **scene_kw)
    shifted = make_scenes(300, dim=dim, rng=6, fp_rate=3.0, miss_rate=0.3, **scene_kw)
    states = {c: evaluate.cell_state(p, g, dim) for c, (p, g) in (("clean", clean), ("shifted", shifted))}
    rng = np.random.default_rng(0)
    for r in range(6):  # the memo fills on the first splits and is reused on the later ones
        perm = rng.permutation(300)
        cal, test = perm[:150], perm[150:]
        det = ConformalDetector(dim=dim, alpha=0.1, random_state=r, **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            det.fit([clean[0][i] for i in cal], [clean[1][i] for i in cal])
            margins = evaluate.symmetric_margins(det, [clean[0][i] for i in cal], [clean[1][i] for i in cal])
            for c, (p, g) in (("clean", clean), ("shifted", shifted)):
                _same(_reference(det, margins, p, g, test), evaluate.score_split(det, margins, p, g, states[c], test))
    assert len(states["clean"]["matches"]) < 6 * 150  # some matchings were reused


def test_a_split_without_matches():
    preds, gts = make_scenes(40, rng=1)
    det = ConformalDetector(alpha=0.1, alpha_cls=None, recall_alpha=None, score_threshold=0.0).fit(preds[:20],
                                                                                                 gts[:20])
    margins = evaluate.symmetric_margins(det, preds[:20], gts[:20])
    empty = [dict(p, boxes=p["boxes"][:0], scores=p["scores"][:0], labels=p["labels"][:0],
                  **{k: p[k][:0] for k in ("class_probs", "box_std") if k in p}) for p in preds]
    empty = [{k: v for k, v in e.items() if not k.startswith("_")} for e in empty]
    test = np.arange(20, 40)
    _same(_reference(det, margins, empty, gts, test),
          evaluate.score_split(det, margins, empty, gts, evaluate.cell_state(empty, gts, 2), test))
