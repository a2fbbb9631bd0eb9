"""Model adapters for camera and LiDAR classifiers, and a per-frame streaming wrapper for robotics stacks.

`import adapters` is light: torch, OpenCV and open3d are imported only when a class that needs them is first used.

- `CameraClassifier`, `LidarClassifier`: a torch model (or any callable) -> probabilities as NumPy (torch);
  `predict_outputs` gives logits, probabilities and penultimate features (`ModelOutputs`) from one pass.
- `load_model`, `OnnxModel`, `NumpyModel`: models from TorchScript / ONNX / state_dict files, NumPy callables.
- `TorchDetector`: a torch detector with torchvision-style output -> `conformal.detection` frames (torch).
- `ConformalModel`: adapter + any `conformal` calibrator, fitted and applied in one call (torch).
- `StreamingConformal`: per-frame decisions with adaptive conformal inference and a shift monitor
  (numpy + numba only).
- `reference`, `datasets`, `models`: the shipped reference models and the offline data they were trained on.
"""
from __future__ import annotations

import importlib

__all__ = ["CameraClassifier", "TorchDetector", "LidarClassifier", "ConformalModel", "StreamingConformal",
           "ImagePreprocess", "ModelOutputs", "load_model", "OnnxModel", "NumpyModel"]

_LAZY = {"CameraClassifier": "adapters.camera", "TorchDetector": "adapters.detector",
         "LidarClassifier": "adapters.lidar", "ConformalModel": "adapters.conformal_model",
         "StreamingConformal": "adapters.streaming",
         "ImagePreprocess": "adapters.preprocess", "ModelOutputs": "adapters._base", "load_model": "adapters.loaders",
         "OnnxModel": "adapters.loaders", "NumpyModel": "adapters.loaders"}
_SUBMODULES = ("reference", "datasets", "models", "train", "streaming", "camera", "lidar", "preprocess", "ros2",
               "loaders", "detector")


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"adapters.{name}")
    raise AttributeError(f"module 'adapters' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY) + list(_SUBMODULES))
