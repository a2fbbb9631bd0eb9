"""conformal: split conformal prediction for perception models (numpy + numba only)."""
from conformal._version import __version__

__all__ = ["__version__"]
