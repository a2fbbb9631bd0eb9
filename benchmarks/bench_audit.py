"""Audit speed: the repeated-split stage vs MAPIE, and the `make demo` audit end to end.

An audit re-fits its calibrators on R random calibration splits and predicts on every corruption x severity
cell, so this loop is where a conformal library's per-call overhead multiplies. We time it on real model
outputs (scikit-learn digits, logistic regression; cells made by Gaussian pixel noise of rising std):
  - ours, full audit evaluation: DualThresholdConformal fit + predict + all metrics per split and cell;
  - ours vs MAPIE 1.6 on the same definition (LAC split conformal: fit on calibration, sets on test),
    checking that both give identical sets.
Then the digits demo config end to end (data, model, corruptions, R splits, plots, report), if the image
corruptions are installed. Writes the `audit` section of docs/benchmarks.md.

    python benchmarks/bench_audit.py
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_line, timeit, versions, write_section  # noqa: E402

R, N_CELLS = 100, 40


def outputs():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    d = load_digits()
    x, y = d.data / 16.0, d.target
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    tr, pool = perm[:900], perm[900:]
    clf = LogisticRegression(C=0.05, max_iter=300).fit(x[tr], y[tr])
    cells = {"clean": clf.predict_proba(x[pool])}
    for c in range(N_CELLS):
        noisy = np.clip(x[pool] + rng.normal(0, 0.05 * (1 + c % 5), x[pool].shape), 0, 1)
        cells[f"cell{c}"] = clf.predict_proba(noisy)
    return y[pool], cells


class _Identity:
    """A prefit 'classifier' whose inputs are already probabilities (MAPIE needs an estimator)."""

    _estimator_type = "classifier"

    def __init__(self, k):
        self.classes_ = np.arange(k)

    def fit(self, x, y):
        return self

    def predict_proba(self, x):
        return np.asarray(x)

    def predict(self, x):
        return np.asarray(x).argmax(1)

    def __sklearn_is_fitted__(self):
        return True

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(estimator_type="classifier", classifier_tags=ClassifierTags(), target_tags=TargetTags(
            required=True), input_tags=InputTags())


def main():
    from audit import TASKS, validate_config
    from audit.runner.cells import split_indices
    from audit.runner.run import evaluate_splits
    from audit.runner.task import Prepared
    from conformal import SplitConformalClassifier

    labels, cells = outputs()
    n, k = cells["clean"].shape
    names = list(cells)
    prepared = Prepared("benchmark outputs", n, {}, {}, {}, state={"labels": labels})

    def evaluate(cfg, labels, cells, names):  # the audit's split loop on precomputed outputs
        return evaluate_splits(TASKS["classification"], cfg, prepared, cells, names)[:3]

    cfg = validate_config({"data": "digits", "model": "sklearn_logreg", "corruptions": [],
                           "split": {"repeats": R}, "conformal": {"score": "raps"}})
    evaluate(cfg, labels, cells, names[:2])  # compile
    t_eval = timeit(lambda: evaluate(cfg, labels, cells, names), repeat=3)

    def ours_lac():
        out = []
        for r in range(R):
            cal, test = split_indices(n, 0.5, 0, r)
            m = SplitConformalClassifier(score="lac", alpha=0.1).fit(cells["clean"][cal], labels[cal])
            out.append([m.predict_sets(cells[c][test]) for c in names])
        return out

    def mapie_lac():
        from mapie.classification import SplitConformalClassifier as MapieSplit

        out = []
        for r in range(R):
            cal, test = split_indices(n, 0.5, 0, r)
            m = MapieSplit(estimator=_Identity(k), confidence_level=0.9, conformity_score="lac", prefit=True)
            m.conformalize(cells["clean"][cal], labels[cal])
            out.append([m.predict_set(cells[c][test])[1][:, :, 0] for c in names])
        return out

    ours_sets, mapie_sets = ours_lac(), mapie_lac()
    agree = np.mean([np.array_equal(a, b) for ra, rb in zip(ours_sets, mapie_sets) for a, b in zip(ra, rb)])
    t_ours = timeit(ours_lac, repeat=3)
    t_mapie = timeit(mapie_lac, repeat=3)

    demo = "not run: image corruptions (perturbations.image) not installed"
    try:
        import perturbations.image  # noqa: F401
    except ImportError:
        pass
    else:
        from audit import load_config, run_audit

        root = Path(__file__).resolve().parent.parent
        cfg_demo = load_config(root / "configs" / "digits_camera.yaml")
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = run_audit(cfg_demo, Path(tmp) / "digits", quiet=True)
            wall = time.perf_counter() - t0
            t0 = time.perf_counter()
            run_audit(cfg_demo, Path(tmp) / "digits", resume=True, quiet=True)
            wall_resume = time.perf_counter() - t0
        cells_s = sum(r["seconds"] or 0 for r in res["cells"])
        demo = (f"{len(res['cells'])} cells x {cfg_demo['split']['repeats']} splits on {res['data']['n_pool']} "
                f"images: **{wall:.1f} s** end to end (corrupt + model: {cells_s:.1f} s), **{wall_resume:.1f} s** "
                f"with `--resume` (cached outputs; splits, plots and report only)")

    md = f"""## Audit (`benchmarks/bench_audit.py`)

{machine_line()}; {versions("numpy", "numba", "scikit-learn", "mapie")}

Repeated-split stage on real outputs (digits, logistic regression, n = {n} audit pool, K = {k}), {R} random
splits x {len(names)} cells = {R * len(names)} fits-and-predicts:

| what | median time | per split x cell |
|---|---|---|
| ours: full audit evaluation (DualThresholdConformal RAPS + entropy/Youden fit, predict, 13 metrics) \
| {t_eval:.2f} s | {1e3 * t_eval / (R * len(names)):.2f} ms |
| ours: LAC split conformal, fit + predict_sets | {t_ours:.3f} s | {1e3 * t_ours / (R * len(names)):.3f} ms |
| MAPIE 1.6 SplitConformalClassifier (LAC, prefit), conformalize + predict_set | {t_mapie:.3f} s \
| {1e3 * t_mapie / (R * len(names)):.3f} ms |

Ours vs MAPIE on the same definition: **{t_mapie / t_ours:.1f}x** faster; identical sets in {100 * agree:.1f}% of the
{R * len(names)} (split, cell) pairs. (MAPIE fits once per split too; its time is dominated by per-call validation.)

`make demo` (configs/digits_camera.yaml): {demo}.
"""
    write_section("audit", md)
    print(md)


if __name__ == "__main__":
    main()
