"""Split conformal calibrators for classification: marginal and class-conditional.

Guarantee (split conformal, Vovk et al. 2005; Lei et al. 2018): if the n calibration pairs and the test pair are
exchangeable, then P(Y_test in C(X_test)) >= 1 - alpha, and, when scores have no ties, <= 1 - alpha + 1/(n+1).
The threshold is the k-th smallest calibration score with k = ceil((n + 1)(1 - alpha)) (`conformal_quantile`);
when k > n no finite threshold works and qhat is +inf (every label in every set), with a warning.
"""
from __future__ import annotations

import os
import warnings

import numpy as np

from conformal._validation import (NotFittedError, as_array, check_alpha, check_is_fitted, check_labels,
                                   check_nonneg_float, check_scores_matrix, conformal_rank)
from conformal.io import load_state, register_kind, save_state
from conformal.scores import get_score
from conformal.scores.base import check_inputs

__all__ = ["conformal_quantile", "SplitConformalClassifier", "ClassConditionalConformalClassifier"]


def conformal_quantile(scores, alpha: float) -> float:
    """The finite-sample conformal quantile: the k-th smallest of `scores`, k = ceil((n + 1)(1 - alpha)).

    Returns +inf when k > n (the calibration set is too small for this alpha: n < 1/alpha - 1).
    k is computed exactly (alpha read as the decimal it prints as), never as a float product.

    Examples
    --------
    >>> conformal_quantile(np.arange(1.0, 10.0), 0.1)   # n = 9: k = ceil(10 * 0.9) = 9
    9.0
    >>> conformal_quantile(np.arange(1.0, 9.0), 0.1)    # n = 8: k = 9 > 8
    inf
    """
    alpha = check_alpha(alpha)
    s = as_array(scores, "scores")
    if s.ndim != 1 or s.shape[0] < 1:
        raise ValueError(f"`scores` must be a non-empty 1-D array; got shape {s.shape}")
    if s.dtype.kind != "f":
        raise TypeError(f"`scores` must be a float array; got dtype {s.dtype}")
    if np.isnan(s).any():
        raise ValueError("`scores` must not contain NaN")
    n = s.shape[0]
    k = conformal_rank(n, alpha)
    if k > n:
        return float("inf")
    return float(np.partition(s, k - 1)[k - 1])


def _min_n(alpha: float) -> int:
    """Smallest calibration size for which conformal_rank(n, alpha) <= n."""
    n = 1
    while conformal_rank(n, alpha) > n:
        n += 1
    return n


def _rng(rng, random_state):
    if rng is not None:
        if isinstance(rng, np.random.Generator):
            return rng
        if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
            return np.random.default_rng(int(rng))
        raise TypeError(f"`rng` must be None, an int seed or a numpy.random.Generator; got {type(rng).__name__}")
    return np.random.default_rng(random_state)


