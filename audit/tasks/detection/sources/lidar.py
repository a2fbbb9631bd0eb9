"""`data: lidar_scenes` with `model: lidar_detector`: SYNTHETIC ray-cast LiDAR scans seen by the reference BEV 3D
detector, with the nine LiDAR scene corruptions (`perturbations.pointcloud`, level "scene") applied to the scans
BEFORE the detector runs.

Frame i of the pool is test-split scene i of `adapters.datasets.load_lidar_scenes` (never trained on), the same in
every cell; a corruption transforms its scan with a generator seeded by (seed, corruption, i), the same at every
severity, then the detector predicts. Ground truth: the objects with >= `min_points` returns in the CLEAN scan, in
every cell: an object a corruption hides is still there, and missing it is a miss.
"""
from __future__ import annotations

import functools
import hashlib
import html
import zlib
from pathlib import Path

import numpy as np

from audit import schema as S
from audit.errors import ConfigError
from audit.tasks.detection.sources.base import Source

__all__ = ["LidarScenes", "DATA_DEFAULTS", "MODEL_DEFAULTS"]

DATA_DEFAULTS = {"n_frames": 300, "n_rings": 32, "min_points": 5}
MODEL_DEFAULTS = {"weights": None, "score_floor": 0.05, "max_detections": 100}
AP_THRESHOLD = 0.5  # BEV / 3D IoU of a true positive in the AP metrics
EXAMPLE_POINTS = 12000


def _scene_names() -> tuple:
    from perturbations.pointcloud import names

    return names("scene")


def _weights(model: dict) -> Path:
    from adapters import reference

    w = model["params"]["weights"]
    return reference.weights_path("lidar_detector") if w is None else Path(w)


@functools.lru_cache(maxsize=2)
def _detector(weights: str, score_floor: float, max_detections: int):
    from adapters import reference

    return reference.load("lidar_detector", weights, score_floor=score_floor, max_detections=max_detections)


def _options(name: str, frame: dict, n_rings: int) -> dict:
    """The per-scan facts a corruption accepts (true rings, the true ground), by its declared options."""
    from adapters.datasets.lidar_scenes import SEMANTIC

    ground = np.isin(frame["semantic"], [SEMANTIC["ground"], SEMANTIC["kerb"]])
    return _facts_options(name, frame["ring"], ground, n_rings)


def _facts_options(name: str, ring: np.ndarray, ground_mask: np.ndarray, n_rings: int) -> dict:
    from adapters.datasets.lidar_scenes import FOV_DEG
    from perturbations.pointcloud import REGISTRY

    cand = {"ring": ring, "n_rings": n_rings, "fov_deg": FOV_DEG, "ground_mask": ground_mask}
    return {k: v for k, v in cand.items() if k in REGISTRY[name].options}


# Clean scans of this process, generated once per audit and reused by every cell the process computes
# (ray-casting a 32-ring scene costs more CPU than corrupting it and running the detector together). Bounded so
# a 64-ring pool of thousands of scans cannot exhaust memory: past the bound, scans are generated again.
SCAN_CACHE_BYTES = 1 << 30
_SCANS: dict = {}
_SCAN_BYTES = [0]


def clean_scan(i: int, n_rings: int) -> tuple:
    """(scan, ring int16, ground mask, ground truth {boxes3d, labels, n_points}) of test-split scene `i`."""
    from adapters.datasets.lidar_scenes import SEMANTIC, SPLIT_SEEDS, make_lidar_scene

    key = (int(n_rings), int(i))
    hit = _SCANS.get(key)
    if hit is None:
        scan, frame = make_lidar_scene(SPLIT_SEEDS["test"] + i, n_rings=n_rings)
        hit = (scan, frame["ring"].astype(np.int16), np.isin(frame["semantic"], [SEMANTIC["ground"], SEMANTIC["kerb"]]),
               {k: frame[k] for k in ("boxes3d", "labels", "n_points")})
        size = scan.nbytes + hit[1].nbytes + hit[2].nbytes
        if _SCAN_BYTES[0] + size <= SCAN_CACHE_BYTES:
            _SCANS[key] = hit
            _SCAN_BYTES[0] += size
    return hit


