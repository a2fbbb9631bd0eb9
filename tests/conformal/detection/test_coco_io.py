"""conformal.detection.io: COCO annotation / result JSON <-> frames, category mapping, hostile files."""
import copy
import doctest
import json

import numpy as np
import pytest

from adapters.datasets import make_scenes
from conformal.detection import ConformalDetector
from conformal.detection import io as cio


def _frames(n=30, seed=0):
    preds, gts = make_scenes(n, rng=seed, n_classes=4)
    gts[3] = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, np.int64)}  # an image without objects
    preds[5] = {k: v[:0] for k, v in preds[5].items()}  # and one without detections
    return [{k: p[k] for k in ("boxes", "scores", "labels", "class_probs", "box_std")} for p in preds], gts


def _same(a, b, keys):
    assert len(a) == len(b)
    for fa, fb in zip(a, b):
        for k in keys:
            np.testing.assert_allclose(fa[k], fb[k], rtol=0, atol=1e-9)
            assert np.asarray(fa[k]).shape == np.asarray(fb[k]).shape


def test_round_trip_through_files(tmp_path):
    preds, gts = _frames()
    image_ids = [100 + 3 * i for i in range(len(gts))][::-1]  # any ids, any order
    cats = [2, 5, 9, 11]
    cio.write_coco(tmp_path / "ann.json", cio.coco_annotations(gts, image_ids=image_ids, category_ids=cats))
    cio.write_coco(tmp_path / "res.json", cio.coco_results(preds, image_ids=image_ids, category_ids=cats))
    d = cio.load_coco(tmp_path / "ann.json", tmp_path / "res.json")
    assert d.image_ids == image_ids and d.category_ids == cats and d.n_crowd == 0
    _same(d.gts, gts, ("boxes", "labels"))
    _same(d.preds, preds, ("boxes", "scores", "labels", "class_probs", "box_std"))
    assert d.preds[5]["class_probs"].shape == (0, 4) and d.gts[3]["boxes"].shape == (0, 4)
    assert d.gts[0]["boxes"].dtype == np.float64 and d.gts[0]["labels"].dtype == np.int64


def test_category_ids_map_to_sorted_labels_and_back():
    ann = {"images": [{"id": 1}], "categories": [{"id": 90, "name": "c"}, {"id": 3, "name": "a"},
                                                 {"id": 17, "name": "b"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": c, "bbox": [0, 0, 1, 1]} for c in (90, 3, 17)]}
    d = cio.load_coco(ann)
    assert d.category_ids == [3, 17, 90] and d.category_names == ["a", "b", "c"]
    assert d.gts[0]["labels"].tolist() == [2, 0, 1]
    back = cio.coco_annotations(d.gts, image_ids=d.image_ids, category_ids=d.category_ids,
                                category_names=d.category_names)
    assert [a["category_id"] for a in back["annotations"]] == [90, 3, 17]


def test_frames_follow_the_images_list_and_crowd_is_left_out():
    ann = {"images": [{"id": 5}, {"id": 2}, {"id": 8}], "categories": [{"id": 1}],
           "annotations": [{"id": 1, "image_id": 8, "category_id": 1, "bbox": [1, 2, 3, 4]},
                           {"id": 2, "image_id": 5, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 1},
                           {"id": 3, "image_id": 5, "category_id": 1, "bbox": [5, 5, 1, 1]}]}
    res = [{"image_id": 2, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 0.5}]
    d = cio.load_coco(ann, res)
    assert [g["boxes"].tolist() for g in d.gts] == [[[5, 5, 6, 6]], [], [[1, 2, 4, 6]]]
    assert [p["scores"].size for p in d.preds] == [0, 1, 0] and d.n_crowd == 1
    assert d.preds[0]["class_probs"] is None


def test_calibrated_results_carry_the_extension_fields():
    preds, gts = make_scenes(300, rng=1, n_classes=4)
    det = ConformalDetector(alpha=0.1, alpha_cls=0.1, score_threshold=0.3).fit(preds[:200], gts[:200])
    out = det.predict_batch(preds[200:210])
    rows = cio.coco_results(out, category_ids=[10, 20, 30, 40])
    assert len(rows) == sum(o.scores.size for o in out)
    r = rows[0]
    assert {"kept", "lower", "upper", "outer_bbox", "inner_bbox", "class_set"} <= set(r)
    o = out[0]
    np.testing.assert_allclose(r["outer_bbox"], [o.outer[0, 0], o.outer[0, 1], o.outer[0, 2] - o.outer[0, 0],
                                                 o.outer[0, 3] - o.outer[0, 1]])
    assert set(r["class_set"]) <= {10, 20, 30, 40} and r["kept"] == bool(o.keep[0])
    json.dumps(rows)  # JSON-ready


def test_agrees_with_pycocotools(tmp_path):
    """Our xywh -> xyxy boxes and category mapping equal what pycocotools reads from the same files."""
    coco_mod = pytest.importorskip("pycocotools.coco")
    preds, gts = _frames(20, seed=3)
    cats = [4, 7, 1, 30]
    ann = cio.coco_annotations(gts, category_ids=sorted(cats))
    path = tmp_path / "ann.json"
    cio.write_coco(path, ann)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        coco = coco_mod.COCO(str(path))
        dt = coco.loadRes(cio.coco_results(preds, category_ids=sorted(cats)))
    d = cio.load_coco(path, cio.coco_results(preds, category_ids=sorted(cats)))
    for i, im in enumerate(d.image_ids):
        theirs = coco.loadAnns(coco.getAnnIds(imgIds=[im]))
        xywh = np.array([a["bbox"] for a in theirs]).reshape(-1, 4)
        np.testing.assert_allclose(d.gts[i]["boxes"][:, :2], xywh[:, :2])
        np.testing.assert_allclose(d.gts[i]["boxes"][:, 2:], xywh[:, :2] + xywh[:, 2:])
        assert [d.category_ids[j] for j in d.gts[i]["labels"]] == [a["category_id"] for a in theirs]
        dets = dt.loadAnns(dt.getAnnIds(imgIds=[im]))
        np.testing.assert_allclose(d.preds[i]["scores"], [a["score"] for a in dets])
    assert sorted(coco.getCatIds()) == d.category_ids


def _ann():
    return {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1}, {"id": 2}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [0, 0, 4, 4]}]}


