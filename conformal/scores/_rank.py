"""Shared plumbing of the rank-based scores (APS, RAPS, SAPS, TopK): one kernel each, parameterised by kind."""
from __future__ import annotations

import numpy as np

from conformal._kernels import prob_sets as _ps
from conformal._kernels import scores as _k
from conformal.scores.base import UINT_VIEW, Score, run_kernel

# Non-randomized kernels never read u; a length-1 dummy (indexed only when randomized) avoids an O(n) array.
_ZERO_U = np.zeros(1)


class RankScore(Score):
    randomizable = True

    def _u(self, u, n):
        return (_ZERO_U, False) if u is None else (u, True)

    def _label(self, p, y, u, logits, temp, errs):
        (n, k), (uu, rnd) = p.shape, self._u(u, p.shape[0])
        return run_kernel(_k.label_rows, _k.label_scores, n, k, p, y, uu, logits, temp, self.kind, rnd,
                          *self._kernel_params, out=np.empty(n), errs=errs)

    def _all(self, p, u, logits, temp, errs):
        (n, k), (uu, rnd) = p.shape, self._u(u, p.shape[0])
        return run_kernel(_k.all_rows, _k.all_scores, n, k, p, uu, logits, temp, self.kind, rnd,
                          *self._kernel_params, out=np.empty((n, k)), errs=errs)

    def _sets(self, p, qhat, u, logits, temp, allow_empty, errs):
        (n, k), (uu, rnd) = p.shape, self._u(u, p.shape[0])
        if not logits and p.flags.c_contiguous and self.kind in (_k.APS, _k.RAPS):
            # probabilities: bisection on the cut, no sort, no per-row tables (conformal/_kernels/prob_sets.py)
            utype, one_bits = UINT_VIEW[p.dtype]
            return run_kernel(_ps.prob_set_rows, _ps.prob_predict_sets, n, k, p, p.view(utype), one_bits, uu, qhat,
                              self.kind, rnd, *self._kernel_params, allow_empty,
                              out=np.empty((n, k), dtype=np.bool_), errs=errs)
        # At small K pairwise compares beat the bucket walk (measured: docs/benchmarks.md, `small_k`); same sets.
        serial, parallel = ((_k.small_set_rows, _k.small_predict_sets) if k <= _k.SMALL_K
                            else (_k.set_rows, _k.predict_sets))
        return run_kernel(serial, parallel, n, k, p, uu, qhat, logits, temp, self.kind, rnd,
                          *self._kernel_params, allow_empty, out=np.empty((n, k), dtype=np.bool_), errs=errs)
