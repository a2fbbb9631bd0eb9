"""Plain NumPy / itertools twins of the detection kernels (the references the tests compare against)."""
import itertools
import math

import numpy as np


def iou_2d(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = min(p[2], q[2]) - max(p[0], q[0])
            ih = min(p[3], q[3]) - max(p[1], q[1])
            if iw > 0 and ih > 0:
                inter = iw * ih
                union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
                out[i, j] = inter / union
    return out


def bev_iou_raster(a, b, res=400):
    """BEV IoU by rasterising both rectangles on a fine grid (independent of polygon clipping)."""
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            r = max(math.hypot(p[3], p[4]), math.hypot(q[3], q[4]))
            cx, cy = 0.5 * (p[0] + q[0]), 0.5 * (p[1] + q[1])
            half = r + 0.5 * math.hypot(p[0] - q[0], p[1] - q[1])
            xs = np.linspace(cx - half, cx + half, res)
            X, Y = np.meshgrid(xs, np.linspace(cy - half, cy + half, res))

            def inside(box, X=X, Y=Y):  # noqa: N803 - the grid of this (p, q) pair
                c, s = math.cos(box[6]), math.sin(box[6])
                u = (X - box[0]) * c + (Y - box[1]) * s
                v = -(X - box[0]) * s + (Y - box[1]) * c
                return (np.abs(u) <= box[3] / 2) & (np.abs(v) <= box[4] / 2)

            ip, iq = inside(p), inside(q)
            union = (ip | iq).sum()
            out[i, j] = (ip & iq).sum() / union if union else 0.0
    return out


def best_assignment_value(cost):
    """Minimum total cost over all one-to-one assignments of min(n, m) pairs (brute force)."""
    n, m = cost.shape
    best = np.inf
    if n <= m:
        for cols in itertools.permutations(range(m), n):
            best = min(best, sum(cost[i, c] for i, c in enumerate(cols)))
    else:
        for rows in itertools.permutations(range(n), m):
            best = min(best, sum(cost[r, j] for j, r in enumerate(rows)))
    return best


def brute_force_match(q, threshold, larger_better=True):
    """(max number of valid pairs, best total quality among those) over all partial one-to-one matchings."""
    n, m = q.shape
    valid = q >= threshold if larger_better else q <= threshold
    best = (0, 0.0)
    for k in range(min(n, m), 0, -1):
        found = False
        for rows in itertools.combinations(range(n), k):
            for cols in itertools.permutations(range(m), k):
                if all(valid[r, c] for r, c in zip(rows, cols)):
                    tot = sum(q[r, c] for r, c in zip(rows, cols))
                    tot = tot if larger_better else -tot
                    if not found or tot > best[1] + 1e-12:
                        best = (k, tot)
                    found = True
        if found:
            return best
    return best


def greedy(sim, scores, valid):
    out = -np.ones(sim.shape[0], np.int64)
    taken = set()
    for i in np.argsort(-scores, kind="stable"):
        cand = [(sim[i, j], -j) for j in range(sim.shape[1]) if valid[i, j] and j not in taken]
        if cand:
            j = -max(cand)[1]
            taken.add(j)
            out[i] = j
    return out


def apply_margins(boxes, scale, q_lo, q_hi, mask):
    lo = np.where(mask[:, :, None], q_lo[None], -np.inf).max(axis=1)
    hi = np.where(mask[:, :, None], q_hi[None], -np.inf).max(axis=1)
    empty = ~mask.any(axis=1)
    lo[empty] = np.inf
    hi[empty] = np.inf
    return boxes - lo * scale, boxes + hi * scale


def pav(y, w):
    """Isotonic regression by repeated pooling (quadratic, obviously correct)."""
    blocks = [[float(v), float(wt), 1] for v, wt in zip(y, w)]
    changed = True
    while changed:
        changed = False
        for i in range(len(blocks) - 1):
            if blocks[i][0] > blocks[i + 1][0]:
                a, b = blocks[i], blocks[i + 1]
                tw = a[1] + b[1]
                blocks[i] = [(a[0] * a[1] + b[0] * b[1]) / tw, tw, a[2] + b[2]]
                del blocks[i + 1]
                changed = True
                break
    return np.concatenate([[v] * c for v, _, c in blocks]) if blocks else np.empty(0)


def box_errors(boxes, dim):
    """(first invalid row, code) of a box array: 1 non-finite, 2 (2D) x2 < x1 or y2 < y1, 3 (3D) a size < 0;
    (-1, 0) when every row is valid."""
    for i, b in enumerate(boxes):
        if not all(math.isfinite(v) for v in b):
            return i, 1
        if dim == 2 and (b[2] < b[0] or b[3] < b[1]):
            return i, 2
        if dim == 3 and min(b[3], b[4], b[5]) < 0:
            return i, 3
    return -1, 0
