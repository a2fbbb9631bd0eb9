"""`data: synthetic_scenes` with `model: simulated_detector`: SYNTHETIC scenes seen by a SIMULATED detector,
degraded after the fact by the detector degradations.

No labelled real detection data can be read offline, so this source simulates both: the scenes and the detector
of `adapters.datasets.make_scenes`, with known ground truth. Frame i of the clean detector is seeded
by (seed, i) only, so every cell starts from the same frames; a degradation then transforms them with a
generator seeded by (seed, degradation, i), the same at every severity, so cells differ by the degradation alone
and severities are nested (see `perturbations.detector`).
"""
from __future__ import annotations

import html
import zlib
from pathlib import Path

import numpy as np

from audit import schema as S
from audit.errors import ConfigError
from audit.tasks.detection.sources.base import Source
from perturbations.detector import REGISTRY as DEGRADATIONS
from perturbations.detector import degradation_names, value

__all__ = ["SyntheticScenes", "DATA_DEFAULTS", "MODEL_DEFAULTS"]

DATA_DEFAULTS = {"dim": 2, "n_frames": 1000, "n_classes": 4, "mean_objects": 6.0, "image_size": [480, 640],
                 "max_range": 70.0}
MODEL_DEFAULTS = {"bias": 0.0, "noise": None, "noise_growth": None, "miss_rate": 0.1, "fp_rate": 1.0,
                  "confusion": 0.1, "class_signal": 3.0, "flip_rate": 0.0, "quality_spread": 0.4,
                  "translation": 0.6}


def _params(component: dict, defaults: dict, path: str) -> dict:
    S.check_keys(component["params"], defaults.keys(), path)
    out = dict(defaults)
    out.update(component["params"])
    return out


def _data(data: dict) -> dict:
    p = _params(data, DATA_DEFAULTS, "data.params")
    if p["dim"] not in (2, 3) or isinstance(p["dim"], bool):
        raise ConfigError(f"config key `data.params.dim` is {p['dim']!r}; allowed values: 2 (image boxes), "
                          "3 (LiDAR-style 3D boxes)")
    p["n_frames"] = S.integer(p["n_frames"], "data.params.n_frames", lo=20)
    p["n_classes"] = S.integer(p["n_classes"], "data.params.n_classes", lo=2)
    p["mean_objects"] = S.number(p["mean_objects"], "data.params.mean_objects", lo=0.0, lo_open=True)
    size = p["image_size"]
    if not isinstance(size, list) or len(size) != 2:
        raise ConfigError(f"config key `data.params.image_size` must be [height, width] in px; got {size!r}")
    p["image_size"] = [S.integer(s, "data.params.image_size[]", lo=64) for s in size]
    p["max_range"] = S.number(p["max_range"], "data.params.max_range", lo=10.0)
    return {"name": data["name"], "params": p}


def _model(model: dict, dim: int) -> dict:
    m = _params(model, MODEL_DEFAULTS, "model.params")
    m["noise"] = S.number(m["noise"], "model.params.noise", lo=0.0, allow_none=True)
    m["noise_growth"] = S.number(m["noise_growth"], "model.params.noise_growth", lo=0.0, allow_none=True)
    if m["noise"] is None:  # resolved here so the saved config states the detector exactly
        m["noise"] = 2.0 if dim == 2 else 0.15
    if m["noise_growth"] is None:
        m["noise_growth"] = 0.03
    for key, hi, hi_open in (("bias", None, False), ("miss_rate", 1.0, True), ("fp_rate", None, False),
                             ("confusion", 1.0, False), ("class_signal", None, False), ("flip_rate", 1.0, False),
                             ("quality_spread", None, False), ("translation", 1.0, True)):
        m[key] = S.number(m[key], f"model.params.{key}", lo=0.0, hi=hi, hi_open=hi_open)
    if dim == 2 and m["flip_rate"] > 0:
        raise ConfigError("config key `model.params.flip_rate` applies to 3D scenes only (data.params.dim: 3)")
    return {"name": model["name"], "params": m}


def simulate(ctx: dict, name: str, severity: int):
    """(predictions, ground truth, records) of the pool's frames for one cell.

    Frame i of the clean detector is seeded by (seed, i) only, so every cell starts from the same frames; a
    degradation then transforms them with a generator seeded by (seed, degradation, i), the same at every
    severity (see `perturbations.detector`). records: what the degradation applied to each frame
    (`perturbations.registry.corrupt_logged`; empty for the clean cell)."""
    from adapters.datasets import make_scenes
    from perturbations.registry import corrupt_logged

    dim = ctx["dim"]
    scene = {k: v for k, v in ctx["scene"].items() if k not in ("dim", "n_frames")}
    scene["image_size"] = tuple(scene["image_size"])
    key = "boxes" if dim == 2 else "boxes3d"
    preds, gts, records = [], [], []
    for i in range(ctx["n_frames"]):
        rng = np.random.default_rng(np.random.SeedSequence([ctx["seed"], 8117, i]))
        (p,), (g,) = make_scenes(1, dim=dim, rng=rng, **scene, **ctx["detector"])
        if name != "clean":
            drng = np.random.default_rng(np.random.SeedSequence([ctx["seed"], 8119, zlib.crc32(name.encode()), i]))
            p, rec = corrupt_logged(p, name, severity, drng, "detections", gt=g, dim=dim, scene=scene,
                                    detector=ctx["detector"])
            records.append(rec)
        # the generator's "_gt_index" is ground truth: it never reaches the conformal detector
        preds.append({key: p[key], "scores": p["scores"], "labels": p["labels"], "class_probs": p["class_probs"],
                      "box_std": p["box_std"]})
        gts.append(g)
    return preds, gts, records