def _res():
    return [{"image_id": 2, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 0.7}]


@pytest.mark.parametrize("edit, match", [
    (lambda a, r: a["annotations"][0].update(image_id=3), "image_id` 3 is not one of the annotation file's image"),
    (lambda a, r: r[0].update(image_id=9), "detection 0: `image_id` 9"),
    (lambda a, r: r[0].update(category_id=5), "`category_id` 5 is not one of"),
    (lambda a, r: a["annotations"][0].update(bbox=[0, 0, -1, 4]), "width and height must be >= 0"),
    (lambda a, r: a["annotations"][0].update(bbox=[0, 0, 4]), "list of 4 numbers"),
    (lambda a, r: r[0].update(bbox=[0, "a", 1, 1]), "list of 4 numbers"),
    (lambda a, r: r[0].update(bbox=[0, float("nan"), 1, 1]), "must be finite"),
    (lambda a, r: r[0].update(score=None), "`score` must be a finite number"),
    (lambda a, r: r[0].pop("image_id"), "missing `image_id`"),
    (lambda a, r: a["images"].append({"id": 1}), "image id 1 appears more than once"),
    (lambda a, r: a["categories"].append({"id": 2}), "category id 2 appears more than once"),
    (lambda a, r: a.update(categories=[]), "'categories' is empty"),
    (lambda a, r: a.pop("images"), "COCO annotation file"),
    (lambda a, r: r.extend([{**r[0], "class_probs": [0.5, 0.5]}]), "has no `class_probs` but others do"),
    (lambda a, r: r[0].update(class_probs=[1.0]), "`class_probs` must be a list of 2 numbers"),
])
def test_hostile_inputs_fail_clearly(edit, match):
    a, r = copy.deepcopy(_ann()), copy.deepcopy(_res())
    edit(a, r)
    with pytest.raises(ValueError, match=match):
        cio.load_coco(a, r)


def test_hostile_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        cio.load_coco(bad)
    with pytest.raises(ValueError, match="result list"):
        cio.load_coco(_ann(), {"x": 1})
    with pytest.raises(FileNotFoundError):
        cio.load_coco(tmp_path / "missing.json")


def test_supervision_duck_typing():
    class Dets:  # the attributes supervision.Detections has
        xyxy = np.array([[0, 0, 5, 5], [1, 1, 3, 4]], np.float32)
        confidence = np.array([0.9, 0.2], np.float32)
        class_id = np.array([1, 0])
        data = {"class_probs": np.array([[0.1, 0.9], [0.6, 0.4]])}

    f = cio.from_supervision(Dets())
    assert f["boxes"].dtype == np.float64 and f["labels"].tolist() == [1, 0] and f["class_probs"].shape == (2, 2)
    with pytest.raises(TypeError, match="supervision"):
        cio.from_supervision(object())


def test_docstring():
    assert doctest.testmod(cio).failed == 0