class _Base:
    _kind = ""

    def __init__(self, score="aps", alpha: float = 0.1, randomized: bool = False, random_state=None,
                 allow_empty: bool = True, inputs: str = "probs", temperature: float = 1.0, **score_params):
        self.score = score
        self.alpha = alpha
        self.randomized = randomized
        self.random_state = random_state
        self.allow_empty = allow_empty
        self.inputs = inputs
        self.temperature = temperature
        self.score_params = score_params

    def __repr__(self) -> str:
        args = {"score": self.score, "alpha": self.alpha, "randomized": self.randomized,
                "random_state": self.random_state, "allow_empty": self.allow_empty, "inputs": self.inputs,
                "temperature": self.temperature, **self._extra_params(), **self.score_params}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in args.items())})"

    def _extra_params(self) -> dict:
        return {}

    def _check_params(self):
        alpha = check_alpha(self.alpha)
        score = get_score(self.score, **self.score_params)
        for name in ("randomized", "allow_empty"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"`{name}` must be a bool; got {type(getattr(self, name)).__name__}")
        if self.random_state is not None and (isinstance(self.random_state, bool)
                                              or not isinstance(self.random_state, (int, np.integer))):
            raise TypeError(f"`random_state` must be None or an int; got {type(self.random_state).__name__}")
        check_inputs(self.inputs)
        check_nonneg_float(self.temperature, "temperature", strictly_positive=True)
        if self.temperature != 1.0 and self.inputs != "logits":
            raise ValueError("`temperature` applies to logits only; pass inputs='logits' (or temperature=1.0)")
        return alpha, score

    def _validate(self, probs, fitted=True):
        k = self.n_classes_ if fitted else None
        # values are checked by the kernels as they read each row
        return check_scores_matrix(probs, "probs", inputs=self.inputs, n_classes=k, values=False)

    def _uniforms(self, n, rng):
        return _rng(rng, self.random_state).random(n) if self.randomized else None

    def _fit_scores(self, probs, labels):
        alpha, score = self._check_params()
        p = check_scores_matrix(probs, "probs", inputs=self.inputs, values=False)
        y = check_labels(labels, p.shape[0], p.shape[1])
        u = _rng(None, self.random_state).random(p.shape[0]) if self.randomized and score.randomizable else None
        s = score.label_scores(p, y, u, inputs=self.inputs, temperature=self.temperature)
        return alpha, score, p, y, s

    # --- persistence -------------------------------------------------------------------------------------
    def _params_dict(self) -> dict:
        score = self.score_ if hasattr(self, "score_") else get_score(self.score, **self.score_params)
        return {"score": score.name, "score_params": score.get_params(), "alpha": float(self.alpha),
                "randomized": bool(self.randomized), "random_state": self.random_state,
                "allow_empty": bool(self.allow_empty), "inputs": self.inputs,
                "temperature": float(self.temperature)}

    def to_dict(self) -> dict:
        check_is_fitted(self)
        return {"params": self._params_dict(), "fitted": self._fitted_dict()}

    @classmethod
    def from_dict(cls, state: dict):
        try:
            params = dict(state["params"])
            fitted = state["fitted"]
            obj = cls(score=params.pop("score"), **params.pop("score_params"), **params)
            obj._check_params()
            obj.score_ = get_score(obj.score, **obj.score_params)
            obj._load_fitted(fitted)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"saved {cls.__name__} state is missing or has malformed field: {exc}") from None
        return obj

    def save(self, path) -> None:
        """Save the fitted calibrator as checksummed JSON (see conformal.io)."""
        save_state(path, self._kind, self.to_dict())

    @classmethod
    def load(cls, path):
        return cls.from_dict(load_state(os.fspath(path), cls._kind))

    def predict_pvalues(self, probs, rng=None) -> np.ndarray:
        """Conformal p-values (n, K): p(x, y) = (1 + #{i : s_i >= s(x, y)}) / (n + 1) over the calibration
        scores (for randomized LAC smoothed: (#{s_i > s} + v (#{s_i = s} + 1)) / (n + 1), v ~ U[0, 1]). Label y is in the
        set exactly when p(x, y) > alpha (class-conditional: against the scores of class y only)."""
        check_is_fitted(self)
        p = self._validate(probs)
        gen = _rng(rng, self.random_state)
        # Randomized rank scores carry their own uniform; LAC (no randomized score) smooths the p-value instead.
        smooth = self.randomized and not self.score_.randomizable
        u = gen.random(p.shape[0]) if (self.randomized and self.score_.randomizable) else None
        scores = self.score_.all_scores(p, u, inputs=self.inputs, temperature=self.temperature)
        v = gen.random(p.shape[0])[:, None] if smooth else None
        return self._pvalues(scores, v)

    @staticmethod
    def _pvalues_against(cal_sorted, s, v):
        n = cal_sorted.shape[0]
        ge = n - np.searchsorted(cal_sorted, s, side="left")  # #{s_i >= s}
        if v is None:
            return (1.0 + ge) / (n + 1.0)
        gt = n - np.searchsorted(cal_sorted, s, side="right")  # #{s_i > s}
        return (gt + v * (ge - gt + 1.0)) / (n + 1.0)


