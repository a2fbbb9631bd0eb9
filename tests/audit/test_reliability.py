"""Nothing lost, nothing silently wrong (issue 17, group 3): the output folder, the cache, custom corruptions, cell
ids, config validation and the exit code. Each test reproduces a failure of the earlier version."""
import json
import os
import textwrap

import numpy as np
import pytest

from audit import ConfigError, load_config, run_audit, validate_config
from audit.cli import main

BAD_CORRUPTIONS = textwrap.dedent('''
    import numpy as np

    def inplace(x, severity, rng, **params):
        x += np.uint8(10 * severity)   # writes into its input
        return x

    def as_float(x, severity, rng, **params):
        return x.astype(np.float64)    # wrong dtype: not a corruption effect

    def nan_float(x, severity, rng, **params):
        return np.full(x.shape, np.nan)

    def shrink(x, severity, rng, **params):
        return x[:4, :4].copy()         # wrong shape

    def fine(x, severity, rng, **params):
        return np.clip(x.astype(np.int16) + 20 * severity, 0, 255).astype(np.uint8)

    def noisy(x, severity, rng, strength=1.0):
        return np.clip(x + rng.normal(0, strength * severity, x.shape), 0, 255).astype(np.uint8)
''')


@pytest.fixture(scope="module")
def bad_module(tmp_path_factory):
    d = tmp_path_factory.mktemp("badmods")
    (d / "audit_bad_corruptions.py").write_text(BAD_CORRUPTIONS)
    (d / "audit_bad").mkdir()
    (d / "audit_bad" / "__init__.py").write_text("")
    (d / "audit_bad" / "corruptions.py").write_text(BAD_CORRUPTIONS)  # "audit_bad.corruptions:fine" -> same id
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(d))
    mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(d), os.environ.get("PYTHONPATH", "")) if p))
    yield "audit_bad_corruptions"
    mp.undo()


def _quick(tiny_config, **over):
    base = dict(split={"repeats": 3}, output={"plots": False, "report": False, "examples": 1})
    base.update(over)
    return validate_config(tiny_config(**base))


# --- the output folder ----------------------------------------------------------------------------------------
def test_foreign_folder_is_refused_and_its_files_survive(tiny_config, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text("mine: true\n")
    (project / "notes.txt").write_text("keep me")
    cfg = _quick(tiny_config, corruptions=[])
    with pytest.raises(ConfigError, match="not empty and was not created by conformal-audit"):
        run_audit(cfg, project, quiet=True)
    # --overwrite still never replaces a file the audit did not create
    with pytest.raises(ConfigError, match="already holds config.yaml"):
        run_audit(cfg, project, quiet=True, overwrite=True)
    assert (project / "config.yaml").read_text() == "mine: true\n"
    (project / "config.yaml").unlink()
    run_audit(cfg, project, quiet=True, overwrite=True)  # no clash: allowed, unrelated files untouched
    assert (project / "notes.txt").read_text() == "keep me"
    assert (project / "results.json").is_file()
    run_audit(cfg, project, quiet=True)  # the folder is now an audit folder: reruns need no flag


def test_cli_refuses_out_dot_in_a_project_folder(tiny_config, tmp_path, monkeypatch, capsys):
    import yaml

    cfg_path = tmp_path / "audit.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(corruptions=[], split={"repeats": 2},
                                                   output={"plots": False, "report": False, "examples": 0})))
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(cfg_path), "--out", ".", "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert cfg_path.is_file() and not (tmp_path / "results.json").exists()


# --- cache and results files ----------------------------------------------------------------------------------
def test_truncated_cache_entry_is_recomputed_with_a_warning(tiny_config, tmp_path):
    cfg = _quick(tiny_config)
    out = tmp_path / "run"
    first = run_audit(cfg, out, quiet=True)
    entry = out / "cache" / "clean.npz"
    entry.write_bytes(entry.read_bytes()[:100])  # truncated by a crash or a full disk
    with pytest.warns(UserWarning, match=r"clean.npz' cannot be read .*recomputing"):
        again = run_audit(cfg, out, resume=True, quiet=True)
    assert again["per_split"] == first["per_split"]


def test_truncated_results_file_names_the_file(tiny_config, tmp_path):
    from audit.report import build

    cfg = _quick(tiny_config)
    out = tmp_path / "run"
    run_audit(cfg, out, quiet=True)
    text = (out / "results.json").read_text()
    (out / "results.json").write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match=r"results.json' is not valid JSON .*truncated"):
        build(out)


# --- custom corruptions ---------------------------------------------------------------------------------------
def test_corruption_writing_into_its_input_fails_its_cell_only(tiny_config, bad_module, tmp_path):
    clean_only = run_audit(_quick(tiny_config, corruptions=[]), tmp_path / "ref", quiet=True)
    cfg = _quick(tiny_config, corruptions=[{"name": f"{bad_module}:inplace", "severities": [1]},
                                          {"name": f"{bad_module}:fine", "severities": [2]}])
    res = run_audit(cfg, tmp_path / "out", quiet=True)
    err = res["failed_cells"]["audit_bad_corruptions_inplace_s1"]
    assert "writes into its input" in err
    assert [r["cell"] for r in res["cells"]] == ["clean", "audit_bad_corruptions_fine_s2"]
    # the shared pool was not poisoned: the clean cell is exactly what a run without the bad corruption gives
    assert res["per_split"]["clean"] == clean_only["per_split"]["clean"]


