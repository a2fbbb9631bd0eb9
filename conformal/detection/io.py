"""Detector outputs in the formats people have: COCO annotation / result JSON and `supervision.Detections`.

numpy + the standard library (json) only. Conventions:

* COCO boxes are ``[x, y, width, height]`` in pixels; frames use xyxy (``x2 = x + width``). Converting back
  computes ``width = x2 - x1``, so a round trip is exact up to floating-point rounding (~1e-13 px).
* Category ids are mapped to labels 0..K-1 in *sorted id order* (COCO's own ids 1, 2, 3, 5, ... become 0, 1, 2,
  3, ...); `CocoFrames.category_ids[label]` is the id of a label. Results are mapped with the annotations' table,
  so a detection of a category the annotations do not list is an error.
* Frames come in the order of the annotation file's ``images`` list, every image included (with empty arrays
  when it has no object or no detection). A detection or annotation naming an image id that is not listed is an
  error. Crowd annotations (``iscrowd: 1``) are regions, not objects: they are left out of the ground truth and
  counted in `CocoFrames.n_crowd`.
* Extension fields of a result: ``class_probs`` (K floats in label order, i.e. sorted category ids) and
  ``box_std`` (4 floats, xyxy). Either is read when every detection has it, and an error when only some do.
* `coco_results` writes calibrated `DetectionResult` frames with extra fields: ``kept`` (score >= the calibrated
  threshold), ``lower`` / ``upper`` (per-coordinate xyxy bounds), ``outer_bbox`` / ``inner_bbox`` (xywh) and
  ``class_set`` (category ids).
"""
from __future__ import annotations

import json
import os
from typing import NamedTuple

import numpy as np

__all__ = ["CocoFrames", "load_coco", "coco_annotations", "coco_results", "write_coco", "from_supervision"]


class CocoFrames(NamedTuple):
    """What `load_coco` returns: frames aligned by image, and the tables that map them back to COCO."""

    preds: list | None          # one prediction frame per image (None when no results were given)
    gts: list                   # one ground-truth frame per image
    image_ids: list             # COCO image id of each frame
    category_ids: list          # COCO category id of each label 0..K-1 (sorted)
    category_names: list        # name of each label
    n_crowd: int                # crowd annotations left out of `gts`


def _read(source, name):
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, encoding="utf-8") as f:
                return json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"`{name}` file {os.fspath(source)!r} is not valid JSON ({exc})") from None
    return source


def _scalar_rows(rows, what, field):
    vals = [r.get(field) if isinstance(r, dict) else None for r in rows]
    for i, v in enumerate(vals):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
            raise ValueError(f"{what} {i}: `{field}` must be a finite number; got {v!r}")
    return np.array(vals, np.float64)


def _number_rows(rows, width, what, field):
    """(n, width) float64 of `field` of each row; clear error naming the first bad entry."""
    try:
        arr = np.array([r[field] for r in rows], dtype=np.float64).reshape(len(rows), width)
    except (KeyError, TypeError, ValueError):
        for i, r in enumerate(rows):
            v = r.get(field) if isinstance(r, dict) else None
            if not isinstance(v, (list, tuple)) or len(v) != width or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                raise ValueError(f"{what} {i}: `{field}` must be a list of {width} numbers; got {v!r}") from None
        raise
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        raise ValueError(f"{what} {int(bad[0])}: `{field}` must be finite; got {arr[bad[0]].tolist()}")
    return arr


def _ids(rows, field, what, table, table_name):
    try:
        raw = [r[field] for r in rows]
    except (KeyError, TypeError):
        i = next(i for i, r in enumerate(rows) if not isinstance(r, dict) or field not in r)
        raise ValueError(f"{what} {i}: missing `{field}` (or not an object); got {rows[i]!r}") from None
    out = np.empty(len(raw), np.int64)
    for i, v in enumerate(raw):
        j = table.get(v) if isinstance(v, int) and not isinstance(v, bool) else None
        if j is None:
            raise ValueError(f"{what} {i}: `{field}` {v!r} is not one of the annotation file's {table_name}")
        out[i] = j
    return out


