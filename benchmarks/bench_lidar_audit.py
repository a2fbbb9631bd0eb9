"""The LiDAR audit's runtime (`configs/lidar_detection.yaml`): CPU time per stage of one scan in one cell, and
optionally the whole audit with 2 workers (wall and CPU time).

Stages, in the order a cell runs them (one thread, CPU time from `time.process_time`, median over scans):
ray-casting the clean scene (done once per audit and worker process, then cached), each scene corruption at
severities 1, 3, 5, the BEV pillar grid, the CNN forward (one scan at a time as before, and batches of 8 in the
channels-last layout as now), heatmap decoding; per split and cell, the BEV + 3D AP of the test frames (matching
every frame again as before, or once per cell as now).

SYNTHETIC DATA (`adapters.datasets.load_lidar_scenes`). Writes the `lidar_audit` section of docs/benchmarks.md.
Run: python benchmarks/bench_lidar_audit.py [--scans 24] [--audit] [--no-write]
(--audit runs `python -m audit run configs/lidar_detection.yaml --workers 2` into a temporary folder: ~10 min.)
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine_line, versions, write_section  # noqa: E402


def cpu_ms(fn, *args, **kwargs):
    c0 = time.process_time()
    out = fn(*args, **kwargs)
    return (time.process_time() - c0) * 1e3, out


def stages(n_scans: int) -> list:
    import torch

    torch.set_num_threads(1)
    from adapters import lidar_detector as LD
    from adapters import reference
    from adapters.datasets.lidar_scenes import SPLIT_SEEDS, make_lidar_scene, visible
    from audit.tasks.detection.sources import lidar
    from conformal.detection.ap import average_precision, average_precision_from_inputs, frame_pr_inputs
    from perturbations.pointcloud import names
    from perturbations.registry import corrupt_logged

    rows, scans = [], []
    gen = [cpu_ms(make_lidar_scene, SPLIT_SEEDS["test"] + i) for i in range(n_scans)]
    scans = [g[1] for g in gen]
    rows.append(("ray-cast the clean scene (`make_lidar_scene`): before, every cell; now once per audit and worker",
                 np.median([g[0] for g in gen])))
    for name in names("scene"):
        ts = []
        for sev in (1, 3, 5):
            for i, (s, f) in enumerate(scans):
                opts = lidar._options(name, f, 32)
                _corrupt_ms(corrupt_logged, s, name, sev, i, opts)  # warm: fog tables, Numba kernels
                ts.append(_corrupt_ms(corrupt_logged, s, name, sev, i, opts))
        rows.append((f"scene corruption `{name}` (severities 1, 3, 5)", np.median(ts)))
    net = reference.load_model("lidar_detector")
    with torch.inference_mode():
        feats = [cpu_ms(LD.bev_features, s)[0] for s, _ in scans]
        rows.append(("BEV pillar grid (`bev_features`)", np.median(feats)))
        x = [LD.bev_features(s)[None] for s, _ in scans[:8]]
        net(x[0])
        one = [cpu_ms(net, xi)[0] for xi in x]
        rows.append(("CNN forward, one scan at a time, contiguous layout (before)", np.median(one)))
        det = reference.load("lidar_detector")  # channels-last, batches of det.batch_size
        xb = torch.cat(x).contiguous(memory_format=torch.channels_last)
        det.model(xb)
        batch = [cpu_ms(det.model, xb)[0] / len(x) for _ in range(3)]
        rows.append((f"CNN forward, batches of {det.batch_size}, channels-last (now)", np.median(batch)))
        out = det.model(xb)
        dec = cpu_ms(lambda: LD.decode(*out, score_floor=det.score_floor, max_detections=det.max_detections))[0]
        rows.append(("heatmap decoding (3 x 3 max-pool peaks, top-k)", dec / len(x)))
    preds = det.predict([s for s, _ in scans])
    gts = [visible(f, 5) for _, f in scans]
    before = sum(cpu_ms(average_precision, preds, gts, metric=m, threshold=0.5)[0] for m in ("bev_iou", "iou_3d"))
    parts = {m: frame_pr_inputs(preds, gts, metric=m, threshold=0.5, labels=range(4)) for m in ("bev_iou", "iou_3d")}
    now = sum(cpu_ms(average_precision_from_inputs, parts[m])[0] for m in parts)
    rows.append(("BEV + 3D AP of one split's test frames, per frame: before, matched in every split", before / n_scans))
    rows.append(("... now, matched once per cell (`frame_pr_inputs`), per split only the PR curve", now / n_scans))
    return rows


def _corrupt_ms(corrupt_logged, s, name, sev, i, opts):
    rng = np.random.default_rng(i)
    c0 = time.process_time()
    corrupt_logged(s, name, sev, rng, "pointcloud", **opts)
    return (time.process_time() - c0) * 1e3


def full_audit() -> dict:
    import yaml

    cfg = yaml.safe_load((ROOT / "configs" / "lidar_detection.yaml").read_text())
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "audit", "run", str(ROOT / "configs" / "lidar_detection.yaml"),
                        "--out", str(Path(tmp) / "lidar"), "--workers", "2", "--quiet"], check=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cells = 1 + sum(len(c["severities"]) for c in cfg["corruptions"])
    return {"wall": wall, "cpu": cpu, "load0": load0, "load1": os.getloadavg()[0], "cells": cells,
            "n": cfg["data"]["params"]["n_frames"], "repeats": cfg["split"]["repeats"],
            "fraction": cfg["split"]["calibration_fraction"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scans", type=int, default=24, help="scans timed per stage (default 24)")
    ap.add_argument("--audit", action="store_true", help="also run the whole shipped audit with 2 workers")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    rows = stages(args.scans)
    lines = ["## LiDAR audit runtime (`benchmarks/bench_lidar_audit.py`)", "",
             f"CPU time per 32-ring scan and stage, one thread, median over {args.scans} SYNTHETIC test-split scans. "
             f"{machine_line()}; {versions('numpy', 'torch', 'open3d')}; load average {load:.1f} when timing "
             "started (CPU times barely move with it, wall times do).", "",
             "| stage (per scan) | CPU time |", "|---|---|"]
    lines += [f"| {name} | {ms:.1f} ms |" for name, ms in rows]
    if args.audit:
        r = full_audit()
        n_test = r["n"] - round(r["fraction"] * r["n"])
        lines += ["", f"Whole audit (`configs/lidar_detection.yaml`: {r['cells']} cells x {r['n']} scans, "
                  f"{n_test} test scans per split, {r['repeats']} splits), `--workers 2`: **{r['wall']:.0f} s wall**, "
                  f"{r['cpu']:.0f} s CPU (all processes; {r['cpu'] / 2:.0f} s if both cores were ours alone), "
                  f"load average {r['load0']:.1f} before, {r['load1']:.1f} after. Target (issue 16): <= 600 s on "
                  "2 cores."]
    md = "\n".join(lines)
    print(md)
    if not args.no_write:
        write_section("lidar_audit", md)


if __name__ == "__main__":
    main()
