"""Fitting `conformal.ShiftAwareAbstention`'s window regressor on calibration data corrupted by the library's own
corruptions (the core never corrupts anything: it receives the arrays built here).

    est = ShiftAwareAbstention(estimator="regressor").fit(cal_probs, cal_labels, shift_statistic=cal_knn)
    x, r, names = window_training_set(est, cell_outputs, fit_labels, training_cells(exclude_group="weather"))
    est.fit(cal_probs, cal_labels, shift_statistic=cal_knn, window_features=x, required_abstention=r)

`cell_outputs(corruption, severity)` returns the model's (probs, shift statistic) on the fit pool corrupted by
`corruption` at `severity` (None, 0: the clean pool); `corrupted_cell_outputs` builds one from images, a model's
output function and `perturbations.image.corrupt_batch` (seeded per cell). Hold one corruption family out with
`training_cells(exclude=..., exclude_group=...)` to measure how the rule does on a shift it has not seen.
"""
from __future__ import annotations

import zlib

import numpy as np

from conformal.abstention.shift import required_abstention
from perturbations import image as _image

__all__ = ["training_cells", "window_training_set", "corrupted_cell_outputs", "family"]


def family(corruption: str) -> str:
    """The ImageNet-C group of an image corruption: "noise", "blur", "weather" or "digital"."""
    return _image.REGISTRY[corruption].group


def training_cells(*, exclude=(), exclude_group: str | None = None, severities=(1, 2, 3, 4, 5),
                   clean: bool = True) -> list:
    """(corruption, severity) cells of the library's image corruptions, without `exclude` (names) and without the
    corruptions of `exclude_group`; (None, 0) first for the clean pool when `clean`."""
    bad = set(exclude)
    unknown = bad - set(_image.names())
    if unknown:
        raise ValueError(f"`exclude` has unknown corruption(s) {sorted(unknown)}; valid: {', '.join(_image.names())}")
    if exclude_group is not None and exclude_group not in ("noise", "blur", "weather", "digital"):
        raise ValueError(f"`exclude_group` must be noise, blur, weather, digital or None; got {exclude_group!r}")
    names = [n for n in _image.names() if n not in bad and (exclude_group is None or family(n) != exclude_group)]
    return ([(None, 0)] if clean else []) + [(n, s) for n in names for s in severities]


def corrupted_cell_outputs(images: np.ndarray, outputs, *, seed: int = 0):
    """cell_outputs(corruption, severity) -> outputs(corrupted images), with `images` corrupted by
    `perturbations.image.corrupt_batch` (a seed per cell, derived from `seed` and the cell's name)."""
    def cell(corruption, severity):
        if corruption is None:
            return outputs(images)
        rng = np.random.default_rng([seed, zlib.crc32(f"{corruption}-{severity}".encode())])
        return outputs(_image.corrupt_batch(images, corruption, severity, rng=rng))
    return cell


def window_training_set(estimator, cell_outputs, labels, cells, *, n_windows: int = 20, rng=0):
    """Training windows for the regressor: for each cell, `n_windows` random windows of `estimator.window` inputs
    of the corrupted pool; their label-free `window_features` and the oracle `required_abstention` (which uses
    `labels`, through the sets of the fitted `estimator`). Returns (features (w, d), targets (w,), cell names)."""
    estimator._check_is_fitted()
    labels = np.asarray(labels)
    gen = np.random.default_rng(rng)
    xs, rs, names = [], [], []
    w = estimator.window
    for corruption, severity in cells:
        probs, shift = cell_outputs(corruption, severity)
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape[0] != labels.shape[0]:
            raise ValueError(f"cell {corruption}-{severity}: outputs for {probs.shape[0]} inputs, labels for "
                             f"{labels.shape[0]}")
        covered = estimator.calibrator_.predict_sets(probs)[np.arange(labels.shape[0]), labels]
        stat = estimator.statistic_of(probs)
        for _ in range(n_windows):
            idx = gen.choice(labels.shape[0], size=min(w, labels.shape[0]), replace=False)
            xs.append(estimator.window_features(probs[idx], shift_statistic=None if shift is None else shift[idx]))
            rs.append(required_abstention(stat[idx], covered[idx], estimator.alpha))
            names.append("clean" if corruption is None else f"{corruption}-{severity}")
    return np.array(xs), np.array(rs), names