@pytest.mark.parametrize("name, message", [
    ("as_float", "returned dtype float64; expected the input's uint8"),
    ("shrink", "returned shape (4, 4); expected the input's (8, 8)"),
])
def test_bad_corruption_output_is_reported_as_the_corruptions_fault(tiny_config, bad_module, tmp_path, name,
                                                                    message):
    cfg = _quick(tiny_config, corruptions=[{"name": f"{bad_module}:{name}", "severities": [1]}])
    res = run_audit(cfg, tmp_path / "out", quiet=True)
    (err,) = res["failed_cells"].values()
    assert f"corruption '{bad_module}:{name}' on input 0 {message}" in err
    assert [r["cell"] for r in res["cells"]] == ["clean"]


def test_nan_model_outputs_fail_the_cell_and_name_it(tiny_config, bad_module, tmp_path, monkeypatch):
    """A NaN reaching the model used to abort the whole audit in the split loop, with no results and no cell."""
    from audit.tasks.classification import models

    real, calls = models.LinearSoftmax.predict_proba, []

    def nan_after_clean(self, inputs):  # cells run in order in one process: the clean cell comes first
        p = real(self, inputs)
        calls.append(1)
        if len(calls) > 1:
            p[3] = np.nan
        return p

    monkeypatch.setattr(models.LinearSoftmax, "predict_proba", nan_after_clean)
    cfg = _quick(tiny_config, corruptions=[{"name": f"{bad_module}:fine", "severities": [1]}])
    res = run_audit(cfg, tmp_path / "out", quiet=True)
    (cell, err), = res["failed_cells"].items()
    assert cell == "audit_bad_corruptions_fine_s1"
    assert "the model's outputs on cell 'audit_bad_corruptions_fine_s1' hold NaN or inf (first in row 3)" in err
    assert [r["cell"] for r in res["cells"]] == ["clean"]