def scan_of(ctx: dict, name: str, severity: int, i: int):
    """(scan, clean ground truth {boxes3d, labels, n_points}, record or None) of pool frame i in one cell."""
    from perturbations.registry import corrupt_logged

    scan, ring, ground, frame = clean_scan(i, ctx["n_rings"])
    if name == "clean":
        return scan, frame, None
    rng = np.random.default_rng(np.random.SeedSequence([ctx["seed"], 8123, zlib.crc32(name.encode()), i]))
    opts = _facts_options(name, ring.astype(np.int64), ground, ctx["n_rings"])
    (out, _), record = corrupt_logged(scan, name, severity, rng, "pointcloud", **opts)
    return out, frame, record


def simulate(ctx: dict, name: str, severity: int):
    from adapters.datasets.lidar_scenes import visible

    det = _detector(ctx["weights"], ctx["score_floor"], ctx["max_detections"])
    preds, gts, records, batch = [], [], [], []
    for i in range(ctx["n_frames"]):
        scan, frame, rec = scan_of(ctx, name, severity, i)
        batch.append(scan)
        gts.append(visible(frame, ctx["min_points"]))
        if rec is not None:
            records.append(rec)
        if len(batch) == det.batch_size or i == ctx["n_frames"] - 1:
            preds += [{**p, "box_std": None} for p in det.predict(batch)]
            batch = []
    return preds, gts, records


