"""Plots and report.html of a detection audit, drawn from results.json and curves.npz only (no model runs)."""
from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

from audit.pages import flagged_cell, target_text
from audit.plotting import grid as _grid
from audit.plotting import heatmap, save_figure
from audit.plotting import plt as _plt
from audit.runner.task import ReportParts
from audit.tasks.detection.sources import SOURCES

# metric, title, target line (a function of the config's conformal section), "higher is better"
PANELS = [
    ("box_coverage", "Box coverage (joint, matched)", lambda c: 1 - c["alpha"], True),
    ("box_coverage_symmetric", "Box coverage, symmetric box-wise baseline", lambda c: 1 - c["alpha"], True),
    ("class_coverage", "Class-set coverage", lambda c: None if c["alpha_cls"] is None else 1 - c["alpha_cls"], True),
    ("joint_coverage", "Joint class + box coverage",
     lambda c: None if c["alpha_cls"] is None else 1 - c["alpha"] - c["alpha_cls"], True),
    ("recall_risk", "Recall risk (missed fraction)", lambda c: c["recall_alpha"], False),
    ("class_set_size", "Mean class-set size", lambda c: None, None),
    ("interval_size", "Relative interval size", lambda c: None, None),
    ("interval_size_symmetric", "Relative interval size, symmetric baseline", lambda c: None, None),
    ("fp_per_frame", "False positives per frame", lambda c: None, None),
    ("ap50", "AP@0.5 of the raw detections (pool)", lambda c: None, None),
]
TARGET_NAMES = {"box_coverage": "1 - alpha", "box_coverage_symmetric": "1 - alpha", "class_coverage": "1 - alpha_cls",
                "joint_coverage": "1 - alpha - alpha_cls", "recall_risk": "recall_alpha"}


def _tag(results: dict, sep: str = " ") -> str:
    tag = results["data"].get("tag") or ""
    return f"{sep}({tag})" if tag and sep == " " else (f"{sep}{tag}" if tag else "")


