"""Models a classification audit can drive. `prepare` runs once in the main process and returns a small picklable
predictor; worker processes (local or Ray) call its `predict_proba(inputs)`, building heavy objects (torch
modules) lazily on first use, so nothing but arrays and plain specs crosses process boundaries.
"""
from __future__ import annotations

import numpy as np

from audit.errors import ConfigError
from audit.schema import batch_and_device, check_params, integer, resolve_path
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


def cluster_features(clouds) -> np.ndarray:
    """Simple features of LiDAR object clusters in sensor coordinates (size and appearance, not shape alone):
    the xy extents along the cluster's principal axes, its height span and top height, log point count, range of
    its centre, and intensity mean and spread (float32, 9 per cluster; `data: lidar_objects`)."""
    feats = []
    for pts in clouds:
        p = np.asarray(pts, dtype=np.float64)
        xy = p[:, :2] - p[:, :2].mean(0)
        if p.shape[0] > 1:
            _, vec = np.linalg.eigh(np.cov(xy.T) + 1e-9 * np.eye(2))
            q = xy @ vec
            major, minor = np.ptp(q[:, 1]), np.ptp(q[:, 0])
        else:
            major = minor = 0.0
        inten = p[:, 3] if p.shape[1] > 3 else np.zeros(p.shape[0])
        feats.append([major, minor, np.ptp(p[:, 2]), p[:, 2].max(), np.log1p(p.shape[0]),
                      np.linalg.norm(p[:, :2].mean(0)), inten.mean(), inten.std(), major * minor])
    return np.asarray(feats, dtype=np.float32)


FEATURES = {"image": image_features, "pointcloud": cloud_features, "cluster": cluster_features}


def predictor_features(predictor, inputs, modality) -> np.ndarray:
    """Label-free features for the audit's fitted shift statistics: a torch model's penultimate layer
    (`reference.torch_features`), else the linear model's own input vector (`FEATURES`: flattened pixels in
    [0, 1] or the point-cloud descriptor)."""
    if hasattr(predictor, "features"):
        return predictor.features(inputs)
    return FEATURES[modality](inputs)


class LinearSoftmax:
    """A fitted multinomial logistic regression, kept as arrays (no scikit-learn object crosses processes)."""

    def __init__(self, modality, coef, intercept, mean, scale, features=None):
        self.modality, self.coef, self.intercept, self.mean, self.scale = modality, coef, intercept, mean, scale
        self.feature_set = modality if features is None else features

    def features(self, inputs) -> np.ndarray:
        return FEATURES[self.feature_set](inputs)

    def predict_proba(self, inputs) -> np.ndarray:
        x = (FEATURES[self.feature_set](inputs) - self.mean) / self.scale
        z = x.astype(np.float64) @ self.coef.T + self.intercept
        if z.shape[1] == 1:  # binary: scikit-learn keeps one logit z, p(class 1) = sigmoid(z) = softmax([0, z])[1]
            z = np.hstack([np.zeros_like(z), z])
        return softmax(z)


class SklearnLogReg:
    help = "multinomial logistic regression trained in-process on the train split (fast; good for tiny tests)"
    params = {"C": "inverse regularisation strength (default 1.0)", "max_iter": "default 300",
              "features": "'input' (pixels / the point-cloud shape descriptor; default) or 'cluster' (LiDAR object "
                          "clusters: size, height, point count, range, intensity; `cluster_features`)"}

    def check_params(self, params, path, base_dir):
        check_params(params, self.params, path)
        if "C" in params and (isinstance(params["C"], bool) or not isinstance(params["C"], (int, float))
                              or params["C"] <= 0):
            raise ConfigError(f"config key `{path}.C` must be a positive number; got {params['C']!r}")
        if "max_iter" in params:
            params["max_iter"] = integer(params["max_iter"], f"{path}.max_iter", lo=1)
        if params.get("features", "input") not in ("input", "cluster"):
            raise ConfigError(f"config key `{path}.features` is {params['features']!r}; allowed values: input, cluster")

    def prepare(self, params, dataset, seed, train_dir=None):
        from sklearn.linear_model import LogisticRegression

        if dataset.train_labels.shape[0] == 0:
            raise ConfigError("model 'sklearn_logreg' trains on the train split, which is empty; set "
                              "`split.train_fraction` > 0")
        if np.unique(dataset.train_labels).shape[0] != dataset.n_classes:
            raise ConfigError("the train split does not contain every class; raise `split.train_fraction`")
        feature_set = "cluster" if params.get("features") == "cluster" else dataset.modality
        if feature_set == "cluster" and dataset.modality != "pointcloud":
            raise ConfigError("config key `model.params.features` is 'cluster', which needs point-cloud data; data "
                              f"has modality {dataset.modality!r}")
        x = FEATURES[feature_set](dataset.train_inputs)
        mean, scale = x.mean(0), x.std(0) + 1e-6
        clf = LogisticRegression(C=float(params.get("C", 1.0)), max_iter=int(params.get("max_iter", 300)))
        clf.fit((x - mean) / scale, dataset.train_labels)
        return LinearSoftmax(dataset.modality, clf.coef_.astype(np.float64), clf.intercept_.astype(np.float64),
                             mean, scale, feature_set)