class LidarScenes(Source):
    name = "lidar_scenes"
    help = ("SYNTHETIC ray-cast LiDAR street scans (adapters.datasets.load_lidar_scenes, test split) through the "
            "reference BEV 3D detector; corruptions: the nine LiDAR scene corruptions, applied to the scans")
    synthetic = True
    tag = "SYNTHETIC ray-cast scans, reference BEV detector"
    models = {"lidar_detector": "adapters.reference.load('lidar_detector'): a BEV pillar-grid CNN trained here "
                                "on the train split (params: weights, score_floor, max_detections)"}
    corruption_kind = "LiDAR scene corruptions"

    def validate(self, data, model, base_dir):
        if model["name"] not in self.models:
            raise ConfigError(f"config key `model.name` is {model['name']!r}; allowed values: "
                              f"{', '.join(self.models)} (for data {self.name!r})")
        S.check_keys(data["params"], DATA_DEFAULTS.keys(), "data.params")
        p = {**DATA_DEFAULTS, **data["params"]}
        p["n_frames"] = S.integer(p["n_frames"], "data.params.n_frames", lo=20)
        if p["n_rings"] not in (32, 64) or isinstance(p["n_rings"], bool):
            raise ConfigError(f"config key `data.params.n_rings` is {p['n_rings']!r}; allowed values: 32, 64")
        p["min_points"] = S.integer(p["min_points"], "data.params.min_points", lo=1)
        S.check_keys(model["params"], MODEL_DEFAULTS.keys(), "model.params")
        m = {**MODEL_DEFAULTS, **model["params"]}
        if m["weights"] is not None:
            w = Path(m["weights"])
            w = w if w.is_absolute() or base_dir is None else Path(base_dir) / w
            if not w.is_file():
                raise ConfigError(f"config key `model.params.weights`: no file at {w}")
            m["weights"] = str(w)
        m["score_floor"] = S.number(m["score_floor"], "model.params.score_floor", lo=0.0, hi=1.0, hi_open=True)
        m["max_detections"] = S.integer(m["max_detections"], "model.params.max_detections", lo=1)
        return {"name": data["name"], "params": p}, {"name": model["name"], "params": m}

    def dim(self, data):
        return 3

    def n_frames(self, data):
        return data["params"]["n_frames"]

    def class_names(self, cfg):
        from adapters.datasets.lidar_scenes import CLASSES

        return list(CLASSES)

    def check_corruption(self, name, path, data):
        allowed = _scene_names()
        if name not in allowed:
            raise ConfigError(f"config key `{path}` is {name!r}, not a LiDAR scene corruption; allowed values: "
                              f"{', '.join(allowed)}")

    def listing(self):
        from perturbations.pointcloud import REGISTRY

        lines = ["    LiDAR scene corruptions (corruptions[].name), applied to the scans before the detector:"]
        lines += [f"      {n:18s} {REGISTRY[n].doc}" for n in _scene_names()]
        return "\n".join(lines)

    def context(self, cfg):
        p, m = cfg["data"]["params"], cfg["model"]["params"]
        return {"n_frames": p["n_frames"], "n_rings": p["n_rings"], "min_points": p["min_points"],
                "seed": cfg["seed"], "weights": str(_weights(cfg["model"])), "score_floor": m["score_floor"],
                "max_detections": m["max_detections"]}

    def code_digest(self, cfg):
        from adapters import lidar_detector
        from adapters.datasets import lidar_scenes
        from audit.runner.cache import fingerprint
        from perturbations import _pointcloud_scene, _pointcloud_tables

        mods = (lidar_scenes, lidar_detector, _pointcloud_scene, _pointcloud_tables)
        return fingerprint(*[Path(m.__file__).read_bytes().decode() for m in mods], self._weights_sha(cfg))

    def _weights_sha(self, cfg):
        path = _weights(cfg["model"])
        if not path.is_file():
            raise ConfigError(f"the lidar_detector weights are missing at {path}; train them with "
                              "`python -m adapters.train lidar_detector`")
        return hashlib.sha256(path.read_bytes()).hexdigest()

    def provenance(self, cfg):
        return {"model_file": str(_weights(cfg["model"])), "model_sha256": self._weights_sha(cfg),
                "code_digest": self.code_digest(cfg)}

    def subset_context(self, context, n):
        return {**context, "n_frames": min(n, context["n_frames"])}

    def setup_worker(self, context):
        import open3d  # noqa: F401  (imported before the thread limits are set)
        import torch  # noqa: F401

    def frames(self, context, cell):
        return simulate(context, cell["name"], cell["severity"])

    def example_points(self, context, cell, index):
        """(K, 3) float32 x, y, intensity of pool scan `index` in `cell` (at most EXAMPLE_POINTS, evenly strided)."""
        scan, _, _ = scan_of(context, cell["name"], cell["severity"], int(index))
        step = max(1, len(scan) // EXAMPLE_POINTS)
        return np.ascontiguousarray(scan[::step][:, [0, 1, 3]], dtype=np.float32)

    def extra_metrics(self, preds, gts, test=None, memo=None):
        """BEV and 3D AP of the test frames; with a per-cell `memo` each frame is matched once for all splits
        (`conformal.detection.ap.frame_pr_inputs`), with the same numbers as `average_precision` on the subset."""
        from adapters.datasets.lidar_scenes import CLASSES
        from conformal.detection.ap import average_precision_from_inputs, frame_pr_inputs

        test = range(len(preds)) if test is None else [int(i) for i in test]
        memo = {} if memo is None else memo
        out = {}
        for key, metric in (("ap_bev", "bev_iou"), ("ap_3d", "iou_3d")):
            if metric not in memo:
                memo[metric] = frame_pr_inputs(preds, gts, metric=metric, threshold=AP_THRESHOLD,
                                               labels=range(len(CLASSES)))
            out[key] = average_precision_from_inputs([memo[metric][i] for i in test])["mean"]
        return out

    def train(self, cfg):
        from adapters.train import train

        train("lidar_detector")
        return _weights(cfg["model"])

    def caveats(self, results):
        return [f"The scans are SYNTHETIC: {html.escape(results['data']['description'])}. The detector is the small "
                "reference model trained here on synthetic scans; numbers describe this simulator and detector, not "
                "a real sensor, data set or production detector.",
                "Every cell holds the same scenes and ground truth (objects with enough returns in the clean scan); "
                "a corruption changes the scan the detector sees, so cells differ by the corruption only. "
                f"AP (BEV / 3D, IoU {AP_THRESHOLD}, KITTI R40, mean over classes) is over every reported detection, "
                "before the conformal threshold."]

    def corruption_table(self, results):
        from perturbations.pointcloud import parameters

        rows = []
        for c in results["config"]["corruptions"]:
            vals = "; ".join(f"S{s}: " + ", ".join(f"{k} {v}" for k, v in parameters(c["name"], s).items())
                             for s in c["severities"])
            rows.append(f"<tr><td class='l'>{c['name']}</td><td class='l'>{html.escape(vals)}</td></tr>")
        return ("<h2>LiDAR scene corruptions (docs/pointcloud_corruptions.md)</h2><table><tr><th class='l'>"
                f"corruption</th><th class='l'>severity parameters</th></tr>{''.join(rows)}</table>")

    def describe(self, cfg):
        p = cfg["data"]["params"]
        return (f"SYNTHETIC ray-cast LiDAR scans ({p['n_frames']} street scenes of the test split, {p['n_rings']} "
                f"rings, objects with >= {p['min_points']} returns as ground truth; adapters.datasets."
                "load_lidar_scenes) seen by the reference BEV 3D detector")
