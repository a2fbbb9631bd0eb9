"""Detector degradations (perturbations.detector) of the SIMULATED detector: what each one changes, nested
severities, the docs table, and the errors. Ported from the detection audit's tests when the degradations
moved out of the audit."""
from pathlib import Path

import numpy as np
import pytest

from adapters.datasets import make_scenes
from perturbations import detector as det
from perturbations.detector import corrupt, degradation_names, table_markdown

ROOT = Path(__file__).resolve().parents[2]
SCENE = {"n_classes": 4, "mean_objects": 6.0, "image_size": (480, 640), "max_range": 70.0}


def detector_params(dim):
    return {"bias": 0.0, "noise": 2.0 if dim == 2 else 0.15, "noise_growth": 0.03, "miss_rate": 0.1,
            "fp_rate": 1.0, "confusion": 0.1, "class_signal": 3.0, "flip_rate": 0.0, "quality_spread": 0.4,
            "translation": 0.6}


def test_names_tables_and_values():
    assert degradation_names() == ["sensor_noise", "occlusion", "clutter", "class_confusion", "box_shift",
                                   "box_shrink", "heading_flip"]
    assert degradation_names(2) == degradation_names()[:-1] and degradation_names(3) == degradation_names()
    assert det.names("localisation") == ("sensor_noise", "box_shift", "box_shrink", "heading_flip")
    assert det.value("clutter", 5, dim=2) == 12.0 and det.value("box_shift", 4, dim=3) == 0.5
    assert det.REGISTRY["heading_flip"].variants == ("3d",) and det.REGISTRY["box_shift"].units["2d.v"] == "px"
    with pytest.raises(ValueError, match="not defined for dim=2"):
        det.value("heading_flip", 1, dim=2)
    with pytest.raises(ValueError, match="severity"):
        det.value("clutter", 6, dim=2)
    with pytest.raises(ValueError, match="`name` must be one of"):
        det.value("rain", 1, dim=2)


def test_docs_state_the_severity_tables_of_the_code():
    table = table_markdown()
    assert table in (ROOT / "docs" / "audit.md").read_text()
    assert "| `clutter` | clutter: extra false positives, drawn like the simulator's own |" in table
    assert "1.5, 2, 3, 4, 6 x noise" in table and "| n/a |" in table


def _effect(name, p, o, key):
    """What a degradation did to one frame: a set of changed detections (must be nested in severity) or, for
    the geometric ones, the total box displacement (must grow with severity). Also checks that the rest of the
    frame is untouched."""
    m = p["scores"].size
    if name == "occlusion":  # a subset of the clean rows, unchanged; false positives are never occluded
        rows = np.flatnonzero(np.isin(p["scores"], o["scores"]))
        for k in p:
            assert np.array_equal(o[k], p[k][rows]), k
        dropped = np.setdiff1d(np.arange(m), rows)
        assert (p["_gt_index"][dropped] >= 0).all()
        return set(dropped.tolist())
    if name == "clutter":  # the clean rows first, unchanged, then extra false positives
        for k in p:
            assert np.array_equal(o[k][:m], p[k]), k
        assert (o["_gt_index"][m:] == -1).all()
        return set(o["scores"][m:].tolist())
    for k in ("scores", "_gt_index"):
        assert np.array_equal(o[k], p[k]), k
    moved = ~np.isclose(o[key], p[key]).all(axis=1)
    relabelled = ~np.isclose(o["class_probs"], p["class_probs"]).all(axis=1)
    if name == "class_confusion":  # only true detections, probabilities permuted, boxes untouched
        assert not moved.any() and (p["_gt_index"][relabelled] >= 0).all()
        assert np.allclose(np.sort(o["class_probs"], 1), np.sort(p["class_probs"], 1))
        return set(np.flatnonzero(relabelled).tolist())
    assert not relabelled.any()
    if name == "heading_flip":  # yaw + pi, nothing else
        assert np.allclose(o[key][moved, 6] - p[key][moved, 6], np.pi)
        assert np.array_equal(np.delete(o[key], 6, 1), np.delete(p[key], 6, 1))
        return set(np.flatnonzero(moved).tolist())
    return float(np.abs(o[key] - p[key]).sum())


@pytest.mark.parametrize("dim", [2, 3])
def test_degradations_change_only_what_they_name_and_nest_in_severity(dim):
    """A degradation transforms the clean detector's frames: untouched parts stay identical, inputs are not
    modified, and what it does at severity s it also does (at least) at every higher severity."""
    detector = detector_params(dim)
    preds, gts = make_scenes(40, dim=dim, rng=1, **SCENE, **detector)
    key = "boxes" if dim == 2 else "boxes3d"
    for name in degradation_names(dim):
        total = np.zeros(5)
        for p, g in zip(preds, gts):
            before = {k: v.copy() for k, v in p.items()}
            effects = [_effect(name, p, corrupt(p, name, s, np.random.default_rng(7), gt=g, dim=dim, scene=SCENE,
                                                detector=detector), key) for s in range(1, 6)]
            assert all(np.array_equal(before[k], p[k]) for k in p), name  # input not modified
            for s in range(1, 5):
                if isinstance(effects[s], set):
                    assert effects[s - 1] <= effects[s], (name, s)
                else:
                    assert effects[s] >= effects[s - 1] - 1e-9, (name, s)
            total += [len(e) if isinstance(e, set) else e for e in effects]
        assert total[4] > total[0] > 0, (name, total)
    with pytest.raises(ValueError, match="not defined for dim=2"):
        corrupt(preds[0], "heading_flip", 1, 0, gt=gts[0], dim=2, scene=SCENE, detector=detector)


def test_clutter_draws_the_simulators_own_false_positives():
    """clutter's candidates are the false positives of an empty scene of the simulator with fp_rate v_max,
    drawn from the same generator: one implementation (perturbations.false_positives) for both."""
    detector = detector_params(2)
    (p,), (g,) = make_scenes(1, rng=4, **SCENE, **detector)
    (fp,), _ = make_scenes(1, rng=np.random.default_rng(9), **dict(SCENE, mean_objects=0.0),
                           **dict(detector, fp_rate=det.value("clutter", 5, dim=2)))
    out = corrupt(p, "clutter", 5, np.random.default_rng(9), gt=g, dim=2, scene=SCENE, detector=detector)
    m = p["scores"].size
    assert out["scores"].size > m
    assert np.isin(out["scores"][m:], fp["scores"]).all() and np.isin(out["boxes"][m:], fp["boxes"]).all()


def test_the_legacy_apply_signature_and_errors():
    detector = detector_params(3)
    (p,), (g,) = make_scenes(1, dim=3, rng=2, **SCENE, **detector)
    a = det.apply("sensor_noise", 3, p, g, dim=3, scene=SCENE, detector=detector, rng=np.random.default_rng(1))
    b = corrupt(p, "sensor_noise", 3, 1, gt=g, dim=3, scene=SCENE, detector=detector)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="`dim` must be 2 or 3"):
        corrupt(p, "box_shift", 1, 0, gt=g, dim=4, scene=SCENE, detector=detector)
    with pytest.raises(ValueError, match=r"`pred` lacks \['boxes3d'"):
        corrupt({"scores": p["scores"]}, "box_shift", 1, 0, gt=g, dim=3, scene=SCENE, detector=detector)
    with pytest.raises(ValueError, match="`scene` lacks"):
        corrupt(p, "clutter", 1, 0, gt=g, dim=3, scene={}, detector=detector)
    with pytest.raises(ValueError, match="`name` must be one of"):
        corrupt(p, "fog", 1, 0, gt=g, dim=3, scene=SCENE, detector=detector)
