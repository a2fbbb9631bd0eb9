"""The task-agnostic runner: cells, splits, the cache, the executors and the result files.

It knows no task: `run(task, cfg, out)` drives any `audit.runner.task.Task`. Tasks live in `audit.tasks`.
"""
from audit.runner.run import run
from audit.runner.task import Prepared, ReportParts, Task

__all__ = ["Prepared", "ReportParts", "Task", "run"]
