"""APS (Romano, Sesia & Candes, NeurIPS 2020) and RAPS (Angelopoulos, Bates, Malik & Jordan, ICLR 2021).

APS:  s(x, y) = sum of p_j over labels with p_j >= p_y  (the mass down to and including y's tie group);
      randomized: sum over p_j > p_y, plus u * (mass of y's tie group), one u ~ U[0, 1] per input.
RAPS: APS + lam * max(0, L(y) - k_reg), L(y) = #{j : p_j >= p_y} the rank of y counted through its ties.
      The penalty is not randomized (as in the paper's code and TorchCP).
Without ties, the non-randomized scores equal TorchCP 1.2's APS/RAPS with randomized=False exactly.
"""
from __future__ import annotations

import numbers

from conformal._base import Interval
from conformal._kernels import scores as _k
from conformal.scores._rank import RankScore
from conformal.scores.base import register


@register
class APS(RankScore):
    """Adaptive prediction sets: cumulative probability mass down to the label."""

    name = "aps"
    kind = _k.APS


@register
class RAPS(RankScore):
    """Regularized APS: APS + lam * max(0, rank - k_reg); small sets for many-class problems.

    Parameters
    ----------
    lam : float >= 0, penalty per label beyond rank `k_reg`.
    k_reg : int >= 0, number of labels exempt from the penalty.
    """

    name = "raps"
    kind = _k.RAPS
    _parameter_constraints = {"lam": [Interval(numbers.Real, 0, None, closed="left")],
                              "k_reg": [Interval(numbers.Integral, 0, None, closed="left")]}

    def __init__(self, *, lam: float = 0.01, k_reg: int = 5):
        self.lam = lam
        self.k_reg = k_reg
        self._setup()

    def _compute_kernel_params(self):
        return float(self.lam), int(self.k_reg), 0.0
