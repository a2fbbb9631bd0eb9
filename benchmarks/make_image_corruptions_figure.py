"""Draw docs/img/image_corruptions.png: every image corruption at severities 1..5 on a real photograph.

The photograph is scikit-learn's bundled china.jpg (no download), resized so its short side is 256 px and
centre-cropped to 224 x 224, the ImageNet-C input size. Run: python benchmarks/make_image_corruptions_figure.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.datasets import load_sample_image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from perturbations.image import corrupt, names  # noqa: E402

OUT = ROOT / "docs" / "img" / "image_corruptions.png"


def photo(size: int = 224):
    image = load_sample_image("china.jpg")
    h, w = image.shape[:2]
    s = 256 / min(h, w)
    image = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top:top + size, left:left + size]


def main(seed: int = 0) -> Path:
    image = photo()
    rows = names()
    fig, axes = plt.subplots(len(rows), 6, figsize=(6 * 1.8, len(rows) * 1.85))
    for r, name in enumerate(rows):
        axes[r, 0].imshow(image)
        for s in range(1, 6):
            axes[r, s].imshow(corrupt(image, name, s, rng=seed + 1000 * r + s))
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=10)
        for c in range(6):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title("clean" if c == 0 else f"severity {c}", fontsize=10)
    fig.suptitle("perturbations.image: 19 ImageNet-C corruptions + rain (scikit-learn china.jpg, 224 px)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.99), h_pad=0.2, w_pad=0.1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=80)
    plt.close(fig)
    return OUT


if __name__ == "__main__":
    print(main())
