"""Numba kernels of the label-free abstention statistics (max_prob, margin, entropy), per row and per batch.

Plain NumPy twins of every kernel live in tests/conformal/abstention/_naive.py; tests compare them exactly.
Conventions: rows are read as float64 (float32 inputs are widened exactly); no randomness; no fastmath.

Entropy uses its own logarithm, `_xlogx`, because the libm `log` is a scalar call that LLVM cannot vectorise (50M of
them dominated a 50k x 1000 batch). `_xlogx` splits the float64 bits into exponent and mantissa m in [sqrt(1/2),
sqrt(2)) with integer operations only, and sums the series log m = 2 atanh(f), f = (m-1)/(m+1), |f| <= 0.172, to the
f^17 term (truncation < 2e-17 relative). Only IEEE +, -, *, / are used, in a fixed order and without contraction, so
the result is deterministic and reproducible in NumPy (tests/conformal/abstention/_naive.py twins it bit for bit);
it differs from x * np.log(x) by a few ulps. Row sums use four interleaved partial sums (lanes j mod 4), a fixed
order. Zero needs no branch: its bits give exponent -1023 and 0 * finite = 0.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from conformal._kernels.bits import bits_f64 as _bits_f64
from conformal._kernels.bits import f64_bits as _f64_bits

LN2 = 0.6931471805599453
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD   # float64 bits of sqrt(1/2)
_ONE_BITS = 0x3FF0000000000000
_MANTISSA = 0xFFFFFFFFFFFFF
_TWO52_BITS = 0x4330000000000000        # 2^52: or-ing a small int into its mantissa converts it exactly
_TWO52_PLUS_BIAS = 4503599627370496.0 + 1023.0


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _xlogx(v):
    """v * log(v) for finite v >= 0 (0 for v = 0), branch-free. See the module docstring."""
    b = _f64_bits(v) + (_ONE_BITS - _SQRT_HALF_BITS)
    m = _bits_f64((b & _MANTISSA) + _SQRT_HALF_BITS)               # in [sqrt(1/2), sqrt(2))
    e = _bits_f64((b >> 52) | _TWO52_BITS) - _TWO52_PLUS_BIAS      # unbiased exponent, as float64
    f = (m - 1.0) / (m + 1.0)
    s = f * f
    poly = 1.0 + s * (1.0 / 3.0 + s * (1.0 / 5.0 + s * (1.0 / 7.0 + s * (1.0 / 9.0 + s * (
        1.0 / 11.0 + s * (1.0 / 13.0 + s * (1.0 / 15.0 + s * (1.0 / 17.0))))))))
    return v * (e * LN2 + 2.0 * f * poly)


@njit(cache=True, nogil=True, error_model="numpy")
def _entropy_block(p, lo, hi, out, buf):
    k = p.shape[1]
    k4 = k - k % 4
    inv = 1.0 / np.log(np.float64(k))
    for i in range(lo, hi):
        for j in range(k):
            buf[j] = _xlogx(np.float64(p[i, j]))
        h0 = 0.0
        h1 = 0.0
        h2 = 0.0
        h3 = 0.0
        for j in range(0, k4, 4):
            h0 += buf[j]
            h1 += buf[j + 1]
            h2 += buf[j + 2]
            h3 += buf[j + 3]
        h = (h0 + h1) + (h2 + h3)
        for j in range(k4, k):
            h += buf[j]
        out[i] = -h * inv


@njit(cache=True, nogil=True, error_model="numpy")
def _entropy_row(p, i):
    """Entropy / log K of row i alone, without scratch (per-frame callers); the same operations in the same
    order as `_entropy_block`, so the value is identical."""
    k = p.shape[1]
    k4 = k - k % 4
    h0 = 0.0
    h1 = 0.0
    h2 = 0.0
    h3 = 0.0
    for j in range(0, k4, 4):
        h0 += _xlogx(np.float64(p[i, j]))
        h1 += _xlogx(np.float64(p[i, j + 1]))
        h2 += _xlogx(np.float64(p[i, j + 2]))
        h3 += _xlogx(np.float64(p[i, j + 3]))
    h = (h0 + h1) + (h2 + h3)
    for j in range(k4, k):
        h += _xlogx(np.float64(p[i, j]))
    return -h * (1.0 / np.log(np.float64(k)))


_ENT_CHUNK = 256


@njit(cache=True, nogil=True)
def _entropy_serial(p):
    out = np.empty(p.shape[0])
    _entropy_block(p, 0, p.shape[0], out, np.empty(p.shape[1]))
    return out


@njit(cache=True, nogil=True, parallel=True)
def _entropy_parallel(p):
    n = p.shape[0]
    out = np.empty(n)
    n_chunks = (n + _ENT_CHUNK - 1) // _ENT_CHUNK
    for c in prange(n_chunks):
        lo = c * _ENT_CHUNK
        _entropy_block(p, lo, min(n, lo + _ENT_CHUNK), out, np.empty(p.shape[1]))
    return out


@njit(cache=True, nogil=True)
def _max_prob_row(p, i):
    m = np.float64(p[i, 0])
    for j in range(1, p.shape[1]):
        v = np.float64(p[i, j])
        if v > m:
            m = v
    return 1.0 - m


@njit(cache=True, nogil=True)
def _margin_row(p, i):
    a = -np.inf  # largest
    b = -np.inf  # second largest (a tie with the largest counts)
    for j in range(p.shape[1]):
        v = np.float64(p[i, j])
        if v > a:
            b = a
            a = v
        elif v > b:
            b = v
    return 1.0 - (a - b)


@njit(cache=True, nogil=True)
def _stat_serial(p, kind):
    n = p.shape[0]
    out = np.empty(n)
    for i in range(n):
        if kind == 0:
            out[i] = _max_prob_row(p, i)
        else:
            out[i] = _margin_row(p, i)
    return out


@njit(cache=True, nogil=True, parallel=True)
def _stat_parallel(p, kind):
    n = p.shape[0]
    out = np.empty(n)
    for i in prange(n):
        if kind == 0:
            out[i] = _max_prob_row(p, i)
        else:
            out[i] = _margin_row(p, i)
    return out


# Below this many entries a parallel region costs more than it saves (thread wake-up is ~10-100 us, and far
# more on a loaded machine); per-row results are identical either way.
PARALLEL_MIN_ENTRIES = 1 << 18
MAX_PROB, MARGIN, ENTROPY = 0, 1, 2


def statistic(p, kind):
    big = p.shape[0] * p.shape[1] >= PARALLEL_MIN_ENTRIES
    if kind == ENTROPY:
        return _entropy_parallel(p) if big else _entropy_serial(p)
    if big:
        return _stat_parallel(p, kind)
    return _stat_serial(p, kind)


def max_prob(p):
    """1 - max_j p_j per row."""
    return statistic(p, MAX_PROB)


def margin(p):
    """1 - (p_(1) - p_(2)) per row: the two largest probabilities (equal when the top is tied)."""
    return statistic(p, MARGIN)


def entropy(p):
    """Shannon entropy / log K per row, with 0 log 0 = 0; in [0, 1] up to a few ulps (see `_xlogx`)."""
    return statistic(p, ENTROPY)