def heatmaps(results: dict, path: Path) -> None:
    plt = _plt()
    from matplotlib.colors import Normalize, TwoSlopeNorm

    conf = results["config"]["conformal"]
    specs = [p for p in PANELS if p[0] in ("box_coverage", "class_coverage", "recall_risk")]
    corrs, sevs, _, _ = _grid(results, "box_coverage")
    fig, axes = plt.subplots(1, 3, figsize=(15, 1.4 + 0.45 * max(len(corrs), 2)), squeeze=False)
    for ax, (m, title, target, higher) in zip(axes[0], specs):
        _, _, grid, clean = _grid(results, m)
        t = target(conf)
        finite = grid[np.isfinite(grid)]
        lo = float(finite.min()) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 1.0
        if t is not None and higher:  # red below the target, green above
            norm, cmap = TwoSlopeNorm(vmin=min(lo, t - 0.01), vcenter=t, vmax=max(hi, t + 0.01, 1.0)), "RdYlGn"
        elif t is not None:  # recall risk: green below the bound, red above
            norm, cmap = TwoSlopeNorm(vmin=min(lo, t - 0.01, 0.0), vcenter=t, vmax=max(hi, t + 0.01)), "RdYlGn_r"
        else:
            norm, cmap = Normalize(lo, max(hi, lo + 1e-9)), "viridis"
        im = heatmap(ax, grid, corrs, sevs, cmap, norm, "{:.3f}")
        tgt = f"; {TARGET_NAMES[m]} = {t:.2f}" if t is not None else ""
        ax.set_title(f"{title}\nclean {clean:.3f}{tgt}", fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"{results['config']['name']}{_tag(results)}: mean over "
                 f"{results['config']['split']['repeats']} splits, calibrated on clean frames", fontsize=11)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def metrics_vs_severity(results: dict, path: Path) -> None:
    plt = _plt()
    conf = results["config"]["conformal"]
    clean = next(r for r in results["cells"] if r["cell"] == "clean")
    panels = [p for p in PANELS if p[0] in clean and any(
        math.isfinite(r[p[0]]["mean"]) for r in results["cells"])]  # e.g. no AP from a simulated detector
    n_rows = -(-(len(panels) + 1) // 4)
    fig, axes = plt.subplots(n_rows, 4, figsize=(17, 4 * n_rows))
    for ax in axes.flat[len(panels):-1]:
        ax.axis("off")
    cmap = plt.get_cmap("tab10")
    for ax, (m, title, target, _) in zip(axes.flat, panels):
        if m == "interval_size":
            title = ("Outer-box area / predicted-box area" if results["data"]["dim"] == 2
                     else "Interval width of l, w, h / predicted size") + f"\n(scale = {conf['scale']})"
        for k, c in enumerate(results["config"]["corruptions"]):
            rows = [clean] + [r for r in results["cells"] if r["corruption"] == c["name"]]
            x = [0] + [r["severity"] for r in rows[1:]]
            mean = np.array([r[m]["mean"] for r in rows])
            color = cmap(k % 10)
            ax.plot(x, mean, "-o", ms=3, color=color, label=c["name"])
            ax.fill_between(x, [r[m]["lo"] for r in rows], [r[m]["hi"] for r in rows], color=color, alpha=0.08,
                            lw=0)
        t = target(conf)
        if t is not None:
            ax.axhline(t, color="k", ls="--", lw=1, label="target (--)")
            title += f"\ntarget {'<=' if m == 'recall_risk' else '>='} {t:.2f} ({TARGET_NAMES[m]})"
        ax.set_xticks(range(6), ["clean", "S1", "S2", "S3", "S4", "S5"])
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    legend_ax = axes.flat[-1]
    handles, labels = axes.flat[0].get_legend_handles_labels()
    legend_ax.axis("off")
    legend_ax.legend(handles, labels, loc="center", fontsize=9, frameon=False, title="corruption")
    delta = conf["recall_delta"] if conf["recall_alpha"] is not None else None
    tag = results["data"].get("tag") or ""
    fig.suptitle((f"{tag}. " if tag else "") + "Mean over splits with 95% split interval (band); severity 0 = "
                 "clean data. Guarantees hold for "
                 "the clean point only" + (f"; the recall bound holds with probability >= {1 - delta:.2f}" if delta
                                           else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    save_figure(fig, path, dpi=100)


def _rot_rect(box):
    x, y, _, length, width, _, yaw = box[:7]
    c, s = math.cos(yaw), math.sin(yaw)
    corners = np.array([[length, width], [length, -width], [-length, -width], [-length, width], [length, width]]) / 2
    return x + corners[:, 0] * c - corners[:, 1] * s, y + corners[:, 0] * s + corners[:, 1] * c


def _draw_frame(ax, curves: dict, cell: str, dim: int, image_size) -> bool:
    from matplotlib.patches import Rectangle

    key = f"{cell}__ex_gt"
    if key not in curves:
        return False
    gt, pred = curves[key], curves[f"{cell}__ex_pred"]
    if dim == 2:
        h, w = image_size
        image = curves.get(f"{cell}__ex_image")
        if image is not None:  # the (corrupted) image the detector saw, behind the boxes
            ih, iw = (int(v) for v in curves[f"{cell}__ex_image_hw"])
            ax.imshow(image, extent=(0, iw, ih, 0), interpolation="nearest", cmap="gray" if image.ndim == 2 else None)
        else:
            ax.add_patch(Rectangle((0, 0), w, h, fc="#f4f4f4", ec="none"))

        def rect(b, **kw):
            if b[2] > b[0] and b[3] > b[1]:
                ax.add_patch(Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, **kw))

        for b in gt:
            rect(b, ec="tab:green", lw=1.6)
        for o, i, p in zip(curves[f"{cell}__ex_outer"], curves[f"{cell}__ex_inner"], pred):
            rect(o, ec="tab:red", lw=0.9)
            rect(i, ec="tab:blue", lw=0.9)
            rect(p, ec="tab:orange", lw=1.0, ls=(0, (2, 1.5)))
        boxes = [b for b in (gt, pred, curves[f"{cell}__ex_outer"]) if b.size]
        allb = np.concatenate(boxes) if boxes else np.zeros((0, 4))
        allb = allb[np.isfinite(allb).all(axis=1)]
        x0, y0 = min(0.0, allb[:, 0].min(initial=0.0)) - 5, min(0.0, allb[:, 1].min(initial=0.0)) - 5
        x1, y1 = max(w, allb[:, 2].max(initial=w)) + 5, max(h, allb[:, 3].max(initial=h)) + 5
        ax.set_xlim(x0, x1)
        ax.set_ylim(y1, y0)
        ax.set_aspect("equal")
    else:
        pts = curves.get(f"{cell}__ex_points")
        if pts is not None and len(pts):  # the scan the detector saw, bird's-eye view, shaded by intensity
            ax.scatter(pts[:, 0], pts[:, 1], c=pts[:, 2], s=0.15, cmap="Greys", vmin=-0.3, vmax=1.0, lw=0,
                       rasterized=True)

        def heading(b, **kw):  # a line from the centre to the front: a heading flip turns it around
            ax.plot([b[0], b[0] + 0.5 * b[3] * math.cos(b[6])], [b[1], b[1] + 0.5 * b[3] * math.sin(b[6])], **kw)

        for b in gt:
            ax.plot(*_rot_rect(b), color="tab:green", lw=1.4)
            heading(b, color="tab:green", lw=1.4)
        for p, lo, hi in zip(pred, curves[f"{cell}__ex_lower"], curves[f"{cell}__ex_upper"]):
            ax.plot(*_rot_rect(p), color="tab:orange", lw=0.9)
            heading(p, color="tab:orange", lw=0.9)
            ax.add_patch(Rectangle((lo[0], lo[1]), hi[0] - lo[0], hi[1] - lo[1], fill=False, ec="tab:red", lw=0.8,
                                   ls="--"))
        ax.plot([0], [0], "k^", ms=5)
        ax.set_aspect("equal")
        xy = np.concatenate([gt[:, :2], pred[:, :2], np.zeros((1, 2))])  # every object and the sensor
        c, half = (xy.max(0) + xy.min(0)) / 2, max(float((xy.max(0) - xy.min(0)).max()) / 2 + 4.0, 10.0)
        ax.set_xlim(c[0] - half, c[0] + half)
        ax.set_ylim(c[1] - half, c[1] + half)
    ax.set_xticks([])
    ax.set_yticks([])
    return True


def examples(results: dict, curves: dict, path: Path) -> bool:
    """One test frame (the same scene everywhere) per corruption (rows) x severity (columns), with the split-0
    detector's kept detections and intervals."""
    plt = _plt()
    from matplotlib.lines import Line2D

    dim = results["data"]["dim"]
    if "clean__ex_gt" not in curves:
        return False
    corrs = [c["name"] for c in results["config"]["corruptions"]] or [None]
    sevs = sorted({s for c in results["config"]["corruptions"] for s in c["severities"]})
    cols = len(sevs) + 1
    size = results["data"].get("image_size") or results["config"]["data"]["params"].get("image_size") or [1, 1]
    cw = 2.6 if dim == 2 else 3.2
    ch = cw * (size[0] / size[1] if dim == 2 else 1.0)
    fig, axes = plt.subplots(len(corrs), cols, figsize=(cw * cols + 1.2, ch * len(corrs) + 1.0), squeeze=False)
    cells = {(r["corruption"], r["severity"]): r["cell"] for r in results["cells"]}
    for i, name in enumerate(corrs):
        for j, s in enumerate([0] + sevs):
            ax = axes[i, j]
            cell = "clean" if s == 0 else cells.get((name, s))
            if cell is None or not _draw_frame(ax, curves, cell, dim, size):
                ax.axis("off")
                continue
            n_kept = curves[f"{cell}__ex_pred"].shape[0]
            title = ("clean" if s == 0 else f"S{s}") + f": {n_kept} kept"
            ax.set_title(title, fontsize=8, pad=2)
            if j == 0 and name is not None:
                ax.set_ylabel(name, fontsize=8)
    if dim == 2:
        handles = [Line2D([], [], color="tab:green", lw=1.6, label="ground truth"),
                   Line2D([], [], color="tab:orange", lw=1.0, ls=(0, (2, 1.5)), label="kept detection"),
                   Line2D([], [], color="tab:red", lw=1, label="outer box (contains the object)"),
                   Line2D([], [], color="tab:blue", lw=1, label="inner box (inside the object)")]
    else:
        handles = [Line2D([], [], color="tab:green", lw=1.4, label="ground truth (bird's-eye view, line = heading)"),
                   Line2D([], [], color="tab:orange", lw=0.8, label="kept detection"),
                   Line2D([], [], color="tab:red", lw=0.8, ls="--", label="centre x/y interval"),
                   Line2D([], [], color="k", marker="^", ls="", label="sensor")]
    frame = int(curves["clean__ex_frame"])
    fig.suptitle(f"Frame {frame} (the same scene in every cell{_tag(results, ', ')}) with the split-0 detector "
                 "calibrated on clean frames", fontsize=10)
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    save_figure(fig, path, dpi=100)
    return True


def draw_all(results: dict, curves: dict, plot_dir: Path) -> list:
    plot_dir.mkdir(exist_ok=True)
    made = []
    if results["config"]["corruptions"]:
        heatmaps(results, plot_dir / "heatmaps.png")
        made.append(("heatmaps.png", "Box coverage, class-set coverage and recall risk per corruption and severity"))
    metrics_vs_severity(results, plot_dir / "metrics_vs_severity.png")
    made.append(("metrics_vs_severity.png", "Metrics vs severity with 95% split intervals and the targets"))
    if examples(results, curves, plot_dir / "examples.png"):
        made.append(("examples.png", "One test frame per corruption and severity"))
    return made


TABLE = [("box_coverage", "box cov."), ("box_coverage_symmetric", "box cov., symmetric baseline"),
         ("class_coverage", "class-set cov."), ("joint_coverage", "joint cov."),
         ("recall_risk", "recall risk"), ("class_set_size", "set size"), ("interval_size", "interval size"),
         ("interval_size_symmetric", "interval size, symmetric baseline"),
         ("fp_per_frame", "FP / frame"), ("matched_objects", "matched"), ("ap50", "AP@0.5"),
         ("ap_bev", "BEV AP"), ("ap_3d", "3D AP")]  # the last two: per-split AP of 3D sources


def summary_table(results: dict) -> str:
    conf = results["config"]["conformal"]
    targets = {m: (t(conf), higher) for m, _, t, higher in PANELS}
    rows = []
    table = [(m, h) for m, h in TABLE if any(m in r for r in results["cells"])]  # results of older versions
    head = "".join(f"<th>{h}</th>" for _, h in table)
    for r in results["cells"]:
        tds = "".join(flagged_cell(r[m], *targets.get(m, (None, True)), 1 if m == "matched_objects" else 3)
                      for m, _ in table)
        cls = " class='clean'" if r["cell"] == "clean" else ""
        sev = "" if r["cell"] == "clean" else r["severity"]
        rows.append(f"<tr{cls}><td class='l'>{html.escape(r['corruption'])}</td><td>{sev}</td>{tds}</tr>")
    tgt = "".join(f"<td>{target_text(*targets.get(m, (None, True)))}</td>" for m, _ in table)
    return (f"<table><tr><th class='l'>corruption</th><th>sev.</th>{head}</tr>"
            f"<tr><td class='l'><i>target</i></td><td></td>{tgt}</tr>{''.join(rows)}</table>")


def caveats(results: dict) -> list:
    cfg, data = results["config"], results["data"]
    conf = cfg["conformal"]
    out = list(SOURCES[cfg["data"]["name"]].caveats(results)) if cfg["data"]["name"] in SOURCES else []
    out += ["The symmetric box-wise baseline (pred +- the conformal quantile of |true - pred| / scale per "
            "coordinate at alpha / D, Bonferroni, as puncc's SplitBoxWise intends) is fitted on the same calibration "
            "detections and scored on the same test detections as ours. Its intervals are centred on the "
            "prediction: when the detector's boxes are biased (too small, shifted) it pays for the bias on both "
            "sides (wider intervals for the same coverage), and its Bonferroni split cannot use the dependence "
            "between sides that the max-rank correction uses. Compare the interval sizes at equal coverage."]
    out += [f"Box coverage >= {1 - conf['alpha']:.2f}"
           + (f" and class-set coverage >= {1 - conf['alpha_cls']:.2f}" if conf["alpha_cls"] is not None else "")
           + " are guaranteed only when test frames are exchangeable with the clean calibration frames, i.e. for "
           "the 'clean' row; they are over matched detections above the confidence threshold. Degraded rows are a "
           "stress test under shift: measured, not promised."]
    if conf["alpha_cls"] is not None:
        out.append(f"The joint class + box target 1 - alpha - alpha_cls = {1 - conf['alpha'] - conf['alpha_cls']:.2f} "
                   "is a union bound, so the clean joint coverage usually lies above it.")
    if conf["recall_alpha"] is not None:
        out.append(f"The confidence threshold is chosen by Learn-then-Test on a {conf['recall_fraction']:.0%} share "
                   f"of the calibration frames: with probability >= {1 - conf['recall_delta']:.2f} over calibration, "
                   f"the EXPECTED fraction of a frame's objects that are missed is <= {conf['recall_alpha']}. A "
                   "single split's test estimate may exceed it by chance.")
    R = cfg["split"]["repeats"]
    out.append(f"Intervals in brackets: 2.5%-97.5% quantiles over {R} random calibration/test splits of one pool of "
               f"{data['n_pool']} frames ({data['n_calibration']} calibration each)."
               + (" With fewer than 20 splits the intervals are rough." if R < 20 else ""))
    for msg, count in results.get("calibration_warnings", {}).items():
        out.append(f"The detector warned in {count} of {R} splits: {html.escape(msg)}")
    if results.get("failed_cells"):
        out.append(f"{len(results['failed_cells'])} cell(s) FAILED and are missing: "
                   f"{', '.join(sorted(results['failed_cells']))} (tracebacks in results.json).")
    return out


def report_parts(results: dict, curves: dict, plot_dir: Path) -> ReportParts:
    cfg = results["config"]
    made = draw_all(results, curves, plot_dir) if cfg["output"]["plots"] else []
    conf = cfg["conformal"]
    clean = next(r for r in results["cells"] if r["cell"] == "clean")
    det = ", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}"
                    for k, v in cfg["model"]["params"].items())
    source = SOURCES.get(cfg["data"]["name"])
    recall = (f"recall_alpha = {conf['recall_alpha']}, recall_delta = {conf['recall_delta']}"
              if conf["recall_alpha"] is not None else f"fixed score_threshold = {conf['score_threshold']}")
    head = (f"<p><b>Data:</b> {html.escape(results['data']['description'])}. <b>Detector:</b> "
            f"{html.escape(cfg['model']['name'])} ({html.escape(det)}). <b>ConformalDetector:</b> "
            f"alpha = {conf['alpha']}, alpha_cls = {conf['alpha_cls']} "
            f"({html.escape(conf['class_score'])}), scale = {html.escape(conf['scale'])}, "
            f"correction = {html.escape(conf['correction'])}, {recall}. <b>Clean:</b> box coverage "
            f"{clean['box_coverage']['mean']:.3f} (target {1 - conf['alpha']:.2f}), class-set coverage "
            f"{clean['class_coverage']['mean']:.3f}, recall risk {clean['recall_risk']['mean']:.3f}. "
            f"{len(results['cells'])} cells x {cfg['split']['repeats']} splits in {results['wall_seconds']:.1f} s.</p>")
    synthetic = " (SYNTHETIC)" if results["data"].get("synthetic") else ""
    return ReportParts(title=f"Detection audit: {cfg['name']}", heading=f"Detection audit{synthetic}: {cfg['name']}",
                       head=head, caveats=caveats(results),
                       tables=summary_table(results) + (source.corruption_table(results) if source else ""),
                       plots=made)
