"""Audit configs: YAML in, a validated plain dict out.

Every component is written ``{name, params}`` (a bare string means ``{name, params: {}}``) and is checked
against its registry when the config is loaded, so a typo fails before any data is read or model is run.
Unknown keys are errors that list the allowed ones.
"""
from __future__ import annotations

import copy
import numbers
import os
from pathlib import Path

SEVERITIES = (1, 2, 3, 4, 5)

TASKS = ("classification", "detection")

TOP_KEYS = {
    "name": "a label for the report (default: the config file's stem)",
    "task": "'classification' (default) or 'detection' (a simulated detector, see docs/audit.md)",
    "seed": "integer seed for splits, corruptions and in-process training",
    "data": "{name, params}: where the inputs and labels come from",
    "split": "{train_fraction, calibration_fraction, repeats, max_samples}",
    "model": "{name, params}: the classifier to audit",
    "conformal": "{score, alpha, allow_empty}",
    "abstention": "{statistic, rule, target, abstain_fraction}",
    "corruptions": "list of {name, severities, params}",
    "executor": "{name: local|ray, workers, address}",
    "output": "{plots, report, examples, render_png}",
}

SPLIT_DEFAULTS = {"train_fraction": 0.5, "calibration_fraction": 0.5, "repeats": 20, "max_samples": None}
CONFORMAL_DEFAULTS = {"score": {"name": "raps", "params": {}}, "alpha": 0.1, "allow_empty": True}
ABSTENTION_DEFAULTS = {"statistic": "entropy", "rule": {"name": "youden", "params": {}}, "target": "error",
                       "abstain_fraction": 0.5}
EXECUTOR_DEFAULTS = {"name": "local", "workers": 1, "address": None}
OUTPUT_DEFAULTS = {"plots": True, "report": True, "examples": 4, "render_png": False}

EXECUTORS = ("local", "ray")


def _registries():
    """Names and parameters of the core's scores, statistics, rules and targets (the single source of truth)."""
    import inspect

    from conformal.abstention import RULES, STATISTICS, TARGETS
    from conformal.scores import get_score, score_names

    scores = {}
    for name in score_names():
        sig = inspect.signature(type(get_score(name)).__init__)
        scores[name] = tuple(n for n, p in sig.parameters.items() if n != "self"
                             and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
    rules = {k: tuple(v) for k, v in RULES.items()}
    # accept_coverage takes the parameters of its tau sub-rule too
    rules["accept_coverage"] += tuple(p for r in ("youden", "fpr", "budget") for p in rules[r])
    return scores, tuple(STATISTICS), rules, tuple(TARGETS)


SCORES, STATISTICS, RULES, TARGETS = _registries()


class ConfigError(ValueError):
    """A config that cannot be run; the message names the key, what arrived and what is allowed."""


def _where(path: str) -> str:
    return f"config key `{path}`" if path else "config"


def _check_keys(d, allowed, path: str) -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"{_where(path)} must be a mapping; got {type(d).__name__} {d!r}")
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        prefix = f"{path}." if path else ""
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + str(k) for k in unknown)}; "
                          f"allowed keys{' under `' + path + '`' if path else ''}: {', '.join(sorted(allowed))}")


