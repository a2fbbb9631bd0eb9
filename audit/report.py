"""`conformal-audit report DIR`: redraw the plots and write report.html of a finished audit from its files alone
(results.json and curves.npz; no model runs), with the task's own sections."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from audit.pages import render_png, write_page
from audit.tasks import get_task

__all__ = ["build", "render_png"]


def build(out, quiet: bool = False) -> Path:
    """(Re)draw the plots and write report.html in `out`; returns its path (plots/ when no report is asked)."""
    out = Path(out)
    res_path = out / "results.json"
    if not res_path.is_file():
        raise ValueError(f"{str(res_path)!r} does not exist; run `conformal-audit run CONFIG --out {out}` first")
    try:
        results = json.loads(res_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(res_path)!r} is not valid JSON ({exc}); it may be truncated: rerun the audit "
                         f"(`--resume` reuses the cached cells)") from None
    if not isinstance(results, dict) or not {"config", "cells", "per_split"} <= set(results):
        raise ValueError(f"{str(res_path)!r} is not the results file of an audit")
    curves_path = out / "curves.npz"
    try:
        with np.load(curves_path, allow_pickle=False) as z:
            curves = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{str(curves_path)!r} cannot be read ({type(exc).__name__}: {exc}); rerun the audit "
                         f"(`--resume` reuses the cached cells)") from None
    task = get_task(results.get("task", "classification"))
    cfg = results["config"]
    plot_dir = out / "plots"
    parts = task.report(results, curves, plot_dir)
    if not cfg["output"]["report"]:
        return plot_dir
    return write_page(out, cfg, results, title=parts.title, heading=parts.heading, head=parts.head,
                      caveat_lines=parts.caveats, tables=parts.tables, made=parts.plots, appendix=parts.appendix)
