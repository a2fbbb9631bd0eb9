"""The audit's one error type (the bottom layer: imports nothing of the audit)."""
from __future__ import annotations

__all__ = ["ConfigError", "AuditError"]


class ConfigError(ValueError):
    """A config (or command line) that cannot be run; the message names the key, what arrived and what is allowed."""


class AuditError(RuntimeError):
    """An audit that cannot go on (e.g. its clean cell failed, so nothing can be calibrated); the message is one
    line that says why and where the full traceback was written."""
