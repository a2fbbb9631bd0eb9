"""`conformal-audit init`: the shipped configs travel with the package and are written out on request."""
from pathlib import Path

from audit import load_config
from audit.cli import main, shipped_configs

ROOT = Path(__file__).resolve().parents[2]


def test_every_shipped_config_is_in_the_package_and_validates():
    shipped = shipped_configs()
    assert set(shipped) == {p.stem for p in (ROOT / "configs").glob("*.yaml")}
    for name, text in shipped.items():
        assert text == (ROOT / "configs" / f"{name}.yaml").read_text()


def test_init_writes_a_config_that_runs_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "mine.yaml"
    assert main(["init", "digits_camera", "--out", str(out)]) == 0
    assert load_config(out)["data"]["name"] == "digits"
    out.write_text("edited: true\n")
    assert main(["init", "digits_camera", "--out", str(out)]) == 2
    assert out.read_text() == "edited: true\n" and "never overwrites" in capsys.readouterr().err
    assert main(["init", "nosuch"]) == 2
    assert main(["init", "--list"]) == 0 and "digits_camera" in capsys.readouterr().out