# ---------------------------------------------------------------- models from files (torch, TorchScript, ONNX)

ADAPTER_KEYS = {
    "image": {"preprocess": "{size: [h, w], color: gray|rgb|bgr, mean, std, interpolation} (default: see "
                            "DEFAULT_PREPROCESS)", "channels": "rgb|bgr: channel order of 3-channel inputs",
              "batch_size": "images per model call", "device": "cpu, cuda, cuda:1, ..."},
    "pointcloud": {"num_points": "points per cloud fed to the model", "sampling": "fps|random",
                   "normalize": "true|false", "columns": "3 (xyz) or 4 (xyz + intensity)",
                   "random_state": "seed of random sampling / padding", "batch_size": "clouds per model call",
                   "device": "cpu, cuda, ..."},
}
DEFAULT_PREPROCESS = ("images converted to 3-channel RGB (greyscale repeated), scaled to [0, 1], normalised with "
                      "the ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), not resized")


def shorthand(value):
    """`model: {name: torchscript, path: m.pt}` is short for `{name: torchscript, params: {path: m.pt}}`."""
    if isinstance(value, dict) and set(value) - {"name", "params"}:
        extra = {k: v for k, v in value.items() if k not in ("name", "params")}
        params = value.get("params") or {}
        if not isinstance(params, dict):
            return value  # component() reports the bad params
        both = sorted(set(extra) & set(params))
        if both:
            raise ConfigError(f"config key(s) {', '.join('model.' + k for k in both)} given both beside `name` and "
                              "under `model.params`; give each once")
        return {"name": value.get("name"), "params": {**params, **extra}}
    return value


