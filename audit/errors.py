"""The audit's one error type (the bottom layer: imports nothing of the audit)."""
from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """A config (or command line) that cannot be run; the message names the key, what arrived and what is allowed."""