def _xyxy(xywh, what):
    bad = np.flatnonzero((xywh[:, 2] < 0) | (xywh[:, 3] < 0))
    if bad.size:
        raise ValueError(f"{what} {int(bad[0])}: `bbox` width and height must be >= 0 ([x, y, width, height]); "
                         f"got {xywh[bad[0]].tolist()}")
    out = xywh.copy()
    out[:, 2:] += xywh[:, :2]
    return out


def _split(order_key, n_images, columns):
    """Group rows by image index (stable: file order within an image)."""
    if n_images == 0:
        return []
    order = np.argsort(order_key, kind="stable")
    cuts = np.searchsorted(order_key[order], np.arange(1, n_images))
    return [{k: v[idx] for k, v in columns.items()} for idx in np.split(order, cuts)]


def _tables(ann):
    if not isinstance(ann, dict) or not all(k in ann for k in ("images", "categories")):
        raise ValueError("`annotations` must be a COCO annotation file: a JSON object with 'images', "
                         "'annotations' and 'categories' lists" + (f"; got keys {sorted(ann)[:8]}"
                                                                   if isinstance(ann, dict) else
                                                                   f"; got {type(ann).__name__}"))
    images, cats = ann["images"], ann["categories"]
    if not isinstance(images, list) or not isinstance(cats, list) or not isinstance(ann.get("annotations", []), list):
        raise ValueError("`annotations`: 'images', 'annotations' and 'categories' must be lists")
    image_ids = [im.get("id") if isinstance(im, dict) else None for im in images]
    for i, v in enumerate(image_ids):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"`annotations` image {i}: `id` must be an integer; got {v!r}")
    image_index = {v: i for i, v in enumerate(image_ids)}
    if len(image_index) != len(image_ids):
        dup = next(v for v in image_ids if image_ids.count(v) > 1)
        raise ValueError(f"`annotations`: image id {dup} appears more than once in 'images'")
    if not cats:
        raise ValueError("`annotations`: 'categories' is empty; a detection file needs at least one category")
    cat_ids = [c.get("id") if isinstance(c, dict) else None for c in cats]
    for i, v in enumerate(cat_ids):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"`annotations` category {i}: `id` must be an integer; got {v!r}")
    if len(set(cat_ids)) != len(cat_ids):
        dup = next(v for v in cat_ids if cat_ids.count(v) > 1)
        raise ValueError(f"`annotations`: category id {dup} appears more than once in 'categories'")
    names = {c["id"]: str(c.get("name", c["id"])) for c in cats}
    sorted_ids = sorted(cat_ids)
    return image_ids, image_index, sorted_ids, [names[c] for c in sorted_ids]


