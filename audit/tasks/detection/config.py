"""The config schema of `task: detection`: the data source and its model (checked by the source, see
`audit.tasks.detection.sources`), the split, the ConformalDetector settings and the corruptions."""
from __future__ import annotations

import math

from audit import schema as S
from audit.errors import ConfigError
from audit.tasks.detection.sources import SOURCES

TOP_KEYS = {
    "name": "a label for the report (default: the config file's stem)",
    "seed": "integer seed of the scenes, the simulated detector and the splits",
    "task": "'detection' for this audit ('classification' is the default)",
    "data": "{name, params}: the data source (synthetic_scenes, composite_scenes or coco)",
    "model": "{name, params}: the detector (simulated_detector, scenes_detector, torchscript or precomputed)",
    "split": "{calibration_fraction, repeats}",
    "conformal": "the ConformalDetector settings (alpha, alpha_cls, recall_alpha, ...)",
    "corruptions": "list of {name, severities}: the source's corruptions (e.g. detector degradations)",
    "executor": "{name: local|ray, workers, address}",
    "output": "{plots, report, examples, render_png}",
}

SPLIT_DEFAULTS = {"calibration_fraction": 0.5, "repeats": 20}
CONFORMAL_DEFAULTS = {"alpha": 0.1, "alpha_cls": 0.1, "class_score": "lac", "class_conditional": False,
                      "scale": None, "sides": "two_sided", "correction": "max_rank", "yaw_period": 2 * math.pi,
                      "match_metric": None, "match_threshold": 0.5, "match_method": "hungarian",
                      "score_threshold": 0.0, "recall_alpha": 0.2, "recall_delta": 0.1, "recall_fraction": 0.3}


def validate(raw: dict, *, base_dir=None, check_names: bool = True) -> dict:
    """Check a `task: detection` config mapping; return a new, fully explicit one."""
    S.check_keys(raw, TOP_KEYS.keys(), "")
    for key in ("data", "model", "corruptions"):
        if key not in raw:
            raise ConfigError(f"config key `{key}` is required for task 'detection' ({TOP_KEYS[key]})")
    base = S.name_and_seed(raw, "detection_audit")
    cfg: dict = {"name": base["name"], "task": "detection", "seed": base["seed"]}
    data = S.component(raw["data"], "data", SOURCES)
    source = SOURCES[data["name"]]
    model = S.component(_shorthand(raw["model"]), "model", None)
    cfg["data"], cfg["model"] = source.validate(data, model, base_dir)
    cfg["split"] = _split(raw.get("split"), source.n_frames(cfg["data"]))
    cfg["conformal"] = _conformal(raw.get("conformal"), cfg, source.dim(cfg["data"]))

    def check(name, params, path):
        source.check_corruption(name, path, cfg["data"])

    cfg["corruptions"] = S.corruption_list(raw["corruptions"], check, what=source.corruption_kind,
                                           allow_params=False)
    source.check_cells(cfg["corruptions"], cfg["data"])
    cfg["executor"] = S.executor(raw.get("executor"))
    cfg["output"] = S.output(raw.get("output"))
    return cfg


def _shorthand(value):
    """`model: {name: torchscript, path: m.pt}` is short for `{name: torchscript, params: {path: m.pt}}`."""
    if not isinstance(value, dict) or not set(value) - {"name", "params"}:
        return value
    extra = {k: v for k, v in value.items() if k not in ("name", "params")}
    params = value.get("params") or {}
    if not isinstance(params, dict):
        return value  # S.component reports the bad params
    both = sorted(set(extra) & set(params))
    if both:
        raise ConfigError(f"config key(s) {', '.join('model.' + k for k in both)} given both beside `name` and under "
                          "`model.params`; give each once")
    return {"name": value.get("name"), "params": {**params, **extra}}


def _split(raw, n_frames: int) -> dict:
    split = S.merged(raw, SPLIT_DEFAULTS, "split")
    split["calibration_fraction"] = S.fraction(split["calibration_fraction"], "split.calibration_fraction")
    split["repeats"] = S.integer(split["repeats"], "split.repeats", lo=1)
    n_cal = round(split["calibration_fraction"] * n_frames)
    if n_cal < 10 or n_frames - n_cal < 10:
        raise ConfigError(f"config keys `split.calibration_fraction` and `data.params.n_frames` leave {n_cal} "
                          f"calibration and {n_frames - n_cal} test frames; each needs at least 10")
    return split


def _conformal(raw, cfg: dict, dim: int) -> dict:
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
        make_detector(dict(cfg, conformal=conf), 0).validate_params()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config key `conformal` is rejected by ConformalDetector: {exc}; allowed keys: "
                          f"{', '.join(CONFORMAL_DEFAULTS)}") from None
    return conf


def _score_names() -> tuple:
    from conformal.scores import score_names

    return tuple(score_names())


def make_detector(cfg: dict, random_state: int):
    from conformal.detection import ConformalDetector

    c = cfg["conformal"]
    return ConformalDetector(dim=SOURCES[cfg["data"]["name"]].dim(cfg["data"]), random_state=random_state,
                             **{k: c[k] for k in CONFORMAL_DEFAULTS})
