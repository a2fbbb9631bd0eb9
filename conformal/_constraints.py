"""The declared-constraints mechanism of the estimator contract (conformal/_base.py), small on purpose.

Parameter constraints: each estimator declares ``_parameter_constraints = {"alpha": [Interval(Real, 0, 1,
closed="neither")], "rule": [Options(RULES, registry="rules")], "score_params": [None, InstanceOf(dict)], ...}``;
`check_constraints` accepts a value that satisfies one of the listed constraints (None: the value None) and
otherwise raises `InvalidParameterError` (a ValueError *and* a TypeError, as in scikit-learn) worded
"`name` must be ...; got ...".

Fitted-state specs: ``_fitted_attributes = {"qhat_": Float(), "calibration_scores_": Array("f", 1), ...}``; each
spec checks (and converts from JSON) one loaded field, raising `conformal.io.StateError` that names it. A spec
may also relate its field to the others by name (checked once every field is loaded, `check_relations`):
``Int(0, maximum="n_calibration")``, ``Array("f", 1, shape=("n_calibration",), low=0.0, high=1.0)``,
``Array("i", 1, shape=("taus",), high="n_accepted")`` (a name of an int field stands for its value, of an array
field for its length in a shape and for its values, element by element, in a bound). Inside a `Mapping` names
refer to the mapping's own keys first, then to the enclosing fields.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from conformal.io import StateError

__all__ = ["InvalidParameterError", "Interval", "Options", "InstanceOf", "Boolean", "Callable", "Satisfies",
           "check_constraints", "Float", "Int", "Bool", "Array", "Nested", "Optional", "Mapping", "Tuple"]


class InvalidParameterError(ValueError, TypeError):
    """A hyper-parameter of the wrong type or value (a ValueError and a TypeError, as in scikit-learn)."""


# --- parameter constraints ------------------------------------------------------------------------------------
class _Constraint:
    def is_satisfied_by(self, value) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError


def _fmt(x) -> str:
    if x is None:
        return "inf"
    return repr(int(x)) if float(x).is_integer() else repr(float(x))


class Interval(_Constraint):
    """A real (`numbers.Real`) or integer (`numbers.Integral`) value in [left, right] (None: unbounded).

    ``closed`` is "both", "left", "right" or "neither". Bools are never numbers here. Real values must be
    finite unless ``allow_inf=True``.
    """

    def __init__(self, kind, left=None, right=None, *, closed: str = "both", allow_inf: bool = False):
        if kind not in (numbers.Real, numbers.Integral):
            raise TypeError(f"`kind` must be numbers.Real or numbers.Integral; got {kind!r}")
        if closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"`closed` must be 'both', 'left', 'right' or 'neither'; got {closed!r}")
        self.kind, self.left, self.right, self.closed, self.allow_inf = kind, left, right, closed, allow_inf

    def is_satisfied_by(self, value) -> bool:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, self.kind):
            return False
        if self.kind is numbers.Real:
            if math.isnan(value) or (math.isinf(value) and not self.allow_inf):
                return False
        lo_closed = self.closed in ("both", "left")
        hi_closed = self.closed in ("both", "right")
        if self.left is not None and (value < self.left or (value == self.left and not lo_closed)):
            return False
        if self.right is not None and (value > self.right or (value == self.right and not hi_closed)):
            return False
        return True

    def describe(self) -> str:
        noun = "an int" if self.kind is numbers.Integral else ("a float" if not self.allow_inf else "a number")
        lo_closed = self.closed in ("both", "left")
        hi_closed = self.closed in ("both", "right")
        if self.left is not None and self.right is not None:
            return f"in {'[' if lo_closed else '('}{_fmt(self.left)}, {_fmt(self.right)}{']' if hi_closed else ')'}"
        finite = "finite " if self.kind is numbers.Real and not self.allow_inf else ""
        noun = noun.replace("a float", f"a {finite}float") if finite else noun
        if self.left is not None:
            return f"{noun} {'>=' if lo_closed else '>'} {_fmt(self.left)}"
        if self.right is not None:
            return f"{noun} {'<=' if hi_closed else '<'} {_fmt(self.right)}"
        return noun


class Options(_Constraint):
    """One of a fixed set of values (compared with ==, bools never equal ints here).

    `values` may be a zero-argument callable (a registry that can grow). With ``registry="rules"`` a wrong
    string reads "unknown `rule` 'x'; valid rules are: a, b", the message of a name looked up in a registry.
    """

    def __init__(self, values, *, registry: str | None = None):
        self._values, self.registry = values, registry

    @property
    def values(self):
        return tuple(self._values() if callable(self._values) else self._values)

    def is_satisfied_by(self, value) -> bool:
        if isinstance(value, (bool, np.bool_)):
            return any(isinstance(v, bool) and v == value for v in self.values)
        for v in self.values:
            if isinstance(v, bool) or isinstance(v, str) != isinstance(value, str):
                continue
            if isinstance(v, numbers.Integral) and not isinstance(value, numbers.Integral):
                continue  # 2.0 is not the option 2
            try:
                if value == v:
                    return True
            except (TypeError, ValueError):  # arrays and other incomparable values
                return False
        return False

    def describe(self) -> str:
        vals = [repr(v) for v in self.values]
        return " or ".join(vals) if len(vals) <= 2 else "one of " + ", ".join(vals)


class InstanceOf(_Constraint):
    def __init__(self, *types, description: str | None = None):
        self.types, self.description = types, description

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, self.types) and not (bool not in self.types and isinstance(value, bool))

    def describe(self) -> str:
        return self.description or " or ".join(f"a {t.__name__}" for t in self.types)


class Boolean(_Constraint):
    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, (bool, np.bool_))

    def describe(self) -> str:
        return "a bool"


class Callable(_Constraint):
    def __init__(self, description: str = "a callable"):
        self.description = description

    def is_satisfied_by(self, value) -> bool:
        return callable(value) and not isinstance(value, type)

    def describe(self) -> str:
        return self.description


class Satisfies(_Constraint):
    """Any value for which ``predicate(value)`` is true, described by `description`."""

    def __init__(self, predicate, description: str):
        self.predicate, self.description = predicate, description

    def is_satisfied_by(self, value) -> bool:
        return bool(self.predicate(value))

    def describe(self) -> str:
        return self.description


def _describe(options) -> str:
    parts = ["None" if c is None else c.describe() for c in options]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def check_constraints(name: str, value, options) -> None:
    """Raise InvalidParameterError unless `value` satisfies one of `options` (constraints or None)."""
    for c in options:
        if (c is None and value is None) or (c is not None and c.is_satisfied_by(value)):
            return
    for c in options:  # a name looked up in a registry has its own message
        if isinstance(c, Options) and c.registry and isinstance(value, str):
            raise InvalidParameterError(f"unknown `{name}` {value!r}; valid {c.registry} are: "
                                        f"{', '.join(map(str, c.values))}")
    shown = type(value).__name__ if isinstance(value, np.ndarray) else repr(value)
    raise InvalidParameterError(f"`{name}` must be {_describe(options)}; got {shown}")


# --- fitted-state specs (checked when a saved state is loaded) ------------------------------------------------
class _Spec:
    def __call__(self, value, field: str):  # pragma: no cover - interface
        raise NotImplementedError

    def check_relations(self, value, env, field: str) -> None:
        """Check `value` against the other loaded fields `env` ({name without the trailing _: value})."""


def _resolve(ref, env, field: str):
    """A bound or shape entry: a literal, or the value of the loaded field named `ref`."""
    if not isinstance(ref, str):
        return ref
    if ref not in env:
        raise StateError(f"saved field `{field}` is checked against field `{ref}`, which is missing")
    return env[ref]


def _check_bounds(field: str, value, low, high, env) -> None:
    """value (a number or an array) within [low, high]; bounds may name other fields (element-wise for arrays)."""
    v = np.asarray(value)
    for bound, op in ((low, ">="), (high, "<=")):
        b = _resolve(bound, env, field)
        if b is None:
            continue
        b = np.asarray(b)
        if b.ndim and b.shape != v.shape:
            raise StateError(f"saved field `{field}` must have the shape of `{bound}` {b.shape}; got {v.shape}")
        bad = (v < b) if op == ">=" else (v > b)
        if v.dtype.kind == "f":
            bad &= ~np.isnan(v)
        if np.any(bad):
            i = int(np.flatnonzero(np.ravel(bad))[0])
            got = np.ravel(v)[i].item()
            limit = np.ravel(np.broadcast_to(b, v.shape))[i].item()
            named = f"`{bound}` = {limit!r}" if isinstance(bound, str) else repr(limit)
            at = f" at index {i}" if v.ndim else ""
            raise StateError(f"saved field `{field}` must be {op} {named}; got {got!r}{at}")


def _bad(field: str, what: str, value) -> StateError:
    shown = f"an array of shape {value.shape} and dtype {value.dtype}" if isinstance(value, np.ndarray) else \
        f"{type(value).__name__} {value!r}"[:200]
    return StateError(f"saved field `{field}` must be {what}; got {shown}")


class Float(_Spec):
    """A float; ``finite=True`` refuses inf, NaN is always refused unless ``allow_nan``."""

    def __init__(self, *, finite: bool = False, allow_nan: bool = False, low=None, high=None):
        self.finite, self.allow_nan, self.low, self.high = finite, allow_nan, low, high

    def __call__(self, value, field):
        if isinstance(value, str) and value in ("inf", "-inf", "nan"):  # how conformal.io writes them
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise _bad(field, "a number", value)
        v = float(value)
        if math.isnan(v):
            if self.allow_nan:
                return v
            raise _bad(field, "a number (not NaN)", value)
        if self.finite and math.isinf(v):
            raise _bad(field, "a finite number", value)
        literal = [b for b in (self.low, self.high) if not isinstance(b, str)]
        if literal and ((isinstance(self.low, (int, float)) and v < self.low)
                        or (isinstance(self.high, (int, float)) and v > self.high)):
            raise _bad(field, f"in [{self.low}, {self.high}]", value)
        return v

    def check_relations(self, value, env, field):
        if isinstance(self.low, str) or isinstance(self.high, str):
            _check_bounds(field, value, self.low, self.high, env)


class Int(_Spec):
    """An int >= `minimum` and, when given, <= `maximum` (an int or the name of another field)."""

    def __init__(self, minimum: int = 0, maximum: int | str | None = None):
        self.minimum, self.maximum = minimum, maximum

    def __call__(self, value, field):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise _bad(field, "an int", value)
        if value < self.minimum:
            raise _bad(field, f"an int >= {self.minimum}", value)
        if isinstance(self.maximum, int) and value > self.maximum:
            raise _bad(field, f"an int <= {self.maximum}", value)
        return int(value)

    def check_relations(self, value, env, field):
        if isinstance(self.maximum, str):
            _check_bounds(field, value, None, self.maximum, env)


class Bool(_Spec):
    def __call__(self, value, field):
        if not isinstance(value, (bool, np.bool_)):
            raise _bad(field, "a bool", value)
        return bool(value)


class Array(_Spec):
    """An ndarray of a dtype kind ("f", "i", "b") and ndim; optionally finite (no NaN/inf) or without NaN.

    `shape` (one entry per dimension: an int, None for any, or the name of an int field / of an array field whose
    length it must have), `low` / `high` (numbers or names of fields) and ``ascending=True`` relate it to the
    other fields (`check_relations`).
    """

    _DTYPES = {"f": np.float64, "i": np.int64, "b": np.bool_}

    def __init__(self, kind: str, ndim: int, *, finite: bool = False, no_nan: bool = True, shape=None, low=None,
                 high=None, ascending: bool = False):
        self.kind, self.ndim, self.finite, self.no_nan = kind, ndim, finite, no_nan
        self.shape, self.low, self.high, self.ascending = shape, low, high, ascending

    def check_relations(self, value, env, field):
        if self.shape is not None:
            want = []
            for entry in self.shape:
                e = _resolve(entry, env, field)
                want.append(e.shape[0] if isinstance(e, np.ndarray) else e)
            if len(want) != value.ndim or any(w is not None and w != g for w, g in zip(want, value.shape)):
                names = ", ".join(str(e) for e in self.shape)
                raise StateError(f"saved field `{field}` must have shape ({names}) = {tuple(want)}; got "
                                 f"{value.shape}")
        if self.low is not None or self.high is not None:
            _check_bounds(field, value, self.low, self.high, env)
        if self.ascending and value.size > 1 and np.any(np.diff(value.ravel()) < 0):
            raise StateError(f"saved field `{field}` must be sorted ascending")

    def __call__(self, value, field):
        what = f"a {self.ndim}-D {np.dtype(self._DTYPES[self.kind]).name} array"
        if not isinstance(value, np.ndarray) or value.ndim != self.ndim:
            raise _bad(field, what, value)
        kind_ok = value.dtype.kind == self.kind or (self.kind == "i" and value.dtype.kind in "iu") or \
            (self.kind == "f" and value.dtype.kind in "iu" and value.size == 0)
        if not kind_ok:
            raise _bad(field, what, value)
        arr = value.astype(self._DTYPES[self.kind], copy=False)
        if self.kind == "f":
            if self.finite and not np.isfinite(arr).all():
                raise StateError(f"saved field `{field}` must be finite; it holds NaN or inf")
            if self.no_nan and np.isnan(arr).any():
                raise StateError(f"saved field `{field}` must not hold NaN")
        return arr


class Nested(_Spec):
    """An instance of one of `classes` (a nested estimator or record, already rebuilt)."""

    def __init__(self, *classes):
        self.classes = classes

    def __call__(self, value, field):
        if not isinstance(value, self.classes):
            raise _bad(field, " or ".join(f"a saved {c.__name__}" for c in self.classes), value)
        return value


class Optional(_Spec):
    def __init__(self, spec: _Spec):
        self.spec = spec

    def __call__(self, value, field):
        return None if value is None else self.spec(value, field)

    def check_relations(self, value, env, field):
        if value is not None:
            self.spec.check_relations(value, env, field)


class Mapping(_Spec):
    """A dict with exactly the given keys (each with its own spec), or any str-keyed dict without `keys`."""

    def __init__(self, keys: dict | None = None):
        self.keys = keys

    def __call__(self, value, field):
        if not isinstance(value, dict):
            raise _bad(field, "a dict", value)
        if self.keys is None:
            return value
        if set(value) != set(self.keys):
            raise StateError(f"saved field `{field}` must have the keys {sorted(self.keys)}; got {sorted(value)}")
        return {k: spec(value[k], f"{field}.{k}") for k, spec in self.keys.items()}

    def check_relations(self, value, env, field):
        if self.keys is not None:
            inner = {**env, **value}  # the mapping's own keys first
            for k, spec in self.keys.items():
                spec.check_relations(value[k], inner, f"{field}.{k}")


class Tuple(_Spec):
    def __init__(self, *specs: _Spec):
        self.specs = specs

    def __call__(self, value, field):
        if not isinstance(value, (tuple, list)) or len(value) != len(self.specs):
            raise _bad(field, f"a tuple of {len(self.specs)} values", value)
        return tuple(spec(v, f"{field}[{i}]") for i, (spec, v) in enumerate(zip(self.specs, value)))

    def check_relations(self, value, env, field):
        for i, (spec, v) in enumerate(zip(self.specs, value)):
            spec.check_relations(v, env, f"{field}[{i}]")
