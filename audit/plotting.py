"""Plot helpers shared by the tasks' reports (matplotlib with the Agg backend, imported on first use)."""
from __future__ import annotations

import math

import numpy as np

from audit.files import atomic_path

__all__ = ["plt", "grid", "heatmap", "save_figure"]


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def grid(results: dict, metric: str):
    corrs = [c["name"] for c in results["config"]["corruptions"]]
    sevs = sorted({s for c in results["config"]["corruptions"] for s in c["severities"]})
    cells = {(r["corruption"], r["severity"]): r for r in results["cells"]}
    grid = np.full((len(corrs), len(sevs)), np.nan)
    for i, c in enumerate(corrs):
        for j, s in enumerate(sevs):
            if (c, s) in cells:
                grid[i, j] = cells[(c, s)][metric]["mean"]
    clean = next((r for r in results["cells"] if r["cell"] == "clean"), None)
    return corrs, sevs, grid, (clean[metric]["mean"] if clean else math.nan)


def heatmap(ax, grid, rows, severities, cmap, norm, fmt, *, columns=None):
    """Draw a (corruption x severity) grid with each finite cell's value written in a colour that reads on it
    (no values when `fmt` is None); `columns` labels the columns instead of the severities."""
    im = ax.imshow(grid, cmap=cmap, norm=norm, aspect="auto")
    ax.set_xticks(range(grid.shape[1]), columns if columns is not None else [f"S{s}" for s in severities])
    ax.set_yticks(range(len(rows)), rows)
    for i in range(grid.shape[0] if fmt is not None else 0):
        for j in range(grid.shape[1]):
            if np.isfinite(grid[i, j]):
                r, g, b, _ = im.cmap(im.norm(grid[i, j]))
                dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5  # luminance of the cell's colour
                ax.text(j, i, fmt.format(grid[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if dark else "black")
    return im




def save_figure(fig, path, dpi: int) -> None:
    """Save a figure as PNG atomically (temporary sibling, then rename) and close it."""
    import os

    tmp = atomic_path(path)
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
        plt().close(fig)
