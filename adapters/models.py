"""Reference models, small enough to train on a laptop CPU in minutes and to keep in the repository.

* `SmallCNN` -- three conv blocks and a linear head for 28 x 28 / 32 x 32 images (any size >= 8 works: global
  average pooling). About 25 k parameters.
* `SmallPointNet` -- PointNet (Qi et al., CVPR 2017) without the input/feature transform nets: a shared per-point
  MLP, a symmetric max pool and an MLP head. About 30 k parameters.

Weights trained by ``python -m adapters.train`` live in ``adapters/weights``; load them with `adapters.reference`.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

__all__ = ["SmallCNN", "SmallPointNet", "SmallCenterNet"]


class SmallCNN(nn.Module):
    """Conv(3x3)-BN-ReLU blocks of `width`, 2`width`, 4`width` channels (2x2 max pool after the first two), global
    average pool, linear head. Input (n, in_channels, H, W) float; output logits (n, num_classes)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16):
        super().__init__()
        w = width

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(*block(in_channels, w), nn.MaxPool2d(2), *block(w, 2 * w), nn.MaxPool2d(2),
                                      *block(2 * w, 4 * w), *block(4 * w, 4 * w), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


class SmallPointNet(nn.Module):
    """Shared MLP in_dim -> 32 -> 64 -> 128 (1x1 convolutions, BN, ReLU), max pool over points, MLP 128 -> 64 ->
    num_classes. Input (n, num_points, in_dim) float; output logits (n, num_classes). Invariant to point order."""

    def __init__(self, in_dim: int = 3, num_classes: int = 8, dropout: float = 0.3):
        super().__init__()
        layers, cin = [], in_dim
        for cout in (32, 64, 128):
            layers += [nn.Conv1d(cin, cout, 1, bias=False), nn.BatchNorm1d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.point_mlp = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(128, 64, bias=False), nn.BatchNorm1d(64), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.point_mlp(x.transpose(1, 2))  # (n, 128, num_points)
        return self.head(feats.max(dim=2).values)


class SmallCenterNet(nn.Module):
    """A single-stage CenterNet-style detector (Zhou, Wang & Krähenbühl, "Objects as Points", 2019) on a tiny CNN.

    Backbone: strided 3x3 conv-BN-ReLU blocks to strides 4, 8 and 16, a two-level top-down path (nearest
    upsampling + lateral 1x1 convs) back to stride 4. Heads at stride 4, per cell: one centre-heatmap logit, K
    class logits, two centre offsets (sigmoid, in cells) and two log sizes (box width / height = 16 px x exp).

    ``heads(x)`` gives the raw maps (n, 1 + K + 4, H / 4, W / 4) for training. ``forward(x)`` decodes them the
    torchvision way into ``list[dict(boxes (m, 4) xyxy px, scores (m,), labels (m,), class_probs (m, K))]``:
    peaks of the sigmoid heatmap (3 x 3 max-pool suppression, no box NMS), the top `max_detections` with
    heatmap >= `score_threshold`; score = heatmap x the top class probability, class_probs = softmax of the class
    logits at the peak (taken before any suppression by class). Input (n, 3, H, W) float, H and W multiples of 16.

    Second stage (``crop_width > 0``): `crop` (a `SmallCNN` of that width) classifies a crop of every candidate box
    (`crops`: the box widened by `crop_context`, resampled to `crop_size` squared from the input); class_probs are
    then softmax(crop)^crop_mix x softmax(head)^(1 - crop_mix), renormalised, for every candidate before any
    suppression, and score = heatmap x the top class probability. `crop_mix` is a buffer (saved with the weights).
    """

    stride = 4

    def __init__(self, num_classes: int = 10, width: int = 32, score_threshold: float = 0.05,
                 max_detections: int = 50, crop_width: int = 0, crop_size: int = 28, crop_context: float = 1.2,
                 crop_mix: float = 1.0):
        super().__init__()
        if crop_width < 0 or crop_size < 8 or crop_context <= 0 or not 0.0 <= crop_mix <= 1.0:
            raise ValueError(f"need crop_width >= 0, crop_size >= 8, crop_context > 0 and 0 <= crop_mix <= 1; got "
                             f"{crop_width}, {crop_size}, {crop_context}, {crop_mix}")
        w = width

        def block(cin, cout, stride=1):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True))

        self.stride = type(self).stride  # an instance attribute too, so torch.jit.script sees it
        self.num_classes = num_classes
        self.score_threshold = score_threshold
        self.max_detections = max_detections
        self.c2 = nn.Sequential(block(3, w // 2, 2), block(w // 2, w, 2), block(w, w))          # stride 4
        self.c3 = nn.Sequential(block(w, 2 * w, 2), block(2 * w, 2 * w))                      # stride 8
        self.c4 = nn.Sequential(block(2 * w, 3 * w, 2), block(3 * w, 3 * w))                  # stride 16
        self.lat4, self.lat3, self.lat2 = nn.Conv2d(3 * w, w, 1), nn.Conv2d(2 * w, w, 1), nn.Conv2d(w, w, 1)
        self.smooth3, self.smooth2 = block(w, w), block(w, w)
        self.head = nn.Sequential(block(w, w), nn.Conv2d(w, 1 + num_classes + 4, 1))
        with torch.no_grad():  # start the heatmap at a low prior (CenterNet / focal-loss initialisation)
            self.head[-1].bias[0] = -2.19
        # second stage: a crop classifier on each candidate box (None = class probabilities from the head alone)
        self.crop_size, self.crop_context = crop_size, float(crop_context)
        self.crop = SmallCNN(3, num_classes, crop_width) if crop_width > 0 else None
        # weight of the crop classifier in the geometric mixture of class probabilities (1 = crop only); a buffer,
        # so the value chosen on the calibration split after training travels with the weights
        self.register_buffer("crop_mix", torch.tensor(float(crop_mix)))

    def crops(self, x: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """Bilinear crops (sum m_i, C, crop_size, crop_size) of `x` (n, C, H, W): for image i, one per row of
        boxes[i] (m_i, 4) xyxy px, the box widened by `crop_context` about its centre, resized to a square (outside
        the image the crop reads zeros), each channel of each crop then standardised (mean 0, std / (std + 0.1))."""
        h, w = float(x.shape[-2]), float(x.shape[-1])
        s = self.crop_size
        lin = (torch.arange(s, dtype=x.dtype, device=x.device) + 0.5) / s * 2.0 - 1.0  # cell centres in [-1, 1]
        out: list[torch.Tensor] = []
        for i, b in enumerate(boxes):
            m = b.shape[0]
            if m == 0:
                continue
            b = b.to(x.dtype)
            cx, cy = (b[:, 0] + b[:, 2]) / w - 1.0, (b[:, 1] + b[:, 3]) / h - 1.0  # normalised centres
            hw = (b[:, 2] - b[:, 0]).clamp(min=1.0) * self.crop_context / w  # normalised half sizes
            hh = (b[:, 3] - b[:, 1]).clamp(min=1.0) * self.crop_context / h
            gx = cx[:, None, None] + hw[:, None, None] * lin[None, None, :]  # (m, 1, s)
            gy = cy[:, None, None] + hh[:, None, None] * lin[None, :, None]  # (m, s, 1)
            grid = torch.stack([gx.expand(m, s, s), gy.expand(m, s, s)], dim=3).reshape(1, m * s, s, 2)
            c = nn.functional.grid_sample(x[i:i + 1], grid, mode="bilinear", padding_mode="zeros",
                                          align_corners=False)  # (1, C, m * s, s)
            out.append(c.reshape(x.shape[1], m, s, s).transpose(0, 1))
        if len(out) == 0:
            return x.new_zeros((0, x.shape[1], s, s))
        c = torch.cat(out, dim=0)
        # each crop's channels standardised (objects come in any colour on any background)
        return (c - c.mean(dim=(2, 3), keepdim=True)) / (c.std(dim=(2, 3), keepdim=True) + 0.1)

    def crop_logits(self, x: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """The second stage's class logits (sum m_i, K) of the boxes' crops (needs ``crop_width > 0``)."""
        crop = self.crop
        if crop is None:
            raise RuntimeError("this SmallCenterNet has no crop classifier (crop_width=0)")
        # channels-last: the CPU convolutions of many small crops run ~1.6x faster (same values to ~1e-6)
        return crop(self.crops(x, boxes).contiguous(memory_format=torch.channels_last))

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        f2 = self.c2(x)
        f3 = self.c3(f2)
        f4 = self.c4(f3)
        up = nn.functional.interpolate
        p3 = self.smooth3(self.lat3(f3) + up(self.lat4(f4), size=f3.shape[-2:], mode="nearest"))
        p2 = self.smooth2(self.lat2(f2) + up(p3, size=f2.shape[-2:], mode="nearest"))
        return self.head(p2)

    def decode(self, maps: torch.Tensor, image_size: list[int],
               x: Optional[torch.Tensor] = None) -> list[dict[str, torch.Tensor]]:
        k = self.num_classes
        heat = torch.sigmoid(maps[:, 0])
        peaks = heat * (nn.functional.max_pool2d(heat[:, None], 3, stride=1, padding=1)[:, 0] == heat)
        n, gh, gw = heat.shape
        probs = torch.softmax(maps[:, 1:1 + k], dim=1)
        off = torch.sigmoid(maps[:, 1 + k:3 + k])
        size = 16.0 * torch.exp(maps[:, 3 + k:5 + k].clamp(-4.0, 4.0))
        top = min(self.max_detections, gh * gw)
        vals, idx = peaks.reshape(n, -1).topk(top, dim=1)
        h_img, w_img = float(image_size[0]), float(image_size[1])
        out: list[dict[str, torch.Tensor]] = []
        for i in range(n):
            keep = vals[i] >= self.score_threshold
            cell = idx[i][keep]
            gy, gx = cell // gw, cell % gw
            cx = (gx + off[i, 0].reshape(-1)[cell]) * self.stride
            cy = (gy + off[i, 1].reshape(-1)[cell]) * self.stride
            bw, bh = size[i, 0].reshape(-1)[cell], size[i, 1].reshape(-1)[cell]
            boxes = torch.stack([(cx - bw / 2).clamp(0, w_img), (cy - bh / 2).clamp(0, h_img),
                                 (cx + bw / 2).clamp(0, w_img), (cy + bh / 2).clamp(0, h_img)], dim=1)
            cp = probs[i].reshape(k, -1)[:, cell].T
            out.append({"boxes": boxes, "scores": vals[i][keep], "class_probs": cp})
        crop = self.crop
        if crop is not None and x is not None:  # second stage on every candidate, before any suppression
            cprobs = torch.softmax(self.crop_logits(x, [o["boxes"] for o in out]), dim=1)
            mix = float(self.crop_mix)
            lo = 0
            for o in out:
                m = o["boxes"].shape[0]
                c = cprobs[lo:lo + m]
                lo += m
                if mix < 1.0:  # geometric mixture with the head's probabilities, renormalised
                    c = torch.exp(mix * torch.log(c.clamp(min=1e-12))
                                  + (1.0 - mix) * torch.log(o["class_probs"].clamp(min=1e-12)))
                    c = c / c.sum(dim=1, keepdim=True)
                o["class_probs"] = c
        for o in out:
            pmax, labels = o["class_probs"].max(dim=1)
            o["scores"] = o["scores"] * pmax
            o["labels"] = labels
        return out

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return self.decode(self.heads(x), [x.shape[-2], x.shape[-1]], x)
