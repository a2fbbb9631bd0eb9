"""The one registry over every modality: table format, sample/apply split, records and replay.

For every corruption of every modality: the public function, sample-then-apply, `corrupt_logged` and `replay`
of its JSON record give the same output bit for bit, the generator ends in the same state, the input is never
modified, and the record survives json.dumps/loads.
"""
import doctest
import json

import numpy as np
import pytest

from perturbations import detector, image, pointcloud, registry
from perturbations.registry import REGISTRY, corrupt_logged, get, names, replay

pytest.importorskip("open3d")  # occlusion and lidar ray-cast; the street scan is ray-cast too


@pytest.fixture(scope="module")
def inputs():
    from adapters.datasets import make_scenes, street_scan

    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(400, 4))
    cloud[:, 3] = np.arange(400)  # a label column
    scan, ring, label = street_scan(16, 256, rng=0, return_labels=True)
    scene = {"n_classes": 4, "image_size": (480, 640), "max_range": 70.0}
    frames = {dim: make_scenes(1, dim=dim, rng=dim, mean_objects=8.0, **scene) for dim in (2, 3)}
    return {"image": rng.integers(0, 256, (32, 40, 3), dtype=np.uint8), "object": cloud.astype(np.float32),
            "scan": scan, "ring": ring, "label": label, "frames": frames, "scene": scene,
            "detector": {"noise": None, "noise_growth": 0.03, "class_signal": 3.0}}


ALL = [(m, n) for m, n in REGISTRY]


def case(inputs, modality, name):
    """(x, options, public(x, rng)) for one registry entry."""
    if modality == "image":
        return inputs["image"], {}, lambda rng: image.corrupt(inputs["image"], name, 3, rng)
    if modality == "pointcloud":
        x = inputs["object"] if get(name, modality).group == "object" else inputs["scan"]
        opts = {"ring": inputs["ring"], "n_rings": 16} if name in ("beam_missing", "beam_reduction") else {}
        return x, opts, lambda rng: pointcloud.corrupt_with_index(x, name, 3, rng, **opts)
    dim = 3 if name == "heading_flip" else 2
    (pred,), (gt,) = inputs["frames"][dim]
    opts = {"gt": gt, "dim": dim, "scene": inputs["scene"], "detector": inputs["detector"]}
    return pred, opts, lambda rng: detector.corrupt(pred, name, 3, rng, **opts)


def same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(u, v) for u, v in zip(a, b))
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def copy_of(x):
    return {k: v.copy() for k, v in x.items()} if isinstance(x, dict) else x.copy()


def test_every_table_has_five_rows_of_numbers_with_the_same_keys():
    assert len(REGISTRY) == 20 + 24 + 7 == len(ALL)
    for modality, name in ALL:
        e = REGISTRY[modality, name]
        assert (e.modality, e.name) == (modality, name) and len(e.table) == 5
        assert all(list(r) == list(e.table[0]) for r in e.table), name
        assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for r in e.table for v in r.values())
        assert e.doc and e.reference and e.group in registry.subsets_of(modality)
        for variant in e.variants or (None,):
            assert len(e.row(1, variant)) == len(e.table[0]) // max(1, len(e.variants))
    assert get("fog", "image") is not get("fog", "pointcloud")
    assert ("image", "fog") in REGISTRY and ("image", "beam_missing") not in REGISTRY and "fog" not in REGISTRY
    assert names("image") == image.names() and names("pointcloud") == pointcloud.names("all")
    assert names("pointcloud", "scene") == pointcloud.SCENE_CORRUPTIONS and names("image", "ours") == ("rain",)
    assert tuple(detector.REGISTRY) == names("detections")
    assert dict(image.REGISTRY) == {n: get(n, "image") for n in names("image")}  # the views are the registry


