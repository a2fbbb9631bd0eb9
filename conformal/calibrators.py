"""Split conformal calibrators for classification: marginal and class-conditional.

Guarantee (split conformal, Vovk et al. 2005; Lei et al. 2018): if the n calibration pairs and the test pair are
exchangeable, then P(Y_test in C(X_test)) >= 1 - alpha, and, when scores have no ties, <= 1 - alpha + 1/(n+1).
The threshold is the k-th smallest calibration score with k = ceil((n + 1)(1 - alpha)) (`conformal_quantile`);
when k > n no finite threshold works and qhat is +inf (every label in every set), with a warning.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np

from conformal import _tensor
from conformal._base import (
    Array,
    BaseEstimator,
    Boolean,
    Float,
    InstanceOf,
    Int,
    Interval,
    Nested,
    Options,
    Satisfies,
    clone_params,
)
from conformal._validation import NotFittedError, as_array, check_is_fitted, check_labels, check_scores_matrix
from conformal.io import StateError, register_kind
from conformal.quantile import conformal_quantile, min_calibration_size  # noqa: F401 (re-exported)
from conformal.scores import get_score
from conformal.scores.base import Score
from conformal.utils import check_random_state

__all__ = ["conformal_quantile", "SplitConformalClassifier", "ClassConditionalConformalClassifier"]

_SCORE = [InstanceOf(str, Score, description="a score name or a Score object")]
_SEED = [None, Interval(numbers.Integral, 0, None, closed="left")]
_AUTO_BOOL = [Boolean(), Options(("auto",))]
# scores whose papers randomize their sets (Romano et al. 2020; Angelopoulos et al. 2021; Huang et al. 2024):
# randomized="auto" randomizes them and allow_empty="auto" then keeps every set non-empty (RAPS's code default)
RANDOMIZED_BY_DEFAULT = ("aps", "raps", "saps")


def resolve_set_mode(score, randomized, allow_empty) -> tuple[bool, bool]:
    """(randomized, allow_empty) that "auto" means for `score`: randomized, never-empty sets for APS, RAPS and
    SAPS; LAC and TopK non-randomized with empty sets allowed. Explicit booleans are kept; the TorchCP-identical
    mode is ``randomized=False, allow_empty=True``."""
    rank = getattr(score, "name", None) in RANDOMIZED_BY_DEFAULT
    r = rank if randomized == "auto" else bool(randomized)
    e = (not (rank and r)) if allow_empty == "auto" else bool(allow_empty)
    return r, e


def _is_class_list(c) -> bool:
    if not isinstance(c, (list, tuple)) or len(c) < 2:
        return False
    ok = all(isinstance(v, str) for v in c) or all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                                   for v in c)
    return ok and len(set(c)) == len(c)


def labels_to_index(labels, n: int, k: int, classes=None) -> tuple[list, np.ndarray]:
    """(classes_, column indices (n,) int64) of the user's labels. Without `classes`: integer labels are the column
    indices (classes_ = [0, ..., K-1]); other labels (e.g. str) must hold exactly K distinct values, sorted into
    the columns. With `classes` (one label per column, in column order) every label must be one of them."""
    if classes is None:
        try:
            return list(range(k)), check_labels(labels, n, k)
        except TypeError as exc:
            not_int = exc
            if not isinstance(labels, (list, tuple, np.ndarray)):
                raise
        arr = np.asarray(labels, dtype=object)
        if arr.ndim != 1 or arr.shape[0] != n:
            raise ValueError(f"`labels` must be 1-D with one entry per row of probs ({n}); got shape {arr.shape}")
        values = arr.tolist()
        if not all(isinstance(v, str) for v in values):
            if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
                return list(range(k)), check_labels(np.asarray(values, np.int64), n, k)  # a list of ints
            raise TypeError(f"{not_int} (or str labels, or pass classes=[...] for other labels)") from None
        found = sorted(set(values))
        if len(found) != k:
            raise ValueError(f"`labels` hold {len(found)} distinct labels but probs have {k} columns; pass "
                             f"classes=[...] (one label per column, in column order)")
        classes = found
    classes = [c.item() if isinstance(c, np.generic) else c for c in classes]
    if len(classes) != k:
        raise ValueError(f"`classes` has {len(classes)} labels but probs have {k} columns")
    index = {c: i for i, c in enumerate(classes)}
    arr = labels if isinstance(labels, (list, tuple)) else as_array(labels, "labels")
    values = list(arr) if isinstance(arr, (list, tuple)) else arr.tolist()
    if len(values) != n:
        raise ValueError(f"`labels` must have one entry per row of probs ({n}); got {len(values)}")
    out = np.empty(n, np.int64)
    for i, v in enumerate(values):
        j = index.get(v.item() if isinstance(v, np.generic) else v)
        if j is None:
            raise ValueError(f"`labels` index {i} holds {v!r}, which is not in `classes` ({classes[:10]}...)")
        out[i] = j
    return classes, out


class _Classes:
    """Fitted-state spec of `classes_`: distinct str or int labels, one per class (len == n_classes)."""

    def __call__(self, value, field):
        if not _is_class_list(value):
            raise StateError(f"saved field `{field}` must be a list of distinct str or int labels; got "
                             f"{str(value)[:100]}")
        return list(value)

    def check_relations(self, value, env, field):
        if len(value) != env["n_classes"]:
            raise StateError(f"saved field `{field}` has {len(value)} labels; `n_classes` = {env['n_classes']}")


class _ConformalClassifier(BaseEstimator):
    """What the marginal and class-conditional calibrators share: parameters, scores, p-values, persistence."""

    _parameter_constraints = {
        "score": _SCORE,
        "score_params": [None, InstanceOf(dict)],
        "alpha": [Interval(numbers.Real, 0, 1, closed="neither")],
        "randomized": _AUTO_BOOL,
        "random_state": _SEED,
        "allow_empty": _AUTO_BOOL,
        "inputs": [Options(("probs", "logits"))],
        "temperature": [Interval(numbers.Real, 0, None, closed="neither")],
        "classes": [None, Satisfies(lambda c: _is_class_list(c), "a list of distinct str or int labels, one per "
                                                                 "column of probs")],
    }
    _nested_params = {"score": "score_params"}
    _fitted_marker = "qhat_"

    # what "auto" means for the fitted score, read from the current parameters (as predict always read them)
    def randomized_for(self, score) -> bool:
        return resolve_set_mode(score, self.randomized, self.allow_empty)[0]

    @property
    def randomized_(self) -> bool:
        return resolve_set_mode(self.score_, self.randomized, self.allow_empty)[0]

    @property
    def allow_empty_(self) -> bool:
        return resolve_set_mode(self.score_, self.randomized, self.allow_empty)[1]

    def _check_dependent_params(self) -> None:
        get_score(self.score, **(self.score_params or {}))  # unknown names and bad score parameters
        if self.temperature != 1.0 and self.inputs != "logits":
            raise ValueError("`temperature` applies to logits only; pass inputs='logits' (or temperature=1.0)")

    def _make_score(self) -> Score:
        """A fresh score object (a given Score is copied, so the fitted calibrator never shares it)."""
        return clone_params(get_score(self.score, **(self.score_params or {})))

    def _validate(self, probs, fitted=True):
        k = self.n_classes_ if fitted else None
        # values are checked by the kernels as they read each row
        return check_scores_matrix(probs, "probs", inputs=self.inputs, n_classes=k, values=False)

    def _generator(self, rng) -> np.random.Generator:
        return check_random_state(self.random_state if rng is None else rng, "random_state" if rng is None else "rng")

    def _uniforms(self, n, rng):
        return self._generator(rng).random(n) if self.randomized_ else None

    def _fit_scores(self, probs, labels):
        self.validate_params()
        score = self._make_score()
        p = check_scores_matrix(probs, "probs", inputs=self.inputs, values=False)
        self.classes_, y = labels_to_index(labels, p.shape[0], p.shape[1], self.classes)
        randomized, _ = resolve_set_mode(score, self.randomized, self.allow_empty)
        u = self._generator(None).random(p.shape[0]) if randomized and score.randomizable else None
        s = score.label_scores(p, y, u, inputs=self.inputs, temperature=self.temperature)
        return float(self.alpha), score, p, y, s

    def predict_pvalues(self, probs, rng=None) -> np.ndarray:
        """Conformal p-values (n, K): p(x, y) = (1 + #{i : s_i >= s(x, y)}) / (n + 1) over the calibration
        scores (for randomized LAC smoothed: (#{s_i > s} + v (#{s_i = s} + 1)) / (n + 1), v ~ U[0, 1]). Label y is in
        the set exactly when p(x, y) > alpha (class-conditional: against the scores of class y only)."""
        check_is_fitted(self)
        p = self._validate(probs)
        gen = self._generator(rng)
        # Randomized rank scores carry their own uniform; LAC (no randomized score) smooths the p-value instead.
        smooth = self.randomized_ and not self.score_.randomizable
        u = gen.random(p.shape[0]) if (self.randomized_ and self.score_.randomizable) else None
        scores = self.score_.all_scores(p, u, inputs=self.inputs, temperature=self.temperature)
        v = gen.random(p.shape[0])[:, None] if smooth else None
        return self._pvalues(scores, v)

    def predict_labels(self, probs, rng=None) -> list[list]:
        """The prediction sets as lists of the user's labels (`classes_`, e.g. strings), one list per row; column j
        of `predict_sets` is label ``classes_[j]``. A torch tensor is accepted: its bool sets are read on the host
        (a CPU tensor's through a shared view, a CUDA tensor's copied once), as the lists are host objects."""
        sets = self.predict_sets(probs, rng=rng)
        if _tensor.is_tensor(sets):
            sets = as_array(sets, "sets")
        classes = self.classes_
        return [[classes[j] for j in np.flatnonzero(row)] for row in sets]

    @classmethod
    def _from_state(cls, state, where: str):
        fitted = state.get("fitted") if isinstance(state, dict) else None
        if isinstance(fitted, dict) and "classes" not in fitted and isinstance(fitted.get("n_classes"), int):
            # saved before `classes_` existed: the labels were the column indices
            state = {**state, "fitted": {**fitted, "classes": list(range(fitted["n_classes"]))}}
        return super()._from_state(state, where)

    @staticmethod
    def _pvalues_against(cal_sorted, s, v):
        n = cal_sorted.shape[0]
        ge = n - np.searchsorted(cal_sorted, s, side="left")  # #{s_i >= s}
        if v is None:
            return (1.0 + ge) / (n + 1.0)
        gt = n - np.searchsorted(cal_sorted, s, side="right")  # #{s_i > s}
        return (gt + v * (ge - gt + 1.0)) / (n + 1.0)

    # --- persistence (the generic path of conformal._base; these only check and upgrade) -----------------------
    def _check_score_state(self) -> None:
        if self.score_ != get_score(self.score, **(self.score_params or {})):
            raise StateError(f"saved field `score` ({self.score_!r}) does not match the parameters score="
                             f"{self.score!r}, score_params={self.score_params!r}")
        if self.calibration_scores_.shape != (self.n_calibration_,):
            raise StateError(f"saved field `calibration_scores` has shape {self.calibration_scores_.shape}; "
                             f"`n_calibration` says ({self.n_calibration_},)")

    @classmethod
    def _upgrade_state(cls, version: int, payload: dict) -> dict:
        """Schema 1 stored the score as its name plus `score_params` and no fitted score object."""
        if version != 1:
            return super()._upgrade_state(version, payload)
        try:
            params, fitted = dict(payload["params"]), dict(payload["fitted"])
            sp = dict(params["score_params"])
            score = get_score(params["score"], **sp)
        except (KeyError, TypeError, ValueError) as exc:
            raise StateError(f"saved {cls.__name__} state (schema_version 1) is malformed: {exc}") from None
        params["score_params"] = sp or None
        fitted["score"] = {"__estimator__": type(score).__name__, "params": score.get_params(deep=False),
                           "fitted": None}
        return {"params": params, "fitted": fitted}


@register_kind
class SplitConformalClassifier(_ConformalClassifier):
    """Marginal split conformal prediction sets for any score.

    Parameters
    ----------
    score : str or Score
        "lac", "aps", "raps", "saps", "topk", or a score object from `conformal.scores`.
    alpha : float in (0, 1)
        Miscoverage level: sets contain the true label with probability >= 1 - alpha.
    randomized : bool or "auto"
        Randomized scores (APS, RAPS, SAPS, TopK: one u ~ U[0, 1] per input, as in their papers) or, for LAC,
        smoothed p-values; gives coverage close to exactly 1 - alpha and smaller sets, at the price of
        randomness in the output. Draws come from `rng` (predict) or `random_state`. "auto" (default): True for
        APS, RAPS and SAPS (informative sets on confident models), False for LAC and TopK.
        ``randomized=False, allow_empty=True`` is the TorchCP-identical mode.
    random_state : int or None
        Seed for the uniforms at fit, and at predict when no `rng` is passed (so repeated calls agree).
    allow_empty : bool or "auto"
        With False, an empty set is replaced by the top-1 label (coverage can only rise). "auto" (default): False
        for randomized APS, RAPS and SAPS (their sets are never empty, as RAPS's reference code), True otherwise.
    inputs : "probs" or "logits"
        What the model outputs are; logits are soft-maxed in float64 inside the kernels.
    temperature : float > 0
        For logits only: softmax(logits / temperature), e.g. a temperature fitted on separate data. Any fixed
        temperature keeps the guarantee (it is part of the model); fitting it on the calibration set does not.
    score_params : dict or None
        Parameters of the score when `score` is a name: RAPS(lam, k_reg), SAPS(weight); None for the defaults.
        (A Score object carries its own; ``set_params(score__lam=...)`` reaches either.)
    classes : list or None
        The label of each column of probs, in column order (str or int). None: integer labels are the column
        indices, str labels are sorted into the columns (they must hold exactly K distinct values).

    Attributes
    ----------
    qhat_ : float            The conformal threshold (inf when the calibration set is too small for alpha).
    n_calibration_ : int     Number of calibration points.
    n_classes_ : int
    classes_ : list          The label of each column (see `classes`); `predict_labels` returns sets in these labels.
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

    _fitted_attributes = {"qhat_": Float(), "n_calibration_": Int(1), "n_classes_": Int(2), "classes_": _Classes(),
                          "calibration_scores_": Array("f", 1, shape=("n_calibration",), ascending=True),
                          "score_": Nested(Score)}

    def __init__(self, *, score="aps", score_params: dict | None = None, alpha: float = 0.1,
                 randomized="auto", random_state=None, allow_empty="auto", inputs: str = "probs",
                 temperature: float = 1.0, classes=None):
        self.score = score
        self.score_params = score_params
        self.alpha = alpha
        self.randomized = randomized
        self.random_state = random_state
        self.allow_empty = allow_empty
        self.inputs = inputs
        self.temperature = temperature
        self.classes = classes

    def fit(self, probs, labels):
        """Calibrate on held-out (probs, labels) that the model was not trained on; returns self."""
        alpha, score, p, y, s = self._fit_scores(probs, labels)
        s_sorted = np.sort(s)
        qhat = conformal_quantile(s_sorted, alpha)
        if not np.isfinite(qhat):
            warnings.warn(f"{p.shape[0]} calibration points are too few for alpha={alpha}: "
                          f"at least {min_calibration_size(alpha)} are needed; qhat is inf and every set holds "
                          f"every label", UserWarning, stacklevel=2)
        else:
            empty = top = None
            if score.name in RANDOMIZED_BY_DEFAULT and not self.randomized_for(score):
                top = np.argmax(p, axis=1)
                empty = empty_calibration_sets(score, p, y, s, qhat, self.inputs, self.temperature, top)
            message = degenerate_calibration(s_sorted, qhat, p, score.name, self.inputs, self.randomized_for(score),
                                             empty, top)
            if message:
                warnings.warn(message, UserWarning, stacklevel=2)
        self.score_ = score
        self.qhat_ = qhat
        self.n_calibration_ = int(p.shape[0])
        self.n_classes_ = int(p.shape[1])
        self.calibration_scores_ = s_sorted
        return self

    def predict_sets(self, probs, rng=None) -> np.ndarray:
        """Boolean (n, K) prediction sets. Never modifies the calibrator (safe to share across threads)."""
        check_is_fitted(self)
        if _tensor.is_tensor(probs):  # a torch tensor: a bool tensor on its device (conformal/_tensor.py)
            return _tensor.split_predict_sets(self, probs, rng)
        p = self._validate(probs)
        if self.randomized_ and not self.score_.randomizable:
            # LAC: smoothed p-values give exact coverage; the set is {y : p(x, y) > alpha}.
            sets = self.predict_pvalues(p, rng=rng) > self.alpha
            if not self.allow_empty_:
                sets = _add_top1(sets, p)
            return sets
        u = self._uniforms(p.shape[0], rng)
        return self.score_.sets(p, self.qhat_, u, inputs=self.inputs, allow_empty=self.allow_empty_,
                                temperature=self.temperature)

    def _pvalues(self, scores, v):
        return self._pvalues_against(self.calibration_scores_, scores, v)

    def _check_fitted_state(self) -> None:
        self._check_score_state()
        if np.any(np.diff(self.calibration_scores_) < 0):
            raise StateError("saved field `calibration_scores` must be sorted ascending")
        if self.qhat_ != conformal_quantile(self.calibration_scores_, self.alpha):
            raise StateError("saved field `qhat` does not match the conformal quantile of `calibration_scores`")


@register_kind
class ClassConditionalConformalClassifier(_ConformalClassifier):
    """Class-conditional (Mondrian) split conformal: one threshold per class.

    Guarantee: P(Y in C(X) | Y = k) >= 1 - alpha for every class k, assuming exchangeability within each class.
    A class with fewer than the needed calibration points cannot get a finite threshold:
    ``fallback="full"`` (default) keeps its guarantee by always including it (qhat_k = inf);
    ``fallback="marginal"`` uses the marginal threshold for it and loses the per-class guarantee there.
    Both warn and name the classes. Attributes as `SplitConformalClassifier`, with `qhat_` (alias `qhats_`) of
    shape (K,),
    `class_counts_` (K,) and `fallback_classes_` (the classes that used the fallback).
    """

    _parameter_constraints = {**_ConformalClassifier._parameter_constraints,
                              "fallback": [Options(("full", "marginal"))]}
    _fitted_attributes = {"qhat_": Array("f", 1, shape=("n_classes",)), "n_calibration_": Int(1),
                          "n_classes_": Int(2), "classes_": _Classes(),
                          "class_counts_": Array("i", 1, shape=("n_classes",), low=0),
                          "fallback_classes_": Array("i", 1, low=0),
                          "calibration_scores_": Array("f", 1, shape=("n_calibration",)), "score_": Nested(Score)}
    _derived_attributes = ("qhats_",)

    def __init__(self, *, score="aps", score_params: dict | None = None, alpha: float = 0.1,
                 randomized="auto", random_state=None, allow_empty="auto", inputs: str = "probs",
                 temperature: float = 1.0, fallback: str = "full", classes=None):
        self.score = score
        self.score_params = score_params
        self.alpha = alpha
        self.randomized = randomized
        self.random_state = random_state
        self.allow_empty = allow_empty
        self.inputs = inputs
        self.temperature = temperature
        self.classes = classes
        self.fallback = fallback

    def _class_thresholds(self, sorted_blocks, all_scores, alpha):
        """Per-class thresholds (K,) and the classes that needed the fallback, from class-sorted score blocks."""
        qhat = np.empty(len(sorted_blocks))
        fallback = []
        marginal = conformal_quantile(all_scores, alpha)
        for c, block in enumerate(sorted_blocks):
            q = conformal_quantile(block, alpha) if block.size > 0 else float("inf")
            if not np.isfinite(q):
                fallback.append(c)
                q = float("inf") if self.fallback == "full" else marginal
            qhat[c] = q
        return qhat, fallback

    def fit(self, probs, labels):
        """Calibrate one threshold per class on held-out (probs, labels); returns self."""
        alpha, score, p, y, s = self._fit_scores(probs, labels)
        k = p.shape[1]
        counts = np.bincount(y, minlength=k)
        order = np.lexsort((s, y))  # by class, then score
        per_class = np.split(s[order], np.cumsum(counts)[:-1])
        qhat, fallback = self._class_thresholds(per_class, s, alpha)
        if fallback:
            what = ("always included (guarantee kept, sets larger)" if self.fallback == "full"
                    else "given the marginal threshold (no per-class guarantee for them)")
            warnings.warn(f"classes {fallback} have fewer than the {min_calibration_size(alpha)} calibration points "
                          f"alpha={alpha} needs; they are {what}", UserWarning, stacklevel=2)
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
        if _tensor.is_tensor(probs):
            return _tensor.class_conditional_predict_sets(self, probs, rng)
        p = self._validate(probs)
        if self.randomized_ and not self.score_.randomizable:
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
        if not self.allow_empty_:
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

    def _rebuild(self) -> None:
        self.qhats_ = self.qhat_

    def _check_fitted_state(self) -> None:
        self._check_score_state()
        k = self.n_classes_
        for name in ("qhat", "class_counts"):
            if getattr(self, name + "_").shape != (k,):
                raise StateError(f"saved field `{name}` must have shape ({k},) (n_classes); got "
                                 f"{getattr(self, name + '_').shape}")
        if (self.class_counts_ < 0).any() or self.class_counts_.sum() != self.n_calibration_:
            raise StateError("saved field `class_counts` must be >= 0 and sum to `n_calibration`")
        blocks = self._blocks()
        if any(np.any(np.diff(b) < 0) for b in blocks):
            raise StateError("saved field `calibration_scores` must be sorted within each class block")
        qhat, fallback = self._class_thresholds(blocks, self.calibration_scores_, float(self.alpha))
        if not np.array_equal(qhat, self.qhat_):
            raise StateError("saved field `qhat` does not match the per-class conformal quantiles of "
                             "`calibration_scores`")
        if not np.array_equal(np.asarray(fallback, np.int64), self.fallback_classes_):
            raise StateError("saved field `fallback_classes` does not match `class_counts` and alpha")


SATURATED = 1.0 - 1e-6  # a top probability this close to 1 leaves the other labels' ranks to rounding


def empty_calibration_sets(score, p, y, s, qhat: float, inputs: str, temperature: float, top=None) -> np.ndarray:
    """Which calibration inputs get an empty non-randomized rank-score set, without building the sets: a set is
    empty iff the top label's score exceeds qhat (the top label has the smallest score of its row). Where the true
    label is the top one its score `s` is known; where it is not and `s` <= qhat the set holds it; only the other
    rows (at most the misses) need the top label's score computed."""
    top = np.argmax(p, axis=1) if top is None else top
    is_top = top == y
    empty = is_top & (s > qhat)
    rest = np.flatnonzero(~is_top & (s > qhat))
    if rest.size:
        empty[rest] = score.label_scores(p[rest], top[rest], None, inputs=inputs, temperature=temperature) > qhat
    return empty


def degenerate_calibration(s_sorted, qhat: float, probs, score_name: str, inputs: str, randomized: bool,
                           empty=None, top=None) -> str:
    """A warning (with numbers) when the calibration is degenerate, else "": qhat at the largest calibration score,
    heavy ties at qhat (>= 5 % of the scores equal it), a saturated model (>= 25 % of the rows with top
    probability > 1 - 1e-6) under a non-randomized rank score, or (`empty`: which calibration inputs that score's
    sets leave empty, `empty_calibration_sets`) >= 1 % empty sets, the most confident inputs."""
    n = s_sorted.shape[0]
    parts = []
    if n > 1 and qhat == s_sorted[-1] and s_sorted[0] != s_sorted[-1]:
        parts.append(f"qhat = {qhat:.6g} is the largest calibration score (n = {n})")
    ties = int(np.count_nonzero(s_sorted == qhat))
    if ties >= max(2, 0.05 * n):
        parts.append(f"{ties} of {n} calibration scores ({ties / n:.1%}) equal qhat = {qhat:.6g}")
    if inputs == "probs" and score_name in RANDOMIZED_BY_DEFAULT and not randomized:
        pmax = probs.max(axis=1) if top is None else probs[np.arange(probs.shape[0]), top]  # argmax given: no pass
        sat = float(np.mean(pmax > SATURATED))
        if sat >= 0.25:
            parts.append(f"{sat:.1%} of the calibration rows have a top probability > 1 - 1e-6 (saturated); "
                         f"non-randomized {score_name.upper()} sets are then empty or hold most labels")
    if empty is not None:
        share = float(np.mean(empty))
        if share >= 0.01:
            parts.append(f"non-randomized {score_name.upper()} sets at qhat = {qhat:.6g} are empty for {share:.1%} "
                         f"of the calibration inputs (the most confident ones)")
    if not parts:
        return ""
    return ("degenerate calibration: " + "; ".join(parts) + ". Sets may be empty or uninformative; use "
            "randomized sets (randomized='auto', the default for APS/RAPS/SAPS), score='lac', or more / less "
            "confident calibration data")


def _add_top1(sets: np.ndarray, p: np.ndarray, logits: bool = False) -> np.ndarray:
    """Give every empty set the label(s) of maximal probability (logits share the argmax of their softmax)."""
    empty = ~sets.any(axis=1)
    if empty.any():
        rows = p[empty]
        sets[empty] = rows == rows.max(axis=1, keepdims=True)
    return sets


# Keep NotFittedError importable from here, as users of scikit-learn expect.
NotFittedError = NotFittedError
