"""Writes the schema_version 1 files of this folder with conformal 0.1.0 (commit 90c0e4b, before the generic
estimator contract). Kept so the files can be regenerated from that commit; tests/conformal/test_schema_upgrade.py
refits the same models with the current code and checks the old files load to identical predictions.

    PYTHONPATH=<a checkout of 90c0e4b> python tests/conformal/data/schema_v1/make_files.py
"""
import sys
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def data(seed=0, n=600, k=6):
    rng = np.random.default_rng(seed)
    z = 2.0 * rng.normal(size=(n, k))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    y = np.minimum((p.cumsum(1) > rng.random((n, 1))).argmax(1), k - 1).astype(np.int64)
    return p, y


def main():
    import conformal
    from conformal import ClassConditionalConformalClassifier, DualThresholdConformal, SplitConformalClassifier
    from conformal.detection import ConformalDetector
    from conformal.detection.synthetic import make_scenes

    assert conformal.io.SCHEMA_VERSION == 1, "run with conformal 0.1.0 on PYTHONPATH"
    p, y = data()
    warnings.simplefilter("ignore")
    SplitConformalClassifier(score="raps", alpha=0.1, lam=0.02, k_reg=1).fit(p[:300], y[:300]).save(
        HERE / "split_raps.json")
    SplitConformalClassifier(score="lac", alpha=0.1, randomized=True, random_state=3).fit(p[:300], y[:300]).save(
        HERE / "split_lac_randomized.json")
    ClassConditionalConformalClassifier(score="aps", alpha=0.1).fit(p[:300], y[:300]).save(
        HERE / "class_conditional.json")
    DualThresholdConformal(score="raps", alpha=0.1, statistic="entropy", rule="selective_risk", delta=0.5, epsilon=0.1,
                           random_state=0).fit(p[:300], y[:300]).save(HERE / "dual_selective_risk.json")
    DualThresholdConformal(score="lac", alpha=0.1, statistic="credibility", rule="budget", max_abstain=0.2,
                           random_state=0).fit(p[:300], y[:300]).save(HERE / "dual_budget_credibility.json")
    DualThresholdConformal(score="aps", alpha=0.1, statistic="set_size", rule="accept_coverage", tau_rule="budget",
                           max_abstain=0.3, random_state=0).fit(p[:300], y[:300]).save(
        HERE / "dual_accept_coverage.json")
    DualThresholdConformal(score="aps", alpha=0.1, statistic="margin", rule="accept_coverage", tau=0.9,
                           random_state=0).fit(p[:300], y[:300]).save(HERE / "dual_accept_fixed_tau.json")
    conformal.DualThresholdConformal(score="aps", alpha=0.1, rule="budget", max_abstain=0.2, random_state=0).fit(
        p[:300], y[:300]).predict(p[300:310]).save(HERE / "decisions.json")
    preds, gts = make_scenes(300, rng=0, bias=2.0)
    ConformalDetector(alpha=0.1, alpha_cls=0.1, recall_alpha=0.3, random_state=0).fit(preds[:250], gts[:250]).save(
        HERE / "detector_recall.json")
    ConformalDetector(alpha=0.1, alpha_cls=0.1, class_conditional=True, scale="size", score_threshold=0.3).fit(
        preds[:250], gts[:250]).save(HERE / "detector_class_conditional.json")
    try:
        from adapters.streaming import StreamingConformal
    except ImportError:
        sys.exit("adapters not importable")
    d = DualThresholdConformal(score="aps", alpha=0.1, rule="budget", max_abstain=0.2, random_state=0).fit(
        p[:300], y[:300])
    s = StreamingConformal(d, window=50, gamma=0.02, reference=p[:300])
    for t in range(60):
        s.step(p[300 + t], frame_id=f"f{t}")
        if t >= 5:
            s.feedback(f"f{t - 5}", int(y[300 + t - 5]))
    s.save(HERE / "streaming.json")


if __name__ == "__main__":
    main()
