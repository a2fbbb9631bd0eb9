"""`data: coco` with `model: precomputed`: a user's own detector outputs, read from COCO files.

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
"""
from __future__ import annotations

import html
import json
from pathlib import Path

from audit import schema as S
from audit.errors import ConfigError
from audit.tasks.detection.sources.base import Source

__all__ = ["CocoFiles"]


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
    help = "your detector's outputs as COCO files: one annotation file and a result file per cell"
    synthetic = False
    tag = "user COCO files"
    models = {"precomputed": "the detections in the result files (the audit runs no model)"}
    corruption_kind = "corruptions with result files"

    def validate(self, data, model, base_dir):
        if model["name"] not in self.models:
            raise ConfigError(f"config key `model.name` is {model['name']!r}; allowed values: "
                              f"{', '.join(self.models)} (for data {self.name!r})")
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

    def check_cells(self, corruptions, data):
        res = data["params"]["results"]
        for i, c in enumerate(corruptions):
            missing = [s for s in c["severities"] if s not in res.get(c["name"], {})]
            if missing:
                raise ConfigError(f"config key `corruptions[{i}]`: {c['name']!r} at severities {missing} has no "
                                  f"results file under `data.params.results.{c['name']}`")

    def check_corruption(self, name, path, data):
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
        return {"params": cfg["data"]["params"], "n_frames": cfg["data"]["params"]["n_frames"]}

    def code_digest(self, cfg):
        from audit.runner.cache import file_digest, fingerprint
        from conformal.detection import io as cio

        p = cfg["data"]["params"]
        files = [p["annotations"], p["results"]["clean"]] + [f for v in p["results"].values() if isinstance(v, dict)
                                                             for f in v.values()]
        return fingerprint(Path(cio.__file__).read_text(), *[file_digest(f) for f in files])

    def provenance(self, cfg):
        return {"annotations": cfg["data"]["params"]["annotations"], "code_digest": self.code_digest(cfg)}

    def subset_context(self, context, n):
        return {**context, "n_frames": min(n, context["n_frames"])}

    def frames(self, context, cell):
        from conformal.detection.io import load_coco

        p = context["params"]
        d = load_coco(p["annotations"], self._file(p, cell))
        n = context["n_frames"]
        return d.preds[:n], d.gts[:n], []

    def cell_metrics(self, context, preds, gts):
        try:
            from adapters.coco_eval import coco_ap

            ap = coco_ap(preds, gts, len(context["params"]["class_names"]))
        except ImportError:
            return {}
        return {"ap50": ap["AP50"], "ap": ap["AP"]}

    def caveats(self, results):
        return [f"{html.escape(results['data']['description'])}. The audit runs no model: each cell's detections are "
                "the given result file's, so what each corruption did to the images is as the user applied it."]

    def describe(self, cfg):
        p = cfg["data"]["params"]
        n_files = 1 + sum(len(v) for k, v in p["results"].items() if k != "clean")
        return (f"COCO files: {p['n_frames']} images of {Path(p['annotations']).name} with "
                f"{len(p['class_names'])} categories, detections from {n_files} result files")
