"""The result files of every audit: results.json (summaries, per-split values, failed cells, versions),
results.csv (one row per cell) and curves.npz (split-0 arrays and examples), whatever the task."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
from pathlib import Path

import numpy as np

from audit.files import atomic_path, write_text

__all__ = ["RESULTS_SCHEMA", "INTERVAL", "summarize", "versions", "machine", "provenance", "metric_columns",
           "build_results", "write_results"]

RESULTS_SCHEMA = 1
INTERVAL = ("lo/hi: 2.5% and 97.5% quantiles over the R random calibration/test splits; se: standard error of the "
            "mean over splits")


def summarize(values: np.ndarray) -> dict:
    """mean, standard error and the 2.5% / 97.5% quantiles over the splits (NaN splits ignored)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "se": math.nan, "n": 0}
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
    lo, hi = np.quantile(v, [0.025, 0.975])
    return {"mean": float(v.mean()), "lo": float(lo), "hi": float(hi), "se": se, "n": int(v.size)}


def machine() -> dict:
    import os

    return {"hostname": platform.node(), "system": platform.system(), "release": platform.release(),
            "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")}


def provenance(cfg: dict, prepared) -> dict:
    """What the results rest on: the config's sha256, the task's own items (model file, data), the machine and
    the UTC time of the run."""
    import hashlib
    import time

    canonical = json.dumps(cfg, sort_keys=True, default=str).encode()
    return {"utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config_sha256": hashlib.sha256(canonical).hexdigest(), **prepared.provenance, "machine": machine()}


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


def metric_columns(metrics) -> list:
    """results.csv header: the cell, then mean / lo / hi / se of every metric, then the number of splits."""
    cols = ["cell", "corruption", "severity"]
    for m in metrics:
        cols += [m, f"{m}_lo", f"{m}_hi", f"{m}_se"]
    return cols + ["n_splits"]


def build_results(task, cfg: dict, prepared, cells: list, per_split: dict, failed: dict, seconds: dict,
                  warnings: dict, wall: float) -> dict:
    rows = []
    for t in cells:
        c = t["cell"]
        if c not in per_split:
            continue
        row = {"cell": c, "corruption": t["name"], "severity": t["severity"], "seconds": seconds.get(c)}
        for m, vals in per_split[c].items():
            row[m] = summarize(vals)
        rows.append(row)
    results = {"schema_version": RESULTS_SCHEMA, "task": task.name, "config": cfg, "data": prepared.data_info,
               "metrics": task.metrics}
    results.update(task.results_extra(cfg, prepared))
    results.update({
        "interval": INTERVAL,
        "cells": rows,
        "per_split": {c: {m: [None if not math.isfinite(x) else x for x in v.tolist()] for m, v in d.items()}
                      for c, d in per_split.items()},
        "failed_cells": failed,
        "versions": versions(),
        "provenance": provenance(cfg, prepared),
        "wall_seconds": wall,
        "calibration_warnings": warnings,
    })
    return results


def write_results(out: Path, task, results: dict, curves: dict) -> None:
    """results.json, results.csv (task.csv_metrics) and curves.npz ({cell: {name: array}} flattened)."""
    write_text(out / "results.json", json.dumps(results, indent=1, allow_nan=True))
    f = io.StringIO(newline="")
    w = csv.writer(f)
    w.writerow(metric_columns(task.csv_metrics))
    for row in results["cells"]:
        line = [row["cell"], row["corruption"], row["severity"]]
        for m in task.csv_metrics:
            s = row[m]
            line += [f"{s[k]:.6g}" if isinstance(s[k], float) and math.isfinite(s[k]) else ""
                     for k in ("mean", "lo", "hi", "se")]
        line.append(row[task.count_metric]["n"])
        w.writerow(line)
    write_text(out / "results.csv", f.getvalue())
    arrays = {f"{c}__{k}": v for c, d in curves.items() for k, v in d.items()}
    tmp = atomic_path(out / "curves.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out / "curves.npz")
