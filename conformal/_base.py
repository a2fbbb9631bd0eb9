"""The estimator contract of the library (scikit-learn's), in one place.

Every public estimator of `conformal` derives from `BaseEstimator`:

* hyper-parameters are keyword-only arguments of ``__init__``, stored unchanged as attributes of the same name;
  ``__init__`` computes and validates nothing and takes no ``**kwargs``, so `sklearn.base.clone` works;
* `get_params` / `set_params` (nested ``score__lam`` names reach a nested estimator, or the ``score_params``
  dict when the score is given by name);
* `validate_params` checks every hyper-parameter against the class's declared `_parameter_constraints` table
  (one mechanism, `Interval`, `Options`, ...), then the rules linking parameters (`_check_dependent_params`),
  raising `InvalidParameterError` (a ValueError *and* a TypeError) that names the parameter. `fit` calls it; so
  can a config checker, without data;
* `fit` learns and sets public attributes ending in ``_``; `NotFittedError` before that;
* one generic `to_dict` / `from_dict` / `save` / `load` persists the fitted state (JSON + sha256 via
  `conformal.io`): every public trailing-underscore attribute but the derived ones, each checked on load
  against the class's `_fitted_attributes` table; nested estimators and records are handled recursively,
  derived objects are rebuilt (`_rebuild`), and the loaded state is checked for sense (`_check_fitted_state`);
* a generic ``__repr__`` from `get_params`.

Scores are stateless estimators without `fit`; as they are used directly they validate at construction.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
import os
from typing import ClassVar

import numpy as np

from conformal import io as _io
from conformal._validation import NotFittedError
from conformal.io import StateError

__all__ = ["BaseEstimator", "Record", "InvalidParameterError", "NotFittedError", "Interval", "Options",
           "InstanceOf", "Boolean", "Callable", "Satisfies", "Float", "Int", "Bool", "Array", "Nested", "Optional",
           "Mapping", "Tuple", "clone_params"]


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
        if (self.low is not None and v < self.low) or (self.high is not None and v > self.high):
            raise _bad(field, f"in [{self.low}, {self.high}]", value)
        return v


class Int(_Spec):
    def __init__(self, minimum: int = 0):
        self.minimum = minimum

    def __call__(self, value, field):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise _bad(field, "an int", value)
        if value < self.minimum:
            raise _bad(field, f"an int >= {self.minimum}", value)
        return int(value)


class Bool(_Spec):
    def __call__(self, value, field):
        if not isinstance(value, (bool, np.bool_)):
            raise _bad(field, "a bool", value)
        return bool(value)


class Array(_Spec):
    """An ndarray of a dtype kind ("f", "i", "b") and ndim; optionally finite (no NaN/inf) or without NaN."""

    _DTYPES = {"f": np.float64, "i": np.int64, "b": np.bool_}

    def __init__(self, kind: str, ndim: int, *, finite: bool = False, no_nan: bool = True):
        self.kind, self.ndim, self.finite, self.no_nan = kind, ndim, finite, no_nan

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


class Tuple(_Spec):
    def __init__(self, *specs: _Spec):
        self.specs = specs

    def __call__(self, value, field):
        if not isinstance(value, (tuple, list)) or len(value) != len(self.specs):
            raise _bad(field, f"a tuple of {len(self.specs)} values", value)
        return tuple(spec(v, f"{field}[{i}]") for i, (spec, v) in enumerate(zip(self.specs, value)))


# --- generic encoding of nested objects ----------------------------------------------------------------------
_MARKERS = ("__estimator__", "__record__", "__tuple__", "__items__", "__same_as__")


def _encode(value, where: str):
    """JSON-ready form of a parameter or fitted value (arrays and floats are left to conformal.io)."""
    if isinstance(value, BaseEstimator):
        return {"__estimator__": value._kind_name(), **value._state(where)}
    if isinstance(value, Record):
        return {"__record__": value._kind_name(), "fields": value.to_dict()}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            bad = [k for k in value if k in _MARKERS]
            if bad:
                raise TypeError(f"cannot save `{where}`: its key {bad[0]!r} is reserved")
            return {k: _encode(v, f"{where}.{k}") for k, v in value.items()}
        for k in value:
            if not (k is None or isinstance(k, (str, int, np.integer)) and not isinstance(k, bool)):
                raise TypeError(f"cannot save `{where}`: dict key {k!r} is not a str, int or None")
        return {"__items__": [[None if k is None else (k if isinstance(k, str) else int(k)),
                               _encode(v, f"{where}[{k!r}]")] for k, v in value.items()]}
    if callable(value) and not isinstance(value, (np.ndarray, np.generic)):
        raise TypeError(f"`{where}` is a callable ({getattr(value, '__name__', type(value).__name__)}), which "
                        f"cannot be saved (code is never serialised); use a registered name instead, or refit "
                        f"after loading")
    return value


def _decode(value, where: str):
    if isinstance(value, list):
        return [_decode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if "__estimator__" in value:
        cls = _kind_class(value["__estimator__"], where)
        return cls._from_state(value, where)
    if "__record__" in value:
        cls = _kind_class(value["__record__"], where)
        return cls.from_dict(value.get("fields"), where=where)
    if "__tuple__" in value:
        return tuple(_decode(v, f"{where}[{i}]") for i, v in enumerate(value["__tuple__"]))
    if "__items__" in value:
        try:
            return {k: _decode(v, f"{where}[{k!r}]") for k, v in value["__items__"]}
        except (TypeError, ValueError):
            raise StateError(f"saved field `{where}` is malformed (expected [key, value] pairs)") from None
    return {k: _decode(v, f"{where}.{k}") for k, v in value.items()}


def _kind_class(kind, where):
    cls = _io._KINDS.get(kind)
    if cls is None:
        raise StateError(f"saved field `{where}` holds an unknown kind {kind!r}; known: {sorted(_io._KINDS)}")
    return cls


def clone_params(obj):
    """A new, unfitted object of the same class with the same parameters (nested estimators cloned too)."""
    params = {k: clone_params(v) if isinstance(v, BaseEstimator) else v for k, v in obj.get_params(deep=False).items()}
    return type(obj)(**params)


# --- the estimator base class --------------------------------------------------------------------------------
class BaseEstimator:
    """Base class of every estimator: parameters, validation, repr and the generic fitted-state persistence.

    Subclasses declare:
      `_parameter_constraints`  {parameter: [constraints or None]} (every __init__ parameter);
      `_check_dependent_params` rules linking parameters (registry look-ups, parameters of a named rule);
      `_fitted_attributes`      {attribute_: spec} of the saved fitted state (derived ones are not listed);
      `_derived_attributes`     public fitted attributes rebuilt by `_rebuild` on load instead of saved;
      `_nested_params`          {parameter: dict parameter} receiving ``parameter__key`` when `parameter` is a name;
      `_fitted_marker`          the attribute whose presence means "fitted".
    """

    _parameter_constraints: ClassVar[dict] = {}
    _fitted_attributes: ClassVar[dict] = {}
    _derived_attributes: ClassVar[tuple] = ()
    _nested_params: ClassVar[dict] = {}
    _fitted_marker: ClassVar[str | None] = None

    # --- parameters -------------------------------------------------------------------------------------------
    @classmethod
    def _get_param_names(cls) -> list[str]:
        init = cls.__init__
        if init is object.__init__:
            return []
        names = []
        for p in inspect.signature(init).parameters.values():
            if p.name == "self":
                continue
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"{cls.__name__}.__init__ must not take *args or **kwargs (the estimator contract)")
            names.append(p.name)
        return names

    def get_params(self, deep: bool = True) -> dict:
        """The hyper-parameters as a dict; with deep=True also ``name__key`` entries of nested estimators
        (and of the ``score_params``-style dicts of parameters given by name)."""
        out = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            out[name] = value
            if not deep:
                continue
            if hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{name}__{k}", v) for k, v in value.get_params(deep=True).items())
            elif name in self._nested_params and isinstance(getattr(self, self._nested_params[name]), dict):
                out.update((f"{name}__{k}", v) for k, v in getattr(self, self._nested_params[name]).items())
        return out

    def set_params(self, **params):
        """Set hyper-parameters (``name__key`` for a nested estimator's, or for the ``*_params`` dict of a
        parameter given by name); returns self. Values are validated by `validate_params` (or `fit`)."""
        if not params:
            return self
        valid = self._get_param_names()
        nested: dict[str, dict] = {}
        for key, value in params.items():
            name, sep, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"invalid parameter `{name}` for {type(self).__name__}; valid parameters are: "
                                 f"{', '.join(valid)}")
            if sep:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            target = getattr(self, name)
            if hasattr(target, "set_params") and not isinstance(target, type):
                target.set_params(**sub_params)
            elif name in self._nested_params:
                dict_name = self._nested_params[name]
                setattr(self, dict_name, {**(getattr(self, dict_name) or {}), **sub_params})
            else:
                raise ValueError(f"`{name}` of {type(self).__name__} has no nested parameters; got "
                                 f"{', '.join(f'{name}__{k}' for k in sub_params)}")
        return self

    def validate_params(self):
        """Check every hyper-parameter (types, ranges, names, the parameters of named scores and rules) without
        data; raises InvalidParameterError (a ValueError and TypeError) naming the parameter; returns self."""
        for name in self._get_param_names():
            options = self._parameter_constraints.get(name)
            if options is None:
                raise TypeError(f"{type(self).__name__} declares no constraint for parameter `{name}`")
            check_constraints(name, getattr(self, name), options)
        self._check_dependent_params()
        return self

    def _check_dependent_params(self) -> None:
        """Rules that link parameters or look names up in registries (overridden where needed)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({args})"

    # --- fitted state -----------------------------------------------------------------------------------------
    def __sklearn_is_fitted__(self) -> bool:
        return self._fitted_marker is not None and hasattr(self, self._fitted_marker)

    def _check_is_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit first")

    def _fitted_names(self) -> list[str]:
        return [k for k in vars(self) if k.endswith("_") and not k.startswith("_")
                and k not in self._derived_attributes]

    @classmethod
    def _kind_name(cls) -> str:
        return cls.__name__

    def _state(self, where: str = "") -> dict:
        """{"params": ..., "fitted": ... or None} with nested objects encoded (see conformal.io for the rest)."""
        prefix = f"{where}." if where else ""
        params = {k: _encode(v, f"{prefix}{k}") for k, v in self.get_params(deep=False).items()}
        if not self.__sklearn_is_fitted__():
            return {"params": params, "fitted": None}
        fitted, seen = {}, {}
        for name in self._fitted_names():
            if name not in self._fitted_attributes:
                raise TypeError(f"{type(self).__name__}.{name} has no entry in _fitted_attributes; declare it (or "
                                f"list it in _derived_attributes) so that saved states can be checked on load")
            value = getattr(self, name)
            key = name[:-1]
            if isinstance(value, (BaseEstimator, Record)) and id(value) in seen:
                fitted[key] = {"__same_as__": seen[id(value)]}  # one object, saved once (identity kept)
                continue
            if isinstance(value, (BaseEstimator, Record)):
                seen[id(value)] = key
            fitted[key] = _encode(value, f"{prefix}{name}")
        return {"params": params, "fitted": fitted}

    def to_dict(self) -> dict:
        """The hyper-parameters and fitted state, JSON-ready apart from NumPy arrays (see conformal.io)."""
        self._check_is_fitted()
        return self._state()

    @classmethod
    def from_dict(cls, state: dict):
        """Rebuild a fitted estimator from `to_dict` output; every field is checked (errors name it)."""
        return cls._from_state(state, "")

    @classmethod
    def _from_state(cls, state, where: str):
        prefix = f"{where}." if where else ""
        label = f"saved {cls.__name__} state" + (f" (`{where}`)" if where else "")
        if not isinstance(state, dict) or "params" not in state:
            raise StateError(f"{label} must be a dict with 'params' and 'fitted'; got {type(state).__name__}")
        params = state["params"]
        if not isinstance(params, dict):
            raise StateError(f"{label}: `params` must be a dict")
        unknown = sorted(set(params) - set(cls._get_param_names()))
        if unknown:
            raise StateError(f"{label} has unknown parameter(s) {unknown}; {cls.__name__} takes "
                             f"{', '.join(cls._get_param_names())}")
        obj = cls(**{k: _decode(v, f"{prefix}{k}") for k, v in params.items()})
        try:
            obj.validate_params()
        except (TypeError, ValueError) as exc:
            raise StateError(f"{label} has invalid parameters: {exc}") from None
        fitted = state.get("fitted")
        if fitted is None:
            return obj
        if not isinstance(fitted, dict):
            raise StateError(f"{label}: `fitted` must be a dict or null")
        want = {name[:-1]: name for name in cls._fitted_attributes}
        missing, extra = sorted(set(want) - set(fitted)), sorted(set(fitted) - set(want))
        if missing or extra:
            raise StateError(f"{label} is missing field(s) {missing} or has unknown field(s) {extra}")
        refs = {}
        for key, name in want.items():
            raw = fitted[key]
            if isinstance(raw, dict) and "__same_as__" in raw:
                refs[name] = raw["__same_as__"]
                continue
            value = _decode(raw, f"{prefix}{key}")
            setattr(obj, name, cls._fitted_attributes[name](value, f"{prefix}{key}"))
        for name, target in refs.items():
            if target not in want or want[target] in refs:
                raise StateError(f"{label}: field `{name[:-1]}` refers to unknown field {target!r}")
            setattr(obj, name, cls._fitted_attributes[name](getattr(obj, want[target]), f"{prefix}{name[:-1]}"))
        try:
            obj._rebuild()
            obj._check_fitted_state()
        except StateError:
            raise
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise StateError(f"{label} is inconsistent: {exc}") from None
        return obj

    def _rebuild(self) -> None:
        """Recompute the derived attributes after a load (overridden where there are any)."""

    def _check_fitted_state(self) -> None:
        """Consistency of the loaded fitted state (shapes agree, thresholds match their scores, ...)."""

    @classmethod
    def _upgrade_state(cls, version: int, payload: dict) -> dict:
        """Turn a payload of an older schema version into the current one (overridden by classes that had one)."""
        raise StateError(f"{cls.__name__} has no saved format of schema_version {version}")

    def save(self, path) -> None:
        """Save the fitted estimator as checksummed JSON (see conformal.io); never pickle."""
        _io.save_state(path, self._kind_name(), self.to_dict())

    @classmethod
    def load(cls, path):
        """Load a file written by `save` (files of older schema versions are upgraded)."""
        return cls.from_dict(_io.load_state(os.fspath(path), cls._kind_name()))


