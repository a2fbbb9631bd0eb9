"""Import the peers that tests compare against, without their heavy optional imports.

TorchCP 1.2.1's package __init__ imports its regression/graph/LLM modules (transformers, torch_geometric,
torchsort), none of which its classification scores use. We register empty parent packages that point at the
real directories, so `torchcp.classification.score` and `.predictor.split` load from the installed files
unchanged. Returns None when TorchCP or torch is not installed (the dev extra installs both).
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np


@functools.lru_cache(maxsize=None)
def load_torchcp():
    spec = importlib.util.find_spec("torchcp")
    if spec is None or importlib.util.find_spec("torch") is None:
        return None
    root = Path(spec.submodule_search_locations[0])
    for name, path in (("torchcp", root), ("torchcp.classification", root / "classification")):
        if name not in sys.modules:
            mod = types.ModuleType(name)
            mod.__path__ = [str(path)]
            sys.modules[name] = mod
    score = importlib.import_module("torchcp.classification.score")
    split = importlib.import_module("torchcp.classification.predictor.split")
    return types.SimpleNamespace(score=score, SplitPredictor=split.SplitPredictor)


class IdentityProbaModel:
    """A fitted scikit-learn-style 'model' whose predict_proba returns its input, so MAPIE (prefit=True) sees
    exactly the probabilities we pass (used by tests/conformal/test_peers.py and benchmarks/bench_conformal.py)."""

    def __init__(self, n_classes):
        self.classes_ = np.arange(n_classes)
        self.n_features_in_ = n_classes
        self.__sklearn_is_fitted__ = lambda: True

    def fit(self, x, y):
        return self

    def predict_proba(self, x):
        return x

    def predict(self, x):
        return x.argmax(axis=1)
