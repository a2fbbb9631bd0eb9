"""docs/models.md's walk-through, followed word for word in an empty folder: export a TorchScript model with its
own preprocessing, write the YAML config next to it, run `python -m audit run` on it, check the results."""
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("cv2")
pytest.importorskip("sklearn")

ROOT = Path(__file__).resolve().parents[2]


def _walkthrough_blocks():
    text = (ROOT / "docs" / "models.md").read_text()
    section = text[text.index("## Walk-through"):]
    return re.findall(r"```(python|yaml|bash)\n(.*?)```", section, flags=re.S)


def test_docs_walkthrough_audits_a_torchscript_model_from_yaml(tmp_path):
    blocks = _walkthrough_blocks()
    assert [kind for kind, _ in blocks] == ["python", "yaml", "bash"]
    (_, script), (_, config), (_, commands) = blocks
    (tmp_path / "export_model.py").write_text(script)
    (tmp_path / "audit.yaml").write_text(config)
    # the repository's code, whatever is installed; one thread per library, as in the audit's cells
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    for line in commands.strip().splitlines():
        argv = shlex.split(line.split("#")[0])
        assert argv[0] == "python"
        proc = subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, f"{line}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    out = tmp_path / "audit-out"
    res = json.loads((out / "results.json").read_text())
    assert not res.get("failed_cells")
    cells = {r["cell"]: r for r in res["cells"]}
    assert set(cells) == {"clean", "gaussian_noise_s1", "gaussian_noise_s2", "contrast_s1", "contrast_s2"}
    clean = cells["clean"]
    assert clean["accuracy"]["mean"] >= 0.85  # the model learnt digits, so its preprocessing reached it
    assert abs(clean["coverage"]["mean"] - 0.98) <= 0.02  # alpha 0.02; 10 splits of ~450 test images each
    assert 1.0 <= clean["set_size"]["mean"] <= 3.0
    assert res["provenance"]["model_sha256"]
    page = (out / "report.html").read_text()
    assert "Preprocessing:</b> ImagePreprocess(size=None, color=&#x27;gray&#x27;, mean=[0.5], std=[0.25]" in page
    assert (out / "results.csv").is_file()