# --- records: frozen dataclasses saved field by field --------------------------------------------------------
class Record:
    """Mixin for frozen dataclasses of results (Decisions, ROCCurve, ...): to_dict/from_dict/save/load of their
    fields through the same encoding as the estimators. Scalar fields may declare a spec in `_field_specs`
    (checked on load, like `_fitted_attributes`); subclasses validate the rest in ``__post_init__``."""

    _field_specs: ClassVar[dict] = {}

    @classmethod
    def _kind_name(cls) -> str:
        return cls.__name__

    def to_dict(self) -> dict:
        return {f.name: _encode(getattr(self, f.name), f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict, where: str = ""):
        names = [f.name for f in dataclasses.fields(cls)]
        label = f"saved {cls.__name__}" + (f" (`{where}`)" if where else "")
        if not isinstance(d, dict) or set(d) != set(names):
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise StateError(f"{label} must have the fields {names}; got {got}")
        prefix = f"{where}." if where else ""
        values = {k: _decode(d[k], f"{prefix}{k}") for k in names}
        for k, spec in cls._field_specs.items():
            values[k] = spec(values[k], f"{prefix}{k}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise StateError(f"{label} is invalid: {exc}") from None

    def save(self, path) -> None:
        """Save as checksummed JSON (conformal.io)."""
        _io.save_state(path, self._kind_name(), self.to_dict())

    @classmethod
    def load(cls, path):
        return cls.from_dict(_io.load_state(os.fspath(path), cls._kind_name()))

    @classmethod
    def _upgrade_state(cls, version: int, payload: dict) -> dict:
        if version == 1:  # records kept their layout
            return payload
        raise StateError(f"{cls.__name__} has no saved format of schema_version {version}")

