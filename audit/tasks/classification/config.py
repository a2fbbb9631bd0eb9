"""The config schema of `task: classification` (the default task): data, model, split, conformal, abstention,
corruptions, executor, output. Every component is checked against its registry at load time."""
from __future__ import annotations

import inspect

from audit import schema as S
from audit.errors import ConfigError
from audit.tasks.classification import corrupt, data, models, shift

__all__ = ["TOP_KEYS", "SPLIT_DEFAULTS", "CONFORMAL_DEFAULTS", "ABSTENTION_DEFAULTS", "SCORES", "STATISTICS",
           "RULES", "TARGETS", "validate", "make_calibrator"]

TOP_KEYS = {
    "name": "a label for the report (default: the config file's stem)",
    "task": "'classification' (default) or 'detection' (see docs/audit.md)",
    "seed": "integer seed for splits, corruptions and in-process training",
    "data": "{name, params}: where the inputs and labels come from",
    "split": "{train_fraction, calibration_fraction, repeats, max_samples}",
    "model": "{name, params}: the classifier to audit",
    "conformal": "{score, alpha, allow_empty}",
    "abstention": "{statistic (a name or a list of names: the union rule), rule, target, abstain_fraction}",
    "corruptions": "list of {name, severities, params}",
    "executor": "{name: local|ray, workers, address}",
    "output": "{plots, report, examples, render_png}",
    "shift": "{statistics, k, window, estimator, monitor, monitor_level, repeats}: shift-aware abstention columns "
             "(optional; docs/audit.md)",
}

SPLIT_DEFAULTS = {"train_fraction": 0.5, "calibration_fraction": 0.5, "repeats": 20, "max_samples": None}
CONFORMAL_DEFAULTS = {"score": {"name": "raps", "params": {}}, "alpha": 0.1, "allow_empty": True}
ABSTENTION_DEFAULTS = {"statistic": "entropy", "rule": {"name": "youden", "params": {}}, "target": "error",
                       "abstain_fraction": 0.5}


def _registries():
    """Names and parameters of the core's scores, statistics, rules and targets (the single source of truth)."""
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
# fitted statistics an audit can feed: their side input is the model's features (penultimate layer for torch, the
# input vector for scikit-learn models); energy (logits) and input_quality (raw inputs) have none stored per cell
FEATURE_STATISTICS = ("knn", "mahalanobis")
_UNSUPPORTED = {"energy": "needs the model's logits, which the audit does not keep",
                "input_quality": "needs the raw inputs of every cell, which the audit does not keep"}


def abstention_statistic(cfg: dict):
    """The calibrator's `statistic` parameter: the config's name, or a tuple for a list (the union rule)."""
    stat = cfg["abstention"]["statistic"]
    return tuple(stat) if isinstance(stat, list) else stat


def needs_features(cfg: dict) -> bool:
    """True when the config's abstention statistics need the model's features."""
    stat = cfg["abstention"]["statistic"]
    return any(s in FEATURE_STATISTICS for s in (stat if isinstance(stat, list) else [stat]))


def statistic_label(cfg: dict) -> str:
    """The abstention statistic(s) as text for reports ("entropy", "entropy + knn")."""
    stat = cfg["abstention"]["statistic"]
    return " + ".join(stat) if isinstance(stat, list) else stat


def _check_statistic(stat, modality) -> None:
    names = stat if isinstance(stat, list) else [stat]
    if isinstance(stat, list) and (not stat or len(set(map(str, stat))) != len(stat)):
        raise ConfigError(f"config key `abstention.statistic` must be a name or a non-empty list of distinct names; "
                          f"got {stat!r}")
    for s in names:
        if s in _UNSUPPORTED:
            raise ConfigError(f"config key `abstention.statistic` lists {s!r}, which {_UNSUPPORTED[s]}; allowed "
                              f"values: {', '.join((*STATISTICS, *FEATURE_STATISTICS))}")
        if not isinstance(s, str) or s not in (*STATISTICS, *FEATURE_STATISTICS):
            raise ConfigError(f"config key `abstention.statistic` is {s!r}; allowed values: "
                              f"{', '.join((*STATISTICS, *FEATURE_STATISTICS))} (or a list of them)")
        if s in FEATURE_STATISTICS and modality == "outputs":
            raise ConfigError(f"config key `abstention.statistic` lists {s!r}, which needs features of the inputs; "
                              f"precomputed outputs have none")


def make_calibrator(cfg: dict, seed: int):
    """The dual-threshold calibrator a config describes (unfitted)."""
    from conformal import DualThresholdConformal, get_score

    conf, abst = cfg["conformal"], cfg["abstention"]
    return DualThresholdConformal(score=get_score(conf["score"]["name"], **conf["score"]["params"]),
                                  alpha=conf["alpha"], statistic=abstention_statistic(cfg), rule=abst["rule"]["name"],
                                  rule_params=dict(abst["rule"]["params"]), target=abst["target"],
                                  abstain_fraction=abst["abstain_fraction"], random_state=seed)


