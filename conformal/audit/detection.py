"""The detection audit (`task: detection`): a SIMULATED detector on SYNTHETIC scenes, calibrated on clean frames,
evaluated under named detector degradations.

No real detector or detection data set can run offline in this project. The data are the scenes of
`conformal.detection.synthetic.make_scenes`, and the "model" is the detector it simulates, with known ground
truth. A cell is the clean detector or one degradation (`conformal.audit.degradations`) at one severity.

Pipeline:
  1. every cell simulates the same pool of `n_frames` frames of the clean detector (frame i is seeded by (seed, i)
     only) and, unless it is the clean cell, degrades them after the fact (`conformal.audit.degradations`), so the
     ground truth and every untouched detection are identical in every cell and a difference between cells
     comes from the degradation alone; the detections are cached in `cache/<cell>.npz` for `--resume`;
  2. for r in 1..R: the frame pool is split at random (seeded by (seed, r)) into calibration and test frames;
     a `ConformalDetector` is fitted on the CLEAN cell's calibration frames only;
  3. the fitted detector predicts, without labels, on the test frames of every cell; `evaluate_detector` then
     scores the predictions against the ground truth.
"""
from __future__ import annotations

import math
import re
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

from conformal.audit import config as C
from conformal.audit.config import ConfigError
from conformal.audit.degradations import DEGRADATIONS, apply, degradation_names

TOP_KEYS = {
    "name": "a label for the report (default: the config file's stem)",
    "seed": "integer seed of the scenes, the simulated detector and the splits",
    "task": "'detection' for this audit ('classification' is the default)",
    "data": "{name: synthetic_scenes, params}: the synthetic scenes",
    "model": "{name: simulated_detector, params}: the clean simulated detector",
    "split": "{calibration_fraction, repeats}",
    "conformal": "the ConformalDetector settings (alpha, alpha_cls, recall_alpha, ...)",
    "corruptions": "list of {name, severities}: detector degradations",
    "executor": "{name: local|ray, workers, address}",
    "output": "{plots, report, examples, render_png}",
}

DATA_SOURCES = {"synthetic_scenes": "SYNTHETIC scenes with known ground truth (conformal.detection.synthetic); "
                                    "dim 2: image boxes in px, dim 3: LiDAR-style 3D boxes in m"}
MODELS = {"simulated_detector": "a SIMULATED detector (box noise, bias, misses, false positives, class confusion, "
                                "heading flips), the clean reference that degradations worsen"}

DATA_DEFAULTS = {"dim": 2, "n_frames": 1000, "n_classes": 4, "mean_objects": 6.0, "image_size": [480, 640],
                 "max_range": 70.0}
MODEL_DEFAULTS = {"bias": 0.0, "noise": None, "noise_growth": None, "miss_rate": 0.1, "fp_rate": 1.0,
                  "confusion": 0.1, "class_signal": 3.0, "flip_rate": 0.0, "quality_spread": 0.4,
                  "translation": 0.6}
SPLIT_DEFAULTS = {"calibration_fraction": 0.5, "repeats": 20}
CONFORMAL_DEFAULTS = {"alpha": 0.1, "alpha_cls": 0.1, "class_score": "lac", "class_conditional": False,
                      "scale": None, "sides": "two_sided", "correction": "max_rank", "yaw_period": 2 * math.pi,
                      "match_metric": None, "match_threshold": 0.5, "match_method": "hungarian",
                      "score_threshold": 0.0, "recall_alpha": 0.2, "recall_delta": 0.1, "recall_fraction": 0.3}

METRICS = {
    "box_coverage": "matched kept detections whose every box side lies inside its interval (target 1 - alpha)",
    "class_coverage": "matched kept detections whose true class is in the class set (target 1 - alpha_cls)",
    "joint_coverage": "true class in the set AND every box side covered (target 1 - alpha - alpha_cls)",
    "recall_risk": "mean over test frames of the fraction of true objects no kept detection matches "
                   "(bound recall_alpha, with probability 1 - recall_delta over calibration)",
    "class_set_size": "mean size of the class set of matched kept detections",
    "interval_size": "2D: outer-box area / predicted-box area; 3D: mean interval width of l, w, h / predicted size",
    "fp_per_frame": "kept detections matching no true object, per frame",
    "matched_objects": "matched kept detections in the test frames (the n behind the coverages)",
    "score_threshold": "confidence threshold (fitted on clean calibration frames)",
}