def load_coco(annotations, results=None) -> CocoFrames:
    """COCO annotations (and optionally detection results) as `conformal.detection` frames aligned by image.

    Parameters
    ----------
    annotations : path or dict
        A COCO annotation file (``images``, ``annotations``, ``categories``) or its parsed JSON.
    results : path, list of dicts or None
        A COCO result file: a list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` with the
        optional extension fields ``class_probs`` (K floats, label order) and ``box_std`` (4 floats).

    Returns
    -------
    CocoFrames(preds, gts, image_ids, category_ids, category_names, n_crowd): frames
    ``{"boxes" (m, 4) xyxy float64, "scores", "labels" int64[, "class_probs", "box_std"]}`` and
    ``{"boxes", "labels"}``, one per image of ``annotations["images"]`` in that order.

    Examples
    --------
    >>> ann = {"images": [{"id": 7}, {"id": 9}], "categories": [{"id": 3, "name": "car"}, {"id": 1, "name": "ped"}],
    ...        "annotations": [{"id": 1, "image_id": 9, "category_id": 3, "bbox": [10, 20, 30, 40]}]}
    >>> res = [{"image_id": 9, "category_id": 3, "bbox": [11, 19, 30, 42], "score": 0.9}]
    >>> d = load_coco(ann, res)
    >>> d.category_ids, d.gts[1]["boxes"].tolist(), d.gts[1]["labels"].tolist(), len(d.preds[0]["scores"])
    ([1, 3], [[10.0, 20.0, 40.0, 60.0]], [1], 0)
    """
    ann = _read(annotations, "annotations")
    image_ids, image_index, cat_ids, cat_names = _tables(ann)
    cat_index = {c: j for j, c in enumerate(cat_ids)}
    n = len(image_ids)
    rows = ann.get("annotations", [])
    crowd = np.array([bool(r.get("iscrowd", 0)) if isinstance(r, dict) else False for r in rows], np.bool_)
    rows = [r for r, c in zip(rows, crowd) if not c]
    what = "`annotations` annotation"
    img = _ids(rows, "image_id", what, image_index, "image ids")
    lab = _ids(rows, "category_id", what, cat_index, "category ids")
    boxes = _xyxy(_number_rows(rows, 4, what, "bbox"), what) if rows else np.zeros((0, 4))
    gts = _split(img, n, {"boxes": boxes, "labels": lab})
    preds = None
    if results is not None:
        res = _read(results, "results")
        if isinstance(res, dict) and "annotations" in res:
            res = res["annotations"]
        if not isinstance(res, list):
            raise ValueError(f"`results` must be a COCO result list of detections; got {type(res).__name__}")
        what = "`results` detection"
        img = _ids(res, "image_id", what, image_index, "image ids")
        cols = {"boxes": _xyxy(_number_rows(res, 4, what, "bbox"), what) if res else np.zeros((0, 4)),
                "labels": _ids(res, "category_id", what, cat_index, "category ids"),
                "scores": _scalar_rows(res, what, "score")}
        for field, width in (("class_probs", len(cat_ids)), ("box_std", 4)):
            has = [isinstance(r, dict) and field in r for r in res]
            if any(has) and not all(has):
                raise ValueError(f"{what} {has.index(False)}: has no `{field}` but others do; give it for every "
                                 "detection or for none")
            if res and all(has):
                cols[field] = _number_rows(res, width, what, field)
        preds = _split(img, n, cols)
        k = len(cat_ids)
        for p in preds:
            p.setdefault("class_probs", None)
            p.setdefault("box_std", None)
            if p["class_probs"] is None and "class_probs" in cols:
                p["class_probs"] = np.zeros((0, k))
    return CocoFrames(preds, gts, image_ids, cat_ids, cat_names, int(crowd.sum()))


def _check_ids(ids, n, name, default):
    if ids is None:
        return list(default)
    ids = list(ids)
    if len(ids) != n:
        raise ValueError(f"`{name}` must have {n} entries; got {len(ids)}")
    if any(not isinstance(v, (int, np.integer)) or isinstance(v, bool) for v in ids):
        raise TypeError(f"`{name}` must hold integers")
    return [int(v) for v in ids]


