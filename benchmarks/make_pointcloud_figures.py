"""Render docs/img/pointcloud_corruptions.png (the 15 object-level corruptions at severities 1, 3, 5 on the
Stanford bunny from the pymeshlab wheel) and docs/img/lidar_corruptions.png (the 9 scene-level ones on
the synthetic street scan). Needs open3d and, for the bunny, `pip install pymeshlab` (figure-only).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.datasets import street_scan  # noqa: E402
from perturbations import pointcloud as pc  # noqa: E402

SEVERITIES = (1, 3, 5)


def bunny_mesh():
    """The Stanford bunny (pymeshlab/tests/sample_meshes/bunny.obj), z up, normalised to [-1, 1]^3."""
    import open3d as o3d

    spec = importlib.util.find_spec("pymeshlab")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the bunny figure needs the pymeshlab wheel's sample data: pip install pymeshlab")
    path = Path(list(spec.submodule_search_locations)[0]) / "tests" / "sample_meshes" / "bunny.obj"
    mesh = o3d.io.read_triangle_mesh(str(path))
    v = np.asarray(mesh.vertices, dtype=np.float64)
    v = v[:, [0, 2, 1]] * np.array([1.0, -1.0, 1.0])  # y-up scan -> z up
    v = pc.normalize(v)
    return v, np.asarray(mesh.triangles)


def object_figure(out: Path) -> None:
    verts, tris = bunny_mesh()
    idx = pc.farthest_point_sampling(verts, 1024)
    cloud = verts[idx]
    rows, cols = 8, 6
    fig = plt.figure(figsize=(cols * 2.2, rows * 2.2))
    names = pc.names("object")
    panel = 1

    def draw(ax, pts, src, title):
        keep = src >= 0
        ax.scatter(pts[keep, 0], pts[keep, 1], pts[keep, 2], c=pts[keep, 2], cmap="viridis", s=2.0,
                   vmin=-1, vmax=1, depthshade=False, linewidths=0)
        if (~keep).any():
            ax.scatter(pts[~keep, 0], pts[~keep, 1], pts[~keep, 2], c="red", s=2.2, depthshade=False, linewidths=0)
        ax.set_xlim(-1, 1), ax.set_ylim(-1, 1), ax.set_zlim(-1, 1)
        ax.view_init(elev=15, azim=-70)
        ax.set_axis_off()
        ax.set_title(title, fontsize=8)

    for name in tqdm(names, desc="object figure"):
        for s in SEVERITIES:
            opts = {"mesh": (verts, tris)} if name in ("occlusion", "lidar") else {}
            pts, src = pc.corrupt_with_index(cloud, name, s, rng=s, **opts)
            ax = fig.add_subplot(rows, cols, panel, projection="3d")
            draw(ax, pts, src, f"{name} s{s} (n={len(pts)})")
            panel += 1
    ax = fig.add_subplot(rows, cols, panel, projection="3d")
    draw(ax, cloud, np.arange(len(cloud)), "clean (FPS 1,024)")
    fig.suptitle("ModelNet40-C corruptions on the Stanford bunny (pymeshlab sample), severities 1, 3, 5; "
                 "red = added points", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(out, dpi=110)
    plt.close(fig)


def scene_figure(out: Path) -> None:
    scan, ring, label = street_scan(64, 1890, rng=0, return_labels=True)
    names = pc.names("scene")
    fig, axes = plt.subplots(len(names) + 1, 3, figsize=(13, 2.4 * (len(names) + 1)))
    box = (-35.0, 35.0, -12.0, 12.0)

    def draw(ax, pts, src, title):
        inside = (pts[:, 0] > box[0]) & (pts[:, 0] < box[1]) & (pts[:, 1] > box[2]) & (pts[:, 1] < box[3])
        keep = inside & (src >= 0)
        ax.scatter(pts[keep, 0], pts[keep, 1], c=pts[keep, 3], cmap="plasma", vmin=0, vmax=0.35, s=0.35,
                   linewidths=0, rasterized=True)
        new = inside & (src < 0)
        ax.scatter(pts[new, 0], pts[new, 1], c="cyan", s=0.8, linewidths=0, rasterized=True)
        ax.set_xlim(box[0], box[1]), ax.set_ylim(box[2], box[3])
        ax.set_aspect("equal")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_facecolor("black")
        ax.set_title(title, fontsize=8)

    draw(axes[0, 1], scan, np.arange(len(scan)), f"clean synthetic scan ({len(scan):,} points), colour = intensity")
    axes[0, 0].set_axis_off(), axes[0, 2].set_axis_off()
    for i, name in enumerate(tqdm(names, desc="scene figure"), start=1):
        for j, s in enumerate(SEVERITIES):
            opts = {"ring": ring} if name in ("beam_missing", "beam_reduction") else {}
            if name == "incomplete_echo":
                opts = {"object_mask": label == 2}
            pts, src = pc.corrupt_with_index(scan, name, s, rng=s, **opts)
            draw(axes[i, j], pts, src, f"{name} s{s}: {len(pts):,} pts, mean int {pts[:, 3].mean():.3f}")
    fig.suptitle("LiDAR corruptions, bird's-eye view of the synthetic street (x in [-35, 35] m, y in [-12, 12] m); "
                 "cyan = returns not from their source surface", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    img = ROOT / "docs" / "img"
    img.mkdir(parents=True, exist_ok=True)
    object_figure(img / "pointcloud_corruptions.png")
    scene_figure(img / "lidar_corruptions.png")
    print("wrote", img / "pointcloud_corruptions.png", img / "lidar_corruptions.png")
