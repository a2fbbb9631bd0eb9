"""Config building blocks every audit task uses: key checks, typed values, `{name, params}` components, the
common sections (seed, split repeats, executor, output, the corruption list), paths and YAML in and out.

Every component is written ``{name, params}`` (a bare string means ``{name, params: {}}``) and is checked against
its registry when the config is loaded, so a typo fails before any data is read or model is run. Unknown keys
are errors that list the allowed ones. A task's own schema (its data sources, models, conformal settings) lives
in ``audit/tasks/<task>/``; this module knows no task.
"""
from __future__ import annotations

import copy
import math
import numbers
import os
import re
from pathlib import Path

from audit.errors import ConfigError

__all__ = ["SEVERITIES", "cell_id", "EXECUTORS", "EXECUTOR_DEFAULTS", "OUTPUT_DEFAULTS", "check_keys", "check_params",
           "component",
           "integer", "fraction", "boolean", "number", "merged", "resolve_path", "corruption_list", "executor",
           "output", "name_and_seed", "read_yaml", "dump", "batch_and_device"]

SEVERITIES = (1, 2, 3, 4, 5)
EXECUTORS = ("local", "ray")
EXECUTOR_DEFAULTS = {"name": "local", "workers": 1, "address": None}
OUTPUT_DEFAULTS = {"plots": True, "report": True, "examples": 4, "render_png": False}


def cell_id(name: str, severity: int | None) -> str:
    """The cell's file-safe id: "clean", or the corruption name reduced to [A-Za-z0-9_] plus "_s<severity>"."""
    if name == "clean":
        return "clean"
    return f"{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_')}_s{severity}"


def where(path: str) -> str:
    return f"config key `{path}`" if path else "config"


def check_keys(d, allowed, path: str) -> None:
    """`d` must be a mapping whose keys are all in `allowed`."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where(path)} must be a mapping; got {type(d).__name__} {d!r}")
    unknown = sorted(set(d) - set(allowed))
    if unknown:
        prefix = f"{path}." if path else ""
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + str(k) for k in unknown)}; "
                          f"allowed keys{' under `' + path + '`' if path else ''}: {', '.join(sorted(allowed))}")


def check_params(params, allowed: dict, path: str, required=()) -> None:
    """`params` may hold only the keys of `allowed` (key -> help) and must hold every key of `required`."""
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(path + '.' + k for k in unknown)}; allowed keys under "
                          f"`{path}`: {', '.join(sorted(allowed)) or '(none)'}")
    for key in required:
        if key not in params:
            raise ConfigError(f"config key `{path}.{key}` is required ({allowed[key]})")


def component(value, path: str, registry) -> dict:
    """Normalise `name` or `{name, params}` and check the name against `registry` (names, or None: unchecked)."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{where(path)} must be a name or a mapping {{name, params}}; got {value!r}")
    check_keys(value, {"name", "params"}, path)
    name = value.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where(path + '.name')} is required and must be a non-empty string; got {name!r}")
    if registry is not None and name not in registry:
        raise ConfigError(f"{where(path + '.name')} is {name!r}; allowed values: {', '.join(sorted(registry))}")
    params = value.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{where(path + '.params')} must be a mapping; got {type(params).__name__}")
    return {"name": name, "params": dict(params)}