def test_table_format_is_checked():
    with pytest.raises(ValueError, match="5 rows"):
        registry.check_table(({"a": 1},) * 4)
    with pytest.raises(ValueError, match="severity 3 row has keys"):
        registry.check_table(({"a": 1},) * 2 + ({"b": 1},) + ({"a": 1},) * 2)
    with pytest.raises(ValueError, match="must be a number"):
        registry.check_table(({"a": (1, 2)},) * 5)
    with pytest.raises(ValueError, match="has no variants"):
        get("gaussian", "pointcloud").row(1, "2d")
    with pytest.raises(ValueError, match="defined for variants 'imagenet', 'cifar'"):
        get("fog", "image").row(1)


@pytest.mark.parametrize("modality, name", ALL, ids=[f"{m}-{n}" for m, n in ALL])
def test_sample_apply_record_replay_are_bit_identical(inputs, modality, name):
    x, opts, public = case(inputs, modality, name)
    before = copy_of(x)
    entry = get(name, modality)
    g1, g2, g3 = (np.random.default_rng(11) for _ in range(3))
    for g in (g1, g2, g3):
        g.random(5)  # a generator in mid-stream: the record must hold its state, not a seed
    expected = public(g1)
    x_checked, checked = registry._MODALITY[modality].prepare(x, entry, dict(opts))
    params = entry.sample(3, x_checked, g2, **checked)
    json.dumps(registry.to_json(params))  # sampled params are JSON-able
    out, info = entry.apply(x_checked, params, g2, **checked)
    assert same(registry._MODALITY[modality].finish(out, x), expected)
    logged, record = corrupt_logged(x, name, 3, g3, modality, **opts)
    assert same(logged, expected)
    assert g1.random() == g2.random() == g3.random()  # all three advanced the generator alike
    record = json.loads(json.dumps(record))  # the record is JSON and survives a round trip
    assert record["params"] == registry.to_json(params) and record["info"] == registry.to_json(info)
    digests = {k for k, v in record["options"].items() if "sha256" in v}
    replayed = replay(x, record, **{k: opts[k] for k in digests})
    assert same(replayed, expected)
    assert same(x, before)  # the input is never modified


def test_replay_refuses_what_it_cannot_reproduce(inputs):
    img = inputs["image"]
    out, record = corrupt_logged(img, "motion_blur", 4, 5, "image")
    assert np.array_equal(replay(img, record), out)
    with pytest.raises(ValueError, match="not the input of this record"):
        replay(img[::-1].copy(), record)
    edited = json.loads(json.dumps(record))
    edited["params"]["angle"] += 1.0
    with pytest.raises(ValueError, match="differ from what this version samples"):
        replay(img, edited)
    with pytest.raises(ValueError, match="version"):
        replay(img, {**record, "version": 99})
    with pytest.raises(ValueError, match="not used by the recorded call"):
        replay(img, record, scale="imagenet")
    _, rec = corrupt_logged(img, "motion_blur", 4, 5, "image", scale="cifar")
    assert rec["options"] == {"scale": {"value": "cifar"}} and rec["params"]["scale"] == "cifar"
    with pytest.raises(ValueError, match="option `scale` is 'imagenet'; the record was made with 'cifar'"):
        replay(img, rec, scale="imagenet")
    scan, ring = inputs["scan"], inputs["ring"]
    _, rec = corrupt_logged(scan, "beam_missing", 2, 0, "pointcloud", ring=ring, n_rings=16)
    assert rec["options"]["n_rings"] == {"value": 16} and set(rec["options"]["ring"]) == {"sha256"}
    with pytest.raises(ValueError, match="pass it to replay again"):
        replay(scan, rec)
    with pytest.raises(ValueError, match="not the one recorded"):
        replay(scan, rec, ring=ring[::-1].copy())
    with pytest.raises(ValueError, match="not used by the recorded call"):
        replay(scan, rec, ring=ring, intensity_max=2.0)


