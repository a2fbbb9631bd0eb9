"""A small BEV 3D object detector for LiDAR scans (CenterPoint-style, Yin et al. CVPR 2021, much reduced).

Points -> a bird's-eye-view pillar grid (0.5 m cells over +-64 m; per cell: log point count, max / min / mean
height above the road, mean and max intensity) -> a 2D CNN (stride-2 stem, one down- and up-sampling stage with a
skip) -> heads on a 1 m grid: a centre heatmap (objectness), class logits and box regression (sub-cell offset,
centre height, log size, sin / cos of twice the yaw, since a box turned by pi is the same box). Decoding keeps
the local maxima of the heatmap (3 x 3), up to `max_detections` per scan above `score_floor`.

`LidarDetector.predict(scans)` returns one ``conformal.detection`` frame per scan: ``boxes3d`` (M, 7) x, y, z,
l, w, h, yaw (yaw in [-pi/2, pi/2)), ``scores`` (M,), ``labels`` (M,), ``class_probs`` (M, K). The reference
weights (``adapters.reference.load("lidar_detector")``) were trained by ``python -m adapters.train
lidar_detector`` on the SYNTHETIC `load_lidar_scenes("train")` scans only.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BEVCenterNet", "LidarDetector", "bev_features", "centre_recall", "coverage_breakdown", "GRID",
           "RANGE_BANDS", "POINT_BANDS"]

RANGE_BANDS = (20.0, 40.0)   # m: <20, 20-40, >=40
POINT_BANDS = (20, 100)      # returns on the object: <20, 20-99, >=100

GRID = {"range": 64.0, "cell": 0.5, "stride": 2, "ground_z": -1.73, "z_max": 3.5}
N_FEATURES = 6
N_REG = 8  # dx, dy, z, log l, log w, log h, sin 2yaw, cos 2yaw


def _grid_size():
    return int(round(2 * GRID["range"] / GRID["cell"]))


def bev_features(scan) -> torch.Tensor:
    """(N_FEATURES, S, S) float32 pillar features of one (N, >=4) scan (x, y, z, intensity; sensor at origin)."""
    pts = torch.as_tensor(np.ascontiguousarray(scan[:, :4], dtype=np.float32))
    size, cell, rng = _grid_size(), GRID["cell"], GRID["range"]
    height = pts[:, 2] - GRID["ground_z"]
    ix = torch.floor((pts[:, 0] + rng) / cell).long()
    iy = torch.floor((pts[:, 1] + rng) / cell).long()
    ok = (ix >= 0) & (ix < size) & (iy >= 0) & (iy < size) & (height > -0.5) & (height < GRID["z_max"])
    idx = (iy * size + ix)[ok]
    h, inten = height[ok], pts[ok, 3]
    n = size * size
    count = torch.zeros(n).index_add_(0, idx, torch.ones_like(h))
    denom = count.clamp(min=1.0)
    hmax = torch.zeros(n).scatter_reduce_(0, idx, h, "amax", include_self=False)
    hmin = torch.zeros(n).scatter_reduce_(0, idx, h, "amin", include_self=False)
    hmean = torch.zeros(n).index_add_(0, idx, h) / denom
    imean = torch.zeros(n).index_add_(0, idx, inten) / denom
    imax = torch.zeros(n).scatter_reduce_(0, idx, inten, "amax", include_self=False)
    feats = torch.stack([torch.log1p(count), hmax / 2, hmin / 2, hmean / 2, imean, imax])
    return feats.view(N_FEATURES, size, size)


def _block(cin, cout, stride=1):
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class BEVCenterNet(nn.Module):
    """BEV feature map (n, 6, S, S) -> heatmap logits (n, 1, S/2, S/2), class logits (n, K, ., .), box
    regression (n, 8, ., .). About 0.1 M parameters for width 32."""

    def __init__(self, num_classes: int = 4, width: int = 32):
        super().__init__()
        w = width
        self.stem = nn.Sequential(*_block(N_FEATURES, w, 2), *_block(w, w))
        self.down = nn.Sequential(*_block(w, 2 * w, 2), *_block(2 * w, 2 * w), *_block(2 * w, 2 * w))
        self.up = nn.Sequential(nn.ConvTranspose2d(2 * w, w, 2, stride=2, bias=False), nn.BatchNorm2d(w),
                                nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(*_block(2 * w, w))
        self.heat = nn.Conv2d(w, 1, 1)
        self.cls = nn.Conv2d(w, num_classes, 1)
        self.reg = nn.Conv2d(w, N_REG, 1)
        nn.init.constant_(self.heat.bias, -2.19)  # prior 0.1 (CenterNet)

    def forward(self, x):
        s = self.stem(x)
        f = self.fuse(torch.cat([s, self.up(self.down(s))], dim=1))
        return self.heat(f), self.cls(f), self.reg(f)


def decode(heat, cls, reg, *, score_floor: float, max_detections: int) -> list[dict]:
    """Frames from the network's outputs (one batch)."""
    n, _, hs, ws = heat.shape
    out_cell = GRID["cell"] * GRID["stride"]
    prob = torch.sigmoid(heat)
    peaks = prob * (F.max_pool2d(prob, 3, stride=1, padding=1) == prob)
    frames = []
    for b in range(n):
        flat = peaks[b, 0].flatten()
        k = min(max_detections, flat.numel())
        scores, idx = torch.topk(flat, k)
        keep = scores >= score_floor
        scores, idx = scores[keep], idx[keep]
        iy, ix = idx // ws, idx % ws
        r = reg[b][:, iy, ix]
        x = (ix.float() + 0.5 + r[0]) * out_cell - GRID["range"]
        y = (iy.float() + 0.5 + r[1]) * out_cell - GRID["range"]
        dims = torch.exp(r[3:6].clamp(-3.0, 3.0))
        yaw = 0.5 * torch.atan2(r[6], r[7])
        yaw = torch.where(yaw >= math.pi / 2, yaw - math.pi, yaw)
        boxes = torch.stack([x, y, r[2], dims[0], dims[1], dims[2], yaw], dim=1)
        probs = torch.softmax(cls[b][:, iy, ix].T, dim=1)
        frames.append({"boxes3d": boxes.double().numpy(), "scores": scores.double().numpy(),
                       "labels": probs.argmax(1).numpy().astype(np.int64), "class_probs": probs.double().numpy()})
    return frames


