"""The contract between the task-agnostic runner and an audit task (classification, detection, ...).

The runner owns cells, splits, the cache, the executors and the result files; a task owns its config schema,
its data and model, what a cell computes, how one split is calibrated and scored, and its report sections.
A new task subclasses `Task`, implements the hooks below and is registered in `audit.tasks.TASKS`; nothing in
`audit.runner` changes. Task objects are stateless singletons: they are pickled by reference into worker
processes, so everything a worker needs travels in `Prepared.context`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Task", "Prepared", "ReportParts"]


@dataclass
class Prepared:
    """What `Task.prepare` returns, once per run, in the main process.

    description: one line for logs and the report.  n_pool: items the R splits divide.  context: the picklable
    inputs of `compute_cell` (shipped to every worker).  keys: cell id -> cache key (covers everything that
    shapes the cell's arrays).  ready: cell id -> arrays known without computing (e.g. precomputed outputs).
    data_info: the "data" section of results.json.  provenance: what the results rest on, for results.json and
    the report (e.g. the sha256 of the model file, a fingerprint of the audit pool).  state: anything else the
    task's later hooks need.
    """

    description: str
    n_pool: int
    context: dict
    keys: dict
    data_info: dict
    ready: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)


@dataclass
class ReportParts:
    """A task's share of report.html: page title and heading, the summary paragraph (HTML), the caveats (HTML
    strings), the tables (HTML), the plots as [(file name in plots/, caption)] and an appendix (HTML) that goes
    after the plots (e.g. label-using research statistics, kept apart from the deployable metrics)."""

    title: str
    heading: str
    head: str
    caveats: list
    tables: str
    plots: list
    appendix: str = ""


class Task:
    """Base class of audit tasks; see the module docstring. Hooks raise NotImplementedError when missing."""

    name = ""
    help = ""
    metrics: dict = {}  # metric -> description (results.json "metrics")
    csv_metrics: tuple = ()  # metrics written to results.csv, in order
    count_metric = ""  # the metric whose split count fills results.csv's n_splits
    synthetic_note = ""  # extra results.json key "splits" (how the pool is split), when set

    # --- config ----------------------------------------------------------------------------------------------
    def validate(self, raw: dict, *, base_dir=None, check_names: bool = True) -> dict:
        """A fully explicit config (defaults filled in, paths resolved), or ConfigError."""
        raise NotImplementedError

    def listing(self) -> str:
        """Text for `conformal-audit list`: this task's data sources, models, corruptions, options."""
        return ""

    def train(self, cfg: dict):
        """`conformal-audit train CONFIG`: train the config's model; returns the weights path."""
        from audit.errors import ConfigError

        raise ConfigError(f"task {self.name!r} has no model to train")

    # --- run -------------------------------------------------------------------------------------------------
    def prepare(self, cfg: dict, out, log) -> Prepared:
        raise NotImplementedError

    def setup_worker(self, context: dict) -> None:
        """Called in every process before its first cell, before the thread limits are set (import the heavy
        libraries the model needs here, so the limits reach their thread pools)."""

    def compute_cell(self, context: dict, cell: dict) -> dict:
        """The arrays of one cell (run in worker processes; must be deterministic given the cell)."""
        raise NotImplementedError

    def subset_context(self, context: dict, n: int) -> dict:
        """The context restricted to the first `n` items of the pool (`validate --dry-run` runs one small batch)."""
        return context

    def load_cell(self, prepared: Prepared, arrays: dict):
        """The cell's data for the split loop, from its (cached) arrays; default: the arrays themselves."""
        return arrays

    def cell_artifacts(self, prepared: Prepared, cell: str, arrays: dict) -> dict:
        """Arrays of a cell to keep in curves.npz regardless of splits (e.g. example inputs)."""
        return {}

    def cell_files(self, prepared: Prepared, cell: str, arrays: dict) -> dict:
        """Files to write for a cell, {path relative to the output folder: bytes}, e.g. the record of what was
        applied to each input ("applied/<cell>.json.gz")."""
        return {}

    def fit_split(self, cfg: dict, prepared: Prepared, clean, calibration, r: int):
        """The calibrated model of split r, fitted on the clean cell's calibration items ONLY."""
        raise NotImplementedError

    def score_cell(self, cfg: dict, prepared: Prepared, model, data, test, first: bool, cell: str):
        """(metrics dict, split-0 arrays for curves.npz or None) of one cell's test items under `model`.
        Labels may be used here, to SCORE predictions made without them."""
        raise NotImplementedError

    def results_extra(self, cfg: dict, prepared: Prepared) -> dict:
        """Extra top-level keys of results.json."""
        return {}

    # --- report ----------------------------------------------------------------------------------------------
    def report(self, results: dict, curves: dict, plot_dir) -> ReportParts:
        raise NotImplementedError
