"""Numba kernels of conformal.detection: overlap matrices, assignment, and the per-frame margin application.

Private: arrays in, arrays out, no Python objects, no randomness. The public wrappers validate and allocate.
Each kernel has a plain NumPy/itertools twin in tests/conformal/detection/_naive.py that the tests compare against.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def iou_2d(a, b, out):
    """IoU of every box in a (N, 4) xyxy with every box in b (M, 4); zero-area unions give IoU 0."""
    for i in range(a.shape[0]):
        ax1, ay1, ax2, ay2 = a[i, 0], a[i, 1], a[i, 2], a[i, 3]
        area_a = (ax2 - ax1) * (ay2 - ay1)
        for j in range(b.shape[0]):
            iw = min(ax2, b[j, 2]) - max(ax1, b[j, 0])
            ih = min(ay2, b[j, 3]) - max(ay1, b[j, 1])
            if iw <= 0.0 or ih <= 0.0:
                out[i, j] = 0.0
                continue
            inter = iw * ih
            union = area_a + (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1]) - inter
            out[i, j] = inter / union if union > 0.0 else 0.0
    return out


@njit(cache=True, nogil=True)
def _corners(x, y, length, width, yaw, out):
    """Counter-clockwise corners (4, 2) of a BEV rectangle centred at (x, y), `length` along the heading yaw."""
    c, s = math.cos(yaw), math.sin(yaw)
    hl, hw = 0.5 * length, 0.5 * width
    dx = (hl, -hl, -hl, hl)
    dy = (hw, hw, -hw, -hw)
    # order (+l,+w), (-l,+w), (-l,-w), (+l,-w) is counter-clockwise in the box frame
    for k in range(4):
        out[k, 0] = x + c * dx[k] - s * dy[k]
        out[k, 1] = y + s * dx[k] + c * dy[k]


@njit(cache=True, nogil=True)
def _clip_area(subject, n_subject, clip, buf_a, buf_b):
    """Area of the convex polygon `subject` (first n rows) clipped by the convex CCW quadrilateral `clip`
    (Sutherland-Hodgman)."""
    n = n_subject
    for k in range(n):
        buf_a[k, 0] = subject[k, 0]
        buf_a[k, 1] = subject[k, 1]
    src, dst = buf_a, buf_b
    for e in range(4):
        ex1, ey1 = clip[e, 0], clip[e, 1]
        ex2, ey2 = clip[(e + 1) % 4, 0], clip[(e + 1) % 4, 1]
        m = 0
        for k in range(n):
            px, py = src[k, 0], src[k, 1]
            qx, qy = src[(k + 1) % n, 0], src[(k + 1) % n, 1]
            sp = (ex2 - ex1) * (py - ey1) - (ey2 - ey1) * (px - ex1)
            sq = (ex2 - ex1) * (qy - ey1) - (ey2 - ey1) * (qx - ex1)
            if sp >= 0.0:
                dst[m, 0] = px
                dst[m, 1] = py
                m += 1
            if (sp >= 0.0) != (sq >= 0.0):
                t = sp / (sp - sq)
                dst[m, 0] = px + t * (qx - px)
                dst[m, 1] = py + t * (qy - py)
                m += 1
        n = m
        src, dst = dst, src
        if n == 0:
            return 0.0
    area = 0.0
    for k in range(n):
        area += src[k, 0] * src[(k + 1) % n, 1] - src[(k + 1) % n, 0] * src[k, 1]
    return 0.5 * abs(area)


@njit(cache=True, nogil=True)
def iou_bev(a, b, out):
    """BEV IoU of rotated rectangles: a (N, 7) and b (M, 7) as x, y, z, l, w, h, yaw (z, h unused)."""
    ca = np.empty((4, 2))
    cb = np.empty((4, 2))
    buf_a = np.empty((16, 2))
    buf_b = np.empty((16, 2))
    for i in range(a.shape[0]):
        _corners(a[i, 0], a[i, 1], a[i, 3], a[i, 4], a[i, 6], ca)
        area_a = a[i, 3] * a[i, 4]
        ra = 0.5 * math.hypot(a[i, 3], a[i, 4])
        for j in range(b.shape[0]):
            rb = 0.5 * math.hypot(b[j, 3], b[j, 4])
            if math.hypot(a[i, 0] - b[j, 0], a[i, 1] - b[j, 1]) >= ra + rb:
                out[i, j] = 0.0  # circumscribed circles do not meet
                continue
            _corners(b[j, 0], b[j, 1], b[j, 3], b[j, 4], b[j, 6], cb)
            inter = _clip_area(ca, 4, cb, buf_a, buf_b)
            union = area_a + b[j, 3] * b[j, 4] - inter
            out[i, j] = inter / union if union > 0.0 else 0.0
    return out


@njit(cache=True, nogil=True)
def center_distance(a, b, out):
    """Euclidean BEV distance between centres (x, y) of a (N, >=2) and b (M, >=2)."""
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            out[i, j] = math.hypot(a[i, 0] - b[j, 0], a[i, 1] - b[j, 1])
    return out


@njit(cache=True, nogil=True)
def hungarian(cost, assign):
    """Minimum-cost assignment of rows to distinct columns for an (n, m) cost matrix with n <= m.

    Shortest augmenting paths with potentials (Kuhn-Munkres in the O(n^2 m) form of Jonker-Volgenant);
    writes the column of each row into `assign` (n,).
    """
    n, m = cost.shape
    inf = np.inf
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, np.int64)  # p[j]: row (1-based) assigned to column j; 0 = free
    way = np.zeros(m + 1, np.int64)
    minv = np.empty(m + 1)
    used = np.empty(m + 1, np.bool_)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv[:] = inf
        used[:] = False
        while True:
            used[j0] = True
            i0 = p[j0]
            delta = inf
            j1 = 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j] = cur
                        way[j] = j0
                    if minv[j] < delta:
                        delta = minv[j]
                        j1 = j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    for j in range(1, m + 1):
        if p[j] != 0:
            assign[p[j] - 1] = j - 1
    return assign


@njit(cache=True, nogil=True)
def greedy_match(sim, order, valid, pred_to_gt):
    """COCO-style greedy matching: predictions in `order` (descending confidence) each take the unmatched ground
    truth of highest similarity among `valid` pairs (first one on ties). pred_to_gt[i] = -1 when unmatched."""
    n, m = sim.shape
    taken = np.zeros(m, np.bool_)
    pred_to_gt[:] = -1
    for t in range(n):
        i = order[t]
        best = -1
        best_sim = -np.inf
        for j in range(m):
            if valid[i, j] and not taken[j] and sim[i, j] > best_sim:
                best_sim = sim[i, j]
                best = j
        if best >= 0:
            taken[best] = True
            pred_to_gt[i] = best
    return pred_to_gt


@njit(cache=True, nogil=True, inline="always")
def _class_margins(q_lo, q_hi, cls_mask, i, j):
    """Per-side margins of coordinate j for detection i: the maximum over the classes in row i of `cls_mask`;
    infinite when the row holds no class (nothing is known about it)."""
    lo = -np.inf
    hi = -np.inf
    for k in range(q_lo.shape[0]):
        if cls_mask[i, k]:
            if q_lo[k, j] > lo:
                lo = q_lo[k, j]
            if q_hi[k, j] > hi:
                hi = q_hi[k, j]
    if lo == -np.inf:
        return np.inf, np.inf
    return lo, hi


@njit(cache=True, nogil=True)
def apply_margins(boxes, scale, q_lo, q_hi, cls_mask, lower, upper):
    """Intervals [box - q_lo * scale, box + q_hi * scale] per coordinate, the margins of each detection being the
    per-side maximum over the classes in its row of `cls_mask` (M, C) (q_lo, q_hi are (C, D)).

    A row with no class in its mask gets infinite margins (nothing is known about it).
    """
    m, d = boxes.shape
    for i in range(m):
        for j in range(d):
            lo, hi = _class_margins(q_lo, q_hi, cls_mask, i, j)
            s = scale[i, j]
            lower[i, j] = boxes[i, j] - lo * s
            upper[i, j] = boxes[i, j] + hi * s
    return lower, upper


@njit(cache=True, nogil=True)
def pav(y, w, out):
    """Pool-adjacent-violators: the non-decreasing sequence closest to y in weighted least squares (w > 0)."""
    n = y.shape[0]
    val = np.empty(n)
    wt = np.empty(n)
    cnt = np.empty(n, np.int64)
    b = 0
    for i in range(n):
        val[b] = y[i]
        wt[b] = w[i]
        cnt[b] = 1
        b += 1
        while b > 1 and val[b - 2] > val[b - 1]:
            tw = wt[b - 2] + wt[b - 1]
            val[b - 2] = (val[b - 2] * wt[b - 2] + val[b - 1] * wt[b - 1]) / tw
            wt[b - 2] = tw
            cnt[b - 2] += cnt[b - 1]
            b -= 1
    i = 0
    for j in range(b):
        for _ in range(cnt[j]):
            out[i] = val[j]
            i += 1
    return out


@njit(cache=True, nogil=True)
def outer_inner(lower, upper, outer, inner):
    """2D outer (lower x1, y1, upper x2, y2) and inner (upper x1, y1, lower x2, y2) boxes."""
    for i in range(lower.shape[0]):
        outer[i, 0] = lower[i, 0]
        outer[i, 1] = lower[i, 1]
        outer[i, 2] = upper[i, 2]
        outer[i, 3] = upper[i, 3]
        inner[i, 0] = upper[i, 0]
        inner[i, 1] = upper[i, 1]
        inner[i, 2] = lower[i, 2]
        inner[i, 3] = lower[i, 3]
    return outer, inner


@njit(cache=True, nogil=True)
def _scale(boxes, std, mode, min_scale, i, j):
    """Scale of coordinate j of box i; modes as SCALE_MODES in intervals.py (same formulas as box_scales)."""
    if mode == 0:
        return 1.0
    if mode == 4:
        return std[i, j]
    if mode == 1:  # 2D size: width for x1/x2, height for y1/y2
        if j == 0 or j == 2:
            return max(boxes[i, 2] - boxes[i, 0], min_scale)
        return max(boxes[i, 3] - boxes[i, 1], min_scale)
    if j == 6:
        return 1.0
    if mode == 2:  # 3D size
        if j <= 1:
            return max(max(boxes[i, 3], boxes[i, 4]), min_scale)
        if j == 2 or j == 5:
            return max(boxes[i, 5], min_scale)
        return max(boxes[i, j], min_scale)
    return max(math.hypot(boxes[i, 0], boxes[i, 1]), min_scale)  # 3: range


@njit(cache=True, nogil=True)
def scaled_margins(boxes, std, mode, min_scale, q_lo, q_hi, cls_mask, lower, upper):
    """`apply_margins` with the scale computed in place (no (M, D) scale array allocated per frame)."""
    m, d = boxes.shape
    for i in range(m):
        for j in range(d):
            lo, hi = _class_margins(q_lo, q_hi, cls_mask, i, j)
            s = _scale(boxes, std, mode, min_scale, i, j)
            lower[i, j] = boxes[i, j] - lo * s
            upper[i, j] = boxes[i, j] + hi * s
    return lower, upper