def _build_preprocess(spec: dict, path: str):
    from adapters.preprocess import ImagePreprocess

    if not isinstance(spec, dict):
        raise ConfigError(f"config key `{path}` must be a mapping {{size, color, mean, std, interpolation}}; got "
                          f"{spec!r}")
    allowed = ("size", "color", "mean", "std", "interpolation")
    check_params(spec, dict.fromkeys(allowed, ""), path)
    kw = dict(spec)
    if isinstance(kw.get("size"), list):
        kw["size"] = tuple(kw["size"])
    for k in ("mean", "std"):
        if isinstance(kw.get(k), bool) or (kw.get(k) is not None and not isinstance(kw[k], (int, float, list))):
            raise ConfigError(f"config key `{path}.{k}` must be a number or a list of numbers; got {kw[k]!r}")
    try:
        return ImagePreprocess(**kw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config key `{path}`: {exc}") from None


def adapter_kwargs(modality: str, adapter: dict, path: str) -> dict:
    """The adapter options of a config as keyword arguments of CameraClassifier / LidarClassifier, checked."""
    if not isinstance(adapter, dict):
        raise ConfigError(f"config key `{path}` must be a mapping")
    allowed = ADAPTER_KEYS.get(modality)
    if allowed is None:
        raise ConfigError(f"config key `{path}`: data of modality {modality!r} has no adapter")
    check_params(adapter, allowed, path)
    kw = dict(adapter)
    if modality == "image":
        if kw.get("preprocess") is not None:
            kw["preprocess"] = _build_preprocess(kw["preprocess"], f"{path}.preprocess")
        if kw.get("channels", "rgb") not in ("rgb", "bgr"):
            raise ConfigError(f"config key `{path}.channels` must be 'rgb' or 'bgr'; got {kw['channels']!r}")
    else:
        if "num_points" in kw:
            kw["num_points"] = integer(kw["num_points"], f"{path}.num_points", lo=1)
        if kw.get("sampling", "fps") not in ("fps", "random"):
            raise ConfigError(f"config key `{path}.sampling` must be 'fps' or 'random'; got {kw['sampling']!r}")
        if not isinstance(kw.get("normalize", True), bool):
            raise ConfigError(f"config key `{path}.normalize` must be true or false; got {kw['normalize']!r}")
        if kw.get("columns", 3) not in (3, 4) or isinstance(kw.get("columns"), bool):
            raise ConfigError(f"config key `{path}.columns` must be 3 or 4; got {kw['columns']!r}")
        if kw.get("random_state") is not None:
            kw["random_state"] = integer(kw["random_state"], f"{path}.random_state", lo=0)
    batch_and_device(kw, path)
    return kw


def preprocess_text(cfg: dict) -> str | None:
    """What the audited model's input preprocessing is, in words (image models from files), for the report."""
    if cfg["model"]["name"] not in FILE_KINDS:
        return None
    spec = (cfg["model"]["params"].get("adapter") or {}).get("preprocess")
    if spec is None:
        return f"default ({DEFAULT_PREPROCESS})"
    return repr(_build_preprocess(spec, "model.params.adapter.preprocess"))


class FilePredictor:
    """Builds the model from its file, and its adapter, on first use in each process (only the paths and plain
    options cross process boundaries)."""

    needs_torch = True

    def __init__(self, kind, modality, path, cls, kwargs, adapter_kwargs, n_classes):
        self.kind, self.modality, self.path, self.cls = kind, modality, path, cls
        self.kwargs, self.adapter_kwargs, self.n_classes = kwargs, adapter_kwargs, n_classes
        self.weights = path  # provenance: the sha256 of this file goes into results.json
        self._adapter = None

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_adapter"] = None
        return d

    def _build(self):
        from adapters.loaders import load_model

        # one ONNX Runtime thread per cell, like torch and BLAS (audit.runner.executors.cell_threads)
        net = load_model(self.kind, self.path, cls=self.cls, kwargs=self.kwargs, threads=1)
        return make_adapter(self.modality, net, adapter_kwargs(self.modality, self.adapter_kwargs,
                                                               "model.params.adapter"))

    def features(self, inputs) -> np.ndarray:
        if self._adapter is None:
            self._adapter = self._build()
        return reference.torch_features(self._adapter, inputs)

    def predict_proba(self, inputs) -> np.ndarray:
        if self._adapter is None:
            self._adapter = self._build()
        try:
            probs = np.asarray(self._adapter.predict_proba(inputs), dtype=np.float64)
        except RuntimeError as exc:  # torch's shape errors: say what the model was fed
            if self.modality != "image":
                raise
            from adapters.preprocess import ImagePreprocess

            pre = self._adapter.preprocess or ImagePreprocess()
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RuntimeError(f"{first} (the model was fed images preprocessed by {pre!r}; if it expects other "
                               "input, set model.params.adapter.preprocess: {size, color, mean, std})") from exc
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


class FileModel:
    """`torchscript`, `onnx` and `torch`: a model file (and for `torch` its class), resolved against the config
    file's folder and loaded once at validation, so a missing file or a wrong format fails before any cell runs."""

    def __init__(self, kind):
        self.kind = kind
        common = {"path": "the model file, relative to the config file",
                  "adapter": "CameraClassifier / LidarClassifier options: preprocess {size, color, mean, std}, "
                             "channels, batch_size, device; num_points, sampling, ... for point clouds"}
        if kind == "torch":
            self.help = ("your torch.nn.Module: `path: weights.pt` (a state_dict), `class: nets.py:Net` (a file "
                         "next to the config, or package.module:Net), optional `kwargs`, `adapter`")
            self.params = {**common, "class": "'file.py:Class' or 'package.module:Class' (relative to the config "
                           "file)", "kwargs": "constructor keyword arguments", "weights": "old name of `path`",
                           "module": "old name of `class`"}
        elif kind == "torchscript":
            self.help = "a TorchScript file (torch.jit.trace/script(...).save): `path: model.pt`, optional `adapter`"
            self.params = common
        else:
            self.help = ("an ONNX file run by ONNX Runtime (pip install 'conformal-perception[onnx]'): `path: "
                         "model.onnx`, optional `adapter`")
            self.params = common

    def check_params(self, params, path, base_dir):
        for new, old in (("path", "weights"), ("class", "module")):
            if old in params and self.kind == "torch":
                if new in params:
                    raise ConfigError(f"config keys `{path}.{new}` and `{path}.{old}` (its old name) are both "
                                      "given; keep one")
                params[new] = params.pop(old)
        check_params(params, self.params, path, ("path", "class") if self.kind == "torch" else ("path",))
        params["path"] = resolve_path(params["path"], f"{path}.path", base_dir, kind="file")
        for k in ("kwargs", "adapter"):
            if not isinstance(params.get(k, {}), dict):
                raise ConfigError(f"config key `{path}.{k}` must be a mapping")
        from adapters.loaders import load_model, resolve_class_spec

        try:
            if self.kind == "torch":
                params["class"] = resolve_class_spec(params["class"], base_dir)
            # Load once here: a wrong format or a state_dict that does not fit its class fails at validation.
            load_model(self.kind, params["path"], cls=params.get("class"), kwargs=params.get("kwargs"), threads=1)
        except ImportError as exc:
            raise ConfigError(f"config key `{path}`: {exc}") from None
        except (OSError, TypeError, ValueError) as exc:
            raise ConfigError(f"config key `{path}`: {exc}") from None
        except Exception as exc:  # the user's class itself failed to build
            raise ConfigError(f"config key `{path}`: building the model failed: {type(exc).__name__}: {exc}") from None

    def prepare(self, params, dataset, seed, train_dir=None):
        adapter_kwargs(dataset.modality, params.get("adapter", {}), "model.params.adapter")
        return FilePredictor(self.kind, dataset.modality, params["path"], params.get("class"),
                             params.get("kwargs", {}), params.get("adapter", {}), dataset.n_classes)


FILE_KINDS = ("torch", "torchscript", "onnx")


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
    "torch": FileModel("torch"),
    "torchscript": FileModel("torchscript"),
    "onnx": FileModel("onnx"),
    "reference": ReferenceModel(),
    "precomputed": PrecomputedModel(),
}
