"""The detection audit (`task: detection`): a SIMULATED detector on SYNTHETIC scenes, calibrated on clean frames,
evaluated under named detector degradations.

No real detector or detection data set can run offline in this project. The data are the scenes of
`conformal.detection.synthetic.make_scenes`, and the "model" is the detector it simulates, with known ground
truth. A cell is the clean detector or one degradation (`audit.tasks.detection.degradations`) at one severity.

Pipeline:
  1. every cell simulates the same pool of `n_frames` frames of the clean detector (frame i is seeded by (seed, i)
     only) and, unless it is the clean cell, degrades them after the fact (`audit.tasks.detection.degradations`), so the
     ground truth and every untouched detection are identical in every cell and a difference between cells
     comes from the degradation alone; the detections are cached in `cache/<cell>.npz` for `--resume`;
  2. for r in 1..R: the frame pool is split at random (seeded by (seed, r)) into calibration and test frames;
     a `ConformalDetector` is fitted on the CLEAN cell's calibration frames only;
  3. the fitted detector predicts, without labels, on the test frames of every cell; `evaluate_detector` then
     scores the predictions against the ground truth.
"""
from __future__ import annotations

import warnings

from audit.runner.cache import fingerprint
from audit.runner.cells import cell_list
from audit.runner.task import Prepared, Task
from audit.tasks.detection import cells as C
from audit.tasks.detection import config, evaluate, report
from audit.tasks.detection.degradations import DEGRADATIONS

__all__ = ["DetectionTask"]


class DetectionTask(Task):
    name = "detection"
    help = "a detector's conformal boxes, class sets and recall under detector degradations (SYNTHETIC, simulated)"
    metrics = evaluate.METRICS
    csv_metrics = tuple(evaluate.METRICS)
    count_metric = "box_coverage"

    def validate(self, raw, *, base_dir=None, check_names=True):
        return config.validate(raw, base_dir=base_dir, check_names=check_names)

    def listing(self) -> str:
        lines = ["task: detection (SYNTHETIC scenes, SIMULATED detector; see docs/audit.md)"]
        lines += [f"  {name:18s} {help_}" for name, help_ in {**config.DATA_SOURCES, **config.MODELS}.items()]
        lines.append("  detector degradations (corruptions[].name), values at severity 1..5:")
        for name, d in DEGRADATIONS.items():
            t2 = "n/a" if d.table_2d is None else ", ".join(f"{v:g}" for v in d.table_2d) + f" {d.unit_2d}"
            t3 = "n/a" if d.table_3d is None else ", ".join(f"{v:g}" for v in d.table_3d) + f" {d.unit_3d}"
            lines.append(f"    {name:16s} {d.help}\n{'':22s}{d.rule}; 2D: {t2.strip()}; 3D: {t3.strip()}")
        return "\n".join(lines)

    def train(self, cfg):
        from audit.errors import ConfigError

        raise ConfigError("task 'detection' audits a simulated detector; there is no model to train")

    def prepare(self, cfg, out, log) -> Prepared:
        p = cfg["data"]["params"]
        base = fingerprint(cfg["data"], cfg["model"], cfg["seed"], C.code_digest())
        keys = {t["cell"]: fingerprint(base, t["name"], t["severity"]) for t in cell_list(cfg["corruptions"])}
        context = {"dim": p["dim"], "scene": p, "detector": cfg["model"]["params"], "n_frames": p["n_frames"],
                   "seed": cfg["seed"]}
        info = {"description": C.describe(cfg), "synthetic": True, "modality": f"detection{p['dim']}d",
                "dim": p["dim"], "n_pool": p["n_frames"], "class_names": [f"class {k}" for k in range(p["n_classes"])],
                "n_calibration": round(cfg["split"]["calibration_fraction"] * p["n_frames"])}
        return Prepared(C.describe(cfg), p["n_frames"], context, keys, info, state={"dim": p["dim"]})

    def compute_cell(self, context, cell):
        return C.compute_cell(context, cell)

    def load_cell(self, prepared, arrays):
        return C.unpack(arrays, prepared.state["dim"])

    def fit_split(self, cfg, prepared, clean, calibration, r):
        preds, gts = clean
        det = config.make_detector(cfg, cfg["seed"] + 1000 * r + 17)
        return det.fit([preds[i] for i in calibration], [gts[i] for i in calibration])  # CLEAN frames only

    def score_cell(self, cfg, prepared, det, frames, test, first, cell):
        from conformal.detection import evaluate_detector

        preds, gts = frames
        dim = prepared.state["dim"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = evaluate_detector(det, [preds[i] for i in test], [gts[i] for i in test])
        m = evaluate.metrics(res, dim)
        m["score_threshold"] = det.score_threshold_
        extra = None
        if first and cfg["output"]["examples"] > 0:
            # every cell holds the same scenes and ground truth, so every cell shows the same frame
            ex = evaluate.example_index(gts, test, cfg["data"]["params"]["mean_objects"])
            extra = evaluate.example(det, preds[ex], gts[ex], dim, ex)
        return m, extra

    def results_extra(self, cfg, prepared):
        return {"splits": "R random calibration/test splits of one pool of frames (the same scenes in every cell)"}

    def report(self, results, curves, plot_dir):
        return report.report_parts(results, curves, plot_dir)
