"""`python -m adapters.demo`: split conformal prediction on real data in a few seconds.

scikit-learn's digits (1,797 real 8x8 images), a logistic regression trained on one third, calibrated on the
second third, evaluated on the last: coverage (with its 95% Clopper-Pearson interval), mean set size and
empty-set rate per score at alpha = 0.1. Needs scikit-learn (in the `dev` extra).
"""
from __future__ import annotations

import numpy as np

from conformal import SplitConformalClassifier, metrics


def main(alpha: float = 0.1, seed: int = 0) -> list[dict]:
    try:
        from sklearn.datasets import load_digits
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise SystemExit("the demo needs scikit-learn: pip install 'conformal-perception[dev]'") from None
    x, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(seed).permutation(len(y))
    train, cal, test = np.array_split(perm, 3)
    model = LogisticRegression(max_iter=3000, C=0.05).fit(x[train] / 16.0, y[train])
    p_cal, p_test = model.predict_proba(x[cal] / 16.0), model.predict_proba(x[test] / 16.0)
    acc = float((p_test.argmax(1) == y[test]).mean())
    print(f"digits: {len(train)} train / {len(cal)} calibration / {len(test)} test; top-1 accuracy {acc:.3f}; "
          f"alpha = {alpha}")
    print(f"{'score':<6} {'coverage':>9} {'95% CI':>17} {'mean size':>10} {'empty':>7}  qhat")
    rows = []
    for score in ["lac", "aps", "raps", "saps", "topk"]:
        cp = SplitConformalClassifier(score=score, alpha=alpha, random_state=seed).fit(p_cal, y[cal])
        sets = cp.predict_sets(p_test)
        cov, lo, hi = metrics.coverage_ci(sets, y[test])
        row = dict(score=score, coverage=cov, lo=lo, hi=hi, size=metrics.mean_set_size(sets),
                   empty=metrics.empty_set_rate(sets), qhat=cp.qhat_)
        rows.append(row)
        print(f"{score:<6} {cov:>9.3f} [{lo:.3f}, {hi:.3f}] {row['size']:>10.2f} {row['empty']:>7.3f}  "
              f"{cp.qhat_:.4g}")
    print(f"guarantee: coverage >= {1 - alpha:.2f} on average over calibration draws, if calibration and test "
          f"data are exchangeable")
    return rows


if __name__ == "__main__":
    main()
