"""report.html: one self-contained file (plots embedded as base64 PNG) built from results.json + curves.npz."""
from __future__ import annotations

import base64
import html
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np

TABLE_METRICS = [("coverage", "coverage"), ("set_size", "set size"), ("abstain_rate", "abstain"),
                 ("selective_risk", "sel. risk"), ("accuracy", "accuracy"), ("auroc", "AUROC"),
                 ("empty_rate", "empty")]

CSS = """
body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;max-width:1500px;color:#222}
h1{font-size:22px} h2{font-size:17px;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:28px}
table{border-collapse:collapse;font-size:12px} td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f2f2f2} td.l,th.l{text-align:left} tr.clean td{background:#eef6ee}
td.bad{color:#b00020;font-weight:bold} .ci{color:#777;font-size:10px}
img{max-width:100%;border:1px solid #eee;margin:6px 0} pre{background:#f7f7f7;padding:8px;font-size:11px;overflow:auto}
.caveat{background:#fff6e0;border-left:4px solid #e0a000;padding:8px 12px;font-size:13px}
"""


def _fmt(s: dict, digits: int = 3) -> str:
    if s is None or not isinstance(s.get("mean"), float) or not math.isfinite(s["mean"]):
        return "&ndash;"
    ci = ""
    if math.isfinite(s.get("lo", math.nan)):
        ci = f"<br><span class='ci'>[{s['lo']:.{digits}f}, {s['hi']:.{digits}f}]</span>"
    return f"{s['mean']:.{digits}f}{ci}"


def _params(params: dict) -> str:
    shown = {k: (Path(v).name if k in ("weights", "root", "path") and isinstance(v, str) else v)
             for k, v in params.items()}
    return "(" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")" if shown else ""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<img src='data:image/png;base64,{data}' alt='{html.escape(path.name)}'>"


def caveats(results: dict) -> list:
    cfg, data = results["config"], results["data"]
    alpha = cfg["conformal"]["alpha"]
    out = []
    if data["synthetic"]:
        out.append(f"The data are SYNTHETIC: {html.escape(data['description'])}. Numbers describe this generator, "
                   "not any real sensor.")
    out.append(f"Conformal coverage >= {1 - alpha:.2f} is guaranteed only when test data are exchangeable with the "
               "clean calibration data, i.e. for the 'clean' row. Corrupted rows are a stress test under covariate "
               "shift, where split conformal prediction gives no guarantee; their coverage is measured, not promised.")
    out.append("Both thresholds (conformal q-hat and abstention tau) are fitted on clean calibration data only; the "
               f"abstention statistic '{cfg['abstention']['statistic']}' uses no label. The column 'AUROC -log p_y' "
               "reproduces the research's label-using statistic for comparison only: it cannot be computed at "
               "deployment.")
    rule = cfg["abstention"]["rule"]["name"]
    if rule in ("youden", "fpr", "budget"):
        out.append(f"The abstention rule '{rule}' is a heuristic operating point: it carries no guarantee on the "
                   "selective risk (use rule 'selective_risk' for a finite-sample guarantee).")
    R = cfg["split"]["repeats"]
    out.append(f"Intervals in brackets: 2.5%-97.5% quantiles over {R} random calibration/test splits of the "
               f"{data['n_pool']} audit samples ({data['n_calibration']} calibration each)"
               + ("; with fewer than 20 splits they are rough." if R < 20 else "."))
    for msg, count in results.get("calibration_warnings", {}).items():
        out.append(f"The calibrator warned in {count} of {R} splits: {html.escape(msg)}")
    if data["modality"] == "outputs":
        out.append("Model outputs were supplied precomputed; this audit cannot check how they were produced.")
    if results.get("failed_cells"):
        out.append(f"{len(results['failed_cells'])} cell(s) FAILED and are missing: "
                   f"{', '.join(sorted(results['failed_cells']))} (tracebacks in results.json).")
    return out


def summary_table(results: dict) -> str:
    alpha = results["config"]["conformal"]["alpha"]
    head = "".join(f"<th>{h}</th>" for _, h in TABLE_METRICS)
    rows = []
    for r in results["cells"]:
        cls = " class='clean'" if r["cell"] == "clean" else ""
        tds = []
        for m, _ in TABLE_METRICS:
            bad = m == "coverage" and math.isfinite(r[m]["mean"]) and r[m]["mean"] < 1 - alpha - 0.02
            tds.append(f"<td{' class=bad' if bad else ''}>{_fmt(r[m])}</td>")
        nll = _fmt(r["auroc_label_nll"])
        sev = "" if r["cell"] == "clean" else r["severity"]
        rows.append(f"<tr{cls}><td class='l'>{html.escape(r['corruption'])}</td><td>{sev}</td>{''.join(tds)}"
                    f"<td>{nll}</td></tr>")
    return (f"<table><tr><th class='l'>corruption</th><th>sev.</th>{head}<th>AUROC -log p<sub>y</sub> "
            f"(uses label)</th></tr>{''.join(rows)}</table>")