def test_cli_exits_non_zero_when_a_cell_failed(tiny_config, bad_module, tmp_path, capsys):
    import yaml

    cfg_path = tmp_path / "a.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(corruptions=[{"name": f"{bad_module}:inplace",
                                                                 "severities": [1]}],
                                                   split={"repeats": 2},
                                                   output={"plots": False, "report": False, "examples": 0})))
    assert main(["run", str(cfg_path), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    assert "1 cell(s) FAILED: audit_bad_corruptions_inplace_s1" in capsys.readouterr().err


# --- config validation ----------------------------------------------------------------------------------------
def test_names_that_share_a_cell_id_are_refused(tiny_config, bad_module):
    """`pkg.mod:f` and `pkg_mod:f` used to share one cache file and one results row."""
    with pytest.raises(ConfigError, match=r"'audit_bad.corruptions:fine' and 'audit_bad_corruptions:fine' map to "
                                          r"the same cell id 'audit_bad_corruptions_fine'"):
        validate_config(tiny_config(corruptions=[{"name": f"{bad_module}:fine"},
                                                 {"name": "audit_bad.corruptions:fine"}]))


@pytest.mark.parametrize("change, match", [
    (dict(data={"name": "digits", "params": {"size": "28"}}), r"`data.params.size` must be an integer"),
    (dict(data={"name": "digits", "params": {"split": "random"}}), r"`data.params.split` is 'random'"),
    (dict(model={"name": "sklearn_logreg", "params": {"max_iter": 0}}), r"`model.params.max_iter` must be >= 1"),
    (dict(corruptions=[{"name": "fog", "params": {"strength": 2}}]),
     r"`corruptions\[0\].params` has parameter\(s\) strength that corruption 'fog' does not take; allowed: scale"),
    (dict(corruptions=[{"name": "fog", "params": {"scale": "big"}}]), r"`corruptions\[0\].params.scale` is 'big'"),
])
def test_wrong_values_inside_params_fail_at_load(tiny_config, change, match):
    with pytest.raises(ConfigError, match=match):
        validate_config(tiny_config(**change))


def test_custom_corruption_params_are_checked_against_its_signature(tiny_config, bad_module):
    ok = validate_config(tiny_config(corruptions=[{"name": f"{bad_module}:noisy", "params": {"strength": 2.0}}]))
    assert ok["corruptions"][0]["params"] == {"strength": 2.0}
    with pytest.raises(ConfigError, match=r"parameter\(s\) strenght that corruption .* does not take"):
        validate_config(tiny_config(corruptions=[{"name": f"{bad_module}:noisy", "params": {"strenght": 2.0}}]))


def test_repeated_yaml_key_is_refused_with_its_lines(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("data: digits\nmodel: sklearn_logreg\ncorruptions: []\nmodel: reference\n")
    with pytest.raises(ConfigError, match=r"config key 'model' is repeated \(line 2 and line 4\)"):
        load_config(path)


def test_marker_file_is_json(tiny_config, tmp_path):
    run_audit(_quick(tiny_config, corruptions=[]), tmp_path / "o", quiet=True)
    marker = json.loads((tmp_path / "o" / ".conformal-audit.json").read_text())
    assert marker["format"] == "conformal-audit output folder"


# --- what was applied to each input ---------------------------------------------------------------------------
def test_applied_records_replay_each_corrupted_input(tiny_config, bad_module, tmp_path):
    """The audit logs, per input, the exact parameters and generator state its corruption used: replaying a
    record gives the corrupted input the model saw, bit for bit (built-in and custom corruptions)."""
    import gzip

    from audit.tasks.classification.data import DATA_SOURCES
    from perturbations.registry import replay

    cfg = _quick(tiny_config, corruptions=[{"name": "gaussian_noise", "severities": [3]},
                                          {"name": f"{bad_module}:noisy", "severities": [2],
                                           "params": {"strength": 3.0}}],
                 output={"plots": False, "report": False, "examples": 3})
    out = tmp_path / "o"
    res = run_audit(cfg, out, quiet=True)
    assert "replay" in res["applied"]
    pool = DATA_SOURCES["digits"].load(cfg["data"]["params"], cfg["split"], cfg["seed"]).pool_inputs
    curves = np.load(out / "curves.npz")
    for cell in ("gaussian_noise_s3", "audit_bad_corruptions_noisy_s2"):
        records = json.loads(gzip.decompress((out / "applied" / f"{cell}.json.gz").read_bytes()))
        assert len(records) == len(pool)
        ex = np.split(curves[f"{cell}__examples"], np.cumsum(curves[f"{cell}__example_counts"])[:-1])
        for i in range(3):
            if "custom" in records[i]:
                import importlib

                fn = importlib.import_module(bad_module).noisy
                gen = np.random.default_rng()
                gen.bit_generator.state = records[i]["rng"]
                again = fn(pool[i], severity=records[i]["severity"], rng=gen, **records[i]["params"])
            else:
                assert records[i]["params"]["std"] > 0 and records[i]["severity"] == 3
                again = replay(pool[i], records[i])
            np.testing.assert_array_equal(again, ex[i])


# --- a failed clean cell, progress, provenance ----------------------------------------------------------------
def test_failed_clean_cell_stops_with_one_clear_message(tiny_config, tmp_path, monkeypatch, capsys):
    """Today's version printed every traceback, then the error; now one line, the traceback in error.txt."""
    import yaml

    from audit import AuditError
    from audit.tasks.classification import models

    def broken(self, inputs):
        raise ArithmeticError("the model cannot run")

    monkeypatch.setattr(models.LinearSoftmax, "predict_proba", broken)
    cfg = _quick(tiny_config, corruptions=[])
    with pytest.raises(AuditError, match=r"the clean cell failed, so nothing can be calibrated: ArithmeticError: "
                                         r"the model cannot run \(full traceback in .*error.txt\)"):
        run_audit(cfg, tmp_path / "o", quiet=True)
    assert "Traceback" in (tmp_path / "o" / "error.txt").read_text()
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(corruptions=[], split={"repeats": 2},
                                                   output={"plots": False, "report": False, "examples": 0})))
    capsys.readouterr()
    assert main(["run", str(cfg_path), "--out", str(tmp_path / "o2"), "--quiet"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the clean cell failed" in err[0]


def test_progress_in_a_log_is_a_few_lines(tiny_config, tmp_path, capfd):
    cfg = _quick(tiny_config, split={"repeats": 8})
    run_audit(cfg, tmp_path / "o", quiet=False)
    err = capfd.readouterr().err
    assert "\r" not in err  # no carriage-return bar spam in a non-terminal log
    assert "[audit] splits: 8/8 splits" in err and err.count("[audit] splits:") <= 4


def test_results_carry_provenance(tiny_config, tmp_path):
    res = run_audit(_quick(tiny_config, corruptions=[]), tmp_path / "o", quiet=True)
    prov = res["provenance"]
    assert {"utc", "config_sha256", "data_fingerprint", "machine"} <= set(prov)
    assert prov["model_fitted_here"] == "sklearn_logreg" and len(prov["config_sha256"]) == 64


def test_validate_dry_run_builds_the_model_and_runs_one_batch(tiny_config, bad_module, tmp_path, capsys):
    import yaml

    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(tiny_config(corruptions=[{"name": "fog", "severities": [1, 4]}])))
    assert main(["validate", str(ok), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[dry run] clean: ok" in out and "[dry run] fog_s4: ok" in out and "fog_s1" not in out
    assert "dry run: ok" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(tiny_config(corruptions=[{"name": f"{bad_module}:as_float", "severities": [2]}])))
    assert main(["validate", str(bad), "--dry-run"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dry run: cell audit_bad_corruptions_as_float_s2 failed on 8 items" in err[0]
    assert not list(tmp_path.glob("**/results.json"))  # a dry run writes nothing
