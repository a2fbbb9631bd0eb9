"""docs/img/detection_intervals.png: inner/outer conformal boxes on an example image.

The image is a composite of real Fashion-MNIST items (Debian package dataset-fashion-mnist) pasted at several
sizes on a noisy canvas; the ground-truth boxes are the items' pixel extents. The DETECTIONS ARE SIMULATED
(the synthetic detector of adapters.datasets.make_scenes: boxes 3 px too small per side, size-dependent noise,
class confusion), and the conformal detector is calibrated on synthetic frames of that same detector.
Left: ours (signed per-side scores, max-rank). Right: the box-wise reference (same-signed residuals,
Bonferroni), whose outer box misses the truth when the detector is biased.

Run: python benchmarks/make_detection_figure.py
"""
from __future__ import annotations

import gzip
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.patches as patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_detection import PunccStyleBoxWise  # noqa: E402

from adapters.datasets import make_scenes  # noqa: E402
from conformal._validation import check_frame  # noqa: E402
from conformal.detection import ConformalDetector, matched_pairs  # noqa: E402

FMNIST = Path("/usr/share/datasets/fashion-mnist")
NAMES = ["T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot"]
BIAS = 3.0


def load_items(n, rng):
    with gzip.open(FMNIST / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FMNIST / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    idx = rng.choice(len(labels), n, replace=False)
    return images[idx], labels[idx]


def compose(rng, h=360, w=560):
    canvas = rng.normal(40, 12, (h, w)).clip(0, 255)
    items, labels = load_items(6, rng)
    sizes = [150, 120, 100, 80, 64, 48]
    slots = [(20, 20), (30, 200), (200, 40), (40, 380), (220, 250), (230, 440)]
    boxes = []
    for img, s, (y0, x0) in zip(items, sizes, slots):
        up = np.kron(img.astype(float), np.ones((s // 28 + 1, s // 28 + 1)))[:s, :s]
        region = canvas[y0:y0 + s, x0:x0 + s]
        canvas[y0:y0 + s, x0:x0 + s] = np.maximum(region, up)
        ys, xs = np.nonzero(up > 30)
        boxes.append([x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1])
    return canvas, np.array(boxes, float), labels


def simulate_detections(rng, gt, labels, n_classes=10):
    wh = np.stack([gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]], axis=1)
    sig = 2.0 + 0.03 * np.repeat(wh, 2, axis=1)[:, [0, 2, 1, 3]]
    pred = gt + np.array([BIAS, BIAS, -BIAS, -BIAS]) + sig * rng.normal(0, 1, gt.shape)
    logits = rng.normal(0, 1, (len(gt), n_classes))
    logits[np.arange(len(gt)), labels] += 5.0
    logits[1, (labels[1] + 2) % n_classes] += 5.0  # one confused detection: its class set holds two classes
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    scores = np.full(len(gt), 0.9)
    return {"boxes": pred, "scores": scores, "labels": probs.argmax(1), "class_probs": probs}


def rect(ax, b, **kw):
    ax.add_patch(patches.Rectangle((b[0], b[1]), b[2] - b[0], b[3] - b[1], fill=False, **kw))


def main():
    rng = np.random.default_rng(3)
    preds, gts = make_scenes(2000, rng=0, n_classes=10, bias=BIAS, quality_spread=0.0, translation=0.0,
                             class_signal=5.0)
    det = ConformalDetector(alpha=0.1, alpha_cls=0.1, class_score="lac").fit(preds, gts)
    p = [check_frame(f, 2) for f in preds]
    g = [check_frame(f, 2, kind="ground truth") for f in gts]
    pairs = matched_pairs(p, g, "iou", 0.5, "hungarian")
    peer = PunccStyleBoxWise().fit(pairs["pred_boxes"], pairs["true_boxes"])

    canvas, gt, labels = compose(rng)
    frame = simulate_detections(rng, gt, labels)
    out = det.predict(frame)
    _, _, peer_outer = peer.predict(frame["boxes"])

    fig, axes = plt.subplots(1, 2, figsize=(14, 5.2))
    for ax, title, outer, inner in [
            (axes[0], "ours: signed per-side scores, max-rank (alpha = 0.1)", out.outer, out.inner),
            (axes[1], "box-wise reference (same-signed residual, Bonferroni)", peer_outer, None)]:
        ax.imshow(canvas, cmap="gray", vmin=0, vmax=255)
        for i in range(len(gt)):
            rect(ax, gt[i], edgecolor="lime", lw=1.6, ls="--")
            rect(ax, frame["boxes"][i], edgecolor="yellow", lw=1.0)
            ok = (outer[i, :2] <= gt[i, :2]).all() and (outer[i, 2:] >= gt[i, 2:]).all()
            rect(ax, outer[i], edgecolor="red" if ok else "magenta", lw=1.6)
            if inner is not None and (inner[i, 2] > inner[i, 0]) and (inner[i, 3] > inner[i, 1]):
                rect(ax, inner[i], edgecolor="deepskyblue", lw=1.4)
            if inner is not None:
                cs = ", ".join(NAMES[k] for k in np.flatnonzero(out.class_sets[i]))
                ax.text(outer[i, 0], outer[i, 1] - 4, "{" + cs + "}", color="white", fontsize=8,
                        bbox=dict(facecolor="black", alpha=0.6, pad=1, lw=0))
            else:
                ax.text(outer[i, 0], outer[i, 1] - 4, "outer box covers truth" if ok else "outer box MISSES truth",
                        color="white", fontsize=8, bbox=dict(facecolor="black", alpha=0.6, pad=1, lw=0))
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    handles = [patches.Patch(edgecolor=c, fill=False, ls=ls, label=lab) for c, ls, lab in [
        ("lime", "--", "ground truth"), ("yellow", "-", "detection (3 px too small per side)"),
        ("red", "-", "outer box (covers truth)"), ("magenta", "-", "outer box missing the truth"),
        ("deepskyblue", "-", "inner box")]]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=9, frameon=False)
    fig.suptitle("Real Fashion-MNIST items on a synthetic canvas; detections simulated (biased detector); "
                 "LAC class sets (alpha = 0.1) in braces", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    path = ROOT / "docs" / "img" / "detection_intervals.png"
    fig.savefig(path, dpi=110)
    print(path)


if __name__ == "__main__":
    main()
