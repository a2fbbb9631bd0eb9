"""One registry for every corruption: images, point clouds (object and scene) and detector degradations.

A corruption is two plain functions and a table (kornia.augmentation's split, ImageNet-C's tables):

- ``sample(severity, x, rng, **options) -> params``: the severity row, resolved for this input (image
  scale, point count, ...), plus every scalar random draw (angles, anchors, viewpoints, control points).
  `params` holds plain numbers and strings, and numpy arrays for drawn vectors (control points, rings),
  so the per-call path converts nothing; ``to_json(params)`` is its JSON form, and `apply` takes either.
- ``apply(x, params, rng, **options) -> (out, info)``: the corruption itself. Its generator supplies only
  the bulk per-pixel / per-point / per-detection noise, and whatever is drawn there and worth logging
  (a count, an angle drawn after the noise) comes back in `info`.

For the same generator, ``apply(x, sample(s, x, rng), rng)`` makes exactly the draws the one-call
functions `perturbations.image.corrupt`, `perturbations.pointcloud.corrupt_with_index` and
`perturbations.detector.corrupt` make, so they stay bit-identical to the tables and seeds they always used.

The severity table of every entry has one format: five dicts (severity 1..5) with the same keys, whose
values are numbers. An entry with variants (images: the ``imagenet`` and ``cifar`` reference scales;
detections: ``2d`` and ``3d`` scenes) qualifies its keys as ``"variant.param"``; `Corruption.row` returns the
plain row of one variant.

`corrupt_logged` runs a corruption and returns a JSON-able record of it (the input's digest, the options,
the bit-generator state before the call, the sampled params and the applied info); `replay` re-runs a
record bit for bit. Entries are registered by the modality modules, which this module imports only when
an entry of their modality is first asked for (so ``import perturbations.registry`` needs numpy alone).

Examples
--------
>>> import numpy as np
>>> from perturbations.registry import corrupt_logged, get, names, replay
>>> get("fog", "pointcloud").row(5)
{'alpha': 0.06, 'beta': 0.00092, 'robo3d_beta': 0.2}
>>> names("detections", "2d")
('sensor_noise', 'occlusion', 'clutter', 'class_confusion', 'box_shift', 'box_shrink')
>>> image = np.full((32, 32, 3), 128, np.uint8)
>>> out, record = corrupt_logged(image, "motion_blur", 3, 0, "image")
>>> sorted(record["params"])[:3], round(record["params"]["angle"], 2)
(['angle', 'name', 'radius'], 12.33)
>>> np.array_equal(replay(image, record), out)
True
"""
from __future__ import annotations

import copy
import hashlib
import importlib
import json
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable

import numpy as np

from ._common import SEVERITIES, as_generator, check_severity

__all__ = ["Corruption", "Modality", "REGISTRY", "MODALITIES", "RECORD_VERSION", "get", "names", "register",
           "corrupt_logged", "replay", "table_markdown", "to_json"]

# modality -> the module that registers its entries (imported on first use)
MODALITIES = MappingProxyType({"image": "perturbations.image", "pointcloud": "perturbations.pointcloud",
                               "detections": "perturbations.detector"})
# 2 (issue 19): fog samples its backscatter from a preset (Dong et al.'s by default) and object clouds are
# corrupted in ModelNet40-C's frame, so a version-1 record no longer replays to the same output
# 3 (issue 19): crosstalk adds Dong et al.'s N(0, 3^2) to the intensity by default (was U(0, i_max));
# occlusion / lidar mapped back from ModelNet40-C's unit-sphere frame, splat hits through gaps dropped
RECORD_VERSION = 3


