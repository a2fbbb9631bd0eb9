"""Small public helpers shared by the whole project: the one NumPy softmax and the one rng coercion.

The score kernels soft-max logits row by row inside Numba (`conformal._kernels.scores._row_probs`); this is the
vectorised NumPy form for everything else (model adapters, reference statistics of the streaming monitor).
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["softmax", "check_random_state"]


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
    """Row softmax of ``logits / temperature`` as a new float64 (n, K) array (max subtracted: no overflow).

    Examples
    --------
    >>> softmax(np.array([[0.0, 0.0], [0.0, np.log(3.0)]])).round(6).tolist()
    [[0.5, 0.5], [0.25, 0.75]]
    """
    z = np.asarray(logits).astype(np.float64) / temperature
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def check_random_state(rng, name: str = "rng") -> np.random.Generator:
    """A `numpy.random.Generator` from None (fresh OS entropy), an int seed >= 0, or a Generator (returned as is).

    The legacy `numpy.random.RandomState` and bools are refused: one seeding convention everywhere.

    Examples
    --------
    >>> a, b = check_random_state(7).random(), check_random_state(7).random()
    >>> a == b
    True
    """
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, bool) or isinstance(rng, np.bool_):
        raise TypeError(f"`{name}` must be None, an int seed or a numpy.random.Generator; got a bool")
    if isinstance(rng, numbers.Integral):
        if rng < 0:
            raise ValueError(f"`{name}` must be a non-negative int seed; got {rng}")
        return np.random.default_rng(int(rng))
    if isinstance(rng, np.random.RandomState):
        raise TypeError(f"`{name}` must be None, an int seed or a numpy.random.Generator; got the legacy "
                        f"numpy.random.RandomState (use numpy.random.default_rng(seed))")
    raise TypeError(f"`{name}` must be None, an int seed or a numpy.random.Generator; got {type(rng).__name__}")
