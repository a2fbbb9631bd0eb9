"""The audit: data -> model outputs per cell (cached) -> R splits of metrics -> results.json/csv -> plots -> report.

Output directory layout::

    DIR/config.yaml        the exact, validated config that ran
    DIR/cache/<cell>.npz   model outputs of each cell (probs, example inputs, cache key); reused by --resume
    DIR/results.json       per-cell summaries (mean, 95% split interval, SE), per-split values, failed cells
    DIR/results.csv        one row per cell
    DIR/curves.npz         split-0 statistic/event/set sizes per cell (ROC, risk-coverage, histograms)
    DIR/plots/*.png, DIR/report.html
"""
from __future__ import annotations

import csv
import json
import math
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

from conformal.audit import evaluate as ev
from conformal.audit.config import ConfigError, dump
from conformal.audit.models import file_digest, fingerprint

RESULTS_SCHEMA = 1


def cell_id(name: str, severity: int | None) -> str:
    if name == "clean":
        return "clean"
    return f"{re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_')}_s{severity}"


def cell_tasks(cfg: dict) -> list:
    tasks = [{"cell": "clean", "name": "clean", "severity": 0, "params": {}}]
    for c in cfg["corruptions"]:
        for s in c["severities"]:
            tasks.append({"cell": cell_id(c["name"], s), "name": c["name"], "severity": s, "params": c["params"]})
    return tasks


def check_out_dir(out) -> Path:
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output directory {str(out)!r} is not writable ({exc.strerror or exc})") from None
    return out


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("conformal-perception", "numpy", "numba", "scikit-learn", "torch", "opencv-python-headless",
                "open3d", "matplotlib", "pyyaml", "ray"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _model_key(cfg: dict) -> str:
    params = dict(cfg["model"]["params"])
    digest = file_digest(params["weights"]) if "weights" in params else ""
    return fingerprint(cfg["data"], cfg["model"], digest, cfg["seed"], cfg["split"]["train_fraction"],
                       cfg["split"]["max_samples"])


def _predictor_state(predictor) -> list:
    """Arrays and plain fields of a prepared model (e.g. the fitted logistic regression), for the cache key."""
    if predictor is None:
        return []
    return [v for k, v in sorted(vars(predictor).items()) if not k.startswith("_")]


def _corruption_code(name: str) -> str:
    """Digest of the code a corruption runs: the perturbations package for built-ins, the module of a custom one."""
    import importlib
    import inspect

    if name == "clean":
        return ""
    module = name.partition(":")[0] if ":" in name else "perturbations"
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return ""
    path = Path(inspect.getfile(mod))
    files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
    return fingerprint(*[f.read_bytes().decode("utf-8", "replace") for f in files])


def _pack_examples(ex) -> dict:
    """Example inputs of any shape (images H x W [x C], clouds N_i x 3) as one array split by counts."""
    if not ex:
        return {}
    return {"examples": np.concatenate([np.asarray(x) for x in ex]),
            "example_counts": np.array([len(x) for x in ex], dtype=np.int64)}


def _unpack_examples(z, prefix: str = "") -> list:
    if f"{prefix}examples" not in z.files:
        return []
    ex, counts = z[f"{prefix}examples"], z[f"{prefix}example_counts"]
    return np.split(ex, np.cumsum(counts)[:-1])


def _save_cell(path: Path, key: str, res: dict) -> None:
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, key=np.array(key), probs=res["probs"], **_pack_examples(res["examples"]))
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written cache entry


def _load_cell(path: Path, key: str):
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            return z["probs"], _unpack_examples(z)
    except (OSError, KeyError, ValueError):
        return None  # unreadable cache entries are recomputed, never trusted


