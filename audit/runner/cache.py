"""The cell cache: one NPZ per cell (`cache/<cell>.npz`), its arrays plus the key they were computed for.

Entries are written atomically (temp file + rename), read with `allow_pickle=False`, and an entry whose key
differs, or that cannot be read, is recomputed, never trusted.
"""
from __future__ import annotations

import hashlib
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from audit.files import atomic_path

__all__ = ["save_cell", "load_cell", "fingerprint", "file_digest", "pack_records", "unpack_records"]


def save_cell(path: Path, key: str, arrays: dict) -> None:
    tmp = atomic_path(path)
    np.savez(tmp, key=np.array(key), **arrays)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written cache entry


def load_cell(path: Path, key: str) -> dict | None:
    """The cached arrays of a cell, or None when absent or stale (computed for another key). An entry that cannot
    be read (truncated, not an NPZ) is recomputed too, with a warning naming the file."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if "key" not in z.files or str(z["key"]) != key:
                return None
            return {k: z[k] for k in z.files if k != "key"}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        warnings.warn(f"cache entry {str(path)!r} cannot be read ({type(exc).__name__}: {exc}); recomputing the "
                      f"cell", UserWarning, stacklevel=2)
        return None


def fingerprint(*parts) -> str:
    """A short stable hash of plain values, arrays and (nested) lists of them (used to key the output cache)."""
    h = hashlib.sha256()

    def feed(part):
        if isinstance(part, np.ndarray):
            h.update(f"nd{part.dtype}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, (list, tuple)):
            h.update(f"seq{len(part)}".encode())
            for item in part:
                feed(item)
        else:
            h.update(repr(part).encode())

    for part in parts:
        feed(part)
    return h.hexdigest()[:16]


def file_digest(path) -> str:
    """sha256 of a file's bytes (weights files enter the cache key by content, not by name)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def pack_records(records: list) -> np.ndarray:
    """JSON-able per-input records (what a corruption applied) as gzip-compressed JSON bytes in a uint8 array,
    so they travel in the cell's NPZ and are written out as `applied/<cell>.json.gz`."""
    import gzip
    import json

    return np.frombuffer(gzip.compress(json.dumps(records, allow_nan=False).encode(), mtime=0), dtype=np.uint8)


def unpack_records(arr: np.ndarray) -> list:
    import gzip
    import json

    return json.loads(gzip.decompress(np.asarray(arr, dtype=np.uint8).tobytes()))
