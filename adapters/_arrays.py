"""Torch tensors where arrays are expected: CPU tensors are viewed as NumPy without a copy; CUDA (or MPS) tensors
are copied to host memory first (``tensor.cpu()``, a synchronising device-to-host copy over PCIe, so it costs
about bytes / bandwidth: 0.6 MB for one 224 x 224 x 3 float32 image, tens of microseconds at PCIe 3/4 rates,
plus the wait for queued GPU work). Torch is never imported here: a tensor can only exist if torch is loaded."""
from __future__ import annotations

import sys

__all__ = ["is_tensor", "to_host"]


def is_tensor(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_host(x):
    """`x` as a NumPy array if it is a torch tensor (detached, on the host); anything else unchanged."""
    if is_tensor(x):
        return x.detach().cpu().numpy()
    if isinstance(x, (list, tuple)) and any(is_tensor(v) for v in x):
        return [to_host(v) for v in x]
    return x
