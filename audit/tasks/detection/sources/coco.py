"""`data: coco`: a user's COCO annotation file with either their own detector outputs (`model: precomputed`, one
COCO result file per cell) or their images and a model that the audit runs on the corrupted images.

With `model: precomputed`:

One COCO annotation file (the ground truth of the frame pool) and one COCO result file per cell: the detector's
output on the clean images and on each corruption at each severity, which the user ran beforehand (e.g. with
`perturbations.image.corrupt` and their own detector). Frames are read with `conformal.detection.io.load_coco`
(aligned by the annotation file's image order, category ids mapped to sorted labels); the results may carry
the ``class_probs`` and ``box_std`` extension fields. Config::

    data:
      name: coco
      params:
        annotations: val_annotations.json
        results:
          clean: results_clean.json
          fog: {1: results_fog_1.json, 5: results_fog_5.json}
    model: {name: precomputed}
    corruptions: [{name: fog, severities: [1, 5]}]

Paths are relative to the config file. Every listed corruption and severity needs its results file.

With a model (`scenes_detector`, the shipped SmallCenterNet, whose 10 classes are the annotation file's 10
categories in sorted id order; or `torchscript`, a TorchScript detector whose forward returns torchvision-style
``list[dict(boxes, scores, labels[, class_probs][, box_std])]``, run through `adapters.TorchDetector`), the images
named by the annotation file's ``file_name`` are read from `data.params.images` (any format OpenCV reads, as RGB),
each cell applies one `perturbations.image` corruption to them (one generator seeded by (seed, corruption,
severity), images in annotation order, every record replayable) and the detector is re-run in batches; the
cells are cached like every audit cell. Config::

    data:
      name: coco
      params: {annotations: val_annotations.json, images: val_images/}
    model:
      name: torchscript
      path: detector.pt            # or under params:
      adapter: {preprocess: {size: [128, 128]}, batch_size: 64}
      label_offset: 0              # 1 for torchvision models (label 0 = background)
    corruptions: [{name: fog, severities: [1, 3, 5]}]
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from audit import schema as S
from audit.errors import ConfigError
from audit.tasks.detection.sources.base import Source, corrupt_cell_images

__all__ = ["CocoFiles", "MODEL_PARAMS"]

MODEL_PARAMS = {
    "scenes_detector": {"weights": "the SmallCenterNet weights (default: the shipped ones)",
                        "batch_size": "images per model call (default 100)"},
    "torchscript": {"path": "the TorchScript file, relative to the config file",
                    "adapter": "TorchDetector options: preprocess {size, color, mean, std, interpolation}, "
                               "channels, batch_size, device",
                    "label_offset": "subtracted from the model's labels (1 for torchvision models)",
                    "input_format": "batch (a (b, C, H, W) tensor) or list (a list of (C, H, W) tensors)"},
}
_WORKER: dict = {}  # per process: the pool's images and the loaded detector


def _annotation_info(path):
    try:
        with open(path, encoding="utf-8") as f:
            ann = json.load(f)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config key `data.params.annotations`: {path} is not valid JSON ({exc})") from None
    if not isinstance(ann, dict) or not isinstance(ann.get("images"), list) or \
            not isinstance(ann.get("categories"), list):
        raise ConfigError(f"config key `data.params.annotations`: {path} is not a COCO annotation file (a JSON "
                          "object with 'images', 'annotations' and 'categories' lists)")
    cats = sorted((c.get("id"), str(c.get("name", c.get("id")))) for c in ann["categories"] if isinstance(c, dict))
    w = max([im.get("width") or 0 for im in ann["images"] if isinstance(im, dict)] or [0])
    h = max([im.get("height") or 0 for im in ann["images"] if isinstance(im, dict)] or [0])
    return len(ann["images"]), [name for _, name in cats], ([int(h), int(w)] if w and h else None)


class CocoFiles(Source):
    name = "coco"
    help = ("a COCO annotation file with your detector's result file per cell, or with your image folder and a "
            "model the audit re-runs on the corrupted images")
    synthetic = False
    tag = "user COCO files"
    models = {"precomputed": "the detections in the result files (the audit runs no model)",
              "scenes_detector": "with data.params.images: the shipped SmallCenterNet run on the corrupted images; "
                                 "params: weights, batch_size",
              "torchscript": "with data.params.images: your TorchScript detector (torchvision-style output) run on "
                             "the corrupted images; params: path, adapter, label_offset, input_format"}
    corruption_kind = "corruptions with result files"

    @staticmethod
    def runs_model(data):
        return "images" in data["params"]

    def validate(self, data, model, base_dir):
        if model["name"] not in self.models:
            raise ConfigError(f"config key `model.name` is {model['name']!r}; allowed values: "
                              f"{', '.join(self.models)} (for data {self.name!r})")
        if model["name"] != "precomputed":
            return self._validate_model(data, model, base_dir)
        if "images" in data["params"]:
            raise ConfigError("config key `data.params.images` is for a model the audit runs (model.name "
                              "scenes_detector or torchscript); with model 'precomputed' give `data.params.results`")
        if model["params"]:
            raise ConfigError(f"config key `model.params`: model 'precomputed' takes no params; got {model['params']}")
        p = data["params"]
        S.check_keys(p, {"annotations", "results"}, "data.params")
        for key in ("annotations", "results"):
            if key not in p:
                raise ConfigError(f"config key `data.params.{key}` is required for data 'coco'")
        ann = S.resolve_path(p["annotations"], "data.params.annotations", base_dir, kind="file")
        res = p["results"]
        if not isinstance(res, dict) or "clean" not in res:
            raise ConfigError("config key `data.params.results` must map 'clean' (and each corruption) to result "
                              f"files; got {res!r}")
        out = {}
        for name, v in res.items():
            key = f"data.params.results.{name}"
            if name == "clean":
                out["clean"] = S.resolve_path(v, key, base_dir, kind="file")
                continue
            if not isinstance(v, dict) or not v:
                raise ConfigError(f"config key `{key}` must map severities (1..5) to result files; got {v!r}")
            sev = {}
            for s, f in v.items():
                s_int = int(s) if isinstance(s, int) or (isinstance(s, str) and s.isdigit()) else None
                if s_int not in range(1, 6):
                    raise ConfigError(f"config key `{key}` has severity {s!r}; severities are integers 1..5")
                sev[s_int] = S.resolve_path(f, f"{key}.{s}", base_dir, kind="file")
            out[str(name)] = dict(sorted(sev.items()))
        n, names, size = _annotation_info(ann)
        params = {"annotations": ann, "results": out, "n_frames": n, "class_names": names, "image_size": size}
        return {"name": data["name"], "params": params}, {"name": model["name"], "params": {}}

    def _validate_model(self, data, model, base_dir):
        p = data["params"]
        if "results" in p:
            raise ConfigError(f"config key `model.name` is {model['name']!r}, a model the audit runs on the images "
                              "of `data.params.images`; with `data.params.results` (your own detections) the "
                              "allowed values: precomputed")
        S.check_keys(p, {"annotations", "images"}, "data.params")
        for key in ("annotations", "images"):
            if key not in p:
                raise ConfigError(f"config key `data.params.{key}` is required for data 'coco' with model "
                                  f"{model['name']!r}")
        ann = S.resolve_path(p["annotations"], "data.params.annotations", base_dir, kind="file")
        folder = S.resolve_path(p["images"], "data.params.images", base_dir, kind="dir")
        n, names, size = _annotation_info(ann)
        files = _image_files(ann, folder)
        params = {"annotations": ann, "images": folder, "files": files, "n_frames": n, "class_names": names,
                  "image_size": size}
        name, mp = model["name"], dict(model["params"])
        S.check_keys(mp, MODEL_PARAMS[name].keys(), "model.params")
        if name == "scenes_detector":
            if len(names) != 10:
                raise ConfigError(f"config key `data.params.annotations`: model 'scenes_detector' predicts 10 "
                                  f"classes (Fashion-MNIST); the annotation file has {len(names)} categories")
            mp = {"weights": None, "batch_size": 100, **mp}
            if mp["weights"] is not None:
                mp["weights"] = S.resolve_path(mp["weights"], "model.params.weights", base_dir, kind="file")
            mp["batch_size"] = S.integer(mp["batch_size"], "model.params.batch_size", lo=1)
        else:
            if "path" not in mp:
                raise ConfigError("config key `model.params.path` is required for model 'torchscript'")
            mp["path"] = S.resolve_path(mp["path"], "model.params.path", base_dir, kind="file")
            mp = {"adapter": {}, "label_offset": 0, "input_format": "batch", **mp}
            _adapter_kwargs(mp["adapter"])
            mp["label_offset"] = S.integer(mp["label_offset"], "model.params.label_offset", lo=0)
            if mp["input_format"] not in ("batch", "list"):
                raise ConfigError(f"config key `model.params.input_format` must be 'batch' or 'list'; got "
                                  f"{mp['input_format']!r}")
            from adapters.loaders import load_model

            try:  # load once here: a wrong file fails before any cell runs
                load_model("torchscript", mp["path"])
            except (OSError, TypeError, ValueError, RuntimeError) as exc:
                raise ConfigError(f"config key `model.params.path`: {exc}") from None
        return {"name": data["name"], "params": params}, {"name": name, "params": mp}

    def check_cells(self, corruptions, data):
        if self.runs_model(data):
            return
        res = data["params"]["results"]
        for i, c in enumerate(corruptions):
            missing = [s for s in c["severities"] if s not in res.get(c["name"], {})]
            if missing:
                raise ConfigError(f"config key `corruptions[{i}]`: {c['name']!r} at severities {missing} has no "
                                  f"results file under `data.params.results.{c['name']}`")

    def check_corruption(self, name, path, data):
        if self.runs_model(data):
            from perturbations.image import names

            if name not in names():
                raise ConfigError(f"config key `{path}` is {name!r}, not an image corruption (data 'coco' with a "
                                  f"model); allowed values: {', '.join(sorted(names()))}")
            return
        if name not in data["params"]["results"]:
            have = sorted(k for k in data["params"]["results"] if k != "clean")
            raise ConfigError(f"config key `{path}` is {name!r}, which has no result files; allowed values: "
                              f"{', '.join(have) or '(none: add them under data.params.results)'}")

    def dim(self, data):
        return 2

    def n_frames(self, data):
        return data["params"]["n_frames"]

    def class_names(self, cfg):
        return cfg["data"]["params"]["class_names"]

    def image_size(self, data):
        return data["params"]["image_size"]

    def _file(self, params, cell):
        return params["results"]["clean"] if cell["name"] == "clean" else \
            params["results"][cell["name"]][cell["severity"]]

    def context(self, cfg):
        return {"params": cfg["data"]["params"], "n_frames": cfg["data"]["params"]["n_frames"], "seed": cfg["seed"],
                "model": cfg["model"]}

    def _model_file(self, cfg):
        from adapters import reference

        m = cfg["model"]
        if m["name"] == "torchscript":
            return m["params"]["path"]
        return m["params"]["weights"] or str(reference.weights_path("scenes_detector"))

    def code_digest(self, cfg):
        from audit.runner.cache import file_digest, fingerprint
        from conformal.detection import io as cio

        p = cfg["data"]["params"]
        if self.runs_model(cfg["data"]):
            from adapters import detector, models

            w = self._model_file(cfg)
            return fingerprint(*[Path(m.__file__).read_text() for m in (cio, detector, models)],
                               file_digest(p["annotations"]), file_digest(w) if Path(w).is_file() else "missing",
                               [file_digest(f) for f in p["files"]])
        files = [p["annotations"], p["results"]["clean"]] + [f for v in p["results"].values() if isinstance(v, dict)
                                                             for f in v.values()]
        return fingerprint(Path(cio.__file__).read_text(), *[file_digest(f) for f in files])

    def provenance(self, cfg):
        out = {"annotations": cfg["data"]["params"]["annotations"], "code_digest": self.code_digest(cfg)}
        if self.runs_model(cfg["data"]):
            import hashlib

            w = self._model_file(cfg)
            out.update(images=cfg["data"]["params"]["images"], model_file=w,
                       model_sha256=hashlib.sha256(Path(w).read_bytes()).hexdigest() if Path(w).is_file() else None)
        return out

    def setup_worker(self, context):
        if "images" in context["params"]:
            import torch  # noqa: F401  (imported before the thread limits are set)

    def subset_context(self, context, n):
        return {**context, "n_frames": min(n, context["n_frames"])}

    def frames(self, context, cell):
        from conformal.detection.io import load_coco

        p = context["params"]
        n = context["n_frames"]
        if "images" in p:
            return _model_frames(context, cell)
        d = load_coco(p["annotations"], self._file(p, cell))
        return d.preds[:n], d.gts[:n], []

    def example_image(self, context, index):
        if "images" not in context["params"]:
            return None  # the result files' detections only: the audit has no images
        return _read_images([context["params"]["files"][index]])[0]

    def cell_metrics(self, context, preds, gts):
        try:
            from adapters.coco_eval import coco_ap

            ap = coco_ap(preds, gts, len(context["params"]["class_names"]))
        except ImportError:
            return {}
        return {"ap50": ap["AP50"], "ap": ap["AP"]}

    def caveats(self, results):
        if "images" in results["config"]["data"]["params"]:
            return [f"{html.escape(results['data']['description'])}. The corruptions are applied to the images and "
                    "the detector is re-run, so each cell's detections are the detector's own response to the "
                    "corrupted image.",
                    "AP (pycocotools) is measured on each cell's whole pool of frames, before any conformal step; it "
                    "does not vary over the splits."]
        return [f"{html.escape(results['data']['description'])}. The audit runs no model: each cell's detections are "
                "the given result file's, so what each corruption did to the images is as the user applied it."]

    def describe(self, cfg):
        p = cfg["data"]["params"]
        if self.runs_model(cfg["data"]):
            return (f"COCO images: {p['n_frames']} images of {Path(p['annotations']).name} with "
                    f"{len(p['class_names'])} categories, read from {Path(p['images']).name}/ and seen by "
                    f"{cfg['model']['name']} ({Path(self._model_file(cfg)).name}); image corruptions applied here, "
                    "detector re-run per cell")
        n_files = 1 + sum(len(v) for k, v in p["results"].items() if k != "clean")
        return (f"COCO files: {p['n_frames']} images of {Path(p['annotations']).name} with "
                f"{len(p['class_names'])} categories, detections from {n_files} result files")


def _image_files(annotations, folder):
    """The image file of each annotation image, in annotation order (ConfigError for a missing name or file)."""
    with open(annotations, encoding="utf-8") as f:
        images = json.load(f)["images"]
    files = []
    for i, im in enumerate(images):
        name = im.get("file_name") if isinstance(im, dict) else None
        if not isinstance(name, str) or not name:
            raise ConfigError(f"config key `data.params.annotations`: images[{i}] has no 'file_name' (needed to read "
                              "the images from data.params.images)")
        path = Path(folder) / name
        if not path.is_file():
            raise ConfigError(f"config key `data.params.images`: image file {str(path)!r} of images[{i}] "
                              f"(id {im.get('id')!r}) does not exist")
        files.append(str(path.resolve()))
    return files


ADAPTER_KEYS = {"preprocess": "{size: [h, w], color: gray|rgb|bgr, mean, std, interpolation} (default: RGB scaled "
                              "to [0, 1], ImageNet mean and std, not resized)",
                "channels": "rgb|bgr: channel order the model expects", "batch_size": "images per model call",
                "device": "cpu, cuda, cuda:1, ..."}


def _adapter_kwargs(adapter):
    """`model.params.adapter` as TorchDetector keyword arguments, checked (ConfigError naming the key)."""
    from adapters.preprocess import ImagePreprocess

    path = "model.params.adapter"
    if not isinstance(adapter, dict):
        raise ConfigError(f"config key `{path}` must be a mapping; got {adapter!r}")
    S.check_keys(adapter, ADAPTER_KEYS.keys(), path)
    kw = dict(adapter)
    if kw.get("preprocess") is not None:
        spec = kw["preprocess"]
        if not isinstance(spec, dict):
            raise ConfigError(f"config key `{path}.preprocess` must be a mapping {{size, color, mean, std, "
                              f"interpolation}}; got {spec!r}")
        S.check_keys(spec, {"size", "color", "mean", "std", "interpolation"}, f"{path}.preprocess")
        spec = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
        try:
            kw["preprocess"] = ImagePreprocess(**spec)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config key `{path}.preprocess`: {exc}") from None
    if kw.get("channels", "rgb") not in ("rgb", "bgr"):
        raise ConfigError(f"config key `{path}.channels` must be 'rgb' or 'bgr'; got {kw['channels']!r}")
    S.batch_and_device(kw, path)
    return kw


def _read_images(files):
    import cv2

    out = []
    for f in files:
        im = cv2.imread(f, cv2.IMREAD_COLOR)
        if im is None:
            raise ValueError(f"image file {f!r} cannot be read by OpenCV")
        out.append(np.ascontiguousarray(im[:, :, ::-1]))  # BGR -> RGB
    return out


def _pool(context):
    from conformal.detection.io import load_coco

    p, n = context["params"], context["n_frames"]
    key = (p["annotations"], tuple(p["files"][:n]))
    if _WORKER.get("pool_key") != key:
        _WORKER["images"] = _read_images(p["files"][:n])
        _WORKER["gts"] = load_coco(p["annotations"]).gts[:n]
        _WORKER["pool_key"] = key
    return _WORKER["images"], _WORKER["gts"]


def _model(context):
    m = context["model"]
    key = json.dumps(m, sort_keys=True)
    if _WORKER.get("det_key") != key:
        mp = m["params"]
        if m["name"] == "scenes_detector":
            from adapters import reference

            det = reference.load("scenes_detector", mp["weights"], batch_size=mp["batch_size"], progress=False)
        else:
            from adapters.detector import TorchDetector
            from adapters.loaders import load_model
            kw = _adapter_kwargs(mp["adapter"])
            det = TorchDetector(load_model("torchscript", mp["path"]), **kw, progress=False,
                                num_classes=len(context["params"]["class_names"]),
                                label_offset=mp["label_offset"], input_format=mp["input_format"])
        _WORKER["det"], _WORKER["det_key"] = det, key
    return _WORKER["det"]


def _model_frames(context, cell):
    images, gts = _pool(context)
    records = []
    if cell["name"] != "clean":  # images in annotation order
        images, records = corrupt_cell_images(images, cell, context["seed"])
    if len({im.shape for im in images}) == 1:
        images = np.stack(images)
    preds = _model(context).predict(images)
    return preds, [dict(g) for g in gts], records
