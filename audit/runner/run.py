"""The task-agnostic audit run: cells (cached) -> R clean-calibration / test splits -> result files.

Output directory layout (every task)::

    DIR/config.yaml        the exact, validated config that ran
    DIR/cache/<cell>.npz   the arrays of each cell (model outputs, detections, examples, cache key); --resume
    DIR/results.json       per-cell summaries (mean, 95% split interval, SE), per-split values, failed cells
    DIR/results.csv        one row per cell
    DIR/curves.npz         split-0 arrays per cell (ROC, risk-coverage, histograms, example frames)
    DIR/plots/*.png, DIR/report.html   (written by audit.report on top of this)

Per split r the pool is split (seeded by (seed, r)) into calibration and test items; the task fits its
calibrated model on the CLEAN cell's calibration items only and scores every cell's test items with it.
"""
from __future__ import annotations

import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from audit.errors import AuditError, ConfigError
from audit.files import write_bytes, write_text
from audit.runner import cache, executors, outdir
from audit.runner.cells import cell_list, split_indices
from audit.runner.progress import Progress
from audit.runner.results import build_results, write_results
from audit.schema import EXECUTORS, dump

__all__ = ["run", "dry_run", "evaluate_splits", "single_numba_thread"]


class single_numba_thread:
    """Run the split loop with one Numba thread (restored afterwards). Each call works on a few hundred rows,
    where parallel kernels only add overhead; on a busy 2-core machine they made this loop ~8x slower."""

    def __enter__(self):
        import numba

        self.before = numba.get_num_threads()
        numba.set_num_threads(1)

    def __exit__(self, *exc):
        import numba

        numba.set_num_threads(self.before)


def run(task, cfg: dict, out, *, workers: int | None = None, executor: str | None = None, resume: bool = False,
        quiet: bool = False, overwrite: bool = False) -> dict:
    """Run `task`'s audit of `cfg` end to end, write the result files into `out` and return the results.

    `out` must be new, empty or an earlier audit's folder (see `audit.runner.outdir`); `overwrite=True` also
    accepts a non-empty folder as long as no file the audit writes already exists there."""
    t_start = time.perf_counter()
    executor = executor or cfg["executor"]["name"]
    workers = workers or cfg["executor"]["workers"]
    if executor not in EXECUTORS:
        raise ConfigError(f"`executor` must be 'local' or 'ray'; got {executor!r}")
    if executor == "ray":
        executors.check_ray()
    out = outdir.claim(out, overwrite=overwrite)
    cache_dir = out / "cache"
    cache_dir.mkdir(exist_ok=True)
    write_text(out / "config.yaml", dump(cfg))
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))

    lib_warnings: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepared = task.prepare(cfg, out, log)
    _count(lib_warnings, [f"{w.category.__name__}: {w.message}" for w in caught])
    log(f"[audit] data: {prepared.description}")
    cells = cell_list(cfg["corruptions"])
    arrays, failed, seconds = _compute_cells(task, cfg, prepared, cells, cache_dir, resume=resume,
                                             executor=executor, workers=workers, quiet=quiet, log=log,
                                             lib_warnings=lib_warnings)
    if "clean" in failed:
        write_text(out / "error.txt", failed["clean"])
        last = failed["clean"].strip().splitlines()[-1]
        raise AuditError(f"the clean cell failed, so nothing can be calibrated: {last} (full traceback in "
                         f"{out / 'error.txt'})")
    order = [t["cell"] for t in cells if t["cell"] in arrays]
    data = {c: task.load_cell(prepared, arrays[c]) for c in order}
    per_split, curves, fit_warnings, score_failed = evaluate_splits(task, cfg, prepared, data, order, quiet=quiet)
    for c, err in score_failed.items():
        failed[c] = err
        log(f"[audit] cell {c} FAILED while being scored ({err.strip().splitlines()[-1]}); continuing without it "
            f"(traceback in results.json)")
    order = [c for c in order if c not in score_failed]
    for c in order:
        extra = task.cell_artifacts(prepared, c, arrays[c])
        if extra:
            curves.setdefault(c, {}).update(extra)
        for rel, data in task.cell_files(prepared, c, arrays[c]).items():
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(path, data)
    for msg, count in fit_warnings.items():
        log(f"[audit] calibration warning in {count} of {cfg['split']['repeats']} splits: {msg}")
    for msg, count in lib_warnings.items():
        log(f"[audit] library warning ({count}x, while preparing or computing cells): {msg}")
    results = build_results(task, cfg, prepared, cells, per_split, failed, seconds, fit_warnings,
                            time.perf_counter() - t_start)
    results["library_warnings"] = lib_warnings
    write_results(out, task, results, curves)
    return results


