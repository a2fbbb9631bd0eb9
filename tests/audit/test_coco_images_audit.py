"""`data: coco` with a model: a user's COCO annotation file and image folder, the image corruptions applied to the
images and the detector re-run per cell by the audit.

A tiny COCO folder (90 composite test scenes written as PNG, categories with ids 11..20) in a temp dir. The
shipped detector exported with torch.jit.script and given as `model: torchscript` must reproduce, split for split,
the `data: composite_scenes` audit of the same scenes (same images, same corruption seeds, same detector), and so
must `model: scenes_detector`; config errors name the key.
"""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("skimage")

from audit import ConfigError, run_audit, validate_config  # noqa: E402

N = 90


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    from adapters import reference
    from adapters.datasets import FASHION_MNIST_CLASSES, load_composite_scenes
    from conformal.detection import io as cio

    d = tmp_path_factory.mktemp("coco_images")
    images, gts = load_composite_scenes("test", N)
    (d / "images").mkdir()
    ann = cio.coco_annotations(gts, image_ids=[500 + i for i in range(N)], category_ids=list(range(11, 21)),
                               category_names=list(FASHION_MNIST_CLASSES))
    for i, (im, entry) in enumerate(zip(images, ann["images"])):
        name = f"scene_{i:03d}.png"
        assert cv2.imwrite(str(d / "images" / name), im[:, :, ::-1])  # RGB -> BGR on disk, lossless
        entry.update(file_name=name, width=128, height=128)
    (d / "ann.json").write_text(json.dumps(ann))
    torch.jit.script(reference.load_model("scenes_detector")).save(str(d / "det.pt"))
    return d


def cfg_of(data, model, **over):
    cfg = {"name": "coco_images", "task": "detection", "seed": 4, "data": data, "model": model,
           "split": {"calibration_fraction": 0.5, "repeats": 4},
           "conformal": {"alpha": 0.1, "alpha_cls": 0.1, "class_score": "aps", "recall_alpha": 0.3},
           "corruptions": [{"name": "gaussian_noise", "severities": [5]}],
           "output": {"plots": False, "report": False, "examples": 0}}
    cfg.update(over)
    return cfg


def coco_data(d):
    return {"name": "coco", "params": {"annotations": str(d / "ann.json"), "images": str(d / "images")}}


@pytest.fixture(scope="module")
def composite_run(tmp_path_factory):
    cfg = validate_config(cfg_of({"name": "composite_scenes", "params": {"n_frames": N}},
                                 {"name": "scenes_detector"}))
    out = tmp_path_factory.mktemp("composite")
    run_audit(cfg, out, quiet=True)
    return json.loads((out / "results.json").read_text())


def _same_per_split(a, b):
    assert sorted(a["per_split"]) == sorted(b["per_split"]) == ["clean", "gaussian_noise_s5"]
    for cell, metrics in a["per_split"].items():
        assert sorted(metrics) == sorted(b["per_split"][cell])
        for m, v in metrics.items():
            np.testing.assert_allclose(np.asarray(b["per_split"][cell][m], float), np.asarray(v, float),
                                       rtol=1e-9, atol=1e-12, err_msg=f"{cell} {m}")


@pytest.mark.parametrize("model", ["torchscript", "scenes_detector"])
def test_coco_images_match_the_composite_audit(coco_dir, composite_run, model, tmp_path):
    m = {"name": "torchscript", "path": str(coco_dir / "det.pt"), "adapter": {"batch_size": 32}} \
        if model == "torchscript" else {"name": "scenes_detector", "params": {"batch_size": 32}}
    cfg = validate_config(cfg_of(coco_data(coco_dir), m, output={"plots": True, "report": True, "examples": 1}))
    assert cfg["data"]["params"]["n_frames"] == N and cfg["data"]["params"]["class_names"][0] == "T-shirt/top"
    out = tmp_path / model
    run_audit(cfg, out, quiet=True)
    results = json.loads((out / "results.json").read_text())
    _same_per_split(composite_run, results)
    clean = composite_run["per_split"]["clean"]
    noisy = composite_run["per_split"]["gaussian_noise_s5"]
    assert np.mean(noisy["recall_risk"]) > np.mean(clean["recall_risk"]) or \
        np.mean(noisy["box_coverage"]) < np.mean(clean["box_coverage"])
    assert (out / "applied" / "gaussian_noise_s5.json.gz").is_file() and (out / "report.html").is_file()
    # the example plot draws each cell's corrupted image behind the boxes: the clean one is the file's image, the
    # noisy one that image with the cell's recorded noise replayed (what the detector saw)
    with np.load(out / "curves.npz") as z:
        ex = int(z["clean__ex_frame"])
        clean_im, noisy_im = z["clean__ex_image"], z["gaussian_noise_s5__ex_image"]
        assert z["clean__ex_image_hw"].tolist() == [128, 128]
    import gzip

    from perturbations.registry import replay

    image = cv2.imread(str(coco_dir / "images" / f"scene_{ex:03d}.png"))[:, :, ::-1]
    np.testing.assert_array_equal(clean_im, image)
    record = json.loads(gzip.decompress((out / "applied" / "gaussian_noise_s5.json.gz").read_bytes()))[ex]
    np.testing.assert_array_equal(noisy_im, replay(np.ascontiguousarray(image), record))
    assert np.abs(noisy_im.astype(int) - clean_im).mean() > 10
    assert (out / "plots" / "examples.png").is_file()