@dataclass(frozen=True)
class Corruption:
    """One registered corruption.

    Attributes
    ----------
    name : str
        Unique within its modality (``fog`` exists for images and for point clouds).
    modality : str
        "image", "pointcloud" or "detections".
    group : str
        Images: "noise", "blur", "weather", "digital"; point clouds: "object", "scene"; detections:
        "localisation", "recall", "false_positives", "classification".
    table : tuple of 5 dicts
        Severity 1..5; the same keys in every row, numbers as values; ``"variant.param"`` keys for entries
        with variants (see `row`).
    sample, apply : callable
        ``sample(severity, x, rng, **options) -> params`` and ``apply(x, params, rng, **options) -> (out, info)``
        on an input the modality has validated (see the module docstring).
    options : tuple of str
        The keyword options `sample` and `apply` accept; any other is refused.
    tags : tuple of str
        Further subsets it belongs to (images: "common", "extra", "ours"; detections: "2d", "3d").
    doc : str
        What it simulates, in one line.
    rule : str
        How the table values act.
    reference : str
        Where the model and its numbers come from.
    units : mapping
        Unit of a table key, where it has one (``{"2d.v": "px"}``).
    """

    name: str
    modality: str
    group: str
    table: tuple
    sample: Callable
    apply: Callable
    options: tuple = ()
    tags: tuple = ()
    doc: str = ""
    rule: str = ""
    reference: str = ""
    units: Mapping = field(default_factory=dict)
    variants: tuple = field(init=False, compare=False)
    """The variants its table has ("imagenet", "cifar" / "2d", "3d"), or () for a plain table."""

    def __post_init__(self):
        check_table(self.table, f"{self.modality} corruption {self.name!r}")
        object.__setattr__(self, "table", tuple(MappingProxyType(dict(r)) for r in self.table))
        object.__setattr__(self, "units", MappingProxyType(dict(self.units)))
        seen = []
        for key in self.table[0]:
            if "." in key and key.split(".", 1)[0] not in seen:
                seen.append(key.split(".", 1)[0])
        object.__setattr__(self, "variants", tuple(seen))
        # per variant, (qualified key, plain key) pairs: row() runs on every call, so it is a lookup
        object.__setattr__(self, "_columns", {v: tuple((k, k[len(v) + 1:]) for k in self.table[0]
                                                       if k.startswith(v + ".")) for v in seen})

    def row(self, severity: int, variant: str | None = None) -> dict:
        """The table row of `severity` (1..5) as a new dict; of one `variant` (keys unqualified) if it has them."""
        row = self.table[check_severity(severity) - 1]
        if not self.variants:
            if variant is not None:
                raise ValueError(f"{self.modality} corruption {self.name!r} has no variants; got variant {variant!r}")
            return dict(row)
        columns = self._columns.get(variant) if isinstance(variant, str) else None
        if columns is None:
            raise ValueError(f"{self.modality} corruption {self.name!r} is defined for variants "
                             f"{', '.join(map(repr, self.variants))}; got {variant!r}")
        return {plain: row[key] for key, plain in columns}


def check_table(table, what: str = "table") -> None:
    """ValueError unless `table` is five dicts with the same keys whose values are numbers (not bools)."""
    if not isinstance(table, (tuple, list)) or len(table) != len(SEVERITIES):
        raise ValueError(f"{what}: the table must hold 5 rows (severity 1..5); got {table!r}")
    keys = None
    for s, row in enumerate(table, 1):
        if not isinstance(row, Mapping) or not row:
            raise ValueError(f"{what}: severity {s} row must be a non-empty dict; got {row!r}")
        if keys is None:
            keys = list(row)
        elif list(row) != keys:
            raise ValueError(f"{what}: severity {s} row has keys {list(row)}; severity 1 has {keys}")
        for k, v in row.items():
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise ValueError(f"{what}: severity {s} value {k!r} must be a number; got {v!r}")


@dataclass(frozen=True)
class Modality:
    """How one modality validates an input and finishes an output, shared by its public functions and
    `corrupt_logged` / `replay`.

    ``prepare(x, entry, options) -> (x, options)`` validates the input and the options (raising TypeError /
    ValueError that name them) and returns what `sample` and `apply` take; ``finish(out, x) -> out`` turns
    apply's output into the public one (shape of the original input).
    """

    name: str
    prepare: Callable
    finish: Callable


_ENTRIES: dict = {}     # modality -> {name: Corruption}, in registration order
_MODALITY: dict = {}    # modality -> Modality


def register(modality: Modality, entries) -> MappingProxyType:
    """Register the entries of one modality (called once by its module); returns the read-only view
    ``{name: Corruption}`` the module exposes as its ``REGISTRY``."""
    if modality.name not in MODALITIES:
        raise ValueError(f"unknown modality {modality.name!r}; known: {', '.join(MODALITIES)}")
    table = {}
    for e in entries:
        if e.modality != modality.name:
            raise ValueError(f"entry {e.name!r} has modality {e.modality!r}, registered under {modality.name!r}")
        if e.name in table:
            raise ValueError(f"{modality.name} corruption {e.name!r} is registered twice")
        table[e.name] = e
    _ENTRIES[modality.name] = table
    _MODALITY[modality.name] = modality
    return MappingProxyType(table)


def _load(modality) -> dict:
    if not isinstance(modality, str) or modality not in MODALITIES:
        raise ValueError(f"`modality` must be one of {', '.join(map(repr, MODALITIES))}; got {modality!r}")
    if modality not in _ENTRIES:
        importlib.import_module(MODALITIES[modality])
    return _ENTRIES[modality]