# --- config ------------------------------------------------------------------------------------------------
def _number(value, path: str, lo=None, hi=None, lo_open=False, hi_open=False, allow_none=False) -> float | None:
    import numbers

    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ConfigError(f"config key `{path}` must be a finite number{' or null' if allow_none else ''}; "
                          f"got {value!r}")
    v = float(value)
    if lo is not None and (v < lo or (lo_open and v == lo)):
        raise ConfigError(f"config key `{path}` must be {'>' if lo_open else '>='} {lo}; got {value!r}")
    if hi is not None and (v > hi or (hi_open and v == hi)):
        raise ConfigError(f"config key `{path}` must be {'<' if hi_open else '<='} {hi}; got {value!r}")
    return v


def _params(component: dict, defaults: dict, path: str) -> dict:
    C._check_keys(component["params"], defaults.keys(), path)
    out = dict(defaults)
    out.update(component["params"])
    return out


def validate(raw: dict) -> dict:
    """Check a `task: detection` config mapping; return a new, fully explicit one."""
    C._check_keys(raw, TOP_KEYS.keys(), "")
    for key in ("data", "model", "corruptions"):
        if key not in raw:
            raise ConfigError(f"config key `{key}` is required for task 'detection' ({TOP_KEYS[key]})")
    cfg: dict = {"name": raw.get("name", "detection_audit"), "task": "detection"}
    if not isinstance(cfg["name"], str) or not cfg["name"]:
        raise ConfigError(f"config key `name` must be a non-empty string; got {cfg['name']!r}")
    cfg["seed"] = C._int(raw.get("seed", 0), "seed", lo=0)

    data = C._component(raw["data"], "data", DATA_SOURCES)
    p = _params(data, DATA_DEFAULTS, "data.params")
    if p["dim"] not in (2, 3) or isinstance(p["dim"], bool):
        raise ConfigError(f"config key `data.params.dim` is {p['dim']!r}; allowed values: 2 (image boxes), "
                          "3 (LiDAR-style 3D boxes)")
    p["n_frames"] = C._int(p["n_frames"], "data.params.n_frames", lo=20)
    p["n_classes"] = C._int(p["n_classes"], "data.params.n_classes", lo=2)
    p["mean_objects"] = _number(p["mean_objects"], "data.params.mean_objects", lo=0.0, lo_open=True)
    size = p["image_size"]
    if not isinstance(size, list) or len(size) != 2:
        raise ConfigError(f"config key `data.params.image_size` must be [height, width] in px; got {size!r}")
    p["image_size"] = [C._int(s, "data.params.image_size[]", lo=64) for s in size]
    p["max_range"] = _number(p["max_range"], "data.params.max_range", lo=10.0)
    cfg["data"] = {"name": data["name"], "params": p}
    dim = p["dim"]

    model = C._component(raw["model"], "model", MODELS)
    m = _params(model, MODEL_DEFAULTS, "model.params")
    m["noise"] = _number(m["noise"], "model.params.noise", lo=0.0, allow_none=True)
    m["noise_growth"] = _number(m["noise_growth"], "model.params.noise_growth", lo=0.0, allow_none=True)
    if m["noise"] is None:  # resolved here so the saved config states the detector exactly
        m["noise"] = 2.0 if dim == 2 else 0.15
    if m["noise_growth"] is None:
        m["noise_growth"] = 0.03
    m["bias"] = _number(m["bias"], "model.params.bias", lo=0.0)
    m["miss_rate"] = _number(m["miss_rate"], "model.params.miss_rate", lo=0.0, hi=1.0, hi_open=True)
    m["fp_rate"] = _number(m["fp_rate"], "model.params.fp_rate", lo=0.0)
    m["confusion"] = _number(m["confusion"], "model.params.confusion", lo=0.0, hi=1.0)
    m["class_signal"] = _number(m["class_signal"], "model.params.class_signal", lo=0.0)
    m["flip_rate"] = _number(m["flip_rate"], "model.params.flip_rate", lo=0.0, hi=1.0)
    m["quality_spread"] = _number(m["quality_spread"], "model.params.quality_spread", lo=0.0)
    m["translation"] = _number(m["translation"], "model.params.translation", lo=0.0, hi=1.0, hi_open=True)
    if dim == 2 and m["flip_rate"] > 0:
        raise ConfigError("config key `model.params.flip_rate` applies to 3D scenes only (data.params.dim: 3)")
    cfg["model"] = {"name": model["name"], "params": m}

    split = C._merged(raw.get("split"), SPLIT_DEFAULTS, "split")
    split["calibration_fraction"] = C._fraction(split["calibration_fraction"], "split.calibration_fraction")
    split["repeats"] = C._int(split["repeats"], "split.repeats", lo=1)
    n_cal = round(split["calibration_fraction"] * p["n_frames"])
    if n_cal < 10 or p["n_frames"] - n_cal < 10:
        raise ConfigError(f"config keys `split.calibration_fraction` and `data.params.n_frames` leave {n_cal} "
                          f"calibration and {p['n_frames'] - n_cal} test frames; each needs at least 10")
    cfg["split"] = split

    conf = C._merged(raw.get("conformal"), CONFORMAL_DEFAULTS, "conformal")
    conf["alpha"] = C._fraction(conf["alpha"], "conformal.alpha")
    if conf["alpha_cls"] is not None:
        conf["alpha_cls"] = C._fraction(conf["alpha_cls"], "conformal.alpha_cls")
    if conf["class_score"] not in C.SCORES:
        raise ConfigError(f"config key `conformal.class_score` is {conf['class_score']!r}; allowed values: "
                          f"{', '.join(C.SCORES)}")
    conf["class_conditional"] = C._bool(conf["class_conditional"], "conformal.class_conditional")
    if conf["scale"] is None:
        conf["scale"] = "size" if dim == 2 else "range"
    if conf["recall_alpha"] is not None:
        for key in ("recall_alpha", "recall_delta", "recall_fraction"):
            conf[key] = C._fraction(conf[key], f"conformal.{key}")
    conf["match_threshold"] = _number(conf["match_threshold"], "conformal.match_threshold", lo=0.0, lo_open=True)
    conf["score_threshold"] = _number(conf["score_threshold"], "conformal.score_threshold")
    conf["yaw_period"] = _number(conf["yaw_period"], "conformal.yaw_period", lo=0.0, lo_open=True)
    try:  # the detector's own checks: names of scale, sides, correction, match_metric, match_method
        make_detector(dict(cfg, conformal=conf), 0).validate_params()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config key `conformal` is rejected by ConformalDetector: {exc}; allowed keys: "
                          f"{', '.join(CONFORMAL_DEFAULTS)}") from None
    cfg["conformal"] = conf

    cfg["corruptions"] = _degradations(raw["corruptions"], dim)

    ex = C._merged(raw.get("executor"), C.EXECUTOR_DEFAULTS, "executor")
    if ex["name"] not in C.EXECUTORS:
        raise ConfigError(f"config key `executor.name` is {ex['name']!r}; allowed values: {', '.join(C.EXECUTORS)}")
    ex["workers"] = C._int(ex["workers"], "executor.workers", lo=1)
    if ex["address"] is not None and not isinstance(ex["address"], str):
        raise ConfigError(f"config key `executor.address` must be a string or null; got {ex['address']!r}")
    cfg["executor"] = ex

    out = C._merged(raw.get("output"), C.OUTPUT_DEFAULTS, "output")
    for key in ("plots", "report", "render_png"):
        out[key] = C._bool(out[key], f"output.{key}")
    out["examples"] = C._int(out["examples"], "output.examples", lo=0)
    cfg["output"] = out
    return cfg


