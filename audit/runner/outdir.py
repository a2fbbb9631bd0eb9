"""The output folder of an audit: claimed once, written atomically, never at the cost of files the audit did not
write.

A folder the audit creates (or finds empty) gets a marker file, `.conformal-audit.json`; later runs, `--resume`
and `conformal-audit report` write there freely. A non-empty folder without the marker is refused, unless the
caller passes `overwrite=True` (`--overwrite`), and even then only when none of the names the audit writes
already exists there: the audit never deletes or replaces a file it did not create. Every file is written to a
temporary name in the same folder and renamed into place, so a crash leaves the old file or the new one, never
half of one.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from audit.errors import ConfigError
from audit.files import write_text

__all__ = ["MARKER", "AUDIT_NAMES", "claim", "is_audit_dir"]

MARKER = ".conformal-audit.json"
# every name an audit run or `report` may create at the top of its folder
AUDIT_NAMES = ("config.yaml", "results.json", "results.csv", "curves.npz", "report.html", "report.png", "plots",
               "cache", "model", "applied", "error.txt")


def is_audit_dir(out: Path) -> bool:
    """True when `out` carries the marker of an audit output folder."""
    return (Path(out) / MARKER).is_file()


def claim(out, *, overwrite: bool = False) -> Path:
    """Make `out` an audit output folder (creating it if needed) or raise ConfigError; returns it as a Path."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output path {str(out)!r} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"output directory {str(out)!r} is not writable (it cannot be created: "
                          f"{exc.strerror or exc})") from None
    if not is_audit_dir(out):
        entries = sorted(p.name for p in out.iterdir())
        if entries and not overwrite:
            shown = ", ".join(entries[:8]) + (", ..." if len(entries) > 8 else "")
            raise ConfigError(f"output directory {str(out)!r} is not empty and was not created by conformal-audit "
                              f"(it holds {shown}); choose a new or empty --out, or pass --overwrite to write "
                              f"into it (files the audit did not create are never replaced)")
        clash = sorted(set(entries) & set(AUDIT_NAMES))
        if clash:
            raise ConfigError(f"output directory {str(out)!r} already holds {', '.join(clash)}, which conformal-audit "
                              f"did not create and would overwrite; move them away or choose another --out")
        try:
            write_text(out / MARKER, json.dumps({"format": "conformal-audit output folder",
                                                 "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                                 "pre_existing": entries}, indent=1))
        except OSError as exc:
            raise ConfigError(f"output directory {str(out)!r} is not writable ({exc.strerror or exc})") from None
    return out
