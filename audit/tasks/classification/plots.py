"""PNG plots of a classification audit (matplotlib, Agg), drawn from results.json and curves.npz only."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from audit.plotting import grid as _grid
from audit.plotting import heatmap, save_figure
from audit.plotting import plt as _plt


def heatmaps(results: dict, path: Path) -> None:
    plt = _plt()
    alpha = results["config"]["conformal"]["alpha"]
    specs = [("coverage", "Coverage", "RdYlGn", None),
             ("set_size", "Mean set size", "viridis", None),
             ("abstain_rate", "Abstention rate", "magma_r", (0.0, 1.0))]
    corrs, sevs, _, _ = _grid(results, "coverage")
    fig, axes = plt.subplots(1, 3, figsize=(15, 1.2 + 0.45 * max(len(corrs), 2)), squeeze=False)
    from matplotlib.colors import Normalize, TwoSlopeNorm

    for ax, (m, title, cmap, lim) in zip(axes[0], specs):
        _, _, grid, clean = _grid(results, m)
        finite = grid[np.isfinite(grid)]
        if m == "coverage":  # red below the 1 - alpha target, green above, whatever the range
            lo = min(float(finite.min()) if finite.size else 0.0, 1 - alpha - 0.01)
            norm = TwoSlopeNorm(vmin=lo, vcenter=1 - alpha, vmax=1.0)
        elif lim:
            norm = Normalize(*lim)
        else:  # set size: from one label (zero if sets can be empty) to at least one label more, so that
            # 0.995 vs 1.000 is drawn as the near-nothing it is, not as the two ends of the scale
            vmin = 1.0 if not finite.size or float(finite.min()) >= 1.0 else 0.0
            norm = Normalize(vmin, max(float(finite.max()) if finite.size else 0.0, vmin + 1.0))
        im = heatmap(ax, grid, corrs, sevs, cmap, norm, "{:.2f}")
        ax.set_title(f"{title} (clean {clean:.3f})", fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"{results['config']['name']}: mean over {results['config']['split']['repeats']} splits; "
                 f"calibrated on clean data, alpha = {alpha}", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def has_shift(results: dict) -> bool:
    return results["config"].get("shift") is not None and any(
        math.isfinite(r.get("shift_harm", {}).get("mean", math.nan)) for r in results["cells"])


def safety_heatmap(results: dict, path: Path) -> None:
    """Harm (share accepted with a set missing the label) of the config's rule and of the shift-aware rule per
    corruption and severity; an 'x' marks an unsafe cell (safe in fewer than half the splits)."""
    plt = _plt()
    from matplotlib.colors import Normalize

    corrs, sevs, _, _ = _grid(results, "harm")
    specs = [("harm", "safe", f"{results['config']['abstention']['statistic']} only")]
    if has_shift(results):
        specs.append(("shift_harm", "shift_safe", "shift-aware (window rule + monitor)"))
    fig, axes = plt.subplots(1, len(specs), figsize=(5.5 * len(specs), 1.2 + 0.45 * max(len(corrs), 2)),
                             squeeze=False)
    top = max(max((float(np.nanmax(_grid(results, h)[2])) for h, _, _ in specs), default=0.0), 0.05)
    for ax, (h, sf, title) in zip(axes[0], specs):
        _, _, grid, clean = _grid(results, h)
        _, _, safe, _ = _grid(results, sf)
        im = heatmap(ax, grid, corrs, sevs, "Reds", Normalize(0.0, top), "{:.3f}")
        for i in range(safe.shape[0]):
            for j in range(safe.shape[1]):
                if np.isfinite(safe[i, j]) and safe[i, j] < 0.5:
                    ax.text(j + 0.38, i - 0.28, "x", ha="center", va="center", fontsize=9, color="black")
        n_bad = int(np.sum(np.isfinite(safe) & (safe < 0.5)))
        ax.set_title(f"harm, {title}\n(clean {clean:.3f}; {n_bad} unsafe cells marked x)", fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"{results['config']['name']}: safety (safe = coverage among accepted >= 1 - alpha - 0.02 or "
                 f">= 95 % abstention)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def coverage_vs_severity(results: dict, path: Path) -> None:
    plt = _plt()
    alpha = results["config"]["conformal"]["alpha"]
    clean = next(r for r in results["cells"] if r["cell"] == "clean")
    metrics = [("coverage", "Coverage"), ("set_size", "Mean set size"), ("abstain_rate", "Abstention rate")]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    cmap = plt.get_cmap("tab20")
    for ax, (m, title) in zip(axes, metrics):
        for k, c in enumerate(results["config"]["corruptions"]):
            rows = [clean] + [r for r in results["cells"] if r["corruption"] == c["name"]]
            x = [0] + [r["severity"] for r in rows[1:]]
            mean = np.array([r[m]["mean"] for r in rows])
            lo = np.array([r[m]["lo"] for r in rows])
            hi = np.array([r[m]["hi"] for r in rows])
            color = cmap(k % 20)
            ax.plot(x, mean, "-o", ms=3, color=color, label=c["name"])
            ax.fill_between(x, lo, hi, color=color, alpha=0.15, lw=0)
        if m == "coverage":
            ax.axhline(1 - alpha, color="k", ls="--", lw=1, label=f"1 - alpha = {1 - alpha:.2f}")
        ax.set_xticks(range(0, 6), ["clean", "S1", "S2", "S3", "S4", "S5"])
        ax.set_title(title)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), fontsize=8, frameon=False)
    fig.suptitle("Mean over splits with 95% split interval (band); severity 0 = clean test data", fontsize=10)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * (len(labels) // 8), 1, 1))
    save_figure(fig, path, dpi=110)


def _roc(stat, event):
    order = np.argsort(-stat, kind="mergesort")
    s, e = stat[order], event[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s)), s.shape[0] - 1]  # one point per distinct threshold
    tp, fp = np.cumsum(e)[last], np.cumsum(1 - e)[last]
    return np.r_[0, fp / max(fp[-1], 1)], np.r_[0, tp / max(tp[-1], 1)]


def roc_curves(results: dict, curves: dict, path: Path) -> None:
    plt = _plt()
    corrs = [c["name"] for c in results["config"]["corruptions"]] or ["clean"]
    rows = {r["cell"]: r for r in results["cells"]}
    n = len(corrs)
    cols = min(4, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.8 * cols, 3.6 * nrows), squeeze=False)
    target = results["config"]["abstention"]["target"]
    stat = results["config"]["abstention"]["statistic"]
    for ax, name in zip(axes.flat, corrs):
        cells = ["clean"] + [r["cell"] for r in results["cells"] if r["corruption"] == name]
        cm = _plt().get_cmap("plasma")
        for k, c in enumerate(cells):
            if f"{c}__statistic" not in curves:
                continue
            ev = curves[f"{c}__event"].astype(bool)
            if ev.all() or not ev.any():
                continue
            fpr, tpr = _roc(curves[f"{c}__statistic"], ev)
            label = "clean" if c == "clean" else f"S{rows[c]['severity']}"
            ax.plot(fpr, tpr, color="k" if c == "clean" else cm(0.1 + 0.8 * k / max(len(cells), 2)), lw=1.3,
                    label=f"{label} AUC {rows[c]['auroc']['mean']:.3f}")
        ax.plot([0, 1], [0, 1], ":", color="grey", lw=0.8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("FPR")
        ax.set_ylabel("TPR")
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"ROC of the label-free statistic '{stat}' for target '{target}' (split 0; AUC = mean over "
                 "splits)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def risk_coverage(results: dict, curves: dict, path: Path) -> None:
    plt = _plt()
    corrs = [c["name"] for c in results["config"]["corruptions"]]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    worst = []
    for name in corrs:
        rows = [r for r in results["cells"] if r["corruption"] == name]
        if rows:
            worst.append(max(rows, key=lambda r: r["severity"])["cell"])
    cmap = plt.get_cmap("tab20")
    for k, c in enumerate(["clean"] + worst):
        if f"{c}__statistic" not in curves:
            continue
        stat, ev = curves[f"{c}__statistic"], curves[f"{c}__event"].astype(np.float64)
        order = np.argsort(stat, kind="mergesort")  # accept the most confident first
        n = np.arange(1, stat.shape[0] + 1)
        risk = np.cumsum(ev[order]) / n
        ax.plot(n / stat.shape[0], risk, color="k" if c == "clean" else cmap(k % 20), lw=2 if c == "clean" else 1,
                label=c)
    ax.set_xlabel("coverage (fraction accepted, most confident first)")
    ax.set_ylabel(f"selective risk ({results['config']['abstention']['target']})")
    ax.set_title("Risk-coverage curves: clean and each corruption at its highest severity (split 0)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def set_size_histograms(results: dict, curves: dict, path: Path) -> None:
    plt = _plt()
    K = len(results["data"]["class_names"])
    corrs = [c["name"] for c in results["config"]["corruptions"]] or []
    n = max(len(corrs), 1)
    cols = min(4, n)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.8 * cols, 3 * nrows), squeeze=False)
    bins = np.arange(K + 2) - 0.5
    biggest = max([int(curves[k].max()) for k in curves if k.endswith("__set_size") and curves[k].size] or [K])
    xmax = min(K, max(biggest + 1, 3))
    for ax, name in zip(axes.flat, corrs or ["clean"]):
        cells = ["clean"] + [r["cell"] for r in results["cells"] if r["corruption"] == name]
        cm = plt.get_cmap("plasma")
        for k, c in enumerate(cells):
            if f"{c}__set_size" not in curves:
                continue
            h, _ = np.histogram(curves[f"{c}__set_size"], bins=bins)
            ax.plot(np.arange(K + 1), h / max(h.sum(), 1), "-o", ms=2,
                    color="k" if c == "clean" else cm(0.1 + 0.8 * k / max(len(cells), 2)),
                    label="clean" if c == "clean" else c.rsplit("_", 1)[-1].upper())
        ax.set_xlim(-0.3, xmax + 0.3)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("set size")
        ax.set_ylabel("fraction")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("Conformal set-size distribution per severity (split 0)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def examples_grid(results: dict, curves: dict, path: Path) -> bool:
    """Example inputs per corruption (rows) x severity (columns): images, or point clouds as 3-D scatters."""
    plt = _plt()
    modality = results["data"]["modality"]
    if modality == "outputs":
        return False
    corrs = [c["name"] for c in results["config"]["corruptions"]]
    sevs = sorted({s for c in results["config"]["corruptions"] for s in c["severities"]})

    def example(cell):
        key = f"{cell}__examples"
        if key not in curves:
            return None
        counts = curves[f"{cell}__example_counts"]
        return curves[key][: counts[0]]

    if example("clean") is None:
        return False
    rows, cols = max(len(corrs), 1), len(sevs) + 1
    pc = modality == "pointcloud"
    fig = plt.figure(figsize=(1.6 * cols, 1.6 * rows + 0.4))
    for i, name in enumerate(corrs or [None]):
        for j, s in enumerate([0] + sevs):
            cell = "clean" if s == 0 else f"{_cell_of(results, name, s)}"
            x = example(cell)
            ax = fig.add_subplot(rows, cols, i * cols + j + 1, projection="3d" if pc else None)
            col = "clean" if s == 0 else f"S{s}"
            title = col if i == 0 else ""
            if x is not None:
                if pc:
                    ax.scatter(x[:, 0], x[:, 2], x[:, 1], s=1.0, c=x[:, 1], cmap="viridis")
                    ax.set_axis_off()
                    ax.view_init(elev=20, azim=-60)
                    title = f"{title}\n{len(x)} pts" if title else f"{len(x)} pts"
                else:
                    ax.imshow(x, cmap="gray" if x.ndim == 2 else None, vmin=0, vmax=255)
            ax.set_title(title, fontsize=8 if pc else 9, pad=2)
            if not pc:
                ax.set_xticks([])
                ax.set_yticks([])
            if j == 0 and name is not None and not pc:
                ax.set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
            elif j == 0 and name is not None:
                ax.text2D(-0.1, 0.5, name, transform=ax.transAxes, fontsize=7, ha="right", va="center")
    fig.subplots_adjust(left=0.16, right=0.99, top=1 - 0.4 / (1.6 * rows + 0.4), bottom=0.01, wspace=0.05,
                        hspace=0.25)
    save_figure(fig, path, dpi=110)
    return True


def _cell_of(results, name, severity):
    for r in results["cells"]:
        if r["corruption"] == name and r["severity"] == severity:
            return r["cell"]
    return "missing"


def class_coverage_heatmap(results: dict, curves: dict, path: Path) -> bool:
    """Coverage per class (columns) and cell (rows), split 0, red below the 1 - alpha target."""
    from matplotlib.colors import TwoSlopeNorm

    from audit.tasks.classification.evaluate import class_coverage

    cells = [r for r in results["cells"] if f"{r['cell']}__covered" in curves]
    if not cells:
        return False
    names = list(results["data"]["class_names"])
    K = len(names)
    grid = np.full((len(cells), K), np.nan)
    for i, r in enumerate(cells):
        present, cov = class_coverage(curves[f"{r['cell']}__covered"].astype(bool),
                                      curves[f"{r['cell']}__label"].astype(np.int64), K)
        grid[i, present] = cov
    alpha = results["config"]["conformal"]["alpha"]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(min(2.5 + 0.55 * K, 24), 1.2 + 0.28 * len(cells)))
    lo = min(float(np.nanmin(grid)) if np.isfinite(grid).any() else 0.0, 1 - alpha - 0.01)
    ylabels = ["clean" if r["cell"] == "clean" else f"{r['corruption']} S{r['severity']}" for r in cells]
    im = heatmap(ax, grid, ylabels, None, "RdYlGn", TwoSlopeNorm(vmin=lo, vcenter=1 - alpha, vmax=1.0),
                 "{:.2f}" if K <= 20 else None, columns=[str(n)[:10] for n in names])
    ax.set_xlabel("class")
    ax.set_title(f"Coverage per class (split 0; red below the 1 - alpha = {1 - alpha:.2f} target; marginal "
                 "calibrators promise it on average over classes, not per class)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    return True


def draw_all(results: dict, curves: dict, plot_dir: Path) -> list:
    """Draw every plot; returns [(file name, caption)]."""
    plot_dir.mkdir(exist_ok=True)
    made = []
    if results["config"]["corruptions"]:
        heatmaps(results, plot_dir / "heatmaps.png")
        made.append(("heatmaps.png", "Coverage, set size and abstention rate per corruption and severity"))
        if "harm" in results["cells"][0]:
            safety_heatmap(results, plot_dir / "safety.png")
            made.append(("safety.png", "Safety: harm and unsafe cells of the entropy-only and the shift-aware rule"))
        coverage_vs_severity(results, plot_dir / "coverage_vs_severity.png")
        made.append(("coverage_vs_severity.png", "Metrics vs severity with 95% split intervals"))
    roc_curves(results, curves, plot_dir / "roc_curves.png")
    made.append(("roc_curves.png", "ROC curves of the abstention statistic per severity"))
    risk_coverage(results, curves, plot_dir / "risk_coverage.png")
    made.append(("risk_coverage.png", "Risk-coverage curves"))
    set_size_histograms(results, curves, plot_dir / "set_size_histograms.png")
    made.append(("set_size_histograms.png", "Set-size histograms"))
    if class_coverage_heatmap(results, curves, plot_dir / "class_coverage.png"):
        made.append(("class_coverage.png", "Coverage per class"))
    if examples_grid(results, curves, plot_dir / "examples.png"):
        made.append(("examples.png", "Example corrupted inputs per severity"))
    return made
