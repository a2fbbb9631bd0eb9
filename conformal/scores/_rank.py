"""Shared plumbing of the rank-based scores (APS, RAPS, SAPS, TopK): one kernel each, parameterised by kind."""
from __future__ import annotations

import numpy as np

from conformal._kernels import scores as _k
from conformal.scores.base import _CHUNK, Score

# Non-randomized kernels never read u; a length-1 dummy (indexed only when randomized) avoids an O(n) array.
_ZERO_U = np.zeros(1)


class RankScore(Score):
    kind = 0
    randomizable = True

    def _params(self):  # (lam, k_reg, weight) as the kernels take them
        return 0.0, 0, 0.0

    def _u(self, u, n):
        return (_ZERO_U, False) if u is None else (u, True)

    def _label(self, p, y, u, logits, temp, errs):
        uu, rnd = self._u(u, p.shape[0])
        return _k.label_scores(p, y, uu, logits, temp, self.kind, rnd, *self._params(), errs)

    def _all(self, p, u, logits, temp, errs):
        uu, rnd = self._u(u, p.shape[0])
        return _k.all_scores(p, uu, logits, temp, self.kind, rnd, *self._params(), errs)

    def _sets(self, p, qhat, u, logits, temp, allow_empty, errs):
        uu, rnd = self._u(u, p.shape[0])
        return _k.predict_sets(p, uu, qhat, logits, temp, self.kind, rnd, *self._params(), allow_empty, _CHUNK,
                               errs)
