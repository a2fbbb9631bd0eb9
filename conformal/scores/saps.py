"""SAPS (Huang, Xi, Zhang, Li, Liu & Wei, "Conformal prediction for deep classifier via label ranking", ICML 2024).

s(x, y) = u * p_max                        if y is the top label (rank L(y) = 1),
          p_max + (L(y) - 2 + u) * weight  otherwise,
with u ~ U[0, 1] per input when randomized. The non-randomized score takes u = 1 (the upper end), the same at
calibration and at prediction. TorchCP 1.2's non-randomized SAPS instead scores the top label 0 at calibration
and p_max at prediction; we follow the paper, so our non-randomized SAPS sets differ from TorchCP's there.
Ties: L(y) counts through y's tie group, so a tie at the top gives every tied label rank > 1.
"""
from __future__ import annotations

import numbers

from conformal._base import Interval
from conformal._kernels import scores as _k
from conformal.scores._rank import RankScore
from conformal.scores.base import register


@register
class SAPS(RankScore):
    """Sorted adaptive prediction sets: only the top probability is used, the rest is rank times `weight`."""

    name = "saps"
    kind = _k.SAPS
    _parameter_constraints = {"weight": [Interval(numbers.Real, 0, None, closed="neither")]}

    def __init__(self, *, weight: float = 0.2):
        self.weight = weight
        self._setup()

    def _compute_kernel_params(self):
        return 0.0, 0, float(self.weight)
