"""Training of the reference detector `scenes_detector` (`SmallCenterNet`) on the composite scenes.

Called by ``python -m adapters.train scenes_detector``. CenterNet losses (Zhou et al. 2019): penalty-reduced
focal loss on a Gaussian centre heatmap, cross-entropy of the class logits and L1 of the log size at each
object's centre cell and its neighbours, L1 of the centre offset at the centre cell. Horizontal flips and colour
jitter as augmentation; seeded; the inputs go through the
reference adapter's own `ImagePreprocess`, so training and inference see identical tensors.
"""
from __future__ import annotations

import time

import numpy as np
import torch

__all__ = ["targets", "centernet_loss", "train_scenes_detector", "jitter_boxes", "train_crop_classifier",
           "choose_crop_mix"]


def targets(gts, num_classes, grid, stride):
    """Heatmap (n, gh, gw) and rows (image, cell y, cell x, label, off x, off y, log w, log h, is centre) for each
    object's centre cell and its 8 neighbours (class and size are trained on all nine, so a peak one cell off
    still reads the right class and size; the offset only at the centre)."""
    n = len(gts)
    gh, gw = grid
    heat = np.zeros((n, gh, gw), np.float32)
    rows = []
    ys, xs = np.mgrid[0:gh, 0:gw].astype(np.float32)
    for i, g in enumerate(gts):
        for b, lab in zip(g["boxes"], g["labels"]):
            cx, cy = (b[0] + b[2]) / 2 / stride, (b[1] + b[3]) / 2 / stride
            w, h = (b[2] - b[0]), (b[3] - b[1])
            jx, jy = min(int(cx), gw - 1), min(int(cy), gh - 1)
            sx, sy = max(w / stride / 6.0, 0.5), max(h / stride / 6.0, 0.5)
            gauss = np.exp(-((xs - jx) ** 2 / (2 * sx * sx) + (ys - jy) ** 2 / (2 * sy * sy)))
            np.maximum(heat[i], gauss, out=heat[i])
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    y, x = jy + dy, jx + dx
                    if 0 <= y < gh and 0 <= x < gw:
                        rows.append((i, y, x, int(lab), cx - jx, cy - jy, np.log(w / 16.0), np.log(h / 16.0),
                                     float(dy == 0 and dx == 0)))
    return heat, np.array(rows, np.float64).reshape(-1, 9)


def centernet_loss(maps, heat, rows, num_classes, class_weight=1.0):
    k = num_classes
    logit = maps[:, 0]
    p = torch.sigmoid(logit).clamp(1e-4, 1 - 1e-4)
    pos = heat == 1.0
    npos = max(int(pos.sum()), 1)
    pos_loss = -(torch.log(p) * (1 - p) ** 2)[pos].sum()
    neg_loss = -(torch.log(1 - p) * p ** 2 * (1 - heat) ** 4)[~pos].sum()
    loss = (pos_loss + neg_loss) / npos
    if rows.shape[0]:
        i, cy, cx = (torch.as_tensor(rows[:, j], dtype=torch.long) for j in range(3))
        cell = maps[i, :, cy, cx]  # (m, C)
        lab = torch.as_tensor(rows[:, 3], dtype=torch.long)
        tgt = torch.as_tensor(rows[:, 4:8], dtype=torch.float32)
        centre = torch.as_tensor(rows[:, 8] > 0)
        loss = loss + class_weight * torch.nn.functional.cross_entropy(cell[:, 1:1 + k], lab)
        loss = loss + torch.nn.functional.l1_loss(torch.sigmoid(cell[centre, 1 + k:3 + k]), tgt[centre, :2]) \
            + torch.nn.functional.l1_loss(cell[:, 3 + k:5 + k], tgt[:, 2:])
    return loss


def _flip(images, gts, size):
    out = []
    for g in gts:
        b = g["boxes"].copy()
        b[:, [0, 2]] = size - g["boxes"][:, [2, 0]]
        out.append({"boxes": b, "labels": g["labels"]})
    return images[:, :, ::-1], out


