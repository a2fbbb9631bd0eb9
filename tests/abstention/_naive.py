"""Plain NumPy twins of conformal/abstention/_kernels.py, written from the definitions (no shared code)."""
import numpy as np


def max_prob(p):
    return 1.0 - p.astype(np.float64).max(axis=1)


def margin(p):
    q = np.sort(p.astype(np.float64), axis=1)
    return 1.0 - (q[:, -1] - q[:, -2])


def entropy(p):
    q = p.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)
    return -t.sum(axis=1) / np.log(q.shape[1])


def auroc_pairs(s, pos):
    """P(S_pos > S_neg) + 0.5 P(S_pos = S_neg), by counting all pairs."""
    sp, sn = s[pos][:, None], s[~pos][None, :]
    return ((sp > sn).sum() + 0.5 * (sp == sn).sum()) / (sp.size * sn.size)


def roc_points(s, pos, taus):
    """(fpr, tpr) of 'abstain iff s > tau' for each tau, by direct counting."""
    ab = s[None, :] > np.asarray(taus)[:, None]
    return (ab & ~pos).sum(1) / (~pos).sum(), (ab & pos).sum(1) / pos.sum()


def risk_coverage(s, err):
    vals = np.unique(s)
    acc = s[None, :] <= vals[:, None]
    n_acc = acc.sum(1)
    return n_acc / s.size, (acc & err).sum(1) / n_acc, vals
