"""Models a classification audit can drive. `prepare` runs once in the main process and returns a small picklable
predictor; worker processes (local or Ray) call its `predict_proba(inputs)`, building heavy objects (torch
modules) lazily on first use, so nothing but arrays and plain specs crosses process boundaries.
"""
from __future__ import annotations

import importlib

import numpy as np

from audit.errors import ConfigError
from audit.schema import check_params, integer, resolve_path
from audit.tasks.classification import reference
from conformal.utils import softmax

# ---------------------------------------------------------------- features for linear models


def image_features(images) -> np.ndarray:
    """Flattened pixels in [0, 1] (float32)."""
    arr = np.asarray(images)
    return (arr.reshape(arr.shape[0], -1).astype(np.float32) / 255.0)


def cloud_features(clouds, bins: int = 16) -> np.ndarray:
    """A fixed-length, order-free descriptor of each cloud: radial-distance histogram, sorted PCA spectrum and
    per-axis coordinate histograms in the PCA frame (all after centring and scaling to unit max radius)."""
    feats = []
    for pts in clouds:
        p = np.asarray(pts, dtype=np.float64)[:, :3]
        p = p - p.mean(0)
        r = np.linalg.norm(p, axis=1)
        scale = r.max() if r.size and r.max() > 0 else 1.0
        p, r = p / scale, r / scale
        ev, vec = np.linalg.eigh(np.cov(p.T) + 1e-12 * np.eye(3))
        order = np.argsort(ev)[::-1]
        ev, vec = ev[order], vec[:, order]
        q = np.abs(p @ vec)
        f = [np.histogram(r, bins=bins, range=(0, 1))[0] / max(len(r), 1), ev / max(ev.sum(), 1e-12)]
        f += [np.histogram(q[:, j], bins=bins // 2, range=(0, 1))[0] / max(len(r), 1) for j in range(3)]
        feats.append(np.concatenate(f))
    return np.asarray(feats, dtype=np.float32)


FEATURES = {"image": image_features, "pointcloud": cloud_features}


def predictor_features(predictor, inputs, modality) -> np.ndarray:
    """Label-free features for the audit's fitted shift statistics: a torch model's penultimate layer
    (`reference.torch_features`), else the linear model's own input vector (`FEATURES`: flattened pixels in
    [0, 1] or the point-cloud descriptor)."""
    if hasattr(predictor, "features"):
        return predictor.features(inputs)
    return FEATURES[modality](inputs)


class LinearSoftmax:
    """A fitted multinomial logistic regression, kept as arrays (no scikit-learn object crosses processes)."""

    def __init__(self, modality, coef, intercept, mean, scale):
        self.modality, self.coef, self.intercept, self.mean, self.scale = modality, coef, intercept, mean, scale

    def predict_proba(self, inputs) -> np.ndarray:
        x = (FEATURES[self.modality](inputs) - self.mean) / self.scale
        z = x.astype(np.float64) @ self.coef.T + self.intercept
        if z.shape[1] == 1:  # binary: scikit-learn keeps one logit z, p(class 1) = sigmoid(z) = softmax([0, z])[1]
            z = np.hstack([np.zeros_like(z), z])
        return softmax(z)


class SklearnLogReg:
    help = "multinomial logistic regression trained in-process on the train split (fast; good for tiny tests)"
    params = {"C": "inverse regularisation strength (default 1.0)", "max_iter": "default 300"}

    def check_params(self, params, path, base_dir):
        check_params(params, self.params, path)
        if "C" in params and (isinstance(params["C"], bool) or not isinstance(params["C"], (int, float))
                              or params["C"] <= 0):
            raise ConfigError(f"config key `{path}.C` must be a positive number; got {params['C']!r}")
        if "max_iter" in params:
            params["max_iter"] = integer(params["max_iter"], f"{path}.max_iter", lo=1)

    def prepare(self, params, dataset, seed, train_dir=None):
        from sklearn.linear_model import LogisticRegression

        if dataset.train_labels.shape[0] == 0:
            raise ConfigError("model 'sklearn_logreg' trains on the train split, which is empty; set "
                              "`split.train_fraction` > 0")
        if np.unique(dataset.train_labels).shape[0] != dataset.n_classes:
            raise ConfigError("the train split does not contain every class; raise `split.train_fraction`")
        x = FEATURES[dataset.modality](dataset.train_inputs)
        mean, scale = x.mean(0), x.std(0) + 1e-6
        clf = LogisticRegression(C=float(params.get("C", 1.0)), max_iter=int(params.get("max_iter", 300)))
        clf.fit((x - mean) / scale, dataset.train_labels)
        return LinearSoftmax(dataset.modality, clf.coef_.astype(np.float64), clf.intercept_.astype(np.float64),
                             mean, scale)


# ---------------------------------------------------------------- torch models


def _import_object(spec: str, key: str):
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"config key `{key}` must be 'package.module:Name'; got {spec!r}")
    mod_name, _, attr = spec.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ConfigError(f"config key `{key}`: cannot import module {mod_name!r} ({exc})") from None
    if not hasattr(mod, attr):
        raise ConfigError(f"config key `{key}`: module {mod_name!r} has no attribute {attr!r}")
    return getattr(mod, attr)


class TorchPredictor:
    """Builds the torch module and its adapter on first use in each process."""

    needs_torch = True

    def __init__(self, modality, module, weights, kwargs, adapter_kwargs, n_classes):
        self.modality, self.module, self.weights = modality, module, weights
        self.kwargs, self.adapter_kwargs, self.n_classes = kwargs, adapter_kwargs, n_classes
        self._adapter = None

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_adapter"] = None
        return d

    def _build(self):
        import torch

        cls = _import_object(self.module, "model.params.module")
        net = cls(**self.kwargs)
        state = torch.load(self.weights, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        net.eval()
        return make_adapter(self.modality, net, self.adapter_kwargs)

    def features(self, inputs) -> np.ndarray:
        if self._adapter is None:
            self._adapter = self._build()
        return reference.torch_features(self._adapter, inputs)

    def predict_proba(self, inputs) -> np.ndarray:
        if self._adapter is None:
            self._adapter = self._build()
        probs = np.asarray(self._adapter.predict_proba(inputs), dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != self.n_classes:
            raise ValueError(f"the model returned outputs of shape {probs.shape}; expected (n, {self.n_classes}) "
                             "for this data set's classes")
        return probs


def make_adapter(modality, net, adapter_kwargs):
    import adapters

    kw = dict(adapter_kwargs)
    kw.setdefault("device", "cpu")
    kw.setdefault("progress", False)  # the audit shows one bar over cells
    if modality == "image":
        return adapters.CameraClassifier(net, **kw)
    return adapters.LidarClassifier(net, **kw)


class TorchModel:
    help = "your torch.nn.Module: `module: pkg.mod:Class`, `weights: file.pt` (a state_dict), optional `kwargs`"
    params = {"module": "import path 'package.module:Class'", "weights": "state_dict file (torch.save)",
              "kwargs": "constructor keyword arguments", "adapter": "keyword arguments of CameraClassifier / "
              "LidarClassifier (e.g. preprocess options, num_points)"}
    required = ("module", "weights")

    def check_params(self, params, path, base_dir):
        check_params(params, self.params, path, self.required)
        params["weights"] = resolve_path(params["weights"], f"{path}.weights", base_dir, kind="file")
        _import_object(params["module"], f"{path}.module")
        for k in ("kwargs", "adapter"):
            if not isinstance(params.get(k, {}), dict):
                raise ConfigError(f"config key `{path}.{k}` must be a mapping")

    def prepare(self, params, dataset, seed, train_dir=None):
        return TorchPredictor(dataset.modality, params["module"], params["weights"], params.get("kwargs", {}),
                              params.get("adapter", {}), dataset.n_classes)


class ReferenceModel:
    help = "a reference model of this project (adapters.reference): digits_cnn, fashion_cnn, shapes_pointnet"
    params = {"name": "reference model name", "weights": "override the weights file (default: the shipped one)"}
    required = ("name",)

    def check_params(self, params, path, base_dir):
        check_params(params, self.params, path, self.required)
        if "weights" in params:  # may not exist yet: `conformal-audit train` writes it
            params["weights"] = resolve_path(params["weights"], f"{path}.weights", base_dir, kind="any")
        if params["name"] not in reference.DATA_OF:
            raise ConfigError(f"config key `{path}.name` is {params['name']!r}; allowed values: "
                              f"{', '.join(sorted(reference.DATA_OF))}")

    def prepare(self, params, dataset, seed, train_dir=None):
        return reference.predictor(params["name"], dataset, params.get("weights"), train_dir=train_dir)


class PrecomputedModel:
    help = "outputs you computed (use with data: precomputed)"
    params = {}

    def check_params(self, params, path, base_dir):
        check_params(params, self.params, path)

    def prepare(self, params, dataset, seed, train_dir=None):
        return None


MODELS = {
    "sklearn_logreg": SklearnLogReg(),
    "torch": TorchModel(),
    "reference": ReferenceModel(),
    "precomputed": PrecomputedModel(),
}