def build(out, quiet: bool = False) -> Path:
    """(Re)draw the plots and write report.html from the files in `out` (no model runs)."""
    from conformal.audit.plots import draw_all

    out = Path(out)
    res_path = out / "results.json"
    if not res_path.is_file():
        raise ValueError(f"{str(res_path)!r} does not exist; run `conformal-audit run CONFIG --out {out}` first")
    results = json.loads(res_path.read_text())
    if results.get("task") == "detection":
        from conformal.audit.detection_report import build as build_detection

        return build_detection(out, results)
    with np.load(out / "curves.npz", allow_pickle=False) as z:
        curves = {k: z[k] for k in z.files}
    cfg = results["config"]
    made = draw_all(results, curves, out / "plots") if cfg["output"]["plots"] else []
    if not cfg["output"]["report"]:
        return out / "plots"
    clean = next(r for r in results["cells"] if r["cell"] == "clean")
    alpha = cfg["conformal"]["alpha"]
    head = (f"<p><b>Data:</b> {html.escape(results['data']['description'])}. <b>Model:</b> "
            f"{html.escape(cfg['model']['name'])} {html.escape(_params(cfg['model']['params']))}. <b>Score:</b> "
            f"{html.escape(cfg['conformal']['score']['name'])}, "
            f"alpha = {alpha}. <b>Abstention:</b> statistic {html.escape(cfg['abstention']['statistic'])}, rule "
            f"{html.escape(cfg['abstention']['rule']['name'])}, target {html.escape(cfg['abstention']['target'])}. "
            f"<b>Clean coverage:</b> {clean['coverage']['mean']:.3f} (target {1 - alpha:.2f}), "
            f"<b>clean abstention:</b> {clean['abstain_rate']['mean']:.3f}. {len(results['cells'])} cells x "
            f"{cfg['split']['repeats']} splits in {results['wall_seconds']:.1f} s.</p>")
    return write_page(out, cfg, results, title=f"Audit: {cfg['name']}", heading=f"Robustness audit: {cfg['name']}",
                      head=head, caveat_lines=caveats(results), tables=summary_table(results), made=made)


def write_page(out: Path, cfg: dict, results: dict, *, title: str, heading: str, head: str, caveat_lines: list,
               tables: str, made: list) -> Path:
    """The self-contained report.html every audit writes: heading, summary paragraph `head` (HTML), caveats,
    `tables` (HTML), the plots `made` as (file, caption), the exact config and the versions; report.png if asked."""
    from conformal.audit.config import dump

    plots = "".join(f"<h2>{html.escape(cap)}</h2>{_img(out / 'plots' / f)}" for f, cap in made)
    cav = "".join(f"<li>{c}</li>" for c in caveat_lines)
    vers = ", ".join(f"{k} {html.escape(str(v))}" for k, v in results["versions"].items())
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{CSS}</style></head><body><h1>{html.escape(heading)}</h1>{head}"
           f"<div class='caveat'><b>Read this first</b><ul>{cav}</ul></div>"
           f"<h2>Summary (mean over splits, [95% split interval])</h2>{tables}{plots}"
           f"<h2>Exact config</h2><pre>{html.escape(dump(cfg))}</pre>"
           f"<h2>Versions</h2><p style='font-size:12px'>{vers}</p></body></html>")
    path = out / "report.html"
    path.write_text(doc)
    if cfg["output"].get("render_png"):
        render_png(path, out / "report.png")
    return path


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        exe = shutil.which(name)
        if exe:
            return exe
    return None


def render_png(html_path, png_path, width: int = 1400, height: int = 7000, timeout: float = 90.0) -> Path:
    """Render an HTML file to a PNG with headless Chromium (Debian package `chromium`)."""
    exe = find_chromium()
    if exe is None:
        raise RuntimeError("headless Chromium is not installed (Debian: sudo apt-get install chromium); it is "
                           "only needed to render report.html to a PNG")
    png_path = Path(png_path).resolve()
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-dev-shm-usage",
           f"--window-size={width},{height}", f"--screenshot={png_path}",
           Path(html_path).resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not png_path.is_file():
        raise RuntimeError(f"chromium failed to render {html_path} (exit {proc.returncode}): {proc.stderr[-800:]}")
    return png_path