def test_coco_images_cells_resume_from_the_cache_and_the_key_follows_the_images(coco_dir, tmp_path, monkeypatch):
    import shutil

    from audit.runner import executors

    d = tmp_path / "copy"
    shutil.copytree(coco_dir, d)
    cfg = validate_config(cfg_of(coco_data(d), {"name": "scenes_detector"},
                                 corruptions=[{"name": "fog", "severities": [3]}]))
    run_audit(cfg, tmp_path / "o", quiet=True)
    first = json.loads((tmp_path / "o" / "results.json").read_text())["per_split"]

    def must_not_run(task, ctx, cell):
        raise AssertionError(f"cell {cell['cell']} was recomputed despite --resume")

    monkeypatch.setattr(executors, "compute_cell", must_not_run)
    run_audit(cfg, tmp_path / "o", resume=True, quiet=True)
    assert json.loads((tmp_path / "o" / "results.json").read_text())["per_split"] == first
    im = cv2.imread(str(d / "images" / "scene_000.png"))
    assert cv2.imwrite(str(d / "images" / "scene_000.png"), 255 - im)  # a changed image: the cells are stale
    with pytest.raises(AssertionError, match="recomputed despite --resume"):
        run_audit(validate_config(cfg_of(coco_data(d), {"name": "scenes_detector"},
                                         corruptions=[{"name": "fog", "severities": [3]}])),
                  tmp_path / "o", resume=True, quiet=True)


def _bad_ann(d, tmp):
    ann = json.loads((d / "ann.json").read_text())
    ann["images"][3]["file_name"] = "missing.png"
    p = tmp / "bad.json"
    p.write_text(json.dumps(ann))
    return str(p)


@pytest.mark.parametrize("edit, match", [
    (lambda c, d, t: c["data"]["params"].update(images=str(d / "nope")), r"`data.params.images`: directory"),
    (lambda c, d, t: c["data"]["params"].update(annotations=_bad_ann(d, t)), r"missing.png' of images\[3\]"),
    (lambda c, d, t: c["data"]["params"].update(results={"clean": str(d / "ann.json")}),
     r"with `data.params.results` .* allowed values: precomputed"),
    (lambda c, d, t: c["data"]["params"].pop("images"), r"`data.params.images` is required"),
    (lambda c, d, t: c.update(model={"name": "torchscript"}), r"`model.params.path` is required"),
    (lambda c, d, t: c.update(model={"name": "torchscript", "path": str(d / "ann.json")}), r"model.params.path"),
    (lambda c, d, t: c.update(model={"name": "torchscript", "path": str(d / "det.pt"), "adapter": {"size": 3}}),
     r"model.params.adapter.size"),
    (lambda c, d, t: c.update(model={"name": "scenes_detector", "params": {"thresh": 1}}), r"model.params.thresh"),
    (lambda c, d, t: c.update(model={"name": "precomputed"}), r"`data.params.images` is for a model"),
    (lambda c, d, t: c.update(corruptions=[{"name": "box_noise"}]), r"'box_noise', not an image corruption"),
])
def test_coco_images_config_errors(coco_dir, tmp_path, edit, match):
    cfg = cfg_of(coco_data(coco_dir), {"name": "scenes_detector"})
    edit(cfg, coco_dir, tmp_path)
    with pytest.raises(ConfigError, match=match):
        validate_config(cfg)
