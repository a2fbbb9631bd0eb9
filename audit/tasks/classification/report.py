"""The classification task's share of report.html: summary paragraph, caveats, the summary table, plots."""
from __future__ import annotations

import html

from audit.pages import flagged_cell, fmt, params_text, target_text
from audit.runner.task import ReportParts
from audit.tasks.classification.config import statistic_label
from audit.tasks.classification.models import preprocess_text
from audit.tasks.classification.plots import draw_all

__all__ = ["report_parts", "caveats", "summary_table", "targets", "research_appendix"]

TABLE_METRICS = [("coverage", "coverage"), ("set_size", "set size"), ("abstain_rate", "abstain"),
                 ("selective_risk", "sel. risk"), ("coverage_accepted", "cov. accepted"),
                 ("class_coverage_min", "worst class cov."), ("accuracy", "accuracy"),
                 ("auroc", "AUROC (label-free stat.)"), ("empty_rate", "empty")]
# Label-using research columns: shown apart, in the appendix, never beside the deployable metrics.
RESEARCH_METRICS = [("auroc_label_nll", "AUROC of -log p<sub>y</sub> for 'label not in set'"),
                    ("abstain_gridmean_label_nll", "research 'abstention rate' (mean over its tau grid)")]


def targets(cfg: dict) -> dict:
    """{metric: (target, higher is better, clean row only)} for the metrics the config sets a target for."""
    alpha = cfg["conformal"]["alpha"]
    rule = cfg["abstention"]["rule"]
    params = rule["params"]
    out = {"coverage": (1 - alpha, True, False)}
    if rule["name"] == "selective_risk":
        out["selective_risk"] = (params.get("delta", 0.1), False, False)
    if rule["name"] == "accept_coverage":
        out["coverage_accepted"] = (1 - alpha, True, False)
    if rule["name"] == "budget":  # the budget bounds clean abstention; abstaining more under shift is wanted
        out["abstain_rate"] = (params.get("max_abstain", 0.1), False, True)
    return out


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
               f"abstention statistic '{statistic_label(cfg)}' uses no label. The research's label-using "
               "statistic (-log p_y) is reported apart, in the research appendix at the end, for comparison only: "
               "it cannot be computed at deployment.")
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


SHIFT_TABLE = [("harm", "harm"), ("safe", "safe"), ("shift_abstain_rate", "abstain"),
               ("shift_accepted_coverage", "cov. accepted"), ("shift_harm", "harm"), ("shift_safe", "safe"),
               ("shift_auroc", "shift AUROC"), ("monitor_alarm", "alarm"), ("monitor_delay", "delay"),
               ("oracle_abstention_uses_label", "oracle abstain (uses label)")]


def shift_table(results: dict) -> str:
    """The config's rule next to the shift-aware rule, per cell (config section `shift`)."""
    if results["config"].get("shift") is None:
        return ""
    head = ("<tr><th class='l' rowspan=2>corruption</th><th rowspan=2>sev.</th><th colspan=2>"
            f"{html.escape(statistic_label(results['config']))} only</th><th colspan=4>shift-aware (window "
            "rule + monitor)</th><th colspan=3>label-free shift detection</th><th rowspan=2>oracle abstain "
            "(USES LABEL)</th></tr><tr>" + "".join(f"<th>{h}</th>" for _, h in SHIFT_TABLE[:-1]) + "</tr>")
    alpha = results["config"]["conformal"]["alpha"]
    # harm <= alpha: on exchangeable data the accepted misses are at most the misses, P(miss) <= alpha
    tg = {"harm": (alpha, False), "shift_harm": (alpha, False), "shift_accepted_coverage": (1 - alpha, True)}
    rows = ["<tr><td class='l'><i>target</i></td><td></td>"
            + "".join(f"<td>{target_text(*tg[m]) if m in tg else ''}</td>" for m, _ in SHIFT_TABLE) + "</tr>"]
    for r in results["cells"]:
        sev = "" if r["cell"] == "clean" else r["severity"]
        tds = "".join(flagged_cell(r[m], *tg.get(m, (None, True))) for m, _ in SHIFT_TABLE)
        rows.append(f"<tr><td class='l'>{html.escape(r['corruption'])}</td><td>{sev}</td>{tds}</tr>")
    n = results["config"]["shift"]["repeats"]
    return (f"<h3>Shift-aware abstention (first {n} splits)</h3><table>{head}{''.join(rows)}</table>"
            "<p>harm = share of all test points accepted with a set that misses the label (target <= alpha: on "
            "exchangeable data accepted misses are at most all misses, P(miss) <= alpha); safe = share of splits "
            "with coverage among accepted >= 1 - alpha - 0.02 or abstention >= 0.95. The shift-aware rule "
            "(conformal.ShiftAwareAbstention, fitted on clean calibration data only) abstains on the most uncertain "
            "inputs of a trailing window as far as its label-free estimate of the coverage loss asks, and refuses "
            "for one window after the monitor's alarm; it has no guarantee under shift. The oracle column uses the "
            "labels and is for comparison only.</p>")