def test_records_name_what_was_drawn(inputs):
    _, rec = corrupt_logged(inputs["image"], "snow", 2, 1, "image")
    assert set(rec) == {"version", "modality", "name", "severity", "input", "options", "rng", "params", "info"}
    assert rec["input"]["shape"] == [32, 40, 3] and rec["rng"]["bit_generator"] == "PCG64"
    assert -135 <= rec["info"]["angle"] <= -45  # snow draws its angle after the flake noise: apply reports it
    _, rec = corrupt_logged(inputs["object"], "rotation", 5, 1, "pointcloud")
    assert len(rec["params"]["angles_rad"]) == 3 and len(rec["info"]["angles_deg"]) == 3
    (pred,), (gt,) = inputs["frames"][2]
    out, rec = corrupt_logged(pred, "clutter", 5, 2, "detections", gt=gt, dim=2, scene=inputs["scene"],
                              detector=inputs["detector"])
    assert rec["params"] == {"v": 12.0, "v_max": 12.0}
    assert rec["info"]["n_added"] == out["scores"].size - pred["scores"].size > 0


@pytest.mark.parametrize("bit_generator", [np.random.MT19937, np.random.Philox, np.random.SFC64, np.random.PCG64DXSM])
def test_replay_restores_any_numpy_bit_generator(inputs, bit_generator):
    img = inputs["image"]
    out, record = corrupt_logged(img, "gaussian_noise", 2, np.random.Generator(bit_generator(3)), "image")
    assert np.array_equal(out, image.corrupt(img, "gaussian_noise", 2, np.random.Generator(bit_generator(3))))
    assert np.array_equal(replay(img, json.loads(json.dumps(record))), out)


def test_unknown_options_and_modalities_are_refused(inputs):
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['foo'\]; it accepts: scale"):
        corrupt_logged(inputs["image"], "fog", 1, 0, "image", foo=1)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['mesh'\]; it accepts: intensity_max"):
        corrupt_logged(inputs["scan"], "fog", 1, 0, "pointcloud", mesh=None)
    (pred,), (gt,) = inputs["frames"][2]
    with pytest.raises(TypeError, match="unknown option"):
        corrupt_logged(pred, "clutter", 1, 0, "detections", gt=gt, dim=2, scene={}, detector={}, mesh=1)
    with pytest.raises(TypeError, match=r"needs the option\(s\) \['scene', 'detector'\]"):
        corrupt_logged(pred, "clutter", 1, 0, "detections", gt=gt, dim=2)
    with pytest.raises(ValueError, match="`modality` must be one of"):
        corrupt_logged(inputs["image"], "fog", 1, 0, "camera")
    with pytest.raises(ValueError, match="valid names are"):
        get("fogg", "image")
    with pytest.raises(ValueError, match="`subset` of image must be one of"):
        names("image", "object")
    with pytest.raises(TypeError, match="rng"):
        corrupt_logged(inputs["image"], "fog", 1, np.random.RandomState(0), "image")


def test_import_needs_numpy_only_and_docstrings_run():
    import subprocess
    import sys
    # numba arrives with the project's one rng coercion (conformal.utils.check_random_state); nothing heavier may
    code = ("import sys, perturbations.registry as r, perturbations.detector; "
            "bad = [m for m in ('cv2', 'open3d', 'torch', 'perturbations.image') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
    for mod in (registry, detector):
        assert doctest.testmod(mod, optionflags=doctest.ELLIPSIS).failed == 0, mod.__name__
    assert "| `fog` | weather | `imagenet.strength` | 1.5, 2, 2.5, 2.5, 3 |  |" in registry.table_markdown("image")


def test_logging_a_batch_image_by_image_gives_corrupt_batch(inputs):
    """The audit logs one record per image: the same generator through corrupt_logged, image after image,
    gives corrupt_batch's output, and each record replays its own image."""
    batch = np.stack([inputs["image"], inputs["image"][::-1], inputs["image"][:, ::-1]])
    expected = image.corrupt_batch(batch, "rain", 4, np.random.default_rng(3))
    g = np.random.default_rng(3)
    logged = [corrupt_logged(x, "rain", 4, g, "image") for x in batch]
    for (out, record), x, e in zip(logged, batch, expected):
        assert np.array_equal(out, e) and np.array_equal(replay(x, record), e)
    assert len({r["params"]["angle"] for _, r in logged}) == 3
