"""The audit tasks, registered in one table. Adding a task is a new subpackage with a `Task` subclass and one
entry here; the runner (`audit.runner`) is not touched."""
from __future__ import annotations

from audit.errors import ConfigError
from audit.tasks.classification import ClassificationTask
from audit.tasks.detection import DetectionTask

__all__ = ["TASKS", "get_task"]

TASKS = {"classification": ClassificationTask(), "detection": DetectionTask()}


def get_task(name):
    """The registered task `name` (ConfigError listing the tasks otherwise)."""
    if not isinstance(name, str) or name not in TASKS:
        raise ConfigError(f"config key `task` is {name!r}; allowed values: {', '.join(TASKS)}")
    return TASKS[name]