class SyntheticScenes(Source):
    name = "synthetic_scenes"
    help = ("SYNTHETIC scenes with known ground truth (adapters.datasets.make_scenes); dim 2: image boxes in px, "
            "dim 3: LiDAR-style 3D boxes in m")
    synthetic = True
    tag = "SYNTHETIC scenes, SIMULATED detector"
    models = {"simulated_detector": "a SIMULATED detector (box noise, bias, misses, false positives, class "
                                    "confusion, heading flips), the clean reference that degradations worsen"}
    corruption_kind = "detector degradations"

    def validate(self, data, model, base_dir):
        if model["name"] not in self.models:
            raise ConfigError(f"config key `model.name` is {model['name']!r}; allowed values: "
                              f"{', '.join(self.models)} (for data {self.name!r})")
        data = _data(data)
        return data, _model(model, data["params"]["dim"])

    def dim(self, data):
        return data["params"]["dim"]

    def n_frames(self, data):
        return data["params"]["n_frames"]

    def class_names(self, cfg):
        return [f"class {k}" for k in range(cfg["data"]["params"]["n_classes"])]

    def image_size(self, data):
        return data["params"]["image_size"] if data["params"]["dim"] == 2 else None

    def check_corruption(self, name, path, data):
        dim = data["params"]["dim"]
        allowed = degradation_names(dim)
        if name not in DEGRADATIONS:
            raise ConfigError(f"config key `{path}` is {name!r}, not a detector degradation; allowed values: "
                              f"{', '.join(allowed)}")
        if name not in allowed:
            raise ConfigError(f"config key `{path}`: degradation {name!r} is not defined for dim={dim} "
                              f"scenes; allowed values: {', '.join(allowed)}")

    def listing(self):
        lines = ["    detector degradations (corruptions[].name), values at severity 1..5:"]
        for name, d in DEGRADATIONS.items():
            cols = []
            for dim in (2, 3):
                cols.append("n/a" if f"{dim}d" not in d.tags else
                            ", ".join(f"{value(name, s, dim):g}" for s in range(1, 6))
                            + f" {d.units.get(f'{dim}d.v', '')}")
            lines.append(f"      {name:16s} {d.doc}\n{'':24s}{d.rule}; 2D: {cols[0].strip()}; 3D: {cols[1].strip()}")
        return "\n".join(lines)

    def context(self, cfg):
        p = cfg["data"]["params"]
        return {"dim": p["dim"], "scene": p, "detector": cfg["model"]["params"], "n_frames": p["n_frames"],
                "seed": cfg["seed"]}

    def code_digest(self, cfg):
        from adapters.datasets import detection as scenes
        from audit.runner.cache import fingerprint
        from perturbations import detector, false_positives

        return fingerprint(*[Path(m.__file__).read_bytes().decode() for m in (scenes, false_positives, detector)])

    def subset_context(self, context, n):
        return {**context, "n_frames": min(n, context["n_frames"])}

    def provenance(self, cfg):
        return {"model": "simulated detector (adapters.datasets.make_scenes), parameters in the config",
                "code_digest": self.code_digest(cfg)}

    def frames(self, context, cell):
        return simulate(context, cell["name"], cell["severity"])

    def train(self, cfg):
        raise ConfigError("task 'detection' with data 'synthetic_scenes' audits a simulated detector; there is no "
                          "model to train")

    def caveats(self, results):
        return [f"Both the data and the detector are simulated: {html.escape(results['data']['description'])}. "
                "The 'degradations' transform the simulated detector's output; they are not corruptions of real "
                "sensor data. Numbers describe this simulator, not any real detector or sensor.",
                "Every cell holds the same scenes and the same clean detections (frame i is seeded by (seed, i)); "
                "a degradation transforms them after the fact, so cells differ by the degradation only."]

    def corruption_table(self, results):
        return "<h2>Degradations (severity tables in docs/audit.md)</h2>" + degradation_table(results)

    def describe(self, cfg):
        return describe(cfg)


def degradation_table(results: dict) -> str:
    dim = results["data"]["dim"]
    rows = []
    for c in results["config"]["corruptions"]:
        d = DEGRADATIONS[c["name"]]
        unit = d.units.get(f"{dim}d.v", "")
        vals = ", ".join(f"S{s}: {value(c['name'], s, dim):g}" for s in c["severities"])
        rows.append(f"<tr><td class='l'>{c['name']}</td><td class='l'>{html.escape(d.doc)}</td>"
                    f"<td class='l'>{html.escape(d.rule)}</td><td class='l'>{vals} {html.escape(unit)}</td></tr>")
    return ("<table><tr><th class='l'>degradation</th><th class='l'>simulates</th><th class='l'>rule</th>"
            f"<th class='l'>values used</th></tr>{''.join(rows)}</table>")


def describe(cfg: dict) -> str:
    p = cfg["data"]["params"]
    where = (f"{p['image_size'][1]}x{p['image_size'][0]} px images" if p["dim"] == 2
             else f"3D LiDAR-style scenes up to {p['max_range']:g} m")
    return (f"SYNTHETIC {p['dim']}D detection scenes ({p['n_frames']} frames of {where}, {p['n_classes']} classes, "
            f"~{p['mean_objects']:g} objects per frame) seen by a SIMULATED detector "
            "(adapters.datasets.make_scenes)")
