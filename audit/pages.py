"""The report page every audit writes: one self-contained report.html (plots embedded as base64 PNG), and its
rendering to PNG with headless Chromium. Tasks supply the content (`audit.runner.task.ReportParts`)."""
from __future__ import annotations

import base64
import html
import math
import shutil
import subprocess
from pathlib import Path

from audit.files import write_text
from audit.schema import dump

__all__ = ["CSS", "FLAG_RULE", "fmt", "flag", "flagged_cell", "target_text", "params_text", "img", "write_page",
           "find_chromium", "render_png"]

CSS = """
body{font-family:DejaVu Sans,Arial,sans-serif;margin:24px;max-width:1500px;color:#222}
h1{font-size:22px} h2{font-size:17px;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:28px}
table{border-collapse:collapse;font-size:12px} td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f2f2f2} td.l,th.l{text-align:left} tr.clean td{background:#eef6ee}
td.bad{color:#b00020;font-weight:bold;background:#fde8ec} td.warn{color:#a05a00;font-weight:bold}
.ci{color:#777;font-size:10px}
img{max-width:100%;border:1px solid #eee;margin:6px 0} pre{background:#f7f7f7;padding:8px;font-size:11px;overflow:auto}
.caveat{background:#fff6e0;border-left:4px solid #e0a000;padding:8px 12px;font-size:13px}
"""


FLAG_RULE = ("<b>Flag rule.</b> Every metric with a target shows it in the table's target row. A value is "
             "<span style='color:#b00020;font-weight:bold'>red</span> when its whole 95% split interval lies on the "
             "wrong side of the target (the miss is clear of split-to-split noise), and "
             "<span style='color:#a05a00;font-weight:bold'>amber</span> when its mean is on the wrong side but the "
             "interval still reaches the target. A flagged mean gets as many decimals as it takes never to print "
             "as equal to its target. Targets are guarantees on the clean row only; on corrupted rows they "
             "are the level a safe system would still need, and a flag there is a measured failure, not a "
             "broken promise.")


def flag(s: dict | None, target: float | None, higher: bool) -> str:
    """The flag ("bad", "warn" or "") of a summary {mean, lo, hi} against a target (see FLAG_RULE)."""
    if s is None or target is None or not isinstance(s.get("mean"), float) or not math.isfinite(s["mean"]):
        return ""
    mean, lo, hi = s["mean"], s.get("lo", math.nan), s.get("hi", math.nan)
    worse = mean < target if higher else mean > target
    if not worse:
        return ""
    far = (hi < target if higher else lo > target) if math.isfinite(lo) and math.isfinite(hi) else True
    return "bad" if far else "warn"


def flagged_cell(s: dict | None, target: float | None, higher: bool, digits: int = 3) -> str:
    """One <td> of a summary table: the value with its interval, flagged against its target."""
    f = flag(s, target, higher)
    while f and digits < 6 and f"{s['mean']:.{digits}f}" == f"{target:.{digits}f}":
        digits += 1  # a flagged mean never prints as its target (0.9798 against 0.98 shows as 0.9798)
    return f"<td{f' class={f}' if f else ''}>{fmt(s, digits)}</td>"


def target_text(target: float | None, higher: bool, digits: int = 3) -> str:
    return "" if target is None else f"{'&ge;' if higher else '&le;'} {target:.{digits}f}"


def fmt(s: dict, digits: int = 3) -> str:
    if s is None or not isinstance(s.get("mean"), float) or not math.isfinite(s["mean"]):
        return "&ndash;"
    ci = ""
    if math.isfinite(s.get("lo", math.nan)):
        ci = f"<br><span class='ci'>[{s['lo']:.{digits}f}, {s['hi']:.{digits}f}]</span>"
    return f"{s['mean']:.{digits}f}{ci}"


def params_text(params: dict) -> str:
    shown = {k: (Path(v).name if k in ("weights", "root", "path") and isinstance(v, str) else v)
             for k, v in params.items()}
    return "(" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")" if shown else ""


def img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<img src='data:image/png;base64,{data}' alt='{html.escape(path.name)}'>"


def _plain(v) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}: {x}" for k, x in v.items())
    return str(v)


def write_page(out: Path, cfg: dict, results: dict, *, title: str, heading: str, head: str, caveat_lines: list,
               tables: str, made: list, appendix: str = "") -> Path:
    """The self-contained report.html every audit writes: heading, summary paragraph `head` (HTML), caveats,
    `tables` (HTML), the plots `made` as (file, caption), `appendix` (HTML), the exact config and the versions;
    report.png if asked."""
    plots = "".join(f"<h2>{html.escape(cap)}</h2>{img(out / 'plots' / f)}" for f, cap in made)
    cav = "".join(f"<li>{c}</li>" for c in caveat_lines)
    vers = ", ".join(f"{k} {html.escape(str(v))}" for k, v in results["versions"].items())
    prov = results.get("provenance") or {}
    prov_rows = "".join(f"<tr><td class='l'>{html.escape(k)}</td><td class='l'>{html.escape(_plain(v))}</td></tr>"
                        for k, v in prov.items())
    lib_warn = results.get("library_warnings") or {}
    warn_html = ("<h2>Library warnings (raised while preparing or computing cells)</h2><ul>"
                 + "".join(f"<li>{count}x: {html.escape(msg)}</li>" for msg, count in lib_warn.items()) + "</ul>"
                 if lib_warn else "")
    doc = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{CSS}</style></head><body><h1>{html.escape(heading)}</h1>{head}"
           f"<div class='caveat'><b>Read this first</b><ul>{cav}</ul></div>"
           f"<h2>Summary (mean over splits, [95% split interval])</h2><p style='font-size:12px'>{FLAG_RULE}</p>"
           f"{tables}{plots}{appendix}"
           f"{warn_html}<h2>Exact config</h2><pre>{html.escape(dump(cfg))}</pre>"
           f"<h2>Provenance</h2><table>{prov_rows}</table>"
           f"<h2>Versions</h2><p style='font-size:12px'>{vers}</p></body></html>")
    path = out / "report.html"
    write_text(path, doc)
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
