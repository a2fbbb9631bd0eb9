"""`conformal.detection.io.load_coco` on a COCO-sized file: 5,000 images, 100,000 detections with class_probs
(K = 10), parsed from disk into frames. Target: <= 2 s. Writes the `coco_io` section of docs/benchmarks.md."""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from _report import machine_line, versions, write_section  # noqa: E402

from conformal.detection import io as cio  # noqa: E402


def make_files(folder, n_images, n_dets, k=10, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, n_images, n_dets)
    xy = rng.uniform(0, 600, (n_dets, 2))
    wh = rng.uniform(4, 200, (n_dets, 2))
    p = rng.dirichlet(np.ones(k), n_dets)
    gts = [{"boxes": np.c_[xy[i::50][:5], xy[i::50][:5] + wh[i::50][:5]], "labels": rng.integers(0, k, 5)}
           for i in range(n_images)]
    ann = cio.coco_annotations(gts, category_ids=list(range(1, 2 * k, 2)))
    res = [{"image_id": int(i) + 1, "category_id": int(2 * c + 1), "bbox": [*a, *b], "score": float(s),
            "class_probs": q} for i, c, a, b, s, q in zip(img, p.argmax(1), xy.tolist(), wh.tolist(), p.max(1),
                                                          p.tolist())]
    cio.write_coco(Path(folder) / "ann.json", ann)
    cio.write_coco(Path(folder) / "res.json", res)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a tenth of the size; writes nothing")
    args = ap.parse_args()
    n_images, n_dets = (500, 10000) if args.quick else (5000, 100000)
    with tempfile.TemporaryDirectory() as d:
        make_files(d, n_images, n_dets)
        size = (Path(d) / "res.json").stat().st_size / 2 ** 20
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            out = cio.load_coco(Path(d) / "ann.json", Path(d) / "res.json")
            times.append(time.perf_counter() - t0)
    assert sum(p["scores"].size for p in out.preds) == n_dets
    t = float(np.median(times))
    line = (f"| {n_images:,} images, {n_dets:,} detections (K = 10, with class_probs; results file {size:.0f} MiB) "
            f"| {t:.2f} s | <= 2 s |")
    print(line)
    if not args.quick:
        write_section("coco_io", "\n".join([
            "## COCO I/O (`conformal.detection.io.load_coco`)", "",
            f"Machine: {machine_line()}; {versions('numpy')}. Median of 3 runs; JSON parsing (stdlib `json`) "
            "included, as is validation of every id, box and score.", "",
            "| file | load_coco | target |", "|---|---|---|", line]))


if __name__ == "__main__":
    main()
