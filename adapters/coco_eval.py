"""COCO box AP of detection frames with pycocotools (the field's reference implementation; `pip install
pycocotools`, in the ``detection`` extra). Frames follow ``conformal.detection``: predictions {"boxes" (m, 4) xyxy,
"scores", "labels"}, ground truth {"boxes", "labels"}; labels 0..K-1 become COCO category ids 1..K."""
from __future__ import annotations

import contextlib
import io

import numpy as np

__all__ = ["coco_ap"]


def _dataset(gts, num_classes):
    images, anns = [], []
    for i, g in enumerate(gts):
        images.append({"id": i + 1, "width": 0, "height": 0})
        for b, lab in zip(np.asarray(g["boxes"], float).reshape(-1, 4), np.asarray(g["labels"]).reshape(-1)):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(lab) + 1, "iscrowd": 0,
                         "bbox": [float(b[0]), float(b[1]), w, h], "area": w * h})
    return {"images": images, "annotations": anns,
            "categories": [{"id": k + 1, "name": str(k)} for k in range(num_classes)]}


def coco_ap(preds: list, gts: list, num_classes: int) -> dict:
    """{"AP": AP@[.5:.95], "AP50": AP@0.5, "AP75": AP@0.75} of `preds` against `gts` (same order, one frame per
    image), by ``pycocotools.cocoeval.COCOeval`` (bbox, up to 100 detections per image). NaN when there is no
    ground-truth object at all."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("coco_ap needs pycocotools: pip install pycocotools (or the `detection` extra)") from None
    if len(preds) != len(gts):
        raise ValueError(f"`preds` and `gts` must have one frame per image each; got {len(preds)} and {len(gts)}")
    if sum(np.asarray(g["labels"]).size for g in gts) == 0:
        return {"AP": float("nan"), "AP50": float("nan"), "AP75": float("nan")}
    dets = []
    for i, p in enumerate(preds):
        boxes = np.asarray(p["boxes"], float).reshape(-1, 4)
        for b, s, lab in zip(boxes, np.asarray(p["scores"]).reshape(-1), np.asarray(p["labels"]).reshape(-1)):
            dets.append({"image_id": i + 1, "category_id": int(lab) + 1, "score": float(s),
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt = COCO()
        gt.dataset = _dataset(gts, num_classes)
        gt.createIndex()
        if not dets:
            return {"AP": 0.0, "AP50": 0.0, "AP75": 0.0}
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = ev.stats
    return {"AP": float(s[0]), "AP50": float(s[1]), "AP75": float(s[2])}