@register_kind
class SplitConformalClassifier(_Base):
    """Marginal split conformal prediction sets for any score.

    Parameters
    ----------
    score : str or Score
        "lac", "aps", "raps", "saps", "topk", or a score object from `conformal.scores`.
    alpha : float in (0, 1)
        Miscoverage level: sets contain the true label with probability >= 1 - alpha.
    randomized : bool
        Randomized scores (APS, RAPS, SAPS, TopK: one u ~ U[0, 1] per input, as in their papers) or, for LAC,
        smoothed p-values; gives coverage close to exactly 1 - alpha and smaller sets, at the price of
        randomness in the output. Draws come from `rng` (predict) or `random_state`.
    random_state : int or None
        Seed for the uniforms at fit, and at predict when no `rng` is passed (so repeated calls agree).
    allow_empty : bool
        With False, an empty set is replaced by the top-1 label (coverage can only rise).
    inputs : "probs" or "logits"
        What the model outputs are; logits are soft-maxed in float64 inside the kernels.
    temperature : float > 0
        For logits only: softmax(logits / temperature), e.g. a temperature fitted on separate data. Any fixed
        temperature keeps the guarantee (it is part of the model); fitting it on the calibration set does not.
    **score_params
        Passed to the score when `score` is a name: RAPS(lam, k_reg), SAPS(weight).

    Attributes
    ----------
    qhat_ : float            The conformal threshold (inf when the calibration set is too small for alpha).
    n_calibration_ : int     Number of calibration points.
    n_classes_ : int
    score_ : Score
    calibration_scores_ : ndarray (n,)  Sorted calibration scores.

    Notes
    -----
    Assumption: calibration and test pairs are exchangeable (e.g. i.i.d. from one distribution). Then
    1 - alpha <= P(Y in C(X)) <= 1 - alpha + 1/(n+1) for non-randomized continuous scores (the upper bound
    needs no ties). The guarantee is marginal, over the draw of calibration and test data, not per input.
    Non-randomized LAC, APS, RAPS and TopK sets equal TorchCP 1.2's on inputs without ties.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> probs = rng.dirichlet(np.ones(5), size=1000); labels = rng.integers(0, 5, 1000)
    >>> cp = SplitConformalClassifier(score="aps", alpha=0.1).fit(probs[:500], labels[:500])
    >>> cp.predict_sets(probs[500:]).shape
    (500, 5)
    """

    _kind = "SplitConformalClassifier"

    def fit(self, probs, labels):
        """Calibrate on held-out (probs, labels) that the model was not trained on; returns self."""
        alpha, score, p, y, s = self._fit_scores(probs, labels)
        s_sorted = np.sort(s)
        qhat = conformal_quantile(s_sorted, alpha)
        if not np.isfinite(qhat):
            warnings.warn(f"{p.shape[0]} calibration points are too few for alpha={alpha}: "
                          f"at least {_min_n(alpha)} are needed; qhat is inf and every set holds every label",
                          UserWarning, stacklevel=2)
        self.score_ = score
        self.qhat_ = qhat
        self.n_calibration_ = int(p.shape[0])
        self.n_classes_ = int(p.shape[1])
        self.calibration_scores_ = s_sorted
        return self

    def predict_sets(self, probs, rng=None) -> np.ndarray:
        """Boolean (n, K) prediction sets. Never modifies the calibrator (safe to share across threads)."""
        check_is_fitted(self)
        p = self._validate(probs)
        if self.randomized and not self.score_.randomizable:
            # LAC: smoothed p-values give exact coverage; the set is {y : p(x, y) > alpha}.
            sets = self.predict_pvalues(p, rng=rng) > self.alpha
            if not self.allow_empty:
                sets = _add_top1(sets, p)
            return sets
        u = self._uniforms(p.shape[0], rng)
        return self.score_.sets(p, self.qhat_, u, inputs=self.inputs, allow_empty=self.allow_empty,
                                temperature=self.temperature)

    def _pvalues(self, scores, v):
        return self._pvalues_against(self.calibration_scores_, scores, v)

    def _fitted_dict(self) -> dict:
        return {"qhat": self.qhat_, "n_calibration": self.n_calibration_, "n_classes": self.n_classes_,
                "calibration_scores": self.calibration_scores_}

    def _load_fitted(self, d: dict) -> None:
        scores = np.asarray(d["calibration_scores"], dtype=np.float64)
        n = int(d["n_calibration"])
        if scores.shape != (n,) or np.any(np.diff(scores) < 0):
            raise ValueError("saved calibration_scores do not match n_calibration or are not sorted")
        qhat = float(d["qhat"])
        if qhat != conformal_quantile(scores, self.alpha):
            raise ValueError("saved qhat does not match its calibration scores")
        self.qhat_, self.n_calibration_, self.n_classes_ = qhat, n, int(d["n_classes"])
        self.calibration_scores_ = scores