def _degradations(value, dim: int) -> list:
    if not isinstance(value, list):
        raise ConfigError("config key `corruptions` must be a list of {name, severities} detector degradations "
                          f"(an empty list audits the clean detector only); got {type(value).__name__}")
    allowed = degradation_names(dim)
    out, seen = [], set()
    for i, item in enumerate(value):
        path = f"corruptions[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        C._check_keys(item, {"name", "severities", "params"}, path)
        if item.get("params"):
            raise ConfigError(f"config key `{path}.params`: detector degradations take no params (their severity "
                              f"tables are fixed, see docs/audit.md); got {item['params']!r}")
        name = item.get("name")
        if name not in DEGRADATIONS:
            raise ConfigError(f"config key `{path}.name` is {name!r}, not a detector degradation; allowed values: "
                              f"{', '.join(allowed)}")
        if name not in allowed:
            raise ConfigError(f"config key `{path}.name`: degradation {name!r} is not defined for dim={dim} "
                              f"scenes; allowed values: {', '.join(allowed)}")
        if name in seen:
            raise ConfigError(f"config key `{path}.name`: degradation {name!r} is listed twice")
        seen.add(name)
        sev = item.get("severities", list(C.SEVERITIES))
        if not isinstance(sev, list) or not sev:
            raise ConfigError(f"config key `{path}.severities` must be a non-empty list of integers in 1..5; "
                              f"got {sev!r}")
        for s in sev:
            if isinstance(s, bool) or not isinstance(s, int) or s not in C.SEVERITIES:
                raise ConfigError(f"config key `{path}.severities` must hold integers in 1..5; got {s!r}")
        if len(set(sev)) != len(sev):
            raise ConfigError(f"config key `{path}.severities` has duplicates: {sev}")
        out.append({"name": name, "severities": sorted(sev), "params": {}})
    return out


