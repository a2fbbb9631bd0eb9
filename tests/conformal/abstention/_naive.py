"""Plain NumPy twins of conformal/_kernels/statistics.py, written from the definitions (no shared code)."""
import numpy as np


def max_prob(p):
    return 1.0 - p.astype(np.float64).max(axis=1)


def margin(p):
    q = np.sort(p.astype(np.float64), axis=1)
    return 1.0 - (q[:, -1] - q[:, -2])


def entropy(p):
    """The definition, with NumPy's log: -sum p log p / log K (0 log 0 = 0)."""
    q = p.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0)
    return -t.sum(axis=1) / np.log(q.shape[1])


def xlogx_series(v):
    """x log x the way the kernel computes it: bits -> exponent e and mantissa m in [sqrt(1/2), sqrt(2)),
    log m = 2 atanh((m-1)/(m+1)) summed to the f^17 term, in the same operation order."""
    v = np.asarray(v, np.float64)
    sqrt_half = np.float64(np.sqrt(0.5)).view(np.int64)
    b = v.view(np.int64) + (np.float64(1.0).view(np.int64) - sqrt_half)
    m = ((b & ((1 << 52) - 1)) + sqrt_half).view(np.float64)
    e = (b >> 52).astype(np.float64) - 1023.0
    f = (m - 1.0) / (m + 1.0)
    s = f * f
    poly = np.full_like(s, 1.0 / 17.0)
    for d in (15.0, 13.0, 11.0, 9.0, 7.0, 5.0, 3.0, 1.0):
        poly = 1.0 / d + s * poly
    return v * (e * 0.6931471805599453 + 2.0 * f * poly)


def entropy_series(p):
    """The kernel's entropy: xlogx_series, summed in four sequential lanes (j mod 4), then the tail."""
    q = p.astype(np.float64)
    k = q.shape[1]
    k4 = k - k % 4
    t = xlogx_series(q)
    lanes = [np.cumsum(t[:, lane:k4:4], axis=1)[:, -1] if k4 else np.zeros(q.shape[0]) for lane in range(4)]
    h = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
    for j in range(k4, k):
        h = h + t[:, j]
    return -h * (1.0 / np.log(np.float64(k)))


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