def summary_table(results: dict) -> str:
    tg = targets(results["config"])
    head = "".join(f"<th>{h}</th>" for _, h in TABLE_METRICS)
    rows = []
    for r in results["cells"]:
        clean = r["cell"] == "clean"
        tds = []
        for m, _ in TABLE_METRICS:
            t, higher, clean_only = tg.get(m, (None, True, False))
            tds.append(flagged_cell(r[m], None if clean_only and not clean else t, higher))
        sev = "" if clean else r["severity"]
        rows.append(f"<tr{' class=clean' if clean else ''}><td class='l'>{html.escape(r['corruption'])}</td>"
                    f"<td>{sev}</td>{''.join(tds)}</tr>")
    tgt = "".join(f"<td>{target_text(tg[m][0], tg[m][1])}{' (clean)' if tg[m][2] else ''}</td>" if m in tg
                  else "<td></td>" for m, _ in TABLE_METRICS)
    return (f"<table><tr><th class='l'>corruption</th><th>sev.</th>{head}</tr>"
            f"<tr><td class='l'><i>target</i></td><td></td>{tgt}</tr>{''.join(rows)}</table>")


def research_appendix(results: dict) -> str:
    """The research's label-using numbers, apart from the deployable ones and marked as such."""
    head = "".join(f"<th>{h}</th>" for _, h in RESEARCH_METRICS)
    rows = "".join(f"<tr><td class='l'>{html.escape(r['corruption'])}</td>"
                   f"<td>{'' if r['cell'] == 'clean' else r['severity']}</td>"
                   + "".join(f"<td>{fmt(r[m])}</td>" for m, _ in RESEARCH_METRICS) + "</tr>"
                   for r in results["cells"])
    return ("<h2>Research appendix: statistics that USE THE LABEL (not available at deployment)</h2>"
            "<p style='font-size:12px'>The research this project comes from thresholded -log p<sub>y</sub> of the "
            "true label. These columns reproduce its numbers for comparison only; no deployed system can compute "
            "them, and none of the thresholds above uses them. See docs/paper_comparison.md.</p>"
            f"<table><tr><th class='l'>corruption</th><th>sev.</th>{head}</tr>{rows}</table>")


def _preprocessing(results: dict) -> str:
    """The audited model's input preprocessing, stated (the default too), for image models from files."""
    text = preprocess_text(results["config"]) if results["data"]["modality"] == "image" else None
    return f"<b>Preprocessing:</b> {html.escape(text)}. " if text else ""


def report_parts(results: dict, curves: dict, plot_dir) -> ReportParts:
    cfg = results["config"]
    made = draw_all(results, curves, plot_dir) if cfg["output"]["plots"] else []
    clean = next(r for r in results["cells"] if r["cell"] == "clean")
    alpha = cfg["conformal"]["alpha"]
    head = (f"<p><b>Data:</b> {html.escape(results['data']['description'])}. <b>Model:</b> "
            f"{html.escape(cfg['model']['name'])} {html.escape(params_text(cfg['model']['params']))}. "
            f"{_preprocessing(results)}<b>Score:</b> "
            f"{html.escape(cfg['conformal']['score']['name'])}, "
            f"alpha = {alpha}. <b>Abstention:</b> statistic {html.escape(statistic_label(cfg))}, rule "
            f"{html.escape(cfg['abstention']['rule']['name'])}, target {html.escape(cfg['abstention']['target'])}. "
            f"<b>Clean coverage:</b> {clean['coverage']['mean']:.3f} (target {1 - alpha:.2f}), "
            f"<b>clean abstention:</b> {clean['abstain_rate']['mean']:.3f}. {len(results['cells'])} cells x "
            f"{cfg['split']['repeats']} splits in {results['wall_seconds']:.1f} s.</p>")
    return ReportParts(title=f"Audit: {cfg['name']}", heading=f"Robustness audit: {cfg['name']}", head=head,
                       caveats=caveats(results), tables=summary_table(results) + shift_table(results), plots=made,
                       appendix=research_appendix(results))