def dry_run(task, cfg: dict, *, n: int = 8, log=print) -> list:
    """Build the data and the model and run one small batch: the clean cell and every corruption at its highest
    severity, on the first `n` pool items, in this process. Returns one line per step; raises AuditError naming the
    first step that fails (nothing is written: the model is prepared in a temporary folder)."""
    import tempfile

    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        try:
            prepared = task.prepare(cfg, Path(tmp), lambda *a: None)
        except (ConfigError, ValueError, TypeError):
            raise
        except Exception as exc:  # noqa: BLE001 - the data or the model cannot be built: say so in one line
            raise AuditError(f"dry run: preparing the data and the model failed: {type(exc).__name__}: {exc}") from exc
        lines.append(f"data and model ready in {time.perf_counter() - t0:.1f} s: {prepared.description}")
        context = task.subset_context(prepared.context, n)
        cells = [c for c in cell_list(cfg["corruptions"])]
        last = {}
        for c in cells:  # the clean cell and each corruption at its highest severity
            if c["name"] == "clean" or c["severity"] >= last.get(c["name"], (0,))[0]:
                last[c["name"]] = (c["severity"], c)
        for _, c in last.values():
            if c["cell"] in prepared.ready:
                lines.append(f"{c['cell']}: supplied precomputed")
                continue
            res = executors.compute_cell(task, context, c)
            if res["error"] is not None:
                raise AuditError(f"dry run: cell {c['cell']} failed on {n} items: "
                                 f"{res['error'].strip().splitlines()[-1]}")
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in res["arrays"].items()
                               if k not in ("applied",) and hasattr(v, "shape"))
            lines.append(f"{c['cell']}: ok in {res['seconds']:.2f} s ({shapes})")
    for line in lines:
        log(f"[dry run] {line}")
    return lines


def _count(into: dict, messages) -> None:
    for m in messages:
        into[m] = into.get(m, 0) + 1


def _compute_cells(task, cfg, prepared, cells, cache_dir: Path, *, resume, executor, workers, quiet, log,
                   lib_warnings):
    """Arrays of every cell: given by the task (prepared.ready), read from the cache (--resume) or computed on the
    executor with a progress bar. Returns (arrays, failed: cell -> traceback, seconds: cell -> compute time)."""
    arrays, failed, seconds, todo = dict(prepared.ready), {}, {}, []
    for t in cells:
        if t["cell"] in arrays:
            continue
        hit = cache.load_cell(cache_dir / f"{t['cell']}.npz", prepared.keys[t["cell"]]) if resume else None
        if hit is None:
            todo.append(t)
        else:
            arrays[t["cell"]] = hit
    log(f"[audit] {len(cells)} cells, {len(cells) - len(todo)} ready or from cache, {len(todo)} to compute "
        f"({executor}, {workers} worker{'s' if workers > 1 else ''})")
    bar = Progress(len(todo), "cells", "cell", quiet=quiet)

    def on_result(res):
        bar.update(1)
        seconds[res["cell"]] = res["seconds"]
        _count(lib_warnings, res.get("warnings", ()))
        if res["error"] is not None:
            failed[res["cell"]] = res["error"]
            if res["cell"] != "clean" and not quiet:  # the clean cell stops the audit with its own message
                last = res["error"].strip().splitlines()[-1]
                bar.write(f"[audit] cell {res['cell']} FAILED ({last}); continuing (traceback in results.json)")
            return
        cache.save_cell(cache_dir / f"{res['cell']}.npz", prepared.keys[res["cell"]], res["arrays"])
        arrays[res["cell"]] = res["arrays"]

    if todo:
        if executor == "ray":
            executors.run_ray(task, prepared.context, todo, on_result, workers=workers,
                              address=cfg["executor"]["address"])
        else:
            executors.run_local(task, prepared.context, todo, on_result, workers=workers)
    bar.close()
    return arrays, failed, seconds


def evaluate_splits(task, cfg: dict, prepared, data: dict, cells: list, *, quiet: bool = True):
    """Per-split metrics of every cell, the split-0 arrays and the calibrator's warnings.

    Returns (per_split {cell: {metric: (R,) array}}, curves {cell: {name: array}}, warnings {message with the
    numbers of the first split it appeared in: number of splits it appeared in}, failed {cell: traceback}): a
    cell whose scoring raises is dropped from every split and reported, the others go on; a failing fit (on the
    clean cell) stops the audit."""
    import traceback

    seed, split = cfg["seed"], cfg["split"]
    R = split["repeats"]
    per_split, curves, seen, failed = {}, {}, {}, {}
    bar = Progress(R, "splits", "split", quiet=quiet)
    with single_numba_thread():
        for r in range(R):
            calibration, test = split_indices(prepared.n_pool, split["calibration_fraction"], seed, r)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model = task.fit_split(cfg, prepared, data["clean"], calibration, r)
            for w in caught:  # counted and reported once, with the numbers of its first split, not printed R times
                key = re.sub(r"\d+(\.\d+)?", "N", str(w.message))
                first = seen.setdefault(key, [0, f"{w.message} (numbers from split {r})"])
                first[0] += 1
            for c in cells:
                if c in failed:
                    continue
                try:
                    metrics, extra = task.score_cell(cfg, prepared, model, data[c], test, r == 0, c)
                except Exception:  # noqa: BLE001 - any error of one cell is reported, the audit goes on
                    if c == "clean":
                        raise
                    failed[c] = f"split {r}:\n{traceback.format_exc()}"
                    per_split.pop(c, None)
                    curves.pop(c, None)
                    continue
                row = per_split.setdefault(c, {})
                for k, v in metrics.items():
                    row.setdefault(k, np.full(R, np.nan))[r] = v
                if extra is not None:
                    curves[c] = extra
            bar.update(1)
    bar.close()
    return per_split, curves, {text: count for count, text in seen.values()}, failed
