"""Shared plumbing of the rank-based scores (APS, RAPS, SAPS, TopK): one kernel each, parameterised by kind."""
from __future__ import annotations

import numpy as np

from conformal._kernels import scores as _k
from conformal.scores.base import _CHUNK, Score

_ZERO = np.zeros(0)


class RankScore(Score):
    kind = 0
    randomizable = True

    def _params(self):  # (lam, k_reg, weight) as the kernels take them
        return 0.0, 0, 0.0

    def _u(self, u, n):
        return (np.zeros(n), False) if u is None else (u, True)

    def _label(self, p, y, u, logits):
        uu, rnd = self._u(u, p.shape[0])
        return _k.label_scores(p, y, uu, logits, self.kind, rnd, *self._params())

    def _all(self, p, u, logits):
        uu, rnd = self._u(u, p.shape[0])
        return _k.all_scores(p, uu, logits, self.kind, rnd, *self._params())

    def _sets(self, p, qhat, u, logits, allow_empty):
        uu, rnd = self._u(u, p.shape[0])
        return _k.predict_sets(p, uu, qhat, logits, self.kind, rnd, *self._params(), allow_empty, _CHUNK)
