"""The shift-aware audit columns (config section `shift`) on tiny real data (digits 8x8, logistic regression):
present, in range, label-free detection that rises with the corruption, existing columns unchanged, the safety
heatmap drawn, and bad `shift` keys refused."""
import csv
import json
import math

import pytest

from audit import run_audit, validate_config
from audit.errors import ConfigError
from audit.tasks.classification.shift import SHIFT_METRICS

SHIFT = {"statistics": ["knn"], "window": 100, "monitor": "power_mixture", "repeats": 5}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_config):
    base = tmp_path_factory.mktemp("shift")
    out = {}
    for name, extra in (("plain", {}), ("shift", {"shift": SHIFT})):
        cfg = validate_config(tiny_config(output={"plots": True, "report": True, "examples": 2}, **extra))
        run_audit(cfg, base / name, quiet=True)
        with open(base / name / "results.csv") as f:
            out[name] = (base / name, list(csv.DictReader(f)))
    return out


def test_columns_present_sane_and_existing_ones_unchanged(runs):
    _, plain = runs["plain"]
    out, rows = runs["shift"]
    for m in SHIFT_METRICS:
        assert m in rows[0]
    old_cols = [c for c in plain[0] if not any(c.startswith(m) for m in SHIFT_METRICS)]
    for a, b in zip(plain, rows):
        assert all(a[c] == b[c] for c in old_cols), a["cell"]
        assert a["shift_auroc"] == "" and b["shift_auroc"] != ""  # only a `shift` config fills them
    for r in rows:
        for m in ("harm", "safe", "shift_abstain_rate", "shift_accepted_coverage", "shift_harm", "shift_safe",
                  "shift_auroc", "monitor_alarm", "oracle_abstention_uses_label"):
            assert 0.0 <= float(r[m]) <= 1.0, (r["cell"], m)
    by = {r["cell"]: r for r in rows}
    clean, heavy = by["clean"], by["audit_test_corruptions_noise_s3"]
    assert abs(float(clean["shift_auroc"]) - 0.5) < 0.05 and float(heavy["shift_auroc"]) > 0.8
    # a ~225-input reference fold over ~450 clean inputs: above the nominal 0.01 (the small-reference effect
    # docs/streaming.md describes), but far from the certain alarm under heavy noise
    assert float(clean["monitor_alarm"]) <= 0.5 and float(heavy["monitor_alarm"]) == 1.0
    assert float(heavy["shift_abstain_rate"]) > float(clean["shift_abstain_rate"])
    assert float(clean["safe"]) >= 0.5 and float(heavy["harm"]) > float(clean["harm"])
    for cell, per in json.loads((out / "results.json").read_text())["per_split"].items():
        for h, a, c in zip(per["harm"], per["abstain_rate"], per["coverage_accepted"]):
            if c is not None:  # per split: harm = accepted share x miss rate among accepted
                assert h == pytest.approx((1 - a) * (1 - c), abs=1e-12), cell
    per = json.loads((out / "results.json").read_text())["per_split"]["clean"]
    assert sum(x is not None for x in per["shift_auroc"]) == SHIFT["repeats"]  # only the first `repeats` splits
    assert (out / "plots" / "safety.png").is_file()
    assert "Shift-aware abstention" in (out / "report.html").read_text() and "USES LABEL" in \
        (out / "report.html").read_text()
    assert math.isfinite(float(heavy["monitor_delay"]))


@pytest.mark.parametrize("bad,match", [({"statistics": ["mahalanobis"]}, "shift.statistics"),
                                       ({"estimator": "regressor"}, "shift.estimator"),
                                       ({"monitor": "jumper"}, "shift.monitor"),
                                       ({"after_alarm": "panic"}, "shift.after_alarm"),
                                       ({"windows": 10}, "shift")])
def test_bad_shift_keys_are_refused(tiny_config, bad, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(tiny_config(shift={**SHIFT, **bad}))


def test_shift_table_flags_harm_against_alpha(runs):
    out, rows = runs["shift"]
    page = (out / "report.html").read_text()
    table = page.split("Shift-aware abstention", 1)[1].split("</table>", 1)[0]
    alpha = 0.1  # the tiny config's
    assert f"&le; {alpha:.3f}" in table and f"&ge; {1 - alpha:.3f}" in table  # the target row
    heavy = next(r for r in rows if r["cell"] == "audit_test_corruptions_noise_s3")
    assert float(heavy["harm"]) > alpha  # heavy noise harms beyond alpha here, so its harm cell must be flagged
    assert "class=bad" in table or "class=warn" in table
