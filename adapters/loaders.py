"""Models from files: TorchScript, ONNX (ONNX Runtime) and a torch class + state_dict, and a wrapper for callables
that take and return NumPy. Each loader fails at once, with the file named, on a missing file or a wrong format,
so a bad model is caught when it is loaded (or when an audit config is validated), not on every batch.

- ``load_model("torchscript", "m.pt")`` -> a ``torch.jit.ScriptModule`` (``torch.jit.save`` / ``trace(...).save``).
- ``load_model("onnx", "m.onnx")`` -> `OnnxModel` (needs ``pip install 'conformal-perception[onnx]'``).
- ``load_model("torch", "weights.pt", cls="nets.py:Net", kwargs={...})`` -> the class built with `kwargs` and the
  ``state_dict`` loaded with ``torch.load(..., weights_only=True)``.
- `load_class` ("file.py:Class" or "[dir/]package.module:Class"): a ``file.py`` loads by path, no PYTHONPATH needed;
  relative paths are resolved against `base_dir` (the audit passes the config file's folder).

All three plug into `CameraClassifier` / `LidarClassifier` as their `model`.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from adapters._arrays import to_host

__all__ = ["MODEL_KINDS", "load_model", "load_class", "resolve_class_spec", "OnnxModel", "NumpyModel"]

MODEL_KINDS = ("torchscript", "onnx", "torch")


def _file(path, name: str = "path") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`{name}` must be a file path; got {type(path).__name__}")
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"`{name}`: model file {str(p)!r} does not exist")
    return p


# ---------------------------------------------------------------- classes from files or modules


def resolve_class_spec(spec: str, base_dir=None) -> str:
    """The canonical, location-independent form of a class spec: "/abs/file.py:Class", "/abs/dir/pkg.mod:Class"
    (a module found under `base_dir`), or "pkg.mod:Class" unchanged (a module on sys.path)."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"`cls` must be 'file.py:Class' or 'package.module:Class'; got {spec!r}")
    left, _, attr = spec.rpartition(":")
    if not left or not attr.isidentifier():
        raise ValueError(f"`cls` must be 'file.py:Class' or 'package.module:Class'; got {spec!r}")
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if left.endswith(".py"):
        p = Path(left).expanduser()
        p = (p if p.is_absolute() else base / p).resolve()
        if not p.is_file():
            raise FileNotFoundError(f"`cls` {spec!r}: file {str(p)!r} does not exist")
        return f"{p}:{attr}"
    head, _, module = left.replace("\\", "/").rpartition("/")
    if head:  # "dir/pkg.mod": the module is imported with dir on the path
        d = Path(head).expanduser()
        d = (d if d.is_absolute() else base / d).resolve()
        if not d.is_dir():
            raise FileNotFoundError(f"`cls` {spec!r}: folder {str(d)!r} does not exist")
        return f"{d}/{module}:{attr}"
    first = module.split(".")[0]
    if base_dir is not None and ((base / f"{first}.py").is_file() or (base / first / "__init__.py").is_file()):
        return f"{base.resolve()}/{module}:{attr}"
    return f"{module}:{attr}"


def _module_from_file(p: Path):
    name = f"_user_model_{p.stem}_{hashlib.sha1(str(p).encode()).hexdigest()[:10]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, p)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # before exec: dataclasses, pickling and self-imports look the module up by name
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


def load_class(spec: str, base_dir=None):
    """The object named by `spec` ("file.py:Class", "[dir/]package.module:Class"); see `resolve_class_spec`."""
    canonical = resolve_class_spec(spec, base_dir)
    left, _, attr = canonical.rpartition(":")
    try:
        if left.endswith(".py"):
            mod = _module_from_file(Path(left))
        elif "/" in left:
            folder, _, module = left.rpartition("/")
            sys.path.insert(0, folder)
            try:
                mod = importlib.import_module(module)
            finally:
                sys.path.remove(folder)
        else:
            mod = importlib.import_module(left)
    except ImportError as exc:
        raise ImportError(f"`cls` {spec!r}: cannot import {left!r} ({exc}); give a file ('nets.py:Net', relative "
                          f"to the config file) or an installed module") from None
    if not hasattr(mod, attr):
        raise ValueError(f"`cls` {spec!r}: {left!r} has no attribute {attr!r}")
    return getattr(mod, attr)


# ---------------------------------------------------------------- model kinds


def _load_torchscript(p: Path):
    import torch

    try:
        with warnings.catch_warnings():  # torch 2.13 marks torch.jit.load deprecated; it is still the loader
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(p), map_location="cpu")
    except RuntimeError as exc:
        hint = ("it looks like a torch.save file (a state_dict?): use kind 'torch' with a class"
                if "constants.pkl" in str(exc) else "it is not a zip archive written by torch.jit.save")
        raise ValueError(f"`path` {str(p)!r} is not a TorchScript model ({hint}); export one with "
                         f"torch.jit.trace(model, example).save(path) or torch.jit.script(model).save(path)") from None