def make_detector(cfg: dict, random_state: int):
    from conformal.detection import ConformalDetector

    c = cfg["conformal"]
    return ConformalDetector(dim=cfg["data"]["params"]["dim"], random_state=random_state,
                             **{k: c[k] for k in CONFORMAL_DEFAULTS})


# --- simulation of one cell ----------------------------------------------------------------------------------
FRAME_KEYS = ("boxes", "scores", "labels", "class_probs", "box_std")


def simulate(ctx: dict, name: str, severity: int):
    """(predictions, ground truth) of the pool's frames for one cell.

    Frame i of the clean detector is seeded by (seed, i) only, so every cell starts from the same frames; a
    degradation then transforms them with a generator seeded by (seed, degradation, i), the same at every
    severity (see `conformal.audit.degradations`)."""
    from conformal.detection.synthetic import make_scenes

    dim = ctx["dim"]
    scene = {k: v for k, v in ctx["scene"].items() if k not in ("dim", "n_frames")}
    scene["image_size"] = tuple(scene["image_size"])
    key = "boxes" if dim == 2 else "boxes3d"
    preds, gts = [], []
    for i in range(ctx["n_frames"]):
        rng = np.random.default_rng(np.random.SeedSequence([ctx["seed"], 8117, i]))
        (p,), (g,) = make_scenes(1, dim=dim, rng=rng, **scene, **ctx["detector"])
        if name != "clean":
            drng = np.random.default_rng(np.random.SeedSequence([ctx["seed"], 8119, zlib.crc32(name.encode()), i]))
            p = apply(name, severity, p, g, dim=dim, scene=scene, detector=ctx["detector"], rng=drng)
        # the generator's "_gt_index" is ground truth: it never reaches the conformal detector
        preds.append({key: p[key], "scores": p["scores"], "labels": p["labels"], "class_probs": p["class_probs"],
                      "box_std": p["box_std"]})
        gts.append(g)
    return preds, gts


def pack(preds: list, gts: list, dim: int) -> dict:
    """Frames as flat arrays split by counts (for the npz cache)."""
    key = "boxes" if dim == 2 else "boxes3d"
    out = {f"pred_{k}": np.concatenate([p[key if k == "boxes" else k] for p in preds]) for k in FRAME_KEYS}
    out["pred_counts"] = np.array([p["scores"].shape[0] for p in preds], np.int64)
    out["gt_boxes"] = np.concatenate([g[key] for g in gts])
    out["gt_labels"] = np.concatenate([g["labels"] for g in gts])
    out["gt_counts"] = np.array([g["labels"].shape[0] for g in gts], np.int64)
    return out