class _Registry(Mapping):
    """Every entry, keyed by (modality, name); modality modules are imported on first access."""

    def __getitem__(self, key):
        if not (isinstance(key, tuple) and len(key) == 2 and key[0] in MODALITIES):
            raise KeyError(f"REGISTRY keys are (modality, name) pairs, modality one of {', '.join(MODALITIES)}; "
                           f"got {key!r}")
        entries = _load(key[0])
        if key[1] not in entries:
            raise KeyError(f"no {key[0]} corruption {key[1]!r}; valid names are: {', '.join(entries)}")
        return entries[key[1]]

    def __iter__(self):
        for m in MODALITIES:
            for n in _load(m):
                yield (m, n)

    def __len__(self):
        return sum(len(_load(m)) for m in MODALITIES)

    def __repr__(self):
        return f"<perturbations registry: {', '.join(f'{m} ({len(_load(m))})' for m in MODALITIES)}>"


REGISTRY = _Registry()


def get(name: str, modality: str) -> Corruption:
    """The entry `name` of `modality`; a ValueError listing the valid names otherwise."""
    entries = _load(modality)
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a str; got {type(name).__name__}")
    if name not in entries:
        raise ValueError(f"unknown {modality} corruption `name` {name!r}; valid names are: {', '.join(entries)}")
    return entries[name]


def names(modality: str, subset: str = "all") -> tuple:
    """Names of `modality`'s entries in `subset` ("all", a group or a tag), in registration order."""
    entries = _load(modality)
    subsets = subsets_of(modality)
    if not isinstance(subset, str) or subset not in subsets:
        raise ValueError(f"`subset` of {modality} must be one of {', '.join(subsets)}; got {subset!r}")
    return tuple(n for n, e in entries.items() if subset == "all" or subset == e.group or subset in e.tags)


def subsets_of(modality: str) -> tuple:
    """"all", then the groups and tags used by `modality`'s entries, in order of first use."""
    out = ["all"]
    for e in _load(modality).values():
        for s in (e.group, *e.tags):
            if s not in out:
                out.append(s)
    return tuple(out)