def _load_torch(p: Path, cls, kwargs, base_dir):
    import torch

    if cls is None:
        raise ValueError("kind 'torch' needs `cls`, the model class ('nets.py:Net' or 'package.module:Net')")
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"`kwargs` must be a dict of constructor arguments; got {type(kwargs).__name__}")
    klass = load_class(cls, base_dir) if isinstance(cls, str) else cls
    if not callable(klass):
        raise TypeError(f"`cls` must name a class; got {type(klass).__name__}")
    try:
        with warnings.catch_warnings():  # a TorchScript archive warns before it fails: the error below says it
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(str(p), map_location="cpu", weights_only=True)
    except RuntimeError as exc:
        if "TorchScript" in str(exc):
            raise ValueError(f"`path` {str(p)!r} is a TorchScript archive, not a state_dict: use kind "
                             f"'torchscript'") from None
        raise ValueError(f"`path` {str(p)!r} is not a torch.save file ({str(exc).splitlines()[0]})") from None
    except Exception as exc:  # UnpicklingError (a whole pickled model), EOFError (truncated), ...
        raise ValueError(f"`path` {str(p)!r} is not a state_dict readable with torch.load(weights_only=True) "
                         f"({type(exc).__name__}); save model.state_dict(), not the model, or export TorchScript "
                         f"and use kind 'torchscript'") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"`path` {str(p)!r} holds a {type(state).__name__}, not a state_dict (name -> tensor); "
                         f"save model.state_dict()")
    net = klass(**(kwargs or {}))
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"`cls` {cls!r} built a {type(net).__name__}, not a torch.nn.Module")
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"the state_dict in {str(p)!r} does not fit {cls!r}: {str(exc)[:600]}") from None
    return net.eval()


def load_model(kind: str, path, *, cls=None, kwargs=None, base_dir=None, providers=None, threads=None):
    """A model from a file, ready to be an adapter's `model` (see the module docstring).

    `path` and `cls` are resolved against `base_dir` when relative (default: the working directory). Errors:
    FileNotFoundError for a missing file, ValueError naming the file for a wrong format, ImportError with the
    install command when ONNX Runtime is missing.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"`kind` must be one of {', '.join(MODEL_KINDS)}; got {kind!r}")
    p = Path(path).expanduser() if isinstance(path, (str, os.PathLike)) else path
    if isinstance(p, Path) and not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    p = _file(p)
    if kind == "torchscript":
        return _load_torchscript(p)
    if kind == "onnx":
        return OnnxModel(p, providers=providers, threads=threads)
    return _load_torch(p, cls, kwargs, base_dir)


def _host(x) -> np.ndarray:
    """A torch tensor (CPU, or CUDA copied to the host) or an array as NumPy, without copying CPU data."""
    return np.asarray(to_host(x))


class NumpyModel:
    """Wrap a callable that takes and returns NumPy (an ONNX Runtime session, a TensorRT host wrapper, a
    scikit-learn pipeline's decision function): the adapter's float tensor batch reaches `fn` as a float32 NumPy
    array and `fn`'s (b, K) output is taken as logits."""

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"`fn` must be a callable array -> logits; got {type(fn).__name__}")
        self.fn = fn

    def __call__(self, x):
        return np.asarray(self.fn(np.ascontiguousarray(_host(x), dtype=np.float32)))

    def __repr__(self) -> str:
        return f"NumpyModel({self.fn!r})"


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


class OnnxModel:
    """An ONNX model run by ONNX Runtime (CPU by default): called with a float tensor or array (b, ...), returns
    the first output as NumPy logits (b, K). The session is rebuilt after pickling and shared by deep copies
    (inference does not change it)."""

    def __init__(self, path, *, providers=None, threads: int | None = None):
        self.path = str(_file(path))
        self.providers = providers
        self.threads = threads
        self._session = None
        self._session_or_error()

    def _session_or_error(self):
        if self._session is not None:
            return self._session
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImportError("ONNX models need ONNX Runtime: pip install 'conformal-perception[onnx]' "
                              "(or pip install onnxruntime)") from None
        opts = ort.SessionOptions()
        if self.threads is not None:
            opts.intra_op_num_threads = opts.inter_op_num_threads = int(self.threads)
        try:
            sess = ort.InferenceSession(self.path, sess_options=opts,
                                        providers=self.providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own InvalidProtobuf / Fail types
            raise ValueError(f"`path` {self.path!r} is not an ONNX model ONNX Runtime can load: "
                             f"{str(exc).splitlines()[0][:300]}") from None
        inputs = sess.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"ONNX model {self.path!r} has {len(inputs)} inputs "
                             f"({', '.join(i.name for i in inputs)}); an adapter feeds exactly one (the batch)")
        self._input, self._dtype = inputs[0].name, _ORT_DTYPES.get(inputs[0].type)
        if self._dtype is None:
            raise ValueError(f"ONNX model {self.path!r} takes {inputs[0].type}; an adapter feeds float tensors")
        self._session = sess
        return sess

    def __call__(self, x):
        sess = self._session_or_error()
        return sess.run(None, {self._input: np.ascontiguousarray(_host(x), dtype=self._dtype)})[0]

    def __getstate__(self):
        return {"path": self.path, "providers": self.providers, "threads": self.threads}

    def __setstate__(self, state):
        self.__dict__.update(state, _session=None)

    def __deepcopy__(self, memo):
        return self

    def __repr__(self) -> str:
        return f"OnnxModel({self.path!r})"
