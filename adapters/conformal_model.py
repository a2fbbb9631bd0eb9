"""ConformalModel: a model adapter and a `conformal` calibrator, fitted and applied in one call."""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["ConformalModel"]


class ConformalModel:
    """Model + calibrator (+ abstention) in one object.

    Parameters
    ----------
    adapter : CameraClassifier, LidarClassifier or any object with ``predict_proba(inputs) -> (n, K)``
    conformal : an unfitted calibrator from `conformal` (SplitConformalClassifier,
        ClassConditionalConformalClassifier, DualThresholdConformal, ...): anything with ``fit(probs, labels)``
        and ``predict(probs)`` or ``predict_sets(probs)``.
    temperature_fraction : float in [0, 1)
        If > 0, this fraction of the fit data (a seeded random subset) fits the adapter's temperature first and
        the calibrator is fitted on the rest only, so the calibrator sees a fixed model and keeps its guarantee.
    random_state : int or None
        Seed of that split.

    `fit(inputs, labels)` must get data the model was not trained on. `predict(inputs)` returns what the
    calibrator's `predict` returns (`Decisions` for DualThresholdConformal), else its boolean sets.
    """

    def __init__(self, adapter, conformal, *, temperature_fraction: float = 0.0, random_state: int | None = 0):
        self.adapter = adapter
        self.conformal = conformal
        self.temperature_fraction = temperature_fraction
        self.random_state = random_state

    def _check(self):
        if not hasattr(self.adapter, "predict_proba"):
            raise TypeError(f"`adapter` must have predict_proba(inputs); got {type(self.adapter).__name__}")
        if not hasattr(self.conformal, "fit") or not (hasattr(self.conformal, "predict")
                                                       or hasattr(self.conformal, "predict_sets")):
            raise TypeError(f"`conformal` must be a calibrator with fit() and predict()/predict_sets(); got "
                            f"{type(self.conformal).__name__}")
        f = self.temperature_fraction
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not 0.0 <= f < 1.0:
            raise ValueError(f"`temperature_fraction` must be a float in [0, 1); got {f!r}")
        return float(f)

    def fit(self, inputs, labels) -> "ConformalModel":
        frac = self._check()
        labels = np.asarray(labels)
        n = len(inputs)
        if labels.shape != (n,):
            raise ValueError(f"`labels` must have shape ({n},), one per input; got {labels.shape}")
        if frac > 0:
            if not hasattr(self.adapter, "fit_temperature"):
                raise TypeError("`temperature_fraction` > 0 needs an adapter with fit_temperature()")
            perm = np.random.default_rng(self.random_state).permutation(n)
            n_t = int(round(frac * n))
            if n_t < 1 or n - n_t < 1:
                raise ValueError(f"temperature_fraction={frac} leaves no data for one side of the split of {n}")
            t_idx, c_idx = np.sort(perm[:n_t]), np.sort(perm[n_t:])
            self.adapter.fit_temperature(_take(inputs, t_idx), labels[t_idx])
            inputs, labels = _take(inputs, c_idx), labels[c_idx]
            self.n_temperature_ = n_t
        probs = self.adapter.predict_proba(inputs)
        self.conformal.fit(probs, labels)
        self.n_calibration_ = int(len(labels))
        self.n_classes_ = int(probs.shape[1])
        return self

    def predict_proba(self, inputs) -> np.ndarray:
        return self.adapter.predict_proba(inputs)

    def predict(self, inputs):
        """Sets (and abstention, for an abstaining calibrator) for new inputs. Never sees labels."""
        if not hasattr(self, "n_classes_"):
            from conformal import NotFittedError

            raise NotFittedError("this ConformalModel is not fitted yet; call fit(inputs, labels) first")
        probs = self.adapter.predict_proba(inputs)
        if probs.shape[1] != self.n_classes_:
            raise ValueError(f"the model returned {probs.shape[1]} classes; the calibrator was fitted with "
                             f"{self.n_classes_}")
        if hasattr(self.conformal, "predict"):
            return self.conformal.predict(probs)
        return self.conformal.predict_sets(probs)

    def streaming(self, **kwargs):
        """A `StreamingConformal` around the fitted calibrator (keyword arguments go to it)."""
        from adapters.streaming import StreamingConformal

        return StreamingConformal(self.conformal, **kwargs)


def _take(inputs, idx):
    if isinstance(inputs, (list, tuple)):
        return [inputs[i] for i in idx]
    return inputs[idx]
