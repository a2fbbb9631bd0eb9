"""The detection audit (`task: detection`): a detector's conformal boxes, class sets and recall threshold,
calibrated on clean frames, evaluated under corruptions.

Pipeline:
  1. every cell makes the (prediction, ground truth) frames of the same pool with the data source
     (`audit.tasks.detection.sources`): the clean cell as is, the others under one corruption at one severity;
     the frames are cached in `cache/<cell>.npz` for `--resume`;
  2. for r in 1..R (audit.runner): the frame pool is split at random (seeded by (seed, r)) into calibration and
     test frames; a `ConformalDetector` is fitted on the CLEAN cell's calibration frames only;
  3. the fitted detector predicts, without labels, on the test frames of every cell; `evaluate_detector` then
     scores the predictions against the ground truth, and the symmetric box-wise baseline, fitted on the same
     calibration detections, is scored on the same test detections beside it.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from audit.runner.cache import fingerprint, pack_records
from audit.runner.cells import cell_list
from audit.runner.task import Prepared, Task
from audit.tasks.detection import config, evaluate, frames, report
from audit.tasks.detection.sources import SOURCES

__all__ = ["DetectionTask"]


class DetectionTask(Task):
    name = "detection"
    help = "a detector's conformal boxes, class sets and recall threshold under corruptions"
    metrics = evaluate.METRICS
    csv_metrics = tuple(evaluate.METRICS)
    count_metric = "box_coverage"

    def validate(self, raw, *, base_dir=None, check_names=True):
        return config.validate(raw, base_dir=base_dir, check_names=check_names)

    def listing(self) -> str:
        lines = ["task: detection (see docs/audit.md)", "  data sources (data.name) and their models (model.name):"]
        for name, src in SOURCES.items():
            lines.append(f"    {name:18s} {src.help}")
            lines += [f"      model {m}: {h}" for m, h in src.models.items()]
            lines.append(src.listing())
        return "\n".join(line for line in lines if line)

    def train(self, cfg):
        return SOURCES[cfg["data"]["name"]].train(cfg)

    def prepare(self, cfg, out, log) -> Prepared:
        source = SOURCES[cfg["data"]["name"]]
        dim, n = source.dim(cfg["data"]), source.n_frames(cfg["data"])
        base = fingerprint(cfg["data"], cfg["model"], cfg["seed"], source.code_digest(cfg))
        keys = {t["cell"]: fingerprint(base, t["name"], t["severity"]) for t in cell_list(cfg["corruptions"])}
        context = {"source": source.name, "dim": dim, **source.context(cfg)}
        description = source.describe(cfg)
        info = {"description": description, "synthetic": source.synthetic, "tag": source.tag,
                "modality": f"detection{dim}d", "dim": dim, "n_pool": n, "class_names": source.class_names(cfg),
                "image_size": source.image_size(cfg["data"]),
                "n_calibration": round(cfg["split"]["calibration_fraction"] * n)}
        prov = {"data_fingerprint": base, **source.provenance(cfg)}
        return Prepared(description, n, context, keys, info, state={"dim": dim}, provenance=prov)

    def setup_worker(self, context):
        SOURCES[context["source"]].setup_worker(context)

    def compute_cell(self, context, cell):
        preds, gts, records = SOURCES[context["source"]].frames(context, cell)
        arrays = frames.pack(preds, gts, context["dim"])
        for k, v in SOURCES[context["source"]].cell_metrics(context, preds, gts).items():
            arrays[f"metric_{k}"] = np.array(v, np.float64)
        if records:
            arrays["applied"] = pack_records(records)
        return arrays

    def cell_files(self, prepared, cell, arrays):
        return {f"applied/{cell}.json.gz": arrays["applied"].tobytes()} if "applied" in arrays else {}

    def subset_context(self, context, n):
        return SOURCES[context["source"]].subset_context(context, n)

    def load_cell(self, prepared, arrays):
        preds, gts = frames.unpack(arrays, prepared.state["dim"])
        extra = {k[len("metric_"):]: float(arrays[k]) for k in arrays if k.startswith("metric_")}
        # the last item is reused by every split's scoring (validated frames, memoised matchings)
        state = evaluate.cell_state(preds, gts, prepared.state["dim"])
        state["applied"] = arrays.get("applied")  # to replay the example frame's corruption on its image
        return preds, gts, extra, state

    def fit_split(self, cfg, prepared, clean, calibration, r):
        preds, gts = clean[0], clean[1]
        det = config.make_detector(cfg, cfg["seed"] + 1000 * r + 17)
        cal_p, cal_g = [preds[i] for i in calibration], [gts[i] for i in calibration]
        det.fit(cal_p, cal_g)  # CLEAN frames only
        # the baseline sees the detections the fitted detector keeps, on the box-calibration frames alike
        return det, evaluate.symmetric_margins(det, cal_p, cal_g)

    def score_cell(self, cfg, prepared, model, frames, test, first, cell):
        det, margins = model
        preds, gts, cell_metrics, state = frames
        dim = prepared.state["dim"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # = metrics(evaluate_detector(...)) and symmetric_coverage(...), number for number, in one pass
            m = evaluate.score_split(det, margins, preds, gts, state, test)
        m["ap50"], m["ap"] = cell_metrics.get("ap50", math.nan), cell_metrics.get("ap", math.nan)
        m["score_threshold"] = det.score_threshold_
        source = SOURCES[cfg["data"]["name"]]
        # the whole cell's frames, the split's test indices and a per-cell memo (e.g. per-frame AP matchings)
        m.update(source.extra_metrics(preds, gts, test, state.setdefault("source_memo", {})))
        extra = None
        if first and cfg["output"]["examples"] > 0:
            # every cell holds the same scenes and ground truth, so every cell shows the same frame
            ex = evaluate.example_index(gts, test, cfg["data"]["params"].get("mean_objects", 3.0))
            extra = evaluate.example(det, preds[ex], gts[ex], dim, ex)
            image = _example_image(prepared, state, ex)
            if image is not None:
                extra["ex_image"], extra["ex_image_hw"] = image
            spec = next(t for t in cell_list(cfg["corruptions"]) if t["cell"] == cell)
            points = source.example_points(prepared.context, spec, ex)
            if points is not None:
                extra["ex_points"] = points
        return m, extra

    def results_extra(self, cfg, prepared):
        return {"splits": "R random calibration/test splits of one pool of frames (the same scenes in every cell)",
                "applied": "applied/<cell>.json.gz: one JSON record per frame of what its corruption applied "
                           "(parameters and the generator state before the call); "
                           "perturbations.registry.replay(frame, record, ...) reproduces it"}

    def report(self, results, curves, plot_dir):
        return report.report_parts(results, curves, plot_dir)


def _example_image(prepared, state, index, max_side: int = 384):
    """(image, its (h, w) in px) of the example frame as the cell's detector saw it: the source's clean image with
    the cell's recorded corruption replayed on it (bit for bit), subsampled to <= `max_side` px; or None."""
    from audit.runner.cache import unpack_records
    from perturbations.registry import replay

    image = SOURCES[prepared.context["source"]].example_image(prepared.context, index)
    if image is None:
        return None
    if state.get("applied") is not None:
        try:
            image = replay(image, unpack_records(state["applied"])[index])
        except (ValueError, IndexError):  # a record of another version: no picture rather than a wrong one
            return None
    image = np.asarray(image)
    step = max(1, -(-max(image.shape[:2]) // max_side))
    return np.ascontiguousarray(image[::step, ::step]), np.array(image.shape[:2], np.int64)