def unpack(z, dim: int):
    key = "boxes" if dim == 2 else "boxes3d"
    cuts = np.cumsum(z["pred_counts"])[:-1]
    cols = {k: np.split(z[f"pred_{k}"], cuts) for k in FRAME_KEYS}
    preds = [{(key if k == "boxes" else k): cols[k][i] for k in FRAME_KEYS} for i in range(len(z["pred_counts"]))]
    gcuts = np.cumsum(z["gt_counts"])[:-1]
    gts = [{key: b, "labels": lab} for b, lab in zip(np.split(z["gt_boxes"], gcuts), np.split(z["gt_labels"], gcuts))]
    return preds, gts


def compute_cell(ctx: dict, task: dict) -> dict:
    """Simulate one cell (called by the executors; errors are caught there)."""
    preds, gts = simulate(ctx, task["name"], task["severity"])
    return {"cell": task["cell"], "arrays": pack(preds, gts, ctx["dim"]), "error": None}


# --- evaluation -------------------------------------------------------------------------------------------------
def _example_index(gts: list, test: np.ndarray, mean_objects: float) -> int:
    counts = np.array([gts[i]["labels"].shape[0] for i in test])
    return int(test[np.argmin(np.abs(counts - max(mean_objects, 3.0)))])


def evaluate(cfg: dict, frames: dict, cells: list, progress=None):
    """Per-split metrics of every cell, split-0 example frames and the calibrator's warnings."""
    from conformal.audit.evaluate import _single_numba_thread

    with _single_numba_thread():
        return _evaluate(cfg, frames, cells, progress)


def _metrics(res: dict, dim: int) -> dict:
    nan = math.nan
    size = nan
    if "interval_size" in res:
        s = res["interval_size"]
        size = s["outer_area_ratio"] if dim == 2 else float(np.mean(s["relative_size_width"]))
    return {"box_coverage": res["box_joint"]["value"] if "box_joint" in res else nan,
            "class_coverage": res["class_set"]["value"] if "class_set" in res else nan,
            "joint_coverage": res["joint_class_and_box"]["value"] if "joint_class_and_box" in res else nan,
            "recall_risk": res["recall_risk"], "class_set_size": res.get("mean_class_set_size", nan),
            "interval_size": size, "fp_per_frame": res["n_false_positives"] / max(res["n_frames"], 1),
            "matched_objects": float(res["n_matched"])}


def _evaluate(cfg: dict, frames: dict, cells: list, progress=None):
    from conformal.audit.evaluate import split_indices
    from conformal.detection import evaluate_detector

    seed, split, dim = cfg["seed"], cfg["split"], cfg["data"]["params"]["dim"]
    R = split["repeats"]
    cal_preds, cal_gts = frames["clean"]
    n = len(cal_preds)
    per_split = {c: {m: np.full(R, np.nan) for m in METRICS} for c in cells}
    examples, fit_warnings = {}, {}
    for r in range(R):
        cal, test = split_indices(n, split["calibration_fraction"], seed, r)
        det = make_detector(cfg, seed + 1000 * r + 17)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            det.fit([cal_preds[i] for i in cal], [cal_gts[i] for i in cal])  # CLEAN calibration frames only
        for w in caught:  # counted and reported once (with the numbers of its first split), not printed R times
            msg = re.sub(r"\d+(\.\d+)?", "N", str(w.message))
            first = fit_warnings.setdefault(msg, [0, f"{w.message} (numbers from split {r})"])
            first[0] += 1
        ex = _example_index(cal_gts, test, cfg["data"]["params"]["mean_objects"]) if r == 0 else None
        for c in cells:
            preds, gts = frames[c]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = evaluate_detector(det, [preds[i] for i in test], [gts[i] for i in test])
            m = _metrics(res, dim)
            m["score_threshold"] = det.score_threshold_
            for k, v in m.items():
                per_split[c][k][r] = v
            if ex is not None and cfg["output"]["examples"] > 0:
                examples[c] = _example(det, preds[ex], gts[ex], dim, ex)
        if progress is not None:
            progress.update(1)
    return per_split, examples, {text: count for count, text in fit_warnings.values()}