def _xywh(boxes):
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def coco_annotations(gts, *, image_ids=None, category_ids=None, category_names=None, num_classes=None) -> dict:
    """Ground-truth frames as a COCO annotation dict (image ids default to 1..n, category ids to 1..K)."""
    if not isinstance(gts, (list, tuple)):
        raise TypeError(f"`gts` must be a list of frames; got {type(gts).__name__}")
    k = num_classes if num_classes is not None else (len(category_ids) if category_ids is not None else
                                                     1 + max([int(np.max(g["labels"])) for g in gts
                                                              if np.size(g["labels"])] or [0]))
    image_ids = _check_ids(image_ids, len(gts), "image_ids", range(1, len(gts) + 1))
    category_ids = _check_ids(category_ids, k, "category_ids", range(1, k + 1))
    names = list(category_names) if category_names is not None else [str(c) for c in category_ids]
    anns = []
    for im, g in zip(image_ids, gts):
        for b, lab in zip(_xywh(g["boxes"]).tolist(), np.asarray(g["labels"]).tolist()):
            anns.append({"id": len(anns) + 1, "image_id": im, "category_id": category_ids[lab], "bbox": b,
                         "area": b[2] * b[3], "iscrowd": 0})
    return {"images": [{"id": im} for im in image_ids], "annotations": anns,
            "categories": [{"id": c, "name": s} for c, s in zip(category_ids, names)]}


def coco_results(preds, *, image_ids=None, category_ids=None) -> list:
    """Prediction frames or calibrated `DetectionResult`s as a COCO result list (with the extension fields of
    the module docstring). Image ids default to 1..n, category ids to 1..K (label + 1)."""
    if not isinstance(preds, (list, tuple)):
        raise TypeError(f"`preds` must be a list of frames or DetectionResults; got {type(preds).__name__}")
    image_ids = _check_ids(image_ids, len(preds), "image_ids", range(1, len(preds) + 1))
    out = []
    for im, p in zip(image_ids, preds):
        d = p if isinstance(p, dict) else {"boxes": p.boxes, "scores": p.scores, "labels": p.labels}
        labels = np.asarray(d["labels"]).reshape(-1)
        cats = (labels + 1).tolist() if category_ids is None else [int(category_ids[j]) for j in labels]
        rows = [{"image_id": im, "category_id": c, "bbox": b, "score": s}
                for c, b, s in zip(cats, _xywh(d["boxes"]).tolist(), np.asarray(d["scores"], float).tolist())]
        if isinstance(p, dict):
            for field in ("class_probs", "box_std"):
                if p.get(field) is not None:
                    for r, v in zip(rows, np.asarray(p[field], float).tolist()):
                        r[field] = v
        else:
            for i, r in enumerate(rows):
                r["kept"] = bool(p.keep[i])
                r["lower"], r["upper"] = p.lower[i].tolist(), p.upper[i].tolist()
                if p.outer is not None:
                    r["outer_bbox"] = _xywh(p.outer[i])[0].tolist()
                    r["inner_bbox"] = _xywh(p.inner[i])[0].tolist()
                if p.class_sets is not None:
                    js = np.flatnonzero(p.class_sets[i])
                    r["class_set"] = (js + 1).tolist() if category_ids is None else [int(category_ids[j]) for j in js]
        out.extend(rows)
    return out


def write_coco(path, obj) -> None:
    """Write a `coco_annotations` dict or `coco_results` list as JSON."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


def from_supervision(detections, class_probs=None) -> dict:
    """A `supervision.Detections`-like object (``xyxy``, ``confidence``, ``class_id``; duck-typed, supervision is
    not imported) as one prediction frame. ``detections.data["class_probs"]`` is used when present."""
    for attr in ("xyxy", "confidence", "class_id"):
        if not hasattr(detections, attr):
            raise TypeError(f"`detections` must look like supervision.Detections (xyxy, confidence, class_id); "
                            f"it has no `{attr}`")
    if detections.confidence is None or detections.class_id is None:
        raise ValueError("`detections` needs `confidence` and `class_id` (not None) to become a prediction frame")
    frame = {"boxes": np.asarray(detections.xyxy, np.float64).reshape(-1, 4),
             "scores": np.asarray(detections.confidence, np.float64).reshape(-1),
             "labels": np.asarray(detections.class_id).astype(np.int64).reshape(-1)}
    data = getattr(detections, "data", None) or {}
    cp = class_probs if class_probs is not None else data.get("class_probs")
    if cp is not None:
        frame["class_probs"] = np.asarray(cp, np.float64)
    return frame