def _check_calibrator(cfg: dict) -> None:
    """The calibrator's own declared constraints (`validate_params`), so a bad parameter value, not only a bad
    key, fails at load time, before any data is read or model runs."""
    try:
        make_calibrator(cfg, 0).validate_params()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config keys `conformal` / `abstention` are rejected by the calibrator: {exc}") from None


def validate(raw: dict, *, base_dir=None, check_names: bool = True) -> dict:
    """Check a classification config mapping and return a new, fully explicit one (defaults filled in, paths
    resolved). `check_names=False` skips the checks that import the model, data and corruption registries."""
    S.check_keys(raw, TOP_KEYS.keys(), "")
    for key in ("data", "model", "corruptions"):
        if key not in raw:
            raise ConfigError(f"config key `{key}` is required ({TOP_KEYS[key]})")
    cfg = S.name_and_seed(raw, "audit")
    cfg["task"] = "classification"
    cfg["data"] = S.component(raw["data"], "data", data.DATA_SOURCES if check_names else None)
    cfg["model"] = S.component(models.shorthand(raw["model"]), "model", models.MODELS if check_names else None)
    if check_names:
        data.DATA_SOURCES[cfg["data"]["name"]].check_params(cfg["data"]["params"], "data.params", base_dir)
        models.MODELS[cfg["model"]["name"]].check_params(cfg["model"]["params"], "model.params", base_dir)
        if (cfg["data"]["name"] == "precomputed") != (cfg["model"]["name"] == "precomputed"):
            raise ConfigError("config keys `data.name` and `model.name` must both be 'precomputed' or neither "
                              f"(got data {cfg['data']['name']!r}, model {cfg['model']['name']!r}); precomputed "
                              "outputs carry their own labels and replace both the data and the model")

    split = S.merged(raw.get("split"), SPLIT_DEFAULTS, "split")
    split["train_fraction"] = S.fraction(split["train_fraction"], "split.train_fraction", open_low=False)
    split["calibration_fraction"] = S.fraction(split["calibration_fraction"], "split.calibration_fraction")
    split["repeats"] = S.integer(split["repeats"], "split.repeats", lo=1)
    if split["max_samples"] is not None:
        split["max_samples"] = S.integer(split["max_samples"], "split.max_samples", lo=20)
    cfg["split"] = split

    conf = S.merged(raw.get("conformal"), CONFORMAL_DEFAULTS, "conformal")
    conf["score"] = S.component(conf["score"], "conformal.score", SCORES)
    S.check_keys(conf["score"]["params"], SCORES[conf["score"]["name"]], "conformal.score.params")
    conf["alpha"] = S.fraction(conf["alpha"], "conformal.alpha")
    conf["allow_empty"] = S.boolean(conf["allow_empty"], "conformal.allow_empty")
    cfg["conformal"] = conf

    abst = S.merged(raw.get("abstention"), ABSTENTION_DEFAULTS, "abstention")
    _check_statistic(abst["statistic"], data.DATA_SOURCES[cfg["data"]["name"]].modality if check_names else None)
    abst["rule"] = S.component(abst["rule"], "abstention.rule", RULES)
    S.check_keys(abst["rule"]["params"], RULES[abst["rule"]["name"]], "abstention.rule.params")
    if abst["target"] not in TARGETS:
        raise ConfigError(f"config key `abstention.target` is {abst['target']!r}; allowed values: "
                          f"{', '.join(TARGETS)}")
    abst["abstain_fraction"] = S.fraction(abst["abstain_fraction"], "abstention.abstain_fraction")
    cfg["abstention"] = abst
    _check_calibrator(cfg)

    modality = data.DATA_SOURCES[cfg["data"]["name"]].modality if check_names else None
    if check_names and "adapter" in cfg["model"]["params"]:  # preprocessing and adapter options, checked now
        models.adapter_kwargs(modality, cfg["model"]["params"]["adapter"], "model.params.adapter")

    def check(name, params, path):
        if check_names:
            corrupt.check_corruption(name, modality, cfg["data"]["name"], path, params)

    cfg["corruptions"] = S.corruption_list(raw["corruptions"], check)
    if raw.get("shift") is not None:  # absent: no key, so configs without it keep their exact expanded form
        cfg["shift"] = shift.validate(raw["shift"], modality)
    cfg["executor"] = S.executor(raw.get("executor"))
    cfg["output"] = S.output(raw.get("output"))
    return cfg
