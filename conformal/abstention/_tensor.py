"""DualThresholdConformal's predict on a torch tensor: the label-free statistics and the threshold rule computed
with the tensor's own methods, on its device (a non-CPU tensor; a CPU tensor takes the host kernels through a shared
view unless `conformal._tensor._device_path_on_cpu` forces this path, as the tests do). The core never imports torch
(see conformal/_tensor.py).

Each softmax statistic repeats its Numba kernel (conformal/_kernels/statistics.py) operation for operation on
float64, so on CPU tensors the values, hence the abstain flags, are the NumPy path's bit for bit
(tests/conformal/abstention/test_tensor_decisions.py):

* max_prob: 1 - max_y p_y; margin: 1 - (p_(1) - p_(2)) from `topk(2)` (a tied top counts twice, as the kernel);
* entropy: the kernel's own branch-free logarithm `_xlogx` (integer bit operations on `view`ed int64, then IEEE
  +, -, *, / in the kernel's order) and its four interleaved partial sums (lanes j mod 4), each lane summed left
  to right by `cumsum` (sequential on CPU). On CUDA the scan may sum a lane in another order: the entropy can
  then differ in the last bits, which flips an abstain flag only for a statistic within those bits of tau;
* set_size, top1_score, credibility: from the device sets and scores of conformal/_tensor.py.

Fitted statistics (knn, mahalanobis, energy, input_quality) read their side inputs on the host, as on the NumPy
path (their fitted state is host arrays); their (n,) values are sent to the device and compared with tau there.
"""
from __future__ import annotations

from conformal import _tensor as _t
from conformal._validation import as_array
from conformal.abstention.statistics import STATISTICS, compute_statistic

_SOFTMAX = {STATISTICS["max_prob"]: _t.max_prob, STATISTICS["margin"]: _t.margin, STATISTICS["entropy"]: _t.entropy}


def top1_score(x, conformal, prediction):
    """The non-randomized score of the top-1 label (as `statistics.top1_score`), on x's device."""
    score = conformal.score_
    if score.randomizable:
        return _t.rank_all_scores(score, x, None, False, 1.0).gather(1, prediction[:, None])[:, 0]
    return 1.0 - x.double().gather(1, prediction[:, None])[:, 0]


def credibility(x, conformal, prediction):
    s = top1_score(x, conformal, prediction)
    cal = _t._f64(x, conformal.calibration_scores_)
    n = cal.shape[0]
    ge = n - _t._count_le(cal, s.contiguous(), strict=True)  # #{s_i >= s}
    return 1.0 - (1.0 + ge.double()) / (n + 1.0)


def _callable(fn, name, x):
    """A user statistic: called with the host view of the rows (NumPy, as on the NumPy path: a user callable is
    written for arrays; a CUDA tensor is copied to the host once), its checked (n,) values sent to x's device."""
    return _t._f64(x, compute_statistic(fn, name, as_array(x, "probs"), None))


def statistic(est, x, sets, prediction):
    """The fitted (single, softmax) statistic of validated tensor rows `x` (n,) float64 on x's device."""
    fn = est._stat_fn
    if fn is STATISTICS["set_size"]:
        if est.statistic_calibrator_ is not est.calibrator_ or sets is None:
            sets = est.statistic_calibrator_.predict_sets(x)
        return sets.sum(dim=1).double()
    if fn in _SOFTMAX:
        return _SOFTMAX[fn](x.double())
    if fn is STATISTICS["top1_score"]:
        return top1_score(x, est.statistic_calibrator_, prediction)
    if fn is STATISTICS["credibility"]:
        return credibility(x, est.statistic_calibrator_, prediction)
    return _callable(fn, est.statistic_name_, x)
