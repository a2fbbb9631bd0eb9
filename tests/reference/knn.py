"""NumPy twin of conformal/_kernels/knn.py: the same float32 operations in the same order, vectorised over rows.

Squared distances accumulate sum_j (q_j - b_j)^2 in float32 for j = 0 .. d-1 (one NumPy pass per feature, so each
element sees the kernel's order of additions); the k smallest are square-rooted in float64, and "mean" sums them
in ascending order.
"""
from __future__ import annotations

import numpy as np


def knn_distances(queries: np.ndarray, bank_t: np.ndarray, k: int, mean: bool) -> np.ndarray:
    q = np.asarray(queries, dtype=np.float32)
    b = np.asarray(bank_t, dtype=np.float32)
    acc = np.zeros((q.shape[0], b.shape[1]), dtype=np.float32)
    for j in range(b.shape[0]):
        diff = q[:, j:j + 1] - b[j][None, :]
        acc += diff * diff
    top = np.sqrt(np.sort(acc, axis=1)[:, :k].astype(np.float64))
    if not mean:
        return top[:, k - 1].copy()
    s = np.zeros(q.shape[0], dtype=np.float64)
    for t in range(k):
        s += top[:, t]
    return s / k


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows over their L2 norm: the squares summed in float64 one column at a time (the kernel's order), the
    quotient in float64, rounded to float32; a zero row stays zero."""
    x = np.asarray(x).astype(np.float64)
    s = np.zeros(x.shape[0])
    for j in range(x.shape[1]):
        s += x[:, j] * x[:, j]
    norm = np.sqrt(s)
    return (x / np.where(norm > 0, norm, 1.0)[:, None]).astype(np.float32)
