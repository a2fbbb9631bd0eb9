"""Top-k: s(x, y) = L(y), the rank of y counted through ties (randomized: L(y) - 1 + u).

Sets are the top-k labels for a k chosen by calibration (Angelopoulos et al. 2021, "naive" baseline); equals
TorchCP 1.2's TOPK with randomized=False when there are no ties.
"""
from __future__ import annotations

from conformal._kernels import scores as _k
from conformal.scores._rank import RankScore
from conformal.scores.base import register


@register
class TopK(RankScore):
    name = "topk"
    kind = _k.TOPK
