"""Saved state: one JSON document with a schema version, the package version and a sha256 checksum.

Never pickle: a fitted calibrator is a handful of numbers and arrays, and a JSON file can be read, diffed and
audited by people who do not run Python. Layout of a saved file::

    {"format": "conformal-perception", "kind": "SplitConformalClassifier", "schema_version": 2,
     "package_version": "0.1.0", "payload": {...}, "sha256": "<hex of the canonical JSON of everything else>"}

NumPy arrays in the payload are stored as ``{"__ndarray__": true, "dtype": "float64", "shape": [...],
"data": [...]}``; non-finite floats as the strings "inf", "-inf" and "nan" (JSON has no such numbers). Floats
are written with Python's shortest round-trip repr, so a load gives back bit-identical arrays.

Schema versions: 2 is the generic estimator layout of `conformal._base` (``{"params": ..., "fitted": ...}``
with nested estimators marked ``{"__estimator__": kind, ...}``). Files of schema_version 1 (package 0.1, one
hand-written layout per class) still load: the registered class of their kind upgrades the payload
(`_upgrade_state`) after the checksum has been verified. Other versions are refused with an error naming them.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np

from conformal._version import __version__

__all__ = ["SCHEMA_VERSION", "StateError", "dumps_state", "loads_state", "save_state", "load_state", "load",
           "register_kind", "save_state_npz", "load_state_npz"]

SCHEMA_VERSION = 2
UPGRADABLE_VERSIONS = (1,)  # older schema versions that registered kinds can upgrade
FORMAT = "conformal-perception"
_DTYPES = {"float64", "float32", "int64", "int32", "uint8", "bool"}


class StateError(ValueError):
    """A saved state that cannot be trusted: wrong format, kind or version, or a checksum mismatch."""


def _encode_float(x: float):
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _decode_float(x):
    if isinstance(x, str):
        if x not in ("nan", "inf", "-inf"):
            raise StateError(f"unexpected string {x!r} where a number was stored")
        return float(x)
    return float(x)


def _encode(obj, where: str):
    if isinstance(obj, np.ndarray):
        if obj.dtype.name not in _DTYPES:
            raise TypeError(f"cannot save array `{where}` of dtype {obj.dtype}; allowed: {sorted(_DTYPES)}")
        flat = obj.ravel().tolist()
        if obj.dtype.kind == "f":
            flat = [_encode_float(v) for v in flat]
        return {"__ndarray__": True, "dtype": obj.dtype.name, "shape": list(obj.shape), "data": flat}
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"state keys must be str; `{where}` has key {key!r}")
            out[key] = _encode(value, f"{where}.{key}")
        return out
    if isinstance(obj, (list, tuple)):
        return [_encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _encode_float(float(obj))
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"cannot save `{where}` of type {type(obj).__name__}")


def _decode(obj):
    if isinstance(obj, dict):
        if obj.get("__ndarray__") is True:
            dtype = obj.get("dtype")
            if dtype not in _DTYPES:
                raise StateError(f"stored array has unsupported dtype {dtype!r}")
            data = obj["data"]
            if dtype.startswith("float"):
                data = [_decode_float(v) for v in data]
            arr = np.array(data, dtype=dtype)
            shape = tuple(int(s) for s in obj["shape"])
            if arr.size != math.prod(shape):
                raise StateError(f"stored array has {arr.size} values but shape {shape}")
            return arr.reshape(shape)
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def _canonical(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def dumps_state(kind: str, payload: dict) -> str:
    """Serialise `payload` (a dict of JSON-able values and NumPy arrays) as a checksummed state document."""
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"`kind` must be a non-empty str; got {kind!r}")
    if not isinstance(payload, dict):
        raise TypeError(f"`payload` must be a dict; got {type(payload).__name__}")
    doc = {"format": FORMAT, "kind": kind, "schema_version": SCHEMA_VERSION,
           "package_version": __version__, "payload": _encode(payload, "payload")}
    doc["sha256"] = hashlib.sha256(_canonical(doc)).hexdigest()
    return json.dumps(doc, sort_keys=True, indent=1, allow_nan=False)


def loads_state(text: str, kind: str) -> dict:
    """Parse and verify a state document written by `dumps_state`; return its payload (arrays rebuilt)."""
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise StateError(f"not a saved state (invalid or truncated JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StateError(f"not a {FORMAT} state document")
    if doc.get("kind") != kind:
        raise StateError(f"this file holds a {doc.get('kind')!r}, not a {kind!r}")
    version = doc.get("schema_version")
    upgradable = version in UPGRADABLE_VERSIONS and kind in _KINDS
    if version != SCHEMA_VERSION and not upgradable:
        raise StateError(f"schema_version {version!r} is not supported by this version "
                         f"({__version__}, schema {SCHEMA_VERSION}"
                         f"{'; ' + kind + ' files of older schemas cannot be upgraded' if kind in _KINDS else ''})")
    stored = doc.pop("sha256", None)
    if stored != hashlib.sha256(_canonical(doc)).hexdigest():
        raise StateError("checksum mismatch: the saved state was modified or corrupted")
    payload = _decode(doc["payload"])
    if version != SCHEMA_VERSION:
        payload = _KINDS[kind]._upgrade_state(version, payload)
    return payload


def save_state(path, kind: str, payload: dict) -> Path:
    """Write the state atomically (temp file + rename), so a crash never leaves half a file behind. A path ending
    in ``.npz`` writes the NPZ layout (`save_state_npz`: arrays stored binary, for large feature banks)."""
    path = Path(os.fspath(path))
    if path.suffix == ".npz":
        return save_state_npz(path, kind, payload)
    text = dumps_state(kind, payload)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def load_state(path, kind: str) -> dict:
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"no saved state at {path}")
    if path.suffix == ".npz":
        return load_state_npz(path, kind)
    return loads_state(path.read_text(), kind)


# kind (the class name) -> class with `from_dict(payload)` and `_upgrade_state(version, payload)`, for `load`
# and for nested objects inside a saved state.
_KINDS: dict[str, type] = {}


def register_kind(cls):
    """Class decorator: make `conformal.load` (and nested saved states) able to rebuild objects of this class."""
    kind = cls._kind_name()
    if kind in _KINDS and _KINDS[kind].__qualname__ != cls.__qualname__:
        raise TypeError(f"kind {kind!r} is already registered by {_KINDS[kind].__module__}.{_KINDS[kind].__qualname__}")
    _KINDS[kind] = cls
    return cls


def load(path):
    """Load any saved conformal object (calibrator, abstention model, ...) by the kind recorded in the file."""
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"no saved state at {path}")
    if path.suffix == ".npz":
        kind = _npz_document(path)[0].get("kind")
        if kind not in _KINDS:
            raise StateError(f"unknown saved kind {kind!r}; known: {sorted(_KINDS)}")
        return _KINDS[kind].from_dict(load_state_npz(path, kind))
    text = path.read_text()
    try:
        kind = json.loads(text).get("kind")
    except (json.JSONDecodeError, AttributeError):
        raise StateError("not a saved state (invalid or truncated JSON)") from None
    if kind not in _KINDS:
        raise StateError(f"unknown saved kind {kind!r}; known: {sorted(_KINDS)}")
    return _KINDS[kind].from_dict(loads_state(text, kind))


# --- NPZ layout: the same document, with every array stored binary -------------------------------------------
# The JSON document (format, kind, schema_version, package_version, payload) is stored as the uint8 array
# "__state__"; each payload array is replaced by {"__npz__": "a<i>"} and stored under that name. The sha256 covers
# the document and every array's name, dtype, shape and bytes. np.load(allow_pickle=False): no pickle either way.


def _npz_digest(doc: dict, arrays: dict) -> str:
    h = hashlib.sha256(_canonical(doc))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _split_arrays(obj, arrays: dict, where: str):
    if isinstance(obj, np.ndarray):
        if obj.dtype.name not in _DTYPES:
            raise TypeError(f"cannot save array `{where}` of dtype {obj.dtype}; allowed: {sorted(_DTYPES)}")
        name = f"a{len(arrays)}"
        arrays[name] = obj
        return {"__npz__": name}
    if isinstance(obj, dict):
        return {k: _split_arrays(v, arrays, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split_arrays(v, arrays, f"{where}[{i}]") for i, v in enumerate(obj)]
    return obj


def _join_arrays(obj, arrays: dict):
    if isinstance(obj, dict):
        if set(obj) == {"__npz__"}:
            name = obj["__npz__"]
            if name not in arrays:
                raise StateError(f"the NPZ state refers to a missing array {name!r}")
            return arrays[name]
        return {k: _join_arrays(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join_arrays(v, arrays) for v in obj]
    return obj


def save_state_npz(path, kind: str, payload: dict) -> Path:
    """`save_state` in the NPZ layout (atomic; checksummed; read back without pickle)."""
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"`kind` must be a non-empty str; got {kind!r}")
    path = Path(os.fspath(path))
    arrays: dict = {}
    split = _split_arrays(payload, arrays, "payload")
    doc = {"format": FORMAT, "kind": kind, "schema_version": SCHEMA_VERSION, "package_version": __version__,
           "payload": _encode(split, "payload")}
    doc["sha256"] = _npz_digest(doc, arrays)
    state = np.frombuffer(json.dumps(doc, sort_keys=True, allow_nan=False).encode(), dtype=np.uint8)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, __state__=state, **arrays)
    os.replace(tmp, path)
    return path


def _npz_document(path: Path):
    try:
        with np.load(path, allow_pickle=False) as z:
            files = dict(z.items())
    except (OSError, ValueError) as exc:
        raise StateError(f"not a saved NPZ state ({exc})") from None
    if "__state__" not in files:
        raise StateError("not a saved NPZ state (no __state__ document)")
    try:
        doc = json.loads(files.pop("__state__").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateError(f"the NPZ state document is corrupted ({exc})") from None
    if not isinstance(doc, dict):
        raise StateError("the NPZ state document is corrupted")
    return doc, files


def load_state_npz(path, kind: str) -> dict:
    """Read and verify a file written by `save_state_npz`; return its payload (arrays rebuilt)."""
    doc, arrays = _npz_document(Path(os.fspath(path)))
    if doc.get("format") != FORMAT:
        raise StateError(f"not a {FORMAT} state document")
    if doc.get("kind") != kind:
        raise StateError(f"this file holds a {doc.get('kind')!r}, not a {kind!r}")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise StateError(f"schema_version {doc.get('schema_version')!r} is not supported by this version "
                         f"({__version__}, schema {SCHEMA_VERSION})")
    stored = doc.pop("sha256", None)
    if stored != _npz_digest(doc, arrays):
        raise StateError("checksum mismatch: the saved state was modified or corrupted")
    return _join_arrays(_decode(doc["payload"]), arrays)