def run(cfg: dict, out, *, workers: int | None = None, executor: str | None = None, resume: bool = False,
        quiet: bool = False) -> dict:
    """Run an audit end to end and return the results dict (also written to `out`)."""
    if cfg.get("task") == "detection":
        from conformal.audit import detection

        return detection.run(cfg, out, workers=workers, executor=executor, resume=resume, quiet=quiet)
    from tqdm.auto import tqdm

    from conformal.audit import executors, registry

    t_start = time.perf_counter()
    executor = executor or cfg["executor"]["name"]
    workers = workers or cfg["executor"]["workers"]
    if executor not in ("local", "ray"):
        raise ConfigError(f"`executor` must be 'local' or 'ray'; got {executor!r}")
    if executor == "ray":
        executors.check_ray()
    out = check_out_dir(out)
    cache_dir = out / "cache"
    cache_dir.mkdir(exist_ok=True)
    (out / "config.yaml").write_text(dump(cfg))
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))

    source = registry.DATA_SOURCES[cfg["data"]["name"]]
    dataset = source.load(cfg["data"]["params"], cfg["split"], cfg["seed"])
    labels = dataset.pool_labels
    if np.unique(labels).shape[0] < 2:
        raise ConfigError("the audit pool holds a single class; an audit needs at least 2")
    log(f"[audit] data: {dataset.description}")
    tasks = cell_tasks(cfg)
    outputs, examples, failed, seconds = {}, {}, {}, {}

    if dataset.modality == "outputs":
        cells = dataset.extra["cells"]
        for t in tasks:
            key = "clean" if t["name"] == "clean" else (t["name"], t["severity"])
            if key not in cells:
                raise ConfigError(f"precomputed outputs {cfg['data']['params']['path']!r} have no array "
                                  f"`probs_{t['name']}_s{t['severity']}` for config corruption {t['name']!r}")
            outputs[t["cell"]] = cells[key]
    else:
        predictor = registry.MODELS[cfg["model"]["name"]].prepare(cfg["model"]["params"], dataset, cfg["seed"],
                                                                   train_dir=out / "model")
        # The cache key covers everything that shapes a cell's outputs: config, weights bytes, the audit inputs
        # and labels themselves, the fitted in-process model, and the source of the corruption code.
        mkey = fingerprint(_model_key(cfg), labels, dataset.pool_inputs, _predictor_state(predictor))
        keys = {t["cell"]: fingerprint(mkey, t["name"], t["severity"], t["params"], cfg["output"]["examples"],
                                       _corruption_code(t["name"]))
                for t in tasks}
        todo = []
        for t in tasks:
            hit = _load_cell(cache_dir / f"{t['cell']}.npz", keys[t["cell"]]) if resume else None
            if hit is None:
                todo.append(t)
            else:
                outputs[t["cell"]], examples[t["cell"]] = hit
        log(f"[audit] {len(tasks)} cells, {len(tasks) - len(todo)} from cache, {len(todo)} to compute "
            f"({executor}, {workers} worker{'s' if workers > 1 else ''})")
        ctx = {"inputs": dataset.pool_inputs, "modality": dataset.modality, "predictor": predictor,
               "seed": cfg["seed"], "n_classes": dataset.n_classes, "n_examples": cfg["output"]["examples"]}
        bar = tqdm(total=len(todo), desc="cells", unit="cell", disable=quiet or not todo)

        def on_result(res):
            bar.update(1)
            seconds[res["cell"]] = res["seconds"]
            if res["error"] is not None:
                failed[res["cell"]] = res["error"]
                bar.write(f"[audit] cell {res['cell']} FAILED; continuing:\n{res['error']}")
                return
            _save_cell(cache_dir / f"{res['cell']}.npz", keys[res["cell"]], res)
            outputs[res["cell"]], examples[res["cell"]] = res["probs"], res["examples"]

        if executor == "ray":
            executors.run_ray(ctx, todo, on_result, workers=workers, address=cfg["executor"]["address"])
        else:
            executors.run_local(ctx, todo, on_result, workers=workers)
        bar.close()
        if "clean" in failed:
            raise RuntimeError(f"the clean cell failed, so nothing can be calibrated:\n{failed['clean']}")

    order = [t["cell"] for t in tasks if t["cell"] in outputs]
    bar = tqdm(total=cfg["split"]["repeats"], desc="splits", unit="split", disable=quiet)
    per_split, curves, fit_warnings = ev.evaluate(cfg, labels, outputs, order, progress=bar)
    bar.close()
    for msg, count in fit_warnings.items():
        log(f"[audit] calibrator warning in {count} of {cfg['split']['repeats']} splits: {msg}")
    results = build_results(cfg, dataset, tasks, per_split, failed, seconds,
                            time.perf_counter() - t_start)
    results["calibration_warnings"] = fit_warnings
    write_results(out, results, curves, examples, dataset)
    if cfg["output"]["plots"] or cfg["output"]["report"]:
        from conformal.audit import report

        report.build(out, quiet=quiet)
    log(f"[audit] done in {time.perf_counter() - t_start:.1f} s: {out / 'results.csv'}"
        + (f", {out / 'report.html'}" if cfg["output"]["report"] else ""))
    return results


