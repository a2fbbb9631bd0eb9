"""Metrics of an audit: R random clean-calibration / test splits, every cell evaluated on each.

Per split r: the pool is permuted with a seed fixed by (seed, r); the first part is calibration (always the
clean model outputs), the rest is test. A dual-threshold calibrator (conformal threshold + abstention threshold)
is fitted on the calibration part only, then predicts, without labels, on the test part of every cell.
Labels are used afterwards, only to score the predictions.
"""
from __future__ import annotations

import math
import re
import warnings

import numpy as np

METRICS = {
    "coverage": "fraction of test points whose true label is in the conformal set",
    "set_size": "mean size of the conformal set",
    "empty_rate": "fraction of empty conformal sets, before the never-empty guard (if enabled)",
    "accuracy": "top-1 accuracy (no abstention)",
    "abstain_rate": "fraction of test points the abstention threshold rejects",
    "selective_risk": "rate of the target event among accepted points",
    "coverage_accepted": "coverage among accepted points",
    "auroc": "AUROC of the label-free statistic for the target event",
    "auroc_miscoverage": "AUROC of the label-free statistic for 'label not in set' (the research's target)",
    "auroc_label_nll": "AUROC of -log p_y (USES THE LABEL, research's statistic) for 'label not in set'",
    "abstain_gridmean_label_nll": "research's reported 'abstention rate': mean over its fixed tau grid of "
                                  "P(-log p_y > tau); USES THE LABEL, no operating point",
    "qhat": "conformal threshold (fitted on clean calibration data)",
    "tau": "abstention threshold (fitted on clean calibration data)",
}


# The research's tau grid for CIFAR-100/ImageNet (paper-method.md, section 2.3): ~148 unique values in [0, 5].
RESEARCH_TAU_GRID = np.unique(np.concatenate([np.linspace(0, 0.1, 50), np.linspace(0.1, 1, 50),
                                              np.exp(np.linspace(0, np.log(5), 50))]))


def split_indices(n: int, calibration_fraction: float, seed: int, r: int):
    rng = np.random.default_rng(np.random.SeedSequence([seed, 5000, r]))
    perm = rng.permutation(n)
    n_cal = int(round(calibration_fraction * n))
    return np.sort(perm[:n_cal]), np.sort(perm[n_cal:])


def make_calibrator(cfg: dict, seed: int):
    from conformal import DualThresholdConformal, get_score

    conf, abst = cfg["conformal"], cfg["abstention"]
    return DualThresholdConformal(score=get_score(conf["score"]["name"], **conf["score"]["params"]),
                                  alpha=conf["alpha"], statistic=abst["statistic"], rule=abst["rule"]["name"],
                                  target=abst["target"], abstain_fraction=abst["abstain_fraction"],
                                  random_state=seed, rule_params=abst["rule"]["params"])


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Exact AUROC (ties count 1/2), NaN when only one class is present."""
    pos = positives.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(s.shape[0], dtype=np.float64)
    # average ranks over ties
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ends = np.r_[starts[1:], s.shape[0]]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def nonempty(sets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Sets with the top-1 class added where a set is empty (a superset: coverage can only rise)."""
    empty = ~sets.any(1)
    if not empty.any():
        return sets
    out = sets.copy()
    out[np.flatnonzero(empty), probs[empty].argmax(1)] = True
    return out