def table_markdown(modality: str) -> str:
    """The severity tables of one modality as a Markdown table: one line per entry and table key."""
    lines = ["| corruption | group | parameter | severity 1..5 | unit |", "|---|---|---|---|---|"]
    for e in _load(modality).values():
        for k in e.table[0]:
            vals = ", ".join(f"{r[k]:g}" for r in e.table)
            lines.append(f"| `{e.name}` | {e.group} | `{k}` | {vals} | {e.units.get(k, '')} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ records and replay
def to_json(value):
    """`value` with numpy scalars and arrays made plain Python (lists), tuples made lists; dict keys str."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot record a value of type {type(value).__name__} as JSON")


def _plain(value) -> bool:
    """True for a value an option record can hold as itself (JSON scalars and nested lists/dicts of them)."""
    if value is None or isinstance(value, (bool, str, numbers.Integral)):
        return True
    if isinstance(value, numbers.Real):
        return bool(np.isfinite(value))
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _hash_into(h, value) -> None:
    if isinstance(value, np.ndarray):
        h.update(f"nd{value.dtype.str}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, Mapping):
        h.update(b"map")
        for k in sorted(value, key=str):
            h.update(str(k).encode())
            _hash_into(h, value[k])
    elif isinstance(value, (list, tuple)):
        h.update(f"seq{len(value)}".encode())
        for v in value:
            _hash_into(h, v)
    elif _plain(value):
        h.update(json.dumps(to_json(value)).encode())
    elif hasattr(value, "vertices") and hasattr(value, "triangles"):  # an open3d legacy mesh
        _hash_into(h, (np.asarray(value.vertices), np.asarray(value.triangles)))
    elif hasattr(value, "vertex") and hasattr(value, "triangle"):  # an open3d tensor mesh
        _hash_into(h, (value.vertex.positions.numpy(), value.triangle.indices.numpy()))
    else:
        raise TypeError(f"cannot digest a value of type {type(value).__name__} for a corruption record")


def digest(value) -> str:
    """sha256 (hex) of an array, a mesh, or nested lists/dicts of them: the identity of an input in a record."""
    h = hashlib.sha256()
    _hash_into(h, value)
    return h.hexdigest()


def _describe(x) -> dict:
    if isinstance(x, np.ndarray):
        return {"type": "ndarray", "shape": list(x.shape), "dtype": x.dtype.str, "sha256": digest(x)}
    return {"type": type(x).__name__, "sha256": digest(x)}


def _record_options(options: dict) -> dict:
    # plain options are kept as they are; arrays, masks and meshes by digest (replay asks for them again)
    return {k: {"value": to_json(v)} if _plain(v) else {"sha256": digest(v)} for k, v in sorted(options.items())}


_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def _generator_from_state(state) -> np.random.Generator:
    """A Generator whose bit generator is in the recorded `state` (numpy's own state dict, made JSON-able)."""
    if not isinstance(state, Mapping) or state.get("bit_generator") not in _BIT_GENERATORS:
        got = dict(state) if isinstance(state, Mapping) else state
        raise ValueError("`record['rng']` must be a numpy bit-generator state with 'bit_generator' one of "
                         f"{', '.join(_BIT_GENERATORS)}; got {got!r}")
    bit = getattr(np.random, state["bit_generator"])()
    bit.state = _like(bit.state, state)
    return np.random.Generator(bit)


def _like(template, value):
    """`value` (JSON form) with arrays restored where the numpy `template` state has arrays."""
    if isinstance(template, np.ndarray):
        return np.asarray(value, dtype=template.dtype)
    if isinstance(template, dict):
        return {k: _like(template[k], value[k]) if k in template else value[k] for k in value}
    return value


def corrupt_logged(x, name: str, severity: int, rng, modality: str, **options):
    """Corrupt `x` like the modality's `corrupt` and return ``(out, record)``, a JSON-able record of it.

    `out` is what ``perturbations.<modality>.corrupt`` returns for the same generator state (for point
    clouds the ``(points, index)`` pair of `corrupt_with_index`). The record holds the bit-generator state
    before the call, so ``replay(x, record)`` gives `out` again bit for bit, and what was applied:

    ``{"version", "modality", "name", "severity", "input": {shape, dtype, sha256}, "options",
    "rng": bit-generator state, "params": the sampled parameters, "info": what apply reported}``.

    Options that are arrays, masks or meshes are recorded by their sha256 and must be passed to `replay`
    again; the others are recorded as they are. `rng` follows the package rule (None, int or Generator); a
    Generator is advanced exactly as by `corrupt`.
    """
    entry = get(name, modality)
    severity = check_severity(severity)
    mod = _MODALITY[modality]
    xv, opts = mod.prepare(x, entry, options)
    gen = as_generator(rng)
    state = to_json(gen.bit_generator.state)
    params = entry.sample(severity, xv, gen, **opts)
    out, info = entry.apply(xv, params, gen, **opts)
    record = {"version": RECORD_VERSION, "modality": modality, "name": name, "severity": severity,
              "input": _describe(x), "options": _record_options(options), "rng": state,
              "params": to_json(params), "info": to_json(info)}
    return mod.finish(out, x), record


def replay(x, record: Mapping, **options):
    """Re-run a `corrupt_logged` record on the same input; returns the same output, bit for bit.

    Raises ValueError when `x` or an option passed again is not the one recorded (by sha256), when an array
    option is missing, or when this version of the corruption samples other params from the recorded
    generator state than the record holds (a record of another version, or an edited one).
    """
    if not isinstance(record, Mapping):
        raise TypeError(f"`record` must be a dict made by corrupt_logged; got {type(record).__name__}")
    missing = [k for k in ("version", "modality", "name", "severity", "input", "options", "rng", "params")
               if k not in record]
    if missing:
        raise ValueError(f"`record` lacks {', '.join(missing)}; pass a record made by corrupt_logged")
    if record["version"] != RECORD_VERSION:
        raise ValueError(f"`record` has version {record['version']!r}; this version replays version {RECORD_VERSION}")
    entry = get(record["name"], record["modality"])
    if digest(x) != record["input"].get("sha256"):
        raise ValueError("`x` is not the input of this record (its sha256 differs); pass the input that was "
                         "corrupted")
    opts = {}
    for k, rec in record["options"].items():
        if "value" in rec:
            if k in options and to_json(options[k]) != rec["value"]:
                raise ValueError(f"option `{k}` is {options[k]!r}; the record was made with {rec['value']!r}")
            opts[k] = options.get(k, copy.deepcopy(rec["value"]))
        else:
            if k not in options:
                raise ValueError(f"option `{k}` was recorded by its sha256 only; pass it to replay again")
            if digest(options[k]) != rec["sha256"]:
                raise ValueError(f"option `{k}` is not the one recorded (its sha256 differs)")
            opts[k] = options[k]
    extra = sorted(set(options) - set(record["options"]))
    if extra:
        raise ValueError(f"option(s) {extra} were not used by the recorded call; the record has "
                         f"{sorted(record['options']) or 'none'}")
    mod = _MODALITY[record["modality"]]
    xv, opts = mod.prepare(x, entry, opts)
    gen = _generator_from_state(record["rng"])
    params = to_json(entry.sample(record["severity"], xv, gen, **opts))
    if params != to_json(record["params"]):
        raise ValueError(f"the recorded params of {record['modality']} corruption {record['name']!r} differ "
                         "from what this version samples from the recorded generator state: the record comes from "
                         "another version, or was edited")
    out, _ = entry.apply(xv, copy.deepcopy(record["params"]), gen, **opts)
    return mod.finish(out, x)


def check_options(entry: Corruption, options: Mapping) -> None:
    """TypeError naming the options of `entry` when `options` holds one it does not accept."""
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise TypeError(f"{entry.modality} corruption {entry.name!r} got unknown option(s) {unknown}; it accepts: "
                        f"{', '.join(entry.options) if entry.options else 'none'}")
