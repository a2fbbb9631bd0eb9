"""The project's reference models (`adapters.reference`) as audit models, with a guard against auditing a model
on the data it was trained on, and `conformal-audit train`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from audit.errors import ConfigError

# reference model -> (data source it must be audited on, training task of `python -m adapters.train`)
DATA_OF = {"digits_cnn": ("digits", "digits"), "fashion_cnn": ("fashion_mnist", "fashion_mnist"),
           "shapes_pointnet": ("shapes", "shapes")}


def torch_features(adapter, inputs) -> np.ndarray:
    """The input of the network's last nn.Linear (the penultimate features), float32, one forward pass."""
    if hasattr(adapter, "predict_outputs"):
        return np.asarray(adapter.predict_outputs(inputs).features, dtype=np.float32)
    import torch

    linear = [m for m in adapter.model.modules() if isinstance(m, torch.nn.Linear)]
    if not linear:
        raise ValueError("the model has no nn.Linear layer whose input could serve as features")
    feats = []
    hook = linear[-1].register_forward_pre_hook(lambda _m, inp: feats.append(inp[0].detach().cpu().numpy()))
    try:
        adapter.predict_logits(inputs)
    finally:
        hook.remove()
    return np.concatenate(feats).reshape(len(inputs), -1).astype(np.float32)



class ReferencePredictor:
    """`adapters.reference.load(name, weights)` built lazily in each process (torch modules are not shipped
    between processes; the name and weights path are)."""

    needs_torch = True

    def __init__(self, name, weights, n_classes):
        self.name, self.weights, self.n_classes = name, weights, n_classes
        self._adapter = None

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_adapter"] = None
        return d

    def features(self, inputs) -> np.ndarray:
        """Penultimate features (the input of the last nn.Linear), for the audit's shift statistics."""
        self.predict_proba(inputs[:1])  # builds the adapter
        if not isinstance(inputs, list):
            inputs = np.asarray(inputs)
        return torch_features(self._adapter, inputs)

    def predict_proba(self, inputs) -> np.ndarray:
        if self._adapter is None:
            from adapters import reference

            self._adapter = reference.load(self.name, self.weights, progress=False)
        if not isinstance(inputs, list):
            inputs = np.asarray(inputs)
        probs = np.asarray(self._adapter.predict_proba(inputs), dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != self.n_classes:
            raise ValueError(f"reference model {self.name!r} returned shape {probs.shape}; the data set has "
                             f"{self.n_classes} classes")
        return probs


def check_data(name: str, dataset) -> None:
    """Refuse combinations where the audit pool overlaps the reference model's training data."""
    from adapters import reference

    if name not in DATA_OF:
        raise ConfigError(f"config key `model.params.name` is {name!r}; allowed values: {', '.join(sorted(DATA_OF))}")
    want = DATA_OF[name][0]
    got = dataset.extra.get("source")
    if got != want:
        raise ConfigError(f"reference model {name!r} was trained on {want!r} data; the config's data is {got!r}")
    if name == "digits_cnn" and dataset.extra.get("split") != "reference":
        raise ConfigError("reference model 'digits_cnn' was trained on the first half of "
                          "adapters.reference.digits_split(); set `data.params.split: reference` so that the audit "
                          "pool is the held-out half (a seeded split would put training images into the pool)")
    if name == "digits_cnn" and dataset.extra.get("size") != 28:
        raise ConfigError("reference model 'digits_cnn' takes 28 x 28 images; set `data.params.size: 28`")
    if name == "shapes_pointnet" and dataset.extra.get("shapes_seed") == reference.SHAPES_TRAIN_SEED:
        raise ConfigError(f"reference model 'shapes_pointnet' was trained on make_shapes seed "
                          f"{reference.SHAPES_TRAIN_SEED}; set `data.params.seed` to another value")
    # fashion_cnn: the pool is the official test file, which the model never saw


def predictor(name: str, dataset, weights=None, train_dir=None) -> ReferencePredictor:
    from adapters import reference

    check_data(name, dataset)
    path = Path(weights) if weights is not None else reference.weights_path(name)
    if not path.is_file():
        task = DATA_OF[name][1]
        raise ConfigError(f"weights of reference model {name!r} not found at {path}; build them with "
                          f"`conformal-audit train CONFIG` (or `python -m adapters.train {task}`)")
    return ReferencePredictor(name, str(path), dataset.n_classes)


def train_from_config(cfg: dict) -> Path:
    """Train the reference model named by `cfg` (its `model` must be `reference`); returns the weights path."""
    from adapters import reference
    from adapters.train import train

    if cfg["model"]["name"] != "reference":
        raise ConfigError(f"`conformal-audit train` trains reference models; this config's model is "
                          f"{cfg['model']['name']!r} (sklearn_logreg trains itself during `run`)")
    name = cfg["model"]["params"]["name"]
    if name not in DATA_OF:
        raise ConfigError(f"config key `model.params.name` is {name!r}; allowed values: {', '.join(sorted(DATA_OF))}")
    weights = cfg["model"]["params"].get("weights")
    out_dir = Path(weights).parent if weights else None
    train(DATA_OF[name][1], out_dir=out_dir)
    return (out_dir / reference.REFERENCE[name]["file"]) if out_dir else reference.weights_path(name)
