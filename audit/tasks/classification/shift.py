"""Shift-aware columns of a classification audit (config section `shift`).

Per split, on the clean calibration part only: the calibration inputs' features are split in half, a kNN bank
and a reference fold; the fold gives the kNN statistic's clean reference (p-values, quantiles) and fits the
window rule (`conformal.ShiftAwareAbstention` with the kNN distance as its shift statistic) and the monitor's
reference (`conformal.online.ShiftMonitor`). With `statistics: [knn, input_quality]` the monitor watches both
(`conformal.online.UnionShiftMonitor`, each at monitor_level / 2): the input-quality statistic
(`conformal.abstention.InputQuality`, fitted on the bank half's raw quality features: mean intensity, contrast,
high-frequency energy for images; point count and range statistics for point clouds) catches blur, which kNN is
slow to see. On every cell's test part, in index order as one stream, nothing
sees a label; labels only score the decisions afterwards.

Features: the model's penultimate layer for torch models (the input of its last `nn.Linear`, one extra forward
pass), the model's own input vector for the linear models (flattened pixels in [0, 1], or the point-cloud
descriptor of `models.cloud_features`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from audit import schema as S
from audit.errors import ConfigError

__all__ = ["SHIFT_DEFAULTS", "SHIFT_METRICS", "validate", "fit", "metrics", "nan_metrics", "safe"]

SHIFT_DEFAULTS = {"statistics": ["knn"], "k": 10, "window": 200, "estimator": "atc", "monitor": "power_mixture",
                  "monitor_level": 0.01, "after_alarm": "window", "repeats": 10}
SHIFT_STATISTICS = ("knn", "input_quality")
SHIFT_METRICS = {
    "harm": "share of all test points accepted by the config's abstention rule with a set that misses the label",
    "safe": "1 if the config's rule keeps coverage among accepted >= 1 - alpha - 0.02 or abstains on >= 95 %",
    "shift_abstain_rate": "abstention of the shift-aware rule (window rule on kNN + monitor; config `shift`)",
    "shift_accepted_coverage": "coverage among the points the shift-aware rule accepts",
    "shift_harm": "harm of the shift-aware rule",
    "shift_safe": "safe, for the shift-aware rule",
    "shift_auroc": "label-free AUROC of the kNN feature distance, this cell's test points vs the clean ones",
    "monitor_alarm": "1 if the shift monitor alarmed on this cell's test stream (on clean data: a false alarm)",
    "monitor_delay": "inputs until the monitor's alarm on this cell's test stream (NaN: no alarm)",
    "oracle_abstention_uses_label": "USES THE LABEL, comparison only: the least abstention (most uncertain first, "
                                    "by the config's statistic) that brings coverage among accepted to 1 - alpha",
}


def validate(raw, modality) -> dict | None:
    """The `shift` section with defaults filled in, or None when absent."""
    if raw is None:
        return None
    sh = S.merged(raw, SHIFT_DEFAULTS, "shift")
    stats = sh["statistics"]
    if not isinstance(stats, list) or "knn" not in stats or any(s not in SHIFT_STATISTICS for s in stats) \
            or len(set(stats)) != len(stats):
        raise ConfigError(f"config key `shift.statistics` must be a list of distinct names from "
                          f"{', '.join(SHIFT_STATISTICS)} that includes knn (the window rule's statistic); got "
                          f"{stats!r}")
    sh["k"] = S.integer(sh["k"], "shift.k", lo=1)
    if sh["window"] is not None:
        sh["window"] = S.integer(sh["window"], "shift.window", lo=10)
    if sh["estimator"] not in ("atc",):
        raise ConfigError(f"config key `shift.estimator` must be 'atc' (the audit fits on clean data only); got "
                          f"{sh['estimator']!r}")
    if sh["monitor"] not in ("power_mixture", "cusum", None):
        raise ConfigError(f"config key `shift.monitor` must be power_mixture, cusum or null; got {sh['monitor']!r}")
    sh["monitor_level"] = S.fraction(sh["monitor_level"], "shift.monitor_level")
    if sh["after_alarm"] not in ("window", "refuse"):
        raise ConfigError(f"config key `shift.after_alarm` must be 'window' (refuse for one window, then the window "
                          f"rule) or 'refuse' (refuse for the rest of the stream); got {sh['after_alarm']!r}")
    sh["repeats"] = S.integer(sh["repeats"], "shift.repeats", lo=1)
    if modality == "outputs":
        raise ConfigError("config key `shift` needs features of the inputs; precomputed outputs have none")
    return sh


def _rows(f) -> np.ndarray:
    return np.asarray(f, dtype=np.float32).reshape(len(f), -1)


@dataclass
class ShiftParts:
    bank: object                 # conformal.abstention.KNNDistance fitted on the bank half
    reference: np.ndarray        # sorted clean kNN distances of the reference fold
    rule: object                 # fitted ShiftAwareAbstention or None
    clean_test: np.ndarray       # kNN distances of the clean cell's test part (for shift_auroc)
    quality: object = None       # InputQuality fitted on the bank half's quality features, or None
    quality_reference: np.ndarray | None = None  # its clean values on the reference fold


def uses_quality(sh) -> bool:
    return sh is not None and "input_quality" in sh["statistics"]


QUALITY_MODALITY = {"image": "camera", "pointcloud": "lidar"}


def fit(sh: dict, cfg: dict, probs, feats, labels, calibration, test, seed: int, quality=None,
        modality: str | None = None) -> ShiftParts:
    """`quality`: raw `quality_features` rows of the clean inputs (with input_quality in `statistics`)."""
    from conformal import ShiftAwareAbstention
    from conformal.abstention import InputQuality, KNNDistance

    rng = np.random.default_rng([seed, 77])
    cal = rng.permutation(calibration)
    half = cal.shape[0] // 2
    bank_i, fold_i = cal[:half], cal[half:]
    bank = KNNDistance(k=min(sh["k"], bank_i.shape[0]), normalize=True).fit(_rows(feats[bank_i]))
    ref = bank.statistic(_rows(feats[fold_i]))
    rule = None
    if sh["window"] is not None:
        conf = cfg["conformal"]
        window = min(sh["window"], max(test.shape[0], 10))
        rule = ShiftAwareAbstention(score=conf["score"]["name"], score_params=dict(conf["score"]["params"]) or None,
                                    alpha=conf["alpha"], statistic=cfg["abstention"]["statistic"],
                                    max_abstain=0.1, window=window, min_window=min(50, window),
                                    estimator=sh["estimator"])
        rule.fit(probs[fold_i], labels[fold_i], shift_statistic=ref)
    iq = qref = None
    if uses_quality(sh):
        iq = InputQuality(modality=QUALITY_MODALITY[modality]).fit_features(quality[bank_i])
        qref = np.sort(iq.statistic_from_features(quality[fold_i]))
    return ShiftParts(bank, np.sort(ref), rule, bank.statistic(_rows(feats[test])), iq, qref)


def safe(coverage_accepted: float, abstain_rate: float, alpha: float) -> float:
    return float((math.isfinite(coverage_accepted) and coverage_accepted >= 1 - alpha - 0.02)
                 or abstain_rate >= 0.95)


def nan_metrics() -> dict:
    return {k: math.nan for k in SHIFT_METRICS if k not in ("harm", "safe", "oracle_abstention_uses_label")}


def metrics(sh: dict, parts: ShiftParts, probs, feats, labels, alpha: float, seed: int, quality=None) -> dict:
    """The shift-aware columns of one cell's test part (probs, feats and raw quality features of the test points;
    labels score only)."""
    from conformal.metrics import auroc
    from conformal.online import ShiftMonitor, UnionShiftMonitor, detection_delay

    n = labels.shape[0]
    kd = parts.bank.statistic(_rows(feats))
    out = {}
    both = np.concatenate([parts.clean_test, kd])
    is_cell = np.concatenate([np.zeros(parts.clean_test.shape[0], bool), np.ones(n, bool)])
    out["shift_auroc"] = auroc(both, is_cell)
    alarm = None
    if sh["monitor"] is not None:
        level = sh["monitor_level"]
        gen = np.random.default_rng([seed, 78])
        if parts.quality is not None:  # one monitor per statistic at level / 2 (union bound)
            mon = UnionShiftMonitor({"knn": parts.reference, "input_quality": parts.quality_reference},
                                    method=sh["monitor"], level=level)
            path = mon.run({"knn": kd, "input_quality": parts.quality.statistic_from_features(quality)}, rng=gen)
            delay = detection_delay(path.max(axis=1), mon.level_each)
        else:
            mon = ShiftMonitor(parts.reference, method=sh["monitor"], level=level)
            delay = detection_delay(mon.run(kd, rng=gen), level)
        alarm = delay
        out["monitor_alarm"] = float(delay is not None)
        out["monitor_delay"] = math.nan if delay is None else float(delay)
    else:
        out["monitor_alarm"] = out["monitor_delay"] = math.nan
    if parts.rule is not None:
        dec = parts.rule.predict(probs, shift_statistic=kd)
        abstain = np.asarray(dec.abstain).copy()
        if alarm is not None:  # after an alarm, refuse until the window holds only inputs from after it (or for good)
            stop = n if sh["after_alarm"] == "refuse" else alarm - 1 + parts.rule.window
            abstain[alarm - 1: stop] = True
        covered = np.asarray(dec.sets)[np.arange(n), labels]
        acc = ~abstain
        cov = float(covered[acc].mean()) if acc.any() else math.nan
        out["shift_abstain_rate"] = float(abstain.mean())
        out["shift_accepted_coverage"] = cov
        out["shift_harm"] = float((acc & ~covered).mean())
        out["shift_safe"] = safe(cov, out["shift_abstain_rate"], alpha)
    else:
        for k in ("shift_abstain_rate", "shift_accepted_coverage", "shift_harm", "shift_safe"):
            out[k] = math.nan
    return out