def _component(value, path: str, registry) -> dict:
    """Normalise `name` or `{name, params}` and check the name against `registry` (a dict or tuple of names)."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{_where(path)} must be a name or a mapping {{name, params}}; got {value!r}")
    _check_keys(value, {"name", "params"}, path)
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{_where(path + '.name')} is required and must be a non-empty string; got {name!r}")
    if registry is not None and name not in registry:
        raise ConfigError(f"{_where(path + '.name')} is {name!r}; allowed values: {', '.join(sorted(registry))}")
    params = value.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{_where(path + '.params')} must be a mapping; got {type(params).__name__}")
    return {"name": name, "params": dict(params)}


def _int(value, path: str, lo: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{_where(path)} must be an integer; got {value!r}")
    if lo is not None and value < lo:
        raise ConfigError(f"{_where(path)} must be >= {lo}; got {value}")
    return int(value)


def _fraction(value, path: str, *, open_low=True, open_high=True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{_where(path)} must be a number in (0, 1); got {value!r}")
    v = float(value)
    if not (0.0 < v < 1.0) and not ((not open_low and v == 0.0) or (not open_high and v == 1.0)):
        raise ConfigError(f"{_where(path)} must be in (0, 1); got {value!r}")
    return v


def _bool(value, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{_where(path)} must be true or false; got {value!r}")
    return value


def _merged(section, defaults: dict, path: str) -> dict:
    if section is None:
        section = {}
    _check_keys(section, defaults.keys(), path)
    out = copy.deepcopy(defaults)
    out.update(section)
    return out


def validate(raw: dict, *, base_dir: str | os.PathLike | None = None, check_names: bool = True) -> dict:
    """Check a config mapping and return a new, fully explicit one (defaults filled in, paths resolved).

    `check_names=False` skips the checks that import the model, data and corruption registries (used by
    `conformal-audit report`, which only needs the saved config back).
    """
    from conformal.audit import registry

    if not isinstance(raw, dict):
        raise ConfigError(f"config must be a mapping at the top level; got {type(raw).__name__}")
    task = raw.get("task", "classification")
    if task not in TASKS:
        raise ConfigError(f"config key `task` is {task!r}; allowed values: {', '.join(TASKS)}")
    if task == "detection":
        from conformal.audit import detection

        return detection.validate(raw)
    _check_keys(raw, TOP_KEYS.keys(), "")
    for key in ("data", "model", "corruptions"):
        if key not in raw:
            raise ConfigError(f"config key `{key}` is required ({TOP_KEYS[key]})")
    cfg: dict = {}
    cfg["name"] = raw.get("name", "audit")
    if not isinstance(cfg["name"], str) or not cfg["name"]:
        raise ConfigError(f"config key `name` must be a non-empty string; got {cfg['name']!r}")
    cfg["seed"] = _int(raw.get("seed", 0), "seed", lo=0)

    cfg["data"] = _component(raw["data"], "data", registry.DATA_SOURCES if check_names else None)
    cfg["model"] = _component(raw["model"], "model", registry.MODELS if check_names else None)
    if check_names:
        registry.DATA_SOURCES[cfg["data"]["name"]].check_params(cfg["data"]["params"], "data.params", base_dir)
        registry.MODELS[cfg["model"]["name"]].check_params(cfg["model"]["params"], "model.params", base_dir)
        if (cfg["data"]["name"] == "precomputed") != (cfg["model"]["name"] == "precomputed"):
            raise ConfigError("config keys `data.name` and `model.name` must both be 'precomputed' or neither "
                              f"(got data {cfg['data']['name']!r}, model {cfg['model']['name']!r}); precomputed "
                              "outputs carry their own labels and replace both the data and the model")

    split = _merged(raw.get("split"), SPLIT_DEFAULTS, "split")
    split["train_fraction"] = _fraction(split["train_fraction"], "split.train_fraction", open_low=False)
    split["calibration_fraction"] = _fraction(split["calibration_fraction"], "split.calibration_fraction")
    split["repeats"] = _int(split["repeats"], "split.repeats", lo=1)
    if split["max_samples"] is not None:
        split["max_samples"] = _int(split["max_samples"], "split.max_samples", lo=20)
    cfg["split"] = split

    conf = _merged(raw.get("conformal"), CONFORMAL_DEFAULTS, "conformal")
    conf["score"] = _component(conf["score"], "conformal.score", SCORES)
    _check_keys(conf["score"]["params"], SCORES[conf["score"]["name"]], "conformal.score.params")
    conf["alpha"] = _fraction(conf["alpha"], "conformal.alpha")
    conf["allow_empty"] = _bool(conf["allow_empty"], "conformal.allow_empty")
    cfg["conformal"] = conf

    abst = _merged(raw.get("abstention"), ABSTENTION_DEFAULTS, "abstention")
    if abst["statistic"] not in STATISTICS:
        raise ConfigError(f"config key `abstention.statistic` is {abst['statistic']!r}; allowed values: "
                          f"{', '.join(STATISTICS)}")
    abst["rule"] = _component(abst["rule"], "abstention.rule", RULES)
    _check_keys(abst["rule"]["params"], RULES[abst["rule"]["name"]], "abstention.rule.params")
    if abst["target"] not in TARGETS:
        raise ConfigError(f"config key `abstention.target` is {abst['target']!r}; allowed values: "
                          f"{', '.join(TARGETS)}")
    abst["abstain_fraction"] = _fraction(abst["abstain_fraction"], "abstention.abstain_fraction")
    cfg["abstention"] = abst
    _check_calibrator(cfg)

    cfg["corruptions"] = _corruptions(raw["corruptions"], cfg, check_names)

    ex = _merged(raw.get("executor"), EXECUTOR_DEFAULTS, "executor")
    if ex["name"] not in EXECUTORS:
        raise ConfigError(f"config key `executor.name` is {ex['name']!r}; allowed values: {', '.join(EXECUTORS)}")
    ex["workers"] = _int(ex["workers"], "executor.workers", lo=1)
    if ex["address"] is not None and not isinstance(ex["address"], str):
        raise ConfigError(f"config key `executor.address` must be a string such as 'auto' or "
                          f"'ray://host:10001', or null; got {ex['address']!r}")
    cfg["executor"] = ex

    out = _merged(raw.get("output"), OUTPUT_DEFAULTS, "output")
    for key in ("plots", "report", "render_png"):
        out[key] = _bool(out[key], f"output.{key}")
    out["examples"] = _int(out["examples"], "output.examples", lo=0)
    cfg["output"] = out
    return cfg


def _check_calibrator(cfg: dict) -> None:
    """Build the dual-threshold calibrator and fit it once on synthetic outputs, so that a bad parameter value
    (not only a bad key) fails at load time, before any model runs."""
    import warnings

    import numpy as np

    from conformal.audit.evaluate import make_calibrator

    rng = np.random.default_rng(0)
    logits = 2.0 * rng.normal(size=(4000, 4))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = (probs.cumsum(1) < rng.uniform(size=(4000, 1))).sum(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make_calibrator(cfg, 0).fit(probs, labels)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config keys `conformal` / `abstention` are rejected by the calibrator: {exc}") from None


def _corruptions(value, cfg: dict, check_names: bool) -> list:
    from conformal.audit import registry

    if not isinstance(value, list):
        raise ConfigError("config key `corruptions` must be a list of {name, severities, params} "
                          f"(an empty list audits clean data only); got {type(value).__name__}")
    modality = registry.DATA_SOURCES[cfg["data"]["name"]].modality if check_names else None
    out, seen = [], set()
    for i, item in enumerate(value):
        path = f"corruptions[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        _check_keys(item, {"name", "severities", "params"}, path)
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{_where(path + '.name')} is required and must be a non-empty string; got {name!r}")
        if name == "clean":
            raise ConfigError(f"{_where(path + '.name')}: 'clean' is always audited; do not list it")
        if name in seen:
            raise ConfigError(f"{_where(path + '.name')}: corruption {name!r} is listed twice")
        seen.add(name)
        sev = item.get("severities", list(SEVERITIES))
        if not isinstance(sev, list) or not sev:
            raise ConfigError(f"{_where(path + '.severities')} must be a non-empty list of integers in 1..5; "
                              f"got {sev!r}")
        for s in sev:
            if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s not in SEVERITIES:
                raise ConfigError(f"{_where(path + '.severities')} must hold integers in 1..5; got {s!r}")
        if len(set(sev)) != len(sev):
            raise ConfigError(f"{_where(path + '.severities')} has duplicates: {sev}")
        params = item.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"{_where(path + '.params')} must be a mapping; got {params!r}")
        if check_names:
            registry.check_corruption(name, modality, cfg["data"]["name"], path + ".name")
        out.append({"name": name, "severities": sorted(int(s) for s in sev), "params": dict(params)})
    return out


def load(path: str | os.PathLike, *, check_names: bool = True) -> dict:
    """Read and validate a YAML config file (``yaml.safe_load``)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}") from None
    if isinstance(raw, dict) and "name" not in raw:
        raw = dict(raw, name=p.stem)
    return validate(raw, base_dir=p.parent, check_names=check_names)


def dump(cfg: dict) -> str:
    import yaml

    return yaml.safe_dump(cfg, sort_keys=False)
