"""Plain NumPy/Python twins of the kernels in conformal/_kernels/online.py, written from the definitions in
conformal/online.py (no shared code): one frame's scores, set and statistic; the smoothed p-value; the Simple
Jumper step; the sorted window replacement; and the ACI threshold from the exact rank."""
from __future__ import annotations

import bisect
import math
from fractions import Fraction

import numpy as np

from tests.conformal.abstention import _naive as stats_naive
from tests.reference import naive

STATISTICS = ("max_prob", "margin", "entropy", "set_size", None)


def frame(row, name, q, q_cal, allow_empty=True, statistic="entropy", logits=False, temperature=1.0, **params):
    """(scores (K,), set members by decreasing probability, ties by index, statistic) of one input row."""
    p = naive.softmax_row(np.asarray(row, np.float64) / temperature) if logits else np.asarray(row, np.float64)
    scores = naive.all_scores(name, p[None, :], None, **params)[0]
    order = sorted(range(p.shape[0]), key=lambda j: (-p[j], j))
    members = [j for j in order if scores[j] <= q]
    if not members and not allow_empty:
        members = [j for j in order if p[j] == p.max()]
    m_cal = int(np.sum(scores <= q_cal))
    stat = {"max_prob": lambda: stats_naive.max_prob(p[None])[0], "margin": lambda: stats_naive.margin(p[None])[0],
            "entropy": lambda: stats_naive.entropy_series(p[None])[0], "set_size": lambda: float(m_cal),
            None: lambda: math.nan}[statistic]()
    return scores, members, stat, p


def smoothed_pvalue(reference, s, u):
    ref = np.asarray(reference)
    n = ref.shape[0]
    return (np.sum(ref > s) + u * (np.sum(ref == s) + 1)) / (n + 1.0)


def jumper_step(state, pv, jump):
    """Simple Jumper: mix the three weights toward uniform by `jump`, multiply each by its betting function
    1 + eps (p - 1/2), eps in (-1, 0, 1); renormalise and add log10 of the normaliser to log10 M."""
    w = [(1.0 - jump) * state[e] + jump / 3.0 for e in range(3)]
    w = [w[e] * (1.0 + (e - 1.0) * (pv - 0.5)) for e in range(3)]
    total = w[0] + w[1] + w[2]
    return np.array([w[0] / total, w[1] / total, w[2] / total, state[3] + math.log10(total)])


def sorted_replace(values, old, new):
    """The sorted list with one `old` removed and `new` inserted (unchanged when `old` is absent)."""
    out = list(values)
    if old not in out:
        return out, False
    out.remove(old)
    bisect.insort(out, new)
    return out, True


def aci_threshold(sorted_scores, alpha_t):
    """The ceil((n+1)(1-alpha_t))-th smallest score with alpha_t read as its repr decimal; +inf past n, -inf at
    a rank <= 0."""
    n = len(sorted_scores)
    k = math.ceil((n + 1) * (1 - Fraction(repr(float(alpha_t)))))
    if k > n:
        return math.inf
    if k <= 0:
        return -math.inf
    return float(sorted_scores[k - 1])


def power_mixture_step(state, pv, n_grid):
    """Mixture of power martingales over eps = (g + 1/2) / n_grid: each log M_eps gains log eps + (eps - 1) log p;
    the monitor is log10 of the mean of M_eps."""
    eps = (np.arange(n_grid) + 0.5) / n_grid
    logs = np.asarray(state[:n_grid], np.float64) + np.log(eps) + (eps - 1.0) * math.log(max(pv, 1e-300))
    mean = np.exp(logs - logs.max()).mean()
    return np.append(logs, (logs.max() + math.log(mean)) / math.log(10.0))


def mixture_calibrator(pv):
    """integral_0^1 eps p^(eps - 1) d eps, by its closed form (1/2 where log p rounds to 0)."""
    p = max(pv, 1e-300)
    lp = math.log(p)
    return 0.5 if lp > -1e-6 else (1.0 - p + p * lp) / (p * lp * lp)


def cusum_step(state, pv):
    """log10 C_t = max(log10 C_{t-1}, 0) + log10 f(p_t)."""
    return np.array([max(state[0], 0.0) + math.log10(mixture_calibrator(pv))])
