"""Atomic file writes: every file of an audit goes to a temporary sibling first and is renamed into place, so a
crash leaves the old file or the new one, never half of one."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["atomic_path", "write_bytes", "write_text"]


def atomic_path(path) -> Path:
    """A temporary sibling of `path` (same folder, same suffix) to write and then `os.replace` onto it."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")


def write_bytes(path, data: bytes) -> Path:
    tmp = atomic_path(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return Path(path)


def write_text(path, text: str) -> Path:
    return write_bytes(path, text.encode())