def build_results(cfg, dataset, tasks, per_split, failed, seconds, wall) -> dict:
    rows = []
    for t in tasks:
        c = t["cell"]
        if c not in per_split:
            continue
        row = {"cell": c, "corruption": t["name"], "severity": t["severity"], "seconds": seconds.get(c)}
        for m, vals in per_split[c].items():
            row[m] = ev.summarize(vals)
        rows.append(row)
    return {
        "schema_version": RESULTS_SCHEMA,
        "config": cfg,
        "data": {"description": dataset.description, "synthetic": dataset.synthetic, "modality": dataset.modality,
                 "n_pool": int(dataset.pool_labels.shape[0]), "n_train": int(dataset.train_labels.shape[0]),
                 "class_names": list(dataset.class_names),
                 "n_calibration": int(round(cfg["split"]["calibration_fraction"] * dataset.pool_labels.shape[0]))},
        "metrics": ev.METRICS,
        "interval": "lo/hi: 2.5% and 97.5% quantiles over the R random calibration/test splits; se: standard "
                    "error of the mean over splits",
        "cells": rows,
        "per_split": {c: {m: [None if not math.isfinite(x) else x for x in v.tolist()] for m, v in d.items()}
                      for c, d in per_split.items()},
        "failed_cells": failed,
        "versions": versions(),
        "wall_seconds": wall,
    }


CSV_METRICS = ["coverage", "set_size", "empty_rate", "accuracy", "abstain_rate", "selective_risk",
               "coverage_accepted", "auroc", "auroc_miscoverage", "auroc_label_nll", "abstain_gridmean_label_nll",
               "qhat", "tau"]


def metric_columns(metrics) -> list:
    """results.csv header: the cell, then mean / lo / hi / se of every metric, then the number of splits."""
    cols = ["cell", "corruption", "severity"]
    for m in metrics:
        cols += [m, f"{m}_lo", f"{m}_hi", f"{m}_se"]
    return cols + ["n_splits"]


def csv_columns() -> list:
    return metric_columns(CSV_METRICS)


def write_results_table(out: Path, results: dict, metrics, n_metric: str) -> None:
    """results.json, and results.csv with one row per cell (`n_metric`'s summary gives the split count)."""
    (out / "results.json").write_text(json.dumps(results, indent=1, allow_nan=True))
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(metric_columns(metrics))
        for row in results["cells"]:
            line = [row["cell"], row["corruption"], row["severity"]]
            for m in metrics:
                s = row[m]
                line += [f"{s[k]:.6g}" if isinstance(s[k], float) and math.isfinite(s[k]) else ""
                         for k in ("mean", "lo", "hi", "se")]
            line.append(row[n_metric]["n"])
            w.writerow(line)


def write_results(out: Path, results: dict, curves: dict, examples: dict, dataset) -> None:
    write_results_table(out, results, CSV_METRICS, "coverage")
    arrays = {}
    for c, d in curves.items():
        for k, v in d.items():
            arrays[f"{c}__{k}"] = v
    for c, ex in examples.items():
        for k, v in _pack_examples(ex).items():
            arrays[f"{c}__{k}"] = v
    np.savez_compressed(out / "curves.npz", **arrays)
