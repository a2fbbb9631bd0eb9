"""`data: composite_scenes` with `model: scenes_detector`: a real detector (trained here) on composite camera scenes,
with the image corruptions of `perturbations.image` applied to the IMAGES and the detector re-run per cell.

The scenes are `adapters.datasets.load_composite_scenes("test")`: real Fashion-MNIST objects on crops of real
photographs, composed here (synthetic composition of real parts), never seen in training. Each cell corrupts the
pool's images with one generator seeded by (seed, corruption, severity), runs the detector on them in batches and
caches the detections; the ground truth is the same in every cell.
"""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from audit import schema as S
from audit.errors import ConfigError
from audit.tasks.detection.sources.base import Source, corrupt_cell_images

__all__ = ["CompositeScenes", "DATA_DEFAULTS", "MODEL_DEFAULTS"]

DATA_DEFAULTS = {"n_frames": 1000}
MODEL_DEFAULTS = {"weights": None, "batch_size": 100}
_WORKER: dict = {}  # per process: the pool's images and the loaded detector


def _images(n):
    if _WORKER.get("n") != n:
        from adapters.datasets import load_composite_scenes

        _WORKER["images"], _WORKER["gts"] = load_composite_scenes("test", n)
        _WORKER["n"] = n
    return _WORKER["images"], _WORKER["gts"]


def _detector(weights, batch_size):
    key = (weights, batch_size)
    if _WORKER.get("det_key") != key:
        from adapters import reference

        _WORKER["det"] = reference.load("scenes_detector", weights, batch_size=batch_size, progress=False)
        _WORKER["det_key"] = key
    return _WORKER["det"]


def _weights(cfg):
    from adapters import reference

    w = cfg["model"]["params"]["weights"]
    return w if w is not None else str(reference.weights_path("scenes_detector"))


class CompositeScenes(Source):
    name = "composite_scenes"
    help = ("composite camera scenes: REAL Fashion-MNIST objects on REAL photographs, composed here "
            "(adapters.datasets.load_composite_scenes, 128 x 128 RGB); image corruptions, detector re-run per cell")
    synthetic = False
    tag = "composite scenes (real objects and photographs, synthetic composition), real detector"
    models = {"scenes_detector": "the shipped SmallCenterNet (adapters.reference 'scenes_detector'); "
                                 "params: weights (default: shipped), batch_size"}
    corruption_kind = "image corruptions"

    def validate(self, data, model, base_dir):
        if model["name"] not in self.models:
            raise ConfigError(f"config key `model.name` is {model['name']!r}; allowed values: "
                              f"{', '.join(self.models)} (for data {self.name!r})")
        S.check_keys(data["params"], DATA_DEFAULTS.keys(), "data.params")
        d = {**DATA_DEFAULTS, **data["params"]}
        d["n_frames"] = S.integer(d["n_frames"], "data.params.n_frames", lo=20)
        S.check_keys(model["params"], MODEL_DEFAULTS.keys(), "model.params")
        m = {**MODEL_DEFAULTS, **model["params"]}
        if m["weights"] is not None:
            m["weights"] = S.resolve_path(m["weights"], "model.params.weights", base_dir, kind="file")
        m["batch_size"] = S.integer(m["batch_size"], "model.params.batch_size", lo=1)
        return {"name": data["name"], "params": d}, {"name": model["name"], "params": m}

    def dim(self, data):
        return 2

    def n_frames(self, data):
        return data["params"]["n_frames"]

    def class_names(self, cfg):
        from adapters.datasets import FASHION_MNIST_CLASSES

        return list(FASHION_MNIST_CLASSES)

    def image_size(self, data):
        return [128, 128]

    def check_corruption(self, name, path, data):
        from perturbations.image import names

        if name not in names():
            raise ConfigError(f"config key `{path}` is {name!r}, not an image corruption (data {self.name!r}); "
                              f"allowed values: {', '.join(sorted(names()))}")

    def listing(self):
        from perturbations.image import names

        return "    image corruptions (corruptions[].name): " + ", ".join(names())

    def context(self, cfg):
        return {"n_frames": cfg["data"]["params"]["n_frames"], "seed": cfg["seed"], "weights": _weights(cfg),
                "batch_size": cfg["model"]["params"]["batch_size"]}

    def code_digest(self, cfg):
        from adapters import detector, models
        from adapters.datasets import composite
        from audit.runner.cache import file_digest, fingerprint

        w = _weights(cfg)
        return fingerprint(*[Path(m.__file__).read_bytes().decode() for m in (composite, models, detector)],
                           file_digest(w) if Path(w).is_file() else "missing weights")

    def provenance(self, cfg):
        import hashlib

        w = _weights(cfg)
        sha = hashlib.sha256(Path(w).read_bytes()).hexdigest() if Path(w).is_file() else None
        return {"model_file": w, "model_sha256": sha, "code_digest": self.code_digest(cfg)}

    def subset_context(self, context, n):
        return {**context, "n_frames": min(n, context["n_frames"])}

    def setup_worker(self, context):
        import torch  # noqa: F401  (imported before the thread limits are set)

    def frames(self, context, cell):
        images, gts = _images(context["n_frames"])
        records = []
        if cell["name"] != "clean":
            images, records = corrupt_cell_images(images, cell, context["seed"])
            images = np.stack(images)
        det = _detector(context["weights"], context["batch_size"])
        preds = det.predict(images)
        return preds, [dict(g) for g in gts], records

    def example_image(self, context, index):
        return _images(context["n_frames"])[0][index]

    def cell_metrics(self, context, preds, gts):
        try:
            from adapters.coco_eval import coco_ap

            ap = coco_ap(preds, gts, 10)
        except ImportError:  # pycocotools is optional: AP is then reported as missing
            return {}
        return {"ap50": ap["AP50"], "ap": ap["AP"]}

    def train(self, cfg):
        from adapters.train import train

        out = cfg["model"]["params"]["weights"]
        train("scenes_detector", out_dir=None if out is None else str(Path(out).parent))
        return _weights(cfg)

    def caveats(self, results):
        return [f"{html.escape(results['data']['description'])}. The objects and the photographs are real; the "
                "scenes are composed (objects pasted with exact boxes), so they are easier and cleaner than "
                "recorded street scenes. The corruptions are applied to the images and the detector is re-run, so "
                "each cell's detections are the detector's own response to the corrupted image.",
                "AP (pycocotools) is measured on each cell's whole pool of frames, before any conformal step; it "
                "does not vary over the splits."]

    def describe(self, cfg):
        return (f"{cfg['data']['params']['n_frames']} composite 128 x 128 test scenes "
                "(adapters.datasets.load_composite_scenes('test'): real Fashion-MNIST objects on real photographs, "
                "SYNTHETIC composition) seen by the trained scenes_detector (SmallCenterNet)")