def _photometric(images, gen):
    """Colour augmentation so the detector does not learn the training photographs' colours: a random channel
    order, greyscale (p = 0.2), contrast x [0.6, 1.4] and brightness + [-40, 40] per image."""
    x = images.astype(np.float32)
    n = x.shape[0]
    for i in range(n):
        x[i] = x[i][:, :, gen.permutation(3)]
        if gen.random() < 0.2:
            x[i] = x[i].mean(axis=2, keepdims=True)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    x = (x - mean) * gen.uniform(0.6, 1.4, (n, 1, 1, 1)) + mean + gen.uniform(-40, 40, (n, 1, 1, 1))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def train_scenes_detector(net, preprocess, *, n_train=8000, epochs=12, lr=4e-3, batch_size=32, seed=0,
                          class_weight=1.0, pct_start=0.15, checkpoint=None, log=print):
    """Train `net` in place (from its current weights) and return it in eval mode. The learning rate follows a
    one-cycle schedule (linear warm-up over `pct_start` of the steps, cosine decay to ~0); `class_weight` scales
    the class cross-entropy; with `checkpoint` (a path) the state dict is saved after every epoch, so a partial
    run is usable."""
    from adapters.datasets import load_composite_scenes

    t0 = time.time()
    images, gts = load_composite_scenes("train", n_train)
    size = images.shape[1]
    log(f"scenes_detector: {len(images)} training scenes {images.shape[1:]} generated in {time.time() - t0:.0f} s")
    k, stride = net.num_classes, net.stride
    grid = (size // stride, size // stride)
    gen = np.random.default_rng(seed)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(images) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=pct_start)
    for ep in range(epochs):
        net.train()
        perm = gen.permutation(len(images))
        total, t1 = 0.0, time.time()
        for lo in range(0, len(images), batch_size):
            idx = perm[lo:lo + batch_size]
            ims, gb = images[idx], [gts[i] for i in idx]
            if gen.random() < 0.5:
                ims, gb = _flip(ims, gb, size)
            x = torch.from_numpy(preprocess(_photometric(ims, gen), "rgb"))
            heat, rows = targets(gb, k, grid, stride)
            loss = centernet_loss(net.heads(x), torch.from_numpy(heat), rows, k, class_weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        log(f"  epoch {ep + 1}/{epochs}: loss {total / len(images):.4f} ({time.time() - t1:.0f} s)")
        if checkpoint is not None:
            torch.save(net.state_dict(), checkpoint)
    return net.eval()


def jitter_boxes(boxes, gen, *, shift=0.15, scale=0.2, min_iou=0.5):
    """Each xyxy box moved by up to `shift` x its size and each side length scaled by exp(U(-scale, scale)),
    redrawn (up to 5 times, else the box itself) until its IoU with the original is >= `min_iou`: the boxes a
    detector's candidates put around an object."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    todo = np.arange(len(boxes))
    for _ in range(5):
        if todo.size == 0:
            break
        m = todo.size
        cx = (boxes[todo, 0] + boxes[todo, 2]) / 2 + gen.uniform(-shift, shift, m) * w[todo]
        cy = (boxes[todo, 1] + boxes[todo, 3]) / 2 + gen.uniform(-shift, shift, m) * h[todo]
        nw, nh = w[todo] * np.exp(gen.uniform(-scale, scale, m)), h[todo] * np.exp(gen.uniform(-scale, scale, m))
        cand = np.stack([cx - nw / 2, cy - nh / 2, cx + nw / 2, cy + nh / 2], axis=1)
        iw = np.clip(np.minimum(cand[:, 2], boxes[todo, 2]) - np.maximum(cand[:, 0], boxes[todo, 0]), 0, None)
        ih = np.clip(np.minimum(cand[:, 3], boxes[todo, 3]) - np.maximum(cand[:, 1], boxes[todo, 1]), 0, None)
        inter = iw * ih
        iou = inter / (nw * nh + w[todo] * h[todo] - inter)
        ok = iou >= min_iou
        out[todo[ok]] = cand[ok]
        todo = todo[~ok]
    return out


def train_crop_classifier(net, preprocess, *, n_train=16000, epochs=10, lr=3e-3, batch_size=48, seed=2,
                          label_smoothing=0.05, mix_grid=(1.0, 0.8, 0.6, 0.4), checkpoint=None, log=print):
    """Train `net.crop` (the second stage) in place, the rest of `net` frozen, and return `net` in eval mode: crops
    (`SmallCenterNet.crops`, the function used at inference) of jittered ground-truth boxes (`jitter_boxes`) of
    `n_train` training scenes, flips and colour jitter as for the detector, cross-entropy with label smoothing,
    AdamW with a one-cycle rate; `batch_size` is in scenes (about 3 objects each). Then ``net.crop_mix`` (the
    crop classifier's weight in the class probabilities) is set to the value of `mix_grid` with the best AP@0.5
    on the calibration split (never the test split)."""
    from adapters.datasets import load_composite_scenes

    if net.crop is None:
        raise ValueError("`net` has no crop classifier: build it with crop_width > 0")
    t0 = time.time()
    images, gts = load_composite_scenes("train", n_train)
    size = images.shape[1]
    log(f"crop classifier: {len(images)} training scenes generated in {time.time() - t0:.0f} s")
    gen = np.random.default_rng(seed)
    for p in net.parameters():
        p.requires_grad_(False)
    params = list(net.crop.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    steps = epochs * ((len(images) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    net.eval()
    for ep in range(epochs):
        net.crop.train()
        perm = gen.permutation(len(images))
        total, n_seen, correct, t1 = 0.0, 0, 0, time.time()
        for lo in range(0, len(images), batch_size):
            idx = perm[lo:lo + batch_size]
            ims, gb = images[idx], [gts[i] for i in idx]
            if gen.random() < 0.5:
                ims, gb = _flip(ims, gb, size)
            labels = np.concatenate([g["labels"] for g in gb])
            if labels.size == 0:
                continue
            x = torch.from_numpy(preprocess(_photometric(ims, gen), "rgb"))
            boxes = [torch.from_numpy(jitter_boxes(g["boxes"], gen)).float() for g in gb]
            with torch.no_grad():
                crops = net.crops(x, boxes)
            logits = net.crop(crops)
            y = torch.from_numpy(labels)
            loss = torch.nn.functional.cross_entropy(logits, y, label_smoothing=label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * labels.size
            n_seen += labels.size
            correct += int((logits.argmax(1) == y).sum())
        log(f"  epoch {ep + 1}/{epochs}: loss {total / n_seen:.4f}, train crop accuracy {correct / n_seen:.3f} "
            f"({time.time() - t1:.0f} s)")
        if checkpoint is not None:
            torch.save(net.state_dict(), checkpoint)
    for p in net.parameters():
        p.requires_grad_(True)
    net.eval()
    if len(mix_grid):
        choose_crop_mix(net, preprocess, mix_grid, log=log)
        if checkpoint is not None:
            torch.save(net.state_dict(), checkpoint)
    return net


def choose_crop_mix(net, preprocess, grid, *, log=print):
    """Set ``net.crop_mix`` to the value in `grid` with the best COCO AP@0.5 on the calibration scenes."""
    from adapters.coco_eval import coco_ap
    from adapters.datasets import load_composite_scenes

    images, gts = load_composite_scenes("calibration")
    x = [torch.from_numpy(preprocess(images[lo:lo + 100], "rgb")) for lo in range(0, len(images), 100)]
    best = None
    for mix in grid:
        net.crop_mix.fill_(float(mix))
        with torch.inference_mode():
            preds = [{k: v.numpy() for k, v in d.items()} for xb in x for d in net(xb)]
        ap = coco_ap(preds, gts, net.num_classes)
        log(f"  crop_mix {mix}: calibration AP@0.5 {ap['AP50']:.3f}, AP@[.5:.95] {ap['AP']:.3f}")
        if best is None or ap["AP50"] > best[0]:
            best = (ap["AP50"], float(mix))
    net.crop_mix.fill_(best[1])
    log(f"  crop_mix = {best[1]} (calibration split)")
    return best[1]
