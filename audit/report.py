"""`conformal-audit report DIR`: redraw the plots and write report.html of a finished audit from its files alone
(results.json and curves.npz; no model runs), with the task's own sections."""
from __future__ import annotations

import json
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
    results = json.loads(res_path.read_text())
    with np.load(out / "curves.npz", allow_pickle=False) as z:
        curves = {k: z[k] for k in z.files}
    task = get_task(results.get("task", "classification"))
    cfg = results["config"]
    plot_dir = out / "plots"
    parts = task.report(results, curves, plot_dir)
    if not cfg["output"]["report"]:
        return plot_dir
    return write_page(out, cfg, results, title=parts.title, heading=parts.heading, head=parts.head,
                      caveat_lines=parts.caveats, tables=parts.tables, made=parts.plots)