def integer(value, path: str, lo: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{where(path)} must be an integer; got {value!r}")
    if lo is not None and value < lo:
        raise ConfigError(f"{where(path)} must be >= {lo}; got {value}")
    return int(value)


def fraction(value, path: str, *, open_low=True, open_high=True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{where(path)} must be a number in (0, 1); got {value!r}")
    v = float(value)
    if not (0.0 < v < 1.0) and not ((not open_low and v == 0.0) or (not open_high and v == 1.0)):
        raise ConfigError(f"{where(path)} must be in (0, 1); got {value!r}")
    return v


def boolean(value, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where(path)} must be true or false; got {value!r}")
    return value


def batch_and_device(kw: dict, path: str) -> None:
    """Check (in place) an adapter's `batch_size` (an integer >= 1) and `device` (what torch accepts) keys."""
    if "batch_size" in kw:
        kw["batch_size"] = integer(kw["batch_size"], f"{path}.batch_size", lo=1)
    if "device" in kw:
        from adapters._base import check_device

        try:
            check_device(kw["device"])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"config key `{path}.device`: {exc}") from None


def number(value, path: str, lo=None, hi=None, lo_open=False, hi_open=False, allow_none=False) -> float | None:
    """A finite real number within optional bounds (or None when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"{where(path)} must be a finite number{' or null' if allow_none else ''}; got {value!r}")
    v = float(value)
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ConfigError(f"{where(path)} must be {'>' if lo_open else '>='} {lo}; got {value!r}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ConfigError(f"{where(path)} must be {'<' if hi_open else '<='} {hi}; got {value!r}")
    return v


def merged(section, defaults: dict, path: str) -> dict:
    """A section with its defaults filled in (unknown keys are errors)."""
    if section is None:
        section = {}
    check_keys(section, defaults.keys(), path)
    out = copy.deepcopy(defaults)
    out.update(section)
    return out


def resolve_path(path_value, key: str, base_dir, *, kind: str) -> str:
    """An absolute path, relative ones resolved against the config file's folder; `kind` "file" or "dir" must
    exist, "any" is resolved only."""
    if not isinstance(path_value, str) or not path_value:
        raise ConfigError(f"config key `{key}` must be a path string; got {path_value!r}")
    p = Path(os.path.expanduser(path_value))
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    p = p.resolve()
    if kind == "dir" and not p.is_dir():
        raise ConfigError(f"config key `{key}`: directory {str(p)!r} does not exist")
    if kind == "file" and not p.is_file():
        raise ConfigError(f"config key `{key}`: file {str(p)!r} does not exist")
    return str(p)


def name_and_seed(raw: dict, default_name: str) -> dict:
    cfg = {"name": raw.get("name", default_name)}
    if not isinstance(cfg["name"], str) or not cfg["name"]:
        raise ConfigError(f"config key `name` must be a non-empty string; got {cfg['name']!r}")
    cfg["seed"] = integer(raw.get("seed", 0), "seed", lo=0)
    return cfg


def corruption_list(value, check, *, what: str = "corruptions", allow_params: bool = True) -> list:
    """The `corruptions` list: `[{name, severities, params}]`, each entry checked by `check(name, params, path)`
    (which raises ConfigError), severities a non-empty duplicate-free subset of 1..5. Two names that would share
    a cell id (and so a cache file and a results row) are refused."""
    if not isinstance(value, list):
        raise ConfigError(f"config key `corruptions` must be a list of {{name, severities, params}} {what} "
                          f"(an empty list audits clean data only); got {type(value).__name__}")
    out, seen, ids = [], set(), {}
    for i, item in enumerate(value):
        path = f"corruptions[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        check_keys(item, {"name", "severities", "params"}, path)
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where(path + '.name')} is required and must be a non-empty string; got {name!r}")
        if name == "clean":
            raise ConfigError(f"{where(path + '.name')}: 'clean' is always audited; do not list it")
        if name in seen:
            raise ConfigError(f"{where(path + '.name')}: {name!r} is listed twice")
        seen.add(name)
        cid = cell_id(name, 1)
        if cid in ids:
            raise ConfigError(f"{where(path + '.name')}: {name!r} and {ids[cid]!r} map to the same cell id "
                              f"{cid[:-3]!r} (names are reduced to letters, digits and '_'); rename one of them")
        ids[cid] = name
        sev = item.get("severities", list(SEVERITIES))
        if not isinstance(sev, list) or not sev:
            raise ConfigError(f"{where(path + '.severities')} must be a non-empty list of integers in 1..5; "
                              f"got {sev!r}")
        for s in sev:
            if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s not in SEVERITIES:
                raise ConfigError(f"{where(path + '.severities')} must hold integers in 1..5; got {s!r}")
        if len(set(sev)) != len(sev):
            raise ConfigError(f"{where(path + '.severities')} has duplicates: {sev}")
        params = item.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"{where(path + '.params')} must be a mapping; got {params!r}")
        if params and not allow_params:
            raise ConfigError(f"config key `{path}.params`: these {what} take no params (their severity tables are "
                              f"fixed, see docs/audit.md); got {params!r}")
        check(name, dict(params), path + ".name")
        out.append({"name": name, "severities": sorted(int(s) for s in sev), "params": dict(params)})
    return out


def executor(raw) -> dict:
    ex = merged(raw, EXECUTOR_DEFAULTS, "executor")
    if ex["name"] not in EXECUTORS:
        raise ConfigError(f"config key `executor.name` is {ex['name']!r}; allowed values: {', '.join(EXECUTORS)}")
    ex["workers"] = integer(ex["workers"], "executor.workers", lo=1)
    if ex["address"] is not None and not isinstance(ex["address"], str):
        raise ConfigError(f"config key `executor.address` must be a string such as 'auto' or "
                          f"'ray://host:10001', or null; got {ex['address']!r}")
    return ex


def output(raw) -> dict:
    out = merged(raw, OUTPUT_DEFAULTS, "output")
    for key in ("plots", "report", "render_png"):
        out[key] = boolean(out[key], f"output.{key}")
    out["examples"] = integer(out["examples"], "output.examples", lo=0)
    return out


def _strict_loader():
    """yaml.SafeLoader that refuses a key repeated within one mapping (plain YAML keeps the last silently)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # the base constructor reports unhashable keys
            if key in seen:
                raise ConfigError(f"config key {key!r} is repeated (line {seen[key] + 1} and line "
                                  f"{key_node.start_mark.line + 1}); YAML would silently keep the last one")
            seen[key] = key_node.start_mark.line
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return StrictLoader


def read_yaml(path: str | os.PathLike) -> dict:
    """The mapping of a YAML config file (safe loading; repeated keys refused), `name` defaulting to the file's
    stem. Errors name the file and the line."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        raw = yaml.load(p.read_text(), Loader=_strict_loader())  # noqa: S506 (a SafeLoader subclass)
    except ConfigError as exc:
        raise ConfigError(f"config file {str(p)!r}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}") from None
    if isinstance(raw, dict) and "name" not in raw:
        raw = dict(raw, name=p.stem)
    return raw


def dump(cfg: dict) -> str:
    import yaml

    return yaml.safe_dump(cfg, sort_keys=False)
