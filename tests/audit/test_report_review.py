"""What a safety reviewer reads: every metric with a target shows it and is flagged by one stated rule, per-class
coverage, colour scales with meaningful ranges, and the label-using research numbers kept apart."""
import csv
import math

import numpy as np
import pytest

from audit import run_audit, validate_config
from audit.pages import FLAG_RULE, flag, flagged_cell
from audit.tasks.classification.evaluate import class_coverage
from audit.tasks.classification.report import targets


def S(mean, lo, hi):
    return {"mean": mean, "lo": lo, "hi": hi}


@pytest.mark.parametrize("summary,target,higher,want", [
    (S(0.977, 0.95, 0.99), 0.98, True, "warn"),   # the fog s1 case: mean below, interval reaches
    (S(0.90, 0.88, 0.92), 0.98, True, "bad"),     # whole interval below
    (S(0.981, 0.96, 0.99), 0.98, True, ""),
    (S(0.15, 0.12, 0.18), 0.1, False, "bad"),     # lower is better (recall risk, selective risk, harm)
    (S(0.11, 0.05, 0.16), 0.1, False, "warn"),
    (S(0.09, 0.05, 0.16), 0.1, False, ""),
    (S(math.nan, math.nan, math.nan), 0.1, False, ""),
    (S(0.5, 0.4, 0.6), None, True, ""),
])
def test_flag_rule(summary, target, higher, want):
    assert flag(summary, target, higher) == want


def test_flagged_mean_never_prints_as_its_target():
    cell = flagged_cell(S(0.9798, 0.95, 0.99), 0.98, True)
    assert "class=warn" in cell and "0.9798" in cell
    assert flagged_cell(S(0.981, 0.97, 0.99), 0.98, True).startswith("<td>0.981")


def test_targets_follow_the_rule():
    def cfg(rule, params):
        return {"conformal": {"alpha": 0.05}, "abstention": {"rule": {"name": rule, "params": params}}}

    assert targets(cfg("youden", {})) == {"coverage": (0.95, True, False)}
    assert targets(cfg("selective_risk", {"delta": 0.2}))["selective_risk"] == (0.2, False, False)
    assert targets(cfg("accept_coverage", {}))["coverage_accepted"] == (0.95, True, False)
    assert targets(cfg("budget", {"max_abstain": 0.15}))["abstain_rate"] == (0.15, False, True)  # clean row only


def test_class_coverage_counts_only_present_classes():
    covered = np.array([1, 0, 1, 1, 0], bool)
    labels = np.array([0, 0, 2, 2, 2])
    present, cov = class_coverage(covered, labels, 4)
    assert present.tolist() == [0, 2] and np.allclose(cov, [0.5, 2 / 3])


@pytest.fixture(scope="module")
def reviewed_run(tmp_path_factory, tiny_config):
    out = tmp_path_factory.mktemp("review") / "run"
    cfg = validate_config(tiny_config(output={"plots": True, "report": True, "examples": 2},
                                      abstention={"statistic": "entropy", "rule": {"name": "budget",
                                                                                   "params": {"max_abstain": 0.1}},
                                                  "target": "error"}))
    return out, run_audit(cfg, out, quiet=True)


def test_report_states_the_rule_shows_targets_and_keeps_label_use_apart(reviewed_run):
    out, results = reviewed_run
    page = (out / "report.html").read_text()
    assert FLAG_RULE in page
    main, appendix = page.split("Research appendix", 1)
    assert "&ge; 0.900" in main and "&le; 0.100 (clean)" in main  # coverage and the clean abstention budget
    assert "-log p<sub>y</sub>" not in main.split("<table>", 1)[1].split("</table>", 1)[0]
    assert "-log p<sub>y</sub>" in appendix and "USE THE LABEL" in appendix
    assert "Coverage per class" in page and (out / "plots" / "class_coverage.png").is_file()
    rows = list(csv.DictReader((out / "results.csv").open()))
    clean = next(r for r in rows if r["cell"] == "clean")
    assert 0.0 <= float(clean["class_coverage_min"]) <= float(clean["coverage"]) + 1e-12


def test_set_size_colour_scale_spans_at_least_one_label(reviewed_run, monkeypatch):
    import audit.tasks.classification.plots as plots

    out, results = reviewed_run
    seen = []
    real = plots.heatmap

    def spy(ax, grid, rows, sevs, cmap, norm, fmt, **kw):
        seen.append((cmap, norm.vmin, norm.vmax))
        return real(ax, grid, rows, sevs, cmap, norm, fmt, **kw)

    monkeypatch.setattr(plots, "heatmap", spy)
    for r in results["cells"]:  # nearly constant set sizes, as on a well-trained model
        r["set_size"] = S(0.995 + 0.005 * (r["cell"] == "clean"), 0.99, 1.0)
    plots.heatmaps(results, out / "plots" / "heatmaps_test.png")
    (_, vmin, vmax), = [s for s in seen if s[0] == "viridis"]
    assert vmin == 0.0 and vmax >= 1.0
