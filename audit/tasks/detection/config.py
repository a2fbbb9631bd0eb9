"""The config schema of `task: detection`: synthetic scenes, the simulated detector, the ConformalDetector
settings and the detector degradations."""
from __future__ import annotations

import math

from audit import schema as S
from audit.errors import ConfigError
from audit.tasks.detection.degradations import DEGRADATIONS, degradation_names

TOP_KEYS = {
    "name": "a label for the report (default: the config file's stem)",
    "seed": "integer seed of the scenes, the simulated detector and the splits",
    "task": "'detection' for this audit ('classification' is the default)",
    "data": "{name: synthetic_scenes, params}: the synthetic scenes",
    "model": "{name: simulated_detector, params}: the clean simulated detector",
    "split": "{calibration_fraction, repeats}",
    "conformal": "the ConformalDetector settings (alpha, alpha_cls, recall_alpha, ...)",
    "corruptions": "list of {name, severities}: detector degradations",
    "executor": "{name: local|ray, workers, address}",
    "output": "{plots, report, examples, render_png}",
}

DATA_SOURCES = {"synthetic_scenes": "SYNTHETIC scenes with known ground truth (conformal.detection.synthetic); "
                                    "dim 2: image boxes in px, dim 3: LiDAR-style 3D boxes in m"}
MODELS = {"simulated_detector": "a SIMULATED detector (box noise, bias, misses, false positives, class confusion, "
                                "heading flips), the clean reference that degradations worsen"}

DATA_DEFAULTS = {"dim": 2, "n_frames": 1000, "n_classes": 4, "mean_objects": 6.0, "image_size": [480, 640],
                 "max_range": 70.0}
MODEL_DEFAULTS = {"bias": 0.0, "noise": None, "noise_growth": None, "miss_rate": 0.1, "fp_rate": 1.0,
                  "confusion": 0.1, "class_signal": 3.0, "flip_rate": 0.0, "quality_spread": 0.4,
                  "translation": 0.6}
SPLIT_DEFAULTS = {"calibration_fraction": 0.5, "repeats": 20}
CONFORMAL_DEFAULTS = {"alpha": 0.1, "alpha_cls": 0.1, "class_score": "lac", "class_conditional": False,
                      "scale": None, "sides": "two_sided", "correction": "max_rank", "yaw_period": 2 * math.pi,
                      "match_metric": None, "match_threshold": 0.5, "match_method": "hungarian",
                      "score_threshold": 0.0, "recall_alpha": 0.2, "recall_delta": 0.1, "recall_fraction": 0.3}


def _params(component: dict, defaults: dict, path: str) -> dict:
    S.check_keys(component["params"], defaults.keys(), path)
    out = dict(defaults)
    out.update(component["params"])
    return out


def validate(raw: dict, *, base_dir=None, check_names: bool = True) -> dict:
    """Check a `task: detection` config mapping; return a new, fully explicit one."""
    S.check_keys(raw, TOP_KEYS.keys(), "")
    for key in ("data", "model", "corruptions"):
        if key not in raw:
            raise ConfigError(f"config key `{key}` is required for task 'detection' ({TOP_KEYS[key]})")
    base = S.name_and_seed(raw, "detection_audit")
    cfg: dict = {"name": base["name"], "task": "detection", "seed": base["seed"]}
    cfg["data"] = _data(raw["data"])
    dim, n_frames = cfg["data"]["params"]["dim"], cfg["data"]["params"]["n_frames"]
    cfg["model"] = _model(raw["model"], dim)
    cfg["split"] = _split(raw.get("split"), n_frames)
    cfg["conformal"] = _conformal(raw.get("conformal"), cfg)
    cfg["corruptions"] = _degradations(raw["corruptions"], dim)
    cfg["executor"] = S.executor(raw.get("executor"))
    cfg["output"] = S.output(raw.get("output"))
    return cfg


def _data(raw) -> dict:
    data = S.component(raw, "data", DATA_SOURCES)
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


def _model(raw, dim: int) -> dict:
    model = S.component(raw, "model", MODELS)
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


def _split(raw, n_frames: int) -> dict:
    split = S.merged(raw, SPLIT_DEFAULTS, "split")
    split["calibration_fraction"] = S.fraction(split["calibration_fraction"], "split.calibration_fraction")
    split["repeats"] = S.integer(split["repeats"], "split.repeats", lo=1)
    n_cal = round(split["calibration_fraction"] * n_frames)
    if n_cal < 10 or n_frames - n_cal < 10:
        raise ConfigError(f"config keys `split.calibration_fraction` and `data.params.n_frames` leave {n_cal} "
                          f"calibration and {n_frames - n_cal} test frames; each needs at least 10")
    return split


def _conformal(raw, cfg: dict) -> dict:
    dim = cfg["data"]["params"]["dim"]
    conf = S.merged(raw, CONFORMAL_DEFAULTS, "conformal")
    conf["alpha"] = S.fraction(conf["alpha"], "conformal.alpha")
    if conf["alpha_cls"] is not None:
        conf["alpha_cls"] = S.fraction(conf["alpha_cls"], "conformal.alpha_cls")
    if conf["class_score"] not in _score_names():
        raise ConfigError(f"config key `conformal.class_score` is {conf['class_score']!r}; allowed values: "
                          f"{', '.join(_score_names())}")
    conf["class_conditional"] = S.boolean(conf["class_conditional"], "conformal.class_conditional")
    if conf["scale"] is None:
        conf["scale"] = "size" if dim == 2 else "range"
    if conf["recall_alpha"] is not None:
        for key in ("recall_alpha", "recall_delta", "recall_fraction"):
            conf[key] = S.fraction(conf[key], f"conformal.{key}")
    conf["match_threshold"] = S.number(conf["match_threshold"], "conformal.match_threshold", lo=0.0, lo_open=True)
    conf["score_threshold"] = S.number(conf["score_threshold"], "conformal.score_threshold")
    conf["yaw_period"] = S.number(conf["yaw_period"], "conformal.yaw_period", lo=0.0, lo_open=True)
    try:  # the detector's own checks: names of scale, sides, correction, match_metric, match_method
        make_detector(dict(cfg, conformal=conf), 0)._check_params()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config key `conformal` is rejected by ConformalDetector: {exc}; allowed keys: "
                          f"{', '.join(CONFORMAL_DEFAULTS)}") from None
    return conf


def _score_names() -> tuple:
    from conformal.scores import score_names

    return tuple(score_names())


def _degradations(value, dim: int) -> list:
    allowed = degradation_names(dim)

    def check_name(name, path):
        if name not in DEGRADATIONS:
            raise ConfigError(f"config key `{path}` is {name!r}, not a detector degradation; allowed values: "
                              f"{', '.join(allowed)}")
        if name not in allowed:
            raise ConfigError(f"config key `{path}`: degradation {name!r} is not defined for dim={dim} "
                              f"scenes; allowed values: {', '.join(allowed)}")

    return S.corruption_list(value, check_name, what="detector degradations", allow_params=False)


def make_detector(cfg: dict, random_state: int):
    from conformal.detection import ConformalDetector

    c = cfg["conformal"]
    return ConformalDetector(dim=cfg["data"]["params"]["dim"], random_state=random_state,
                             **{k: c[k] for k in CONFORMAL_DEFAULTS})