class LidarDetector:
    """Per-scan 3D detection with a `BEVCenterNet`: ``predict(scans) -> list of frames``.

    Parameters
    ----------
    model : BEVCenterNet
        Put in eval mode and in the channels-last memory layout here (same weights; oneDNN's convolutions run
        ~1.5x faster on it on CPU).
    num_classes : int
    score_floor : float in [0, 1)
        Detections below this heatmap score are not reported (keep it low: `ConformalDetector` calibrates the
        confidence threshold that is actually used).
    max_detections : int
        At most this many detections per scan (the highest heatmap peaks).
    batch_size : int
    """

    def __init__(self, model, *, num_classes: int = 4, score_floor: float = 0.05, max_detections: int = 100,
                 batch_size: int = 8):
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module (a BEVCenterNet); got {type(model).__name__}")
        for name, v in (("num_classes", num_classes), ("max_detections", max_detections), ("batch_size", batch_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"`{name}` must be a positive int; got {v!r}")
        if isinstance(score_floor, bool) or not isinstance(score_floor, (int, float)) or not 0 <= score_floor < 1:
            raise ValueError(f"`score_floor` must be a number in [0, 1); got {score_floor!r}")
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.num_classes = num_classes
        self.score_floor = float(score_floor)
        self.max_detections = max_detections
        self.batch_size = batch_size

    @staticmethod
    def _check_scans(scans):
        if isinstance(scans, np.ndarray):
            scans = [scans]
        if not isinstance(scans, (list, tuple)):
            raise TypeError("`scans` must be a list of (N, >=4) arrays (x, y, z, intensity); got "
                            f"{type(scans).__name__}")
        for i, s in enumerate(scans):
            if not isinstance(s, np.ndarray) or s.ndim != 2 or s.shape[1] < 4 or s.dtype.kind != "f":
                raise ValueError(f"`scans[{i}]` must be a float (N, >=4) array (x, y, z, intensity); got "
                                 f"{getattr(s, 'dtype', type(s).__name__)} {getattr(s, 'shape', '')}")
            if not np.isfinite(s[:, :4]).all():
                raise ValueError(f"`scans[{i}]` has NaN or inf values")
        return list(scans)

    def predict(self, scans) -> list[dict]:
        """One frame per scan (a single (N, 4) array is a list of one)."""
        scans = self._check_scans(scans)
        frames = []
        with torch.inference_mode():
            for lo in range(0, len(scans), self.batch_size):
                x = torch.stack([bev_features(s) for s in scans[lo:lo + self.batch_size]])
                x = x.contiguous(memory_format=torch.channels_last)
                frames += decode(*self.model(x), score_floor=self.score_floor, max_detections=self.max_detections)
        return frames

    def __repr__(self) -> str:
        return (f"LidarDetector(num_classes={self.num_classes}, score_floor={self.score_floor}, "
                f"max_detections={self.max_detections})")


# ---------------------------------------------------------------- evaluation
def centre_recall(frames, truth, *, radius: float = 2.0, min_points: int = 20, score: float = 0.3) -> float:
    """BEV-centre recall: the share of objects with >= `min_points` returns that have a detection of score >=
    `score` within `radius` metres of their centre (each detection used once, nearest objects first)."""
    hit = total = 0
    for f, g in zip(frames, truth):
        gt = g["boxes3d"][g["n_points"] >= min_points, :2]
        det = f["boxes3d"][f["scores"] >= score, :2]
        total += len(gt)
        if not len(gt) or not len(det):
            continue
        d = np.linalg.norm(gt[:, None] - det[None], axis=2)
        used = np.zeros(len(det), bool)
        for j in np.argsort(d.min(1), kind="stable"):
            cand = np.flatnonzero(~used & (d[j] <= radius))
            if cand.size:
                used[cand[np.argmin(d[j, cand])]] = True
                hit += 1
    return hit / max(total, 1)


def coverage_breakdown(conformal_detector, predictions, ground_truth) -> dict:
    """Joint box coverage and class-set coverage of a fitted 3D `ConformalDetector` on labelled frames (ground truth
    with ``n_points``), by range band (RANGE_BANDS) and by points per object (POINT_BANDS), each
    {band: (coverage, ci_low, ci_high, n)} (Clopper-Pearson 95 %)."""
    from conformal._validation import check_frame
    from conformal.detection.matching import match_arrays
    from conformal.detection.metrics import side_coverage, stratified_coverage

    cd = conformal_detector
    metric = cd.match_metric or "bev_iou"
    cols = {k: [] for k in ("pred", "lower", "upper", "true", "pts", "in_set")}
    for raw, g in zip(predictions, ground_truth):
        res = cd.predict(raw)
        p = check_frame(raw, 3)
        keep = np.flatnonzero(res.keep)
        m = match_arrays(p["boxes"][keep], np.asarray(g["boxes3d"], np.float64), p["scores"][keep], metric,
                         cd.match_threshold, cd.match_method)
        idx = keep[m.pred_index]
        cols["pred"].append(res.boxes[idx])
        cols["lower"].append(res.lower[idx])
        cols["upper"].append(res.upper[idx])
        cols["true"].append(np.asarray(g["boxes3d"], np.float64)[m.gt_index])
        cols["pts"].append(np.asarray(g["n_points"])[m.gt_index])
        if res.class_sets is not None:
            cols["in_set"].append(res.class_sets[idx, np.asarray(g["labels"])[m.gt_index]])
    cat = {k: np.concatenate(v) for k, v in cols.items() if v}
    lo_ok, hi_ok = side_coverage(cat["pred"], cat["lower"], cat["upper"], cat["true"], dim=3,
                                 yaw_period=cd.yaw_period)
    joint = (lo_ok & hi_ok).all(axis=1)
    rng_band = np.searchsorted(np.asarray(RANGE_BANDS), np.hypot(cat["true"][:, 0], cat["true"][:, 1]), side="right")
    pts_band = np.searchsorted(np.asarray(POINT_BANDS), cat["pts"], side="right")
    rn = (f"<{RANGE_BANDS[0]:g} m", f"{RANGE_BANDS[0]:g}-{RANGE_BANDS[1]:g} m", f">={RANGE_BANDS[1]:g} m")
    pn = (f"<{POINT_BANDS[0]} pts", f"{POINT_BANDS[0]}-{POINT_BANDS[1] - 1} pts", f">={POINT_BANDS[1]} pts")
    out = {"n_matched": int(joint.size), "box_joint": float(joint.mean()) if joint.size else float("nan"),
           "box_by_range": {rn[k]: v for k, v in stratified_coverage(joint, rng_band).items()},
           "box_by_points": {pn[k]: v for k, v in stratified_coverage(joint, pts_band).items()}}
    if "in_set" in cat:
        out["class_set"] = float(cat["in_set"].mean())
        out["class_by_range"] = {rn[k]: v for k, v in stratified_coverage(cat["in_set"], rng_band).items()}
    return out


# ---------------------------------------------------------------- training
def _dihedral(scan, boxes, k):
    """Apply one of the 8 symmetries of the square grid to a scan and its boxes (bit 0: flip x, 1: flip y,
    2: swap x and y); yaw follows (boxes are symmetric under a turn by pi)."""
    s, b = scan.copy(), boxes.copy()
    if k & 1:
        s[:, 0], b[:, 0], b[:, 6] = -s[:, 0], -b[:, 0], math.pi - b[:, 6]
    if k & 2:
        s[:, 1], b[:, 1], b[:, 6] = -s[:, 1], -b[:, 1], -b[:, 6]
    if k & 4:
        s[:, [0, 1]], b[:, [0, 1]], b[:, 6] = s[:, [1, 0]], b[:, [1, 0]], math.pi / 2 - b[:, 6]
    b[:, 6] = (b[:, 6] + math.pi / 2) % math.pi - math.pi / 2
    return s, b


def targets(boxes, labels, num_classes: int):
    """Heatmap (1, H, W), centre cells (iy, ix), regression targets (M, 8) and labels of the in-grid boxes."""
    out_cell = GRID["cell"] * GRID["stride"]
    size = _grid_size() // GRID["stride"]
    heat = torch.zeros(1, size, size)
    fx = (boxes[:, 0] + GRID["range"]) / out_cell
    fy = (boxes[:, 1] + GRID["range"]) / out_cell
    ix, iy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    ok = (ix >= 0) & (ix < size) & (iy >= 0) & (iy < size)
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    for j in np.flatnonzero(ok):
        sigma = max(0.6, 0.25 * min(boxes[j, 3], boxes[j, 4]) / out_cell)
        lo_y, hi_y, lo_x, hi_x = max(iy[j] - 4, 0), min(iy[j] + 5, size), max(ix[j] - 4, 0), min(ix[j] + 5, size)
        g = torch.exp(-((xs[lo_y:hi_y, lo_x:hi_x] - ix[j]) ** 2 + (ys[lo_y:hi_y, lo_x:hi_x] - iy[j]) ** 2)
                      / (2 * sigma ** 2))
        heat[0, lo_y:hi_y, lo_x:hi_x] = torch.maximum(heat[0, lo_y:hi_y, lo_x:hi_x], g)
    b = boxes[ok]
    reg = np.stack([fx[ok] - ix[ok] - 0.5, fy[ok] - iy[ok] - 0.5, b[:, 2], np.log(b[:, 3]), np.log(b[:, 4]),
                    np.log(b[:, 5]), np.sin(2 * b[:, 6]), np.cos(2 * b[:, 6])], axis=1)
    return heat, torch.from_numpy(iy[ok]), torch.from_numpy(ix[ok]), torch.from_numpy(reg).float(), \
        torch.from_numpy(labels[ok])


def focal_loss(logits, target):
    """CornerNet's penalty-reduced focal loss on a Gaussian heatmap (alpha 2, beta 4), per positive."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_loss = -torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = -torch.log(1 - p) * p ** 2 * (1 - target) ** 4 * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


def train_detector(scans, frames, *, epochs: int = 12, batch_size: int = 8, lr: float = 3e-3, min_points: int = 5,
                   width: int = 32, num_classes: int = 4, seed: int = 0, log=print, time_budget_s: float | None = None):
    """Train a `BEVCenterNet` on scans with ground-truth frames (objects with >= `min_points` returns are
    targets); random symmetries of the grid as augmentation. Returns the net in eval mode."""
    torch.manual_seed(seed)
    gen = np.random.default_rng(seed)
    net = BEVCenterNet(num_classes=num_classes, width=width)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(scans) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    t_start = time.time()
    for ep in range(epochs):
        net.train()
        perm = gen.permutation(len(scans))
        total, t0 = 0.0, time.time()
        for lo in range(0, len(scans), batch_size):
            xs, heats, pos = [], [], []
            for bi, i in enumerate(perm[lo:lo + batch_size]):
                vis = frames[i]["n_points"] >= min_points
                s, b = _dihedral(scans[i], frames[i]["boxes3d"][vis], int(gen.integers(8)))
                xs.append(bev_features(s))
                heat, iy, ix, reg, lab = targets(b, frames[i]["labels"][vis], num_classes)
                heats.append(heat)
                pos.append((torch.full_like(iy, bi), iy, ix, reg, lab))
            hl, cl, rl = net(torch.stack(xs))
            bi, iy, ix, reg, lab = (torch.cat(p) for p in zip(*pos))
            loss = focal_loss(hl, torch.stack(heats))
            if len(bi):
                loss = loss + F.cross_entropy(cl[bi, :, iy, ix], lab) + F.l1_loss(rl[bi, :, iy, ix], reg) * 2.0
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(xs)
        log(f"  epoch {ep + 1}/{epochs}: loss {total / len(scans):.4f} ({time.time() - t0:.0f} s)")
        if time_budget_s is not None and time.time() - t_start > time_budget_s:
            log(f"  time budget of {time_budget_s:.0f} s reached after epoch {ep + 1}")
            break
    return net.eval()
