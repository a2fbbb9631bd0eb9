"""Audit configs: YAML in, a validated plain dict out, by the schema of the config's task."""
from __future__ import annotations

import os

from audit.errors import ConfigError
from audit.schema import dump, read_yaml
from audit.tasks import get_task

__all__ = ["load", "validate", "dump"]


def validate(raw: dict, *, base_dir: str | os.PathLike | None = None, check_names: bool = True) -> dict:
    """Check a config mapping and return a new, fully explicit one (defaults filled in, paths resolved).

    `check_names=False` skips the checks that import the model, data and corruption registries."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config must be a mapping at the top level; got {type(raw).__name__}")
    return get_task(raw.get("task", "classification")).validate(raw, base_dir=base_dir, check_names=check_names)


def load(path: str | os.PathLike, *, check_names: bool = True) -> dict:
    """Read (``yaml.safe_load``) and validate a YAML config file; relative paths resolve against its folder."""
    raw = read_yaml(path)
    return validate(raw, base_dir=os.path.dirname(os.path.abspath(path)), check_names=check_names)
