"""ConformalModel: a model adapter and a `conformal` calibrator, fitted and applied in one call."""
from __future__ import annotations

import copy
import numbers

import numpy as np

from adapters._arrays import is_tensor, to_host
from conformal._base import BaseEstimator, Int, Interval, Optional, Satisfies, clone_params
from conformal.calibrators import _SEED
from conformal.utils import check_random_state

__all__ = ["ConformalModel"]


def _is_adapter(obj) -> bool:
    return hasattr(obj, "predict_proba")


def _is_calibrator(obj) -> bool:
    return hasattr(obj, "fit") and (hasattr(obj, "predict") or hasattr(obj, "predict_sets"))


def _side_inputs_needed(calibrator) -> tuple:
    """The side inputs ("features", "logits", "inputs") the calibrator's statistics need (DualThresholdConformal
    with fitted statistics); () for anything else."""
    need = getattr(calibrator, "required_side_inputs", None)
    return tuple(need()) if callable(need) else ()


def _outputs(adapter, inputs, need: tuple):
    """(probs, side inputs): one forward pass with features when a statistic needs features or logits."""
    side = {}
    if "features" in need or "logits" in need:
        if hasattr(adapter, "predict_outputs"):
            out = adapter.predict_outputs(inputs)
            probs, side["features"], side["logits"] = out.probs, out.features, out.logits
        else:
            missing = "features" if "features" in need else "logits"
            raise TypeError(f"the calibrator's statistics need `{missing}`, but the adapter "
                            f"{type(adapter).__name__} has no predict_outputs(inputs) (CameraClassifier and "
                            f"LidarClassifier have one)")
    else:
        probs = adapter.predict_proba(inputs)
    probs = np.asarray(to_host(probs))  # an adapter of your own may return torch
    if "inputs" in need:
        side["inputs"] = to_host(inputs)
    return probs, {k: v for k, v in side.items() if k in need}


def _copy(obj):
    """An unfitted copy of a calibrator (its parameters), or a deep copy of anything else."""
    return clone_params(obj) if isinstance(obj, BaseEstimator) else copy.deepcopy(obj)


class ConformalModel(BaseEstimator):
    """Model + calibrator (+ abstention) in one object.

    Parameters
    ----------
    adapter : CameraClassifier, LidarClassifier or any object with ``predict_proba(inputs) -> (n, K)``
    conformal : an unfitted calibrator from `conformal` (SplitConformalClassifier,
        ClassConditionalConformalClassifier, DualThresholdConformal, ...): anything with ``fit(probs, labels)``
        and ``predict(probs)`` or ``predict_sets(probs)``.
    temperature_fraction : float in [0, 1)
        If > 0, this fraction of the fit data (a seeded random subset) fits the temperature of a copy of the adapter
        first and the calibrator is fitted on the rest only, so the calibrator sees a fixed model and keeps its
        guarantee.
    random_state : int or None
        Seed of that split.

    `fit(inputs, labels)` must get data the model was not trained on; it never modifies `adapter` or `conformal`
    (scikit-learn's rule): the fitted ones are `adapter_` and `conformal_`. When the calibrator's statistics read
    side inputs (``DualThresholdConformal(statistic=("entropy", "knn"))``), fit and predict get the features and
    logits from the adapter's `predict_outputs` (one forward pass) and pass them on, with the raw inputs.
    `predict(inputs)` returns what the calibrator's `predict` returns (`Decisions` for DualThresholdConformal),
    else its boolean sets.

    Attributes
    ----------
    adapter_ : the adapter used (a copy with a fitted temperature when temperature_fraction > 0, else `adapter`)
    conformal_ : the fitted calibrator (a copy of `conformal`)
    n_temperature_ : int or None;  n_calibration_, n_classes_ : int
    """

    _parameter_constraints = {
        "adapter": [Satisfies(_is_adapter, "an object with predict_proba(inputs)")],
        "conformal": [Satisfies(_is_calibrator, "a calibrator with fit() and predict()/predict_sets()")],
        "temperature_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "random_state": _SEED,
    }
    _fitted_marker = "conformal_"
    _fitted_attributes = {"n_temperature_": Optional(Int(1)), "n_calibration_": Int(1), "n_classes_": Int(2)}

    def __init__(self, *, adapter, conformal, temperature_fraction: float = 0.0, random_state: int | None = 0):
        self.adapter = adapter
        self.conformal = conformal
        self.temperature_fraction = temperature_fraction
        self.random_state = random_state

    def _check_dependent_params(self) -> None:
        if self.temperature_fraction > 0 and not hasattr(self.adapter, "fit_temperature"):
            raise TypeError("`temperature_fraction` > 0 needs an adapter with fit_temperature()")

    def fit(self, inputs, labels) -> "ConformalModel":
        self.validate_params()
        frac = float(self.temperature_fraction)
        labels = np.asarray(to_host(labels))  # torch labels, CUDA ones copied to the host
        n = len(inputs)
        if labels.shape != (n,):
            raise ValueError(f"`labels` must have shape ({n},), one per input; got {labels.shape}")
        adapter, n_temperature = self.adapter, None
        if frac > 0:
            perm = check_random_state(self.random_state, "random_state").permutation(n)
            n_t = int(round(frac * n))
            if n_t < 1 or n - n_t < 1:
                raise ValueError(f"temperature_fraction={frac} leaves no data for one side of the split of {n}")
            t_idx, c_idx = np.sort(perm[:n_t]), np.sort(perm[n_t:])
            adapter = copy.deepcopy(self.adapter)
            adapter.fit_temperature(_take(inputs, t_idx), labels[t_idx])
            inputs, labels = _take(inputs, c_idx), labels[c_idx]
            n_temperature = n_t
        probs, side = _outputs(adapter, inputs, _side_inputs_needed(self.conformal))
        self.conformal_ = _copy(self.conformal).fit(probs, labels, **side)
        self.adapter_ = adapter
        self.n_temperature_ = n_temperature
        self.n_calibration_ = int(len(labels))
        self.n_classes_ = int(probs.shape[1])
        return self

    def predict_proba(self, inputs) -> np.ndarray:
        return np.asarray(to_host((self.adapter_ if self.__sklearn_is_fitted__() else self.adapter)
                                  .predict_proba(inputs)))

    def predict(self, inputs):
        """Sets (and abstention, for an abstaining calibrator) for new inputs. Never sees labels."""
        self._check_is_fitted()
        probs, side = _outputs(self.adapter_, inputs, _side_inputs_needed(self.conformal_))
        if probs.shape[1] != self.n_classes_:
            raise ValueError(f"the model returned {probs.shape[1]} classes; the calibrator was fitted with "
                             f"{self.n_classes_}")
        if hasattr(self.conformal_, "predict"):
            return self.conformal_.predict(probs, **side)
        return self.conformal_.predict_sets(probs)

    def streaming(self, **kwargs):
        """A `StreamingConformal` around the fitted calibrator (keyword arguments go to it)."""
        from adapters.streaming import StreamingConformal

        self._check_is_fitted()
        return StreamingConformal(self.conformal_, **kwargs)

    def to_dict(self) -> dict:
        raise TypeError("a ConformalModel holds a model, which is not saved as JSON: save its fitted calibrator "
                        "(`model.conformal_.save(path)`) and rebuild the adapter from its weights")


def _take(inputs, idx):
    if isinstance(inputs, (list, tuple)):
        return [inputs[i] for i in idx]
    if is_tensor(inputs):  # index on the tensor's own device
        import torch

        return inputs[torch.as_tensor(idx, device=inputs.device)]
    return inputs[idx]
