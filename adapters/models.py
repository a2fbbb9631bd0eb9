"""Reference models, small enough to train on a laptop CPU in minutes and to keep in the repository.

* `SmallCNN` -- three conv blocks and a linear head for 28 x 28 / 32 x 32 images (any size >= 8 works: global
  average pooling). About 25 k parameters.
* `SmallPointNet` -- PointNet (Qi et al., CVPR 2017) without the input/feature transform nets: a shared per-point
  MLP, a symmetric max pool and an MLP head. About 30 k parameters.

Weights trained by ``python -m adapters.train`` live in ``adapters/weights``; load them with `adapters.reference`.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["SmallCNN", "SmallPointNet"]


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