@register_kind
class ClassConditionalConformalClassifier(_Base):
    """Class-conditional (Mondrian) split conformal: one threshold per class.

    Guarantee: P(Y in C(X) | Y = k) >= 1 - alpha for every class k, assuming exchangeability within each class.
    A class with fewer than the needed calibration points cannot get a finite threshold:
    ``fallback="full"`` (default) keeps its guarantee by always including it (qhat_k = inf);
    ``fallback="marginal"`` uses the marginal threshold for it and loses the per-class guarantee there.
    Both warn and name the classes. Attributes as `SplitConformalClassifier`, with `qhat_` (alias `qhats_`) of
    shape (K,),
    `class_counts_` (K,) and `fallback_classes_` (the classes that used the fallback).
    """

    _kind = "ClassConditionalConformalClassifier"

    def __init__(self, score="aps", alpha: float = 0.1, randomized: bool = False, random_state=None,
                 allow_empty: bool = True, inputs: str = "probs", fallback: str = "full", **score_params):
        super().__init__(score=score, alpha=alpha, randomized=randomized, random_state=random_state,
                         allow_empty=allow_empty, inputs=inputs, **score_params)
        self.fallback = fallback

    def _check_params(self):
        out = super()._check_params()
        if self.fallback not in ("full", "marginal"):
            raise ValueError(f"`fallback` must be 'full' or 'marginal'; got {self.fallback!r}")
        return out

    def _params_dict(self) -> dict:
        return {**super()._params_dict(), "fallback": self.fallback}

    def _extra_params(self) -> dict:
        return {"fallback": self.fallback}

    def fit(self, probs, labels):
        alpha, score, p, y, s = self._fit_scores(probs, labels)
        k = p.shape[1]
        counts = np.bincount(y, minlength=k)
        order = np.lexsort((s, y))  # by class, then score
        per_class = np.split(s[order], np.cumsum(counts)[:-1])
        qhat = np.empty(k)
        fallback = []
        marginal = conformal_quantile(s, alpha)
        for c in range(k):
            q = conformal_quantile(per_class[c], alpha) if counts[c] > 0 else float("inf")
            if not np.isfinite(q):
                fallback.append(c)
                q = float("inf") if self.fallback == "full" else marginal
            qhat[c] = q
        if fallback:
            what = ("always included (guarantee kept, sets larger)" if self.fallback == "full"
                    else "given the marginal threshold (no per-class guarantee for them)")
            warnings.warn(f"classes {fallback} have fewer than the {_min_n(alpha)} calibration points alpha={alpha} "
                          f"needs; they are {what}", UserWarning, stacklevel=2)
        self.score_ = score
        self.qhat_ = qhat
        self.qhats_ = qhat  # the name for the per-class thresholds; same array
        self.n_calibration_ = int(p.shape[0])
        self.n_classes_ = int(k)
        self.class_counts_ = counts.astype(np.int64)
        self.fallback_classes_ = np.asarray(fallback, dtype=np.int64)
        self.calibration_scores_ = s[order]  # sorted within each class block
        return self

    def predict_sets(self, probs, rng=None) -> np.ndarray:
        check_is_fitted(self)
        p = self._validate(probs)
        if self.randomized and not self.score_.randomizable:
            sets = self.predict_pvalues(p, rng=rng) > self.alpha
            fb = self.fallback_classes_
            if self.fallback == "full" and fb.size:
                sets[:, fb] = True
            elif fb.size:  # marginal fallback: compare to the marginal threshold
                all_s = self.score_.all_scores(p, None, inputs=self.inputs, temperature=self.temperature)
                sets[:, fb] = all_s[:, fb] <= self.qhat_[fb]
        else:
            u = self._uniforms(p.shape[0], rng)
            all_s = self.score_.all_scores(p, u, inputs=self.inputs, temperature=self.temperature)
            sets = all_s <= self.qhat_[None, :]
        if not self.allow_empty:
            sets = _add_top1(sets, p, logits=self.inputs == "logits")
        return sets

    def _blocks(self):
        edges = np.concatenate([[0], np.cumsum(self.class_counts_)])
        return [self.calibration_scores_[edges[c]:edges[c + 1]] for c in range(self.n_classes_)]

    def _pvalues(self, scores, v):
        out = np.empty_like(scores)
        for c, block in enumerate(self._blocks()):
            if block.size == 0:
                out[:, c] = 1.0
                continue
            out[:, c] = self._pvalues_against(block, scores[:, c], None if v is None else v[:, 0])
        return out

    def _fitted_dict(self) -> dict:
        return {"qhat": self.qhat_, "n_calibration": self.n_calibration_, "n_classes": self.n_classes_,
                "class_counts": self.class_counts_, "fallback_classes": self.fallback_classes_,
                "calibration_scores": self.calibration_scores_}

    def _load_fitted(self, d: dict) -> None:
        self.qhat_ = np.asarray(d["qhat"], dtype=np.float64)
        self.qhats_ = self.qhat_
        self.n_calibration_ = int(d["n_calibration"])
        self.n_classes_ = int(d["n_classes"])
        self.class_counts_ = np.asarray(d["class_counts"], dtype=np.int64)
        self.fallback_classes_ = np.asarray(d["fallback_classes"], dtype=np.int64)
        self.calibration_scores_ = np.asarray(d["calibration_scores"], dtype=np.float64)
        if (self.qhat_.shape != (self.n_classes_,) or self.class_counts_.sum() != self.n_calibration_
                or self.calibration_scores_.shape != (self.n_calibration_,)):
            raise ValueError("saved ClassConditionalConformalClassifier state is inconsistent")


def _add_top1(sets: np.ndarray, p: np.ndarray, logits: bool = False) -> np.ndarray:
    """Give every empty set the label(s) of maximal probability (logits share the argmax of their softmax)."""
    empty = ~sets.any(axis=1)
    if empty.any():
        rows = p[empty]
        sets[empty] = rows == rows.max(axis=1, keepdims=True)
    return sets


# Keep NotFittedError importable from here, as users of scikit-learn expect.
NotFittedError = NotFittedError