def _example(det, pred: dict, gt: dict, dim: int, index: int) -> dict:
    out = det.predict(pred)
    keep = out.keep
    key = "boxes" if dim == 2 else "boxes3d"
    d = {"ex_frame": np.array(index), "ex_gt": gt[key], "ex_gt_labels": gt["labels"], "ex_pred": out.boxes[keep],
         "ex_pred_labels": out.labels[keep], "ex_lower": out.lower[keep], "ex_upper": out.upper[keep]}
    if out.class_sets is not None:
        d["ex_set_size"] = out.class_sets[keep].sum(axis=1)
    if dim == 2:
        d["ex_outer"], d["ex_inner"] = out.outer[keep], out.inner[keep]
    return d


# --- the run ----------------------------------------------------------------------------------------------------
def _code_digest() -> str:
    from conformal.audit import degradations
    from conformal.audit.models import fingerprint
    from conformal.detection import synthetic

    return fingerprint(*[Path(m.__file__).read_bytes().decode() for m in (synthetic, degradations)])


def _load_cell(path: Path, key: str):
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            return {k: z[k] for k in z.files if k != "key"}
    except (OSError, KeyError, ValueError):
        return None  # unreadable cache entries are recomputed, never trusted


def _save_cell(path: Path, key: str, arrays: dict) -> None:
    import os

    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, key=np.array(key), **arrays)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written cache entry


def run(cfg: dict, out, *, workers: int | None = None, executor: str | None = None, resume: bool = False,
        quiet: bool = False) -> dict:
    """Run a detection audit end to end and return the results dict (also written to `out`)."""
    from tqdm.auto import tqdm

    from conformal.audit import executors
    from conformal.audit.models import fingerprint
    from conformal.audit.pipeline import cell_tasks, check_out_dir

    t_start = time.perf_counter()
    executor = executor or cfg["executor"]["name"]
    workers = workers or cfg["executor"]["workers"]
    if executor not in C.EXECUTORS:
        raise ConfigError(f"`executor` must be 'local' or 'ray'; got {executor!r}")
    if executor == "ray":
        executors.check_ray()
    out = check_out_dir(out)
    cache_dir = out / "cache"
    cache_dir.mkdir(exist_ok=True)
    (out / "config.yaml").write_text(C.dump(cfg))
    log = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr))
    dim = cfg["data"]["params"]["dim"]
    log(f"[audit] data: {describe(cfg)}")

    tasks = cell_tasks(cfg)
    base = fingerprint(cfg["data"], cfg["model"], cfg["seed"], _code_digest())
    keys = {t["cell"]: fingerprint(base, t["name"], t["severity"]) for t in tasks}
    arrays, failed, seconds, todo = {}, {}, {}, []
    for t in tasks:
        hit = _load_cell(cache_dir / f"{t['cell']}.npz", keys[t["cell"]]) if resume else None
        if hit is None:
            todo.append(t)
        else:
            arrays[t["cell"]] = hit
    log(f"[audit] {len(tasks)} cells, {len(tasks) - len(todo)} from cache, {len(todo)} to simulate "
        f"({executor}, {workers} worker{'s' if workers > 1 else ''})")
    ctx = {"task": "detection", "dim": dim, "scene": cfg["data"]["params"], "detector": cfg["model"]["params"],
           "n_frames": cfg["data"]["params"]["n_frames"], "seed": cfg["seed"]}
    bar = tqdm(total=len(todo), desc="cells", unit="cell", disable=quiet or not todo)

    def on_result(res):
        bar.update(1)
        seconds[res["cell"]] = res["seconds"]
        if res["error"] is not None:
            failed[res["cell"]] = res["error"]
            bar.write(f"[audit] cell {res['cell']} FAILED; continuing:\n{res['error']}")
            return
        _save_cell(cache_dir / f"{res['cell']}.npz", keys[res["cell"]], res["arrays"])
        arrays[res["cell"]] = res["arrays"]

    if executor == "ray":
        executors.run_ray(ctx, todo, on_result, workers=workers, address=cfg["executor"]["address"])
    else:
        executors.run_local(ctx, todo, on_result, workers=workers)
    bar.close()
    if "clean" in failed:
        raise RuntimeError(f"the clean cell failed, so nothing can be calibrated:\n{failed['clean']}")

    order = [t["cell"] for t in tasks if t["cell"] in arrays]
    frames = {c: unpack(arrays[c], dim) for c in order}
    bar = tqdm(total=cfg["split"]["repeats"], desc="splits", unit="split", disable=quiet)
    per_split, examples, fit_warnings = evaluate(cfg, frames, order, progress=bar)
    bar.close()
    for msg, count in fit_warnings.items():
        log(f"[audit] detector warning in {count} of {cfg['split']['repeats']} splits: {msg}")
    results = build_results(cfg, tasks, per_split, failed, seconds, time.perf_counter() - t_start)
    results["calibration_warnings"] = fit_warnings
    write_results(out, results, examples)
    if cfg["output"]["plots"] or cfg["output"]["report"]:
        from conformal.audit import report

        report.build(out, quiet=quiet)
    log(f"[audit] done in {time.perf_counter() - t_start:.1f} s: {out / 'results.csv'}"
        + (f", {out / 'report.html'}" if cfg["output"]["report"] else ""))
    return results