def cell_metrics(decisions, probs: np.ndarray, labels: np.ndarray, target: str, allow_empty: bool = True) -> dict:
    sets, abstain = np.asarray(decisions.sets), np.asarray(decisions.abstain, dtype=bool)
    empty_rate = float((sets.sum(1) == 0).mean())  # before the guard: how often the calibrator gave nothing
    if not allow_empty:
        sets = nonempty(sets, probs)
    pred, stat = np.asarray(decisions.prediction), np.asarray(decisions.statistic, dtype=np.float64)
    n = labels.shape[0]
    covered = sets[np.arange(n), labels]
    error = pred != labels
    event = error if target == "error" else ~covered
    accepted = ~abstain
    p_y = probs[np.arange(n), labels]
    nll = -np.log(np.maximum(p_y, 1e-300))
    return {
        "coverage": float(covered.mean()),
        "set_size": float(sets.sum(1).mean()),
        "empty_rate": empty_rate,
        "accuracy": float((~error).mean()),
        "abstain_rate": float(abstain.mean()),
        "selective_risk": float(event[accepted].mean()) if accepted.any() else math.nan,
        "coverage_accepted": float(covered[accepted].mean()) if accepted.any() else math.nan,
        "auroc": auroc(stat, event),
        "auroc_miscoverage": auroc(stat, ~covered),
        "auroc_label_nll": auroc(nll, ~covered),
        "abstain_gridmean_label_nll": float((nll[:, None] > RESEARCH_TAU_GRID[None, :]).mean()),
    }


class _single_numba_thread:
    """Run the split loop with one Numba thread (restored afterwards). Each call works on a few hundred rows,
    where parallel kernels only add overhead; on a busy 2-core machine they made this loop ~8x slower."""

    def __enter__(self):
        import numba

        self.before = numba.get_num_threads()
        numba.set_num_threads(1)

    def __exit__(self, *exc):
        import numba

        numba.set_num_threads(self.before)


def evaluate(cfg: dict, labels: np.ndarray, outputs: dict, cells: list, progress=None):
    with _single_numba_thread():
        return _evaluate(cfg, labels, outputs, cells, progress)


def _evaluate(cfg: dict, labels: np.ndarray, outputs: dict, cells: list, progress=None):
    """Per-split metrics for every cell and the curves of split 0.

    outputs: {cell_id: probs (n_pool, K)} with "clean" present. Returns (per_split, curves) where per_split is
    {cell_id: {metric: array (R,)}}, curves {cell_id: {"statistic", "event", "set_size", "abstain"}} (split 0)
    and fit_warnings {message with numbers replaced by N: number of splits where the calibrator warned}.
    """
    seed, split = cfg["seed"], cfg["split"]
    target = cfg["abstention"]["target"]
    n = labels.shape[0]
    R = split["repeats"]
    per_split = {c: {m: np.full(R, np.nan) for m in METRICS} for c in cells if c in outputs}
    curves, fit_warnings = {}, {}
    for r in range(R):
        cal, test = split_indices(n, split["calibration_fraction"], seed, r)
        cal_model = make_calibrator(cfg, seed + 1000 * r + 17)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cal_model.fit(outputs["clean"][cal], labels[cal])
        for w in caught:  # counted and reported once, not printed R times
            msg = re.sub(r"\d+", "N", str(w.message))
            fit_warnings[msg] = fit_warnings.get(msg, 0) + 1
        qhat, tau = float(np.max(cal_model.qhat_)), float(cal_model.tau_)
        for c in per_split:
            p = outputs[c][test]
            d = cal_model.predict(p)
            m = cell_metrics(d, p, labels[test], target, cfg["conformal"]["allow_empty"])
            m["qhat"], m["tau"] = qhat, tau
            for k, v in m.items():
                per_split[c][k][r] = v
            if r == 0:
                sets = np.asarray(d.sets) if cfg["conformal"]["allow_empty"] else nonempty(np.asarray(d.sets), p)
                covered = sets[np.arange(test.shape[0]), labels[test]]
                err = np.asarray(d.prediction) != labels[test]
                curves[c] = {"statistic": np.asarray(d.statistic, dtype=np.float64),
                             "event": (err if target == "error" else ~covered),
                             "set_size": sets.sum(1).astype(np.int64),
                             "abstain": np.asarray(d.abstain, dtype=bool)}
        if progress is not None:
            progress.update(1)
    return per_split, curves, fit_warnings


def summarize(values: np.ndarray) -> dict:
    """mean, standard error and the 2.5% / 97.5% quantiles over the splits (NaN splits ignored)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "se": math.nan, "n": 0}
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
    lo, hi = np.quantile(v, [0.025, 0.975])
    return {"mean": float(v.mean()), "lo": float(lo), "hi": float(hi), "se": se, "n": int(v.size)}
