"""The estimator contract of the library (scikit-learn's), in one place.

Every public estimator of `conformal` derives from `BaseEstimator`:

* hyper-parameters are keyword-only arguments of ``__init__``, stored unchanged as attributes of the same name;
  ``__init__`` computes and validates nothing and takes no ``**kwargs``, so `sklearn.base.clone` works;
* `get_params` / `set_params` (nested ``score__lam`` names reach a nested estimator, or the ``score_params``
  dict when the score is given by name);
* `validate_params` checks every hyper-parameter against the class's declared `_parameter_constraints` table
  (one mechanism, `conformal._constraints`: `Interval`, `Options`, ...), then the rules linking parameters
  (`_check_dependent_params`), raising `InvalidParameterError` (a ValueError *and* a TypeError) that names the
  parameter. `fit` calls it; so can a config checker, without data;
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
import os
from typing import ClassVar

import numpy as np

from conformal import io as _io
from conformal._constraints import (
    Array,
    Bool,
    Boolean,
    Callable,
    Float,
    InstanceOf,
    Int,
    Interval,
    InvalidParameterError,
    Mapping,
    Nested,
    Optional,
    Options,
    Satisfies,
    Tuple,
    check_constraints,
)
from conformal._validation import NotFittedError
from conformal.io import StateError

# the constraint and spec types are re-exported: estimators import the whole contract from here
__all__ = ["BaseEstimator", "Record", "clone_params", "NotFittedError", "InvalidParameterError", "Interval",
           "Options", "InstanceOf", "Boolean", "Callable", "Satisfies", "check_constraints", "Float", "Int", "Bool",
           "Array", "Nested", "Optional", "Mapping", "Tuple"]


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
_PARAM_NAMES: dict = {}  # class -> (its __init__, parameter names): inspect.signature costs ~20 us a call


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
        """The __init__ parameters (inspected once per class: fit and get_params call this on hot paths)."""
        cached = _PARAM_NAMES.get(cls)
        if cached is not None and cached[0] is cls.__init__:
            return list(cached[1])
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
        _PARAM_NAMES[cls] = (init, tuple(names))
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
        # every field is loaded: the relations the specs declare between them (shapes, bounds by name)
        env = {key: getattr(obj, name) for key, name in want.items()}
        for key, name in want.items():
            relations = getattr(cls._fitted_attributes[name], "check_relations", None)  # plain callables have none
            if relations is not None:
                relations(env[key], env, f"{prefix}{key}")
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
        for k, spec in cls._field_specs.items():
            if hasattr(spec, "check_relations"):
                spec.check_relations(values[k], values, f"{prefix}{k}")
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

