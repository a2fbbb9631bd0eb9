"""LiDAR end to end: scene generation time, the reference 3D detector's recall and AP by range band, conformal 3D
coverage on its clean outputs by range band and points per object, and the per-frame conformal step latency.

SYNTHETIC DATA: `adapters.datasets.load_lidar_scenes` ray-casts randomised street layouts (open3d); the detector is
`adapters.reference.load("lidar_detector")`, trained on the train split only. Calibration: the calibration split;
every number is measured on the test split (disjoint seeds). Single thread (torch and BLAS).

Writes the `lidar` section of docs/benchmarks.md. Run: python benchmarks/bench_lidar.py [--quick]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine_line, versions, write_section  # noqa: E402

from adapters import reference  # noqa: E402
from adapters.datasets.lidar_scenes import load_lidar_scenes, make_lidar_scene, visible  # noqa: E402
from adapters.lidar_detector import centre_recall, coverage_breakdown  # noqa: E402
from conformal.detection import ConformalDetector, average_precision_by_range, evaluate_detector  # noqa: E402

ALPHA = ALPHA_CLS = 0.1
MIN_POINTS = 5  # ground truth: objects with >= 5 returns


def conformal_detector(score_threshold=0.3):
    return ConformalDetector(dim=3, alpha=ALPHA, alpha_cls=ALPHA_CLS, class_score="aps", yaw_period=math.pi,
                             match_metric="center_distance", match_threshold=2.0, score_threshold=score_threshold,
                             scale="range")


def frame_of_50(preds):
    """A frame of exactly 50 detections, cut from real detector output (the highest-scoring ones)."""
    big = max(preds, key=lambda p: len(p["scores"]))
    return {k: big[k][:50] for k in ("boxes3d", "scores", "labels", "class_probs")}


def per_call_us(fn, calls):
    for _ in range(min(200, calls)):
        fn()
    ts = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter_ns()
        fn()
        ts[i] = time.perf_counter_ns() - t0
    return float(np.median(ts) / 1e3), float(np.percentile(ts, 99) / 1e3)


def _cov(v):
    return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}] (n={v[3]})"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 calibration / 100 test scans instead of 300 / 500")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    n_cal, n_test = (100, 100) if args.quick else (300, 500)

    gen, cpu = {}, {}
    for rings in (32, 64):
        ts, cs = [], []
        for seed in range(12):
            t0, c0 = time.perf_counter(), time.process_time()
            make_lidar_scene(10_000 + seed, n_rings=rings)
            ts.append(time.perf_counter() - t0)
            cs.append(time.process_time() - c0)
        gen[rings], cpu[rings] = float(np.median(ts[2:])), float(np.median(cs[2:]))
    load = os.getloadavg()[0]

    det = reference.load("lidar_detector")
    t0 = time.perf_counter()
    cal_scans, cal_frames = load_lidar_scenes("calibration", n_cal)
    test_scans, test_frames = load_lidar_scenes("test", n_test)
    t_gen = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    cal_preds = det.predict(cal_scans)
    test_preds = det.predict(test_scans)
    t_det = (time.perf_counter() - t0) / (n_cal + n_test)
    c_det = (time.process_time() - c0) / (n_cal + n_test)
    cal_gt = [visible(f, MIN_POINTS) for f in cal_frames]
    test_gt = [visible(f, MIN_POINTS) for f in test_frames]

    recall = centre_recall(test_preds, test_frames)
    aps = {(m, t): average_precision_by_range(test_preds, test_gt, metric=m, threshold=t)
           for m in ("bev_iou", "iou_3d") for t in (0.5, 0.25)}
    aps_all = {k: evaluate_all(test_preds, test_gt, *k) for k in aps}

    cd = conformal_detector().fit(cal_preds, cal_gt)
    res = evaluate_detector(cd, test_preds, test_gt)
    bd = coverage_breakdown(cd, test_preds, test_gt)
    frame = frame_of_50(test_preds)
    step_med, step_p99 = per_call_us(lambda: cd.predict(frame), 3000)

    names = ("car", "truck", "pedestrian", "cyclist")
    lines = ["## LiDAR scenes, 3D detector and conformal 3D boxes (`benchmarks/bench_lidar.py`)", "",
             "SYNTHETIC ray-cast scans (`adapters.datasets.load_lidar_scenes`, 32 rings unless said), the reference "
             "BEV detector (`adapters.reference.load(\"lidar_detector\")`, trained on the train split only), "
             f"{n_cal} calibration and {n_test} test scans (disjoint seeds); ground truth: objects with >= "
             f"{MIN_POINTS} returns. {machine_line()}; {versions('numpy', 'numba', 'torch', 'open3d')}; "
             f"one thread; load average {load:.1f} when timing started (wall times grow with it, CPU times "
             "do not).", "",
             "| quantity | value | target |", "|---|---|---|",
             f"| scene generation, 64-ring scan (~128k returns), CPU time / wall time | {cpu[64] * 1e3:.0f} / "
             f"{gen[64] * 1e3:.0f} ms | <= 200 ms |",
             f"| scene generation, 32-ring scan (~32k returns), CPU time / wall time | {cpu[32] * 1e3:.0f} / "
             f"{gen[32] * 1e3:.0f} ms | |",
             f"| detector (BEV grid, forward in batches of {det.batch_size}, decoding) per 32-ring scan, CPU time / "
             f"wall time | {c_det * 1e3:.0f} / {t_det * 1e3:.0f} ms | |",
             f"| BEV-centre recall (<= 2 m, objects >= 20 returns, score >= 0.3) | {recall:.3f} | >= 0.7 |",
             f"| clean joint 3D box coverage (alpha = {ALPHA}) | {_fmt(res['box_joint'])} | within 0.02 of "
             f"{1 - ALPHA:.2f} |",
             f"| clean class-set coverage (alpha_cls = {ALPHA_CLS}), mean set size "
             f"{res['mean_class_set_size']:.2f} | {_fmt(res['class_set'])} | >= {1 - ALPHA_CLS:.2f} |",
             f"| conformal step, frame of 50 3D detections (`ConformalDetector.predict`), median / p99 | "
             f"{step_med:.0f} / {step_p99:.0f} us | <= 100 us |", "",
             "AP (KITTI R40, greedy matching, per class then mean over classes) on the test split, by range band:", "",
             "| metric, IoU | all | <20 m | 20-40 m | >=40 m | per class (all ranges) |", "|---|---|---|---|---|---|"]
    for (m, t), by in aps.items():
        allr = aps_all[(m, t)]
        per = ", ".join(f"{names[c]} {v:.2f}" for c, v in allr["per_class"].items() if v == v)
        lines.append(f"| {'BEV' if m == 'bev_iou' else '3D'} AP @ {t} | {allr['mean']:.3f} | "
                     + " | ".join(f"{by[b]['mean']:.3f}" for b in ("<20 m", "20-40 m", ">=40 m")) + f" | {per} |")
    lines += ["", "Joint 3D box coverage on the test split by range band and by returns on the object "
              "(coverage [95 % Clopper-Pearson], n matched detections):", "",
              "| group | coverage |", "|---|---|"]
    for k, v in {**bd["box_by_range"], **bd["box_by_points"]}.items():
        lines.append(f"| {k} | {_cov(v)} |")
    lines += ["", f"Generating the {n_cal + n_test} scans took {t_gen:.0f} s. The scenes are synthetic: these numbers "
              "describe the simulator and this small detector, not a real sensor or data set."]
    md = "\n".join(lines)
    print(md)
    if not args.no_write:
        write_section("lidar", md)


def evaluate_all(preds, gts, metric, threshold):
    from conformal.detection import average_precision

    return average_precision(preds, gts, metric=metric, threshold=threshold)


def _fmt(r):
    return f"{r['value']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] (n={r['n']})"


if __name__ == "__main__":
    main()
