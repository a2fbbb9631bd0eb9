"""Numba kernels for the corruptions (private; the public wrappers in perturbations/ call them)."""
