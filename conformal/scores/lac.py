"""LAC (least ambiguous set-valued classifier), Sadinle, Lei & Wasserman (2019), JASA 114(525).

s(x, y) = 1 - p_y. Sets {y : p_y >= 1 - qhat} have the smallest expected size among sets with marginal coverage
1 - alpha, but may be empty. The score has no randomized form: with ``randomized=True`` the calibrator randomizes
the conformal p-value instead (smoothed p-values), which makes coverage exactly 1 - alpha.
"""
from __future__ import annotations

import numpy as np

from conformal._kernels import scores as _k
from conformal.scores.base import UINT_VIEW, Score, register, run_kernel


@register
class LAC(Score):
    """Least ambiguous set-valued classifier: s(x, y) = 1 - p_y.

    Examples
    --------
    >>> import numpy as np
    >>> from conformal.scores import LAC
    >>> LAC().label_scores(np.array([[0.7, 0.2, 0.1]]), np.array([1]))
    array([0.8])
    """

    name = "lac"
    randomizable = False

    def _label(self, p, y, u, logits, temp, errs):
        n, k = p.shape
        return run_kernel(_k.lac_label_rows, _k.lac_label_scores, n, k, p, y, logits, temp,
                          out=np.empty(n), errs=errs)

    def _all(self, p, u, logits, temp, errs):
        n, k = p.shape
        return run_kernel(_k.lac_all_rows, _k.lac_all_scores, n, k, p, logits, temp, out=np.empty((n, k)),
                          errs=errs)

    def _sets(self, p, qhat, u, logits, temp, allow_empty, errs):
        n, k = p.shape
        if not logits and p.flags.c_contiguous:
            # {y : 1 - p_y <= qhat} is {y : p_y >= cut} for the exact cut of the input's dtype
            cut = _k.lac_cut32(qhat) if p.dtype == np.float32 else _k.lac_cut64(qhat)
            utype, one_bits = UINT_VIEW[p.dtype]
            serial, parallel = ((_k.lac_small_rows, _k.lac_small_sets) if k <= _k.LAC_SMALL_K
                                else (_k.lac_prob_rows, _k.lac_prob_sets))
            return run_kernel(serial, parallel, n, k, p, p.view(utype), one_bits, cut, allow_empty,
                              out=np.empty((n, k), dtype=np.bool_), errs=errs)
        return run_kernel(_k.lac_set_rows, _k.lac_predict_sets, n, k, p, qhat, logits, temp, allow_empty,
                          out=np.empty((n, k), dtype=np.bool_), errs=errs)