def describe(cfg: dict) -> str:
    p = cfg["data"]["params"]
    where = (f"{p['image_size'][1]}x{p['image_size'][0]} px images" if p["dim"] == 2
             else f"3D LiDAR-style scenes up to {p['max_range']:g} m")
    return (f"SYNTHETIC {p['dim']}D detection scenes ({p['n_frames']} frames of {where}, {p['n_classes']} classes, "
            f"~{p['mean_objects']:g} objects per frame) seen by a SIMULATED detector "
            "(conformal.detection.synthetic)")


def build_results(cfg, tasks, per_split, failed, seconds, wall) -> dict:
    from conformal.audit.evaluate import summarize
    from conformal.audit.pipeline import RESULTS_SCHEMA, versions

    rows = []
    for t in tasks:
        c = t["cell"]
        if c not in per_split:
            continue
        row = {"cell": c, "corruption": t["name"], "severity": t["severity"], "seconds": seconds.get(c)}
        for m, vals in per_split[c].items():
            row[m] = summarize(vals)
        rows.append(row)
    p = cfg["data"]["params"]
    return {
        "schema_version": RESULTS_SCHEMA,
        "task": "detection",
        "config": cfg,
        "data": {"description": describe(cfg), "synthetic": True, "modality": f"detection{p['dim']}d",
                 "dim": p["dim"], "n_pool": p["n_frames"],
                 "class_names": [f"class {k}" for k in range(p["n_classes"])],
                 "n_calibration": round(cfg["split"]["calibration_fraction"] * p["n_frames"])},
        "metrics": METRICS,
        "splits": "R random calibration/test splits of one pool of frames (the same scenes in every cell)",
        "interval": "lo/hi: 2.5% and 97.5% quantiles over the R random calibration/test splits; se: standard "
                    "error of the mean over splits",
        "cells": rows,
        "per_split": {c: {m: [None if not math.isfinite(x) else x for x in v.tolist()] for m, v in d.items()}
                      for c, d in per_split.items()},
        "failed_cells": failed,
        "versions": versions(),
        "wall_seconds": wall,
    }


def csv_columns() -> list:
    from conformal.audit.pipeline import metric_columns

    return metric_columns(METRICS)


def write_results(out: Path, results: dict, examples: dict) -> None:
    from conformal.audit.pipeline import write_results_table

    write_results_table(out, results, METRICS, "box_coverage")
    arrays = {f"{c}__{k}": v for c, d in examples.items() for k, v in d.items()}
    np.savez_compressed(out / "curves.npz", **arrays)
