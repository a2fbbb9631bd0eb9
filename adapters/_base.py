"""Shared machinery of the model adapters: device checks, batched inference, softmax and temperature scaling."""
from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from adapters._arrays import to_host
from conformal._validation import check_labels
from conformal.calibrators import SATURATED
from conformal.utils import softmax  # the one NumPy softmax; re-exported for the adapters


def check_device(device) -> torch.device:
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"`device` must be a string such as 'cpu' or 'cuda:0'; got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"`device` {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`device` is {device!r} but CUDA is not available in this torch build/machine "
                         f"(torch {torch.__version__}); use device='cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"`device` is {device!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"`device` is {device!r} but MPS is not available; use device='cpu'")
    return dev


def check_int(v, name, minimum=1):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"`{name}` must be an int; got {type(v).__name__}")
    if v < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {v}")
    return int(v)


@dataclass(frozen=True)
class ModelOutputs:
    """What one forward pass gives (`TorchAdapter.predict_outputs`).

    logits : float32 (n, K)     The model's outputs.
    probs : float64 (n, K)      softmax(logits / temperature), exactly what `predict_proba` returns.
    features : float32 (n, d)   The input of the last ``nn.Linear`` (penultimate features), or the flattened
                                output of the module named by `feature_layer`.
    """

    logits: np.ndarray
    probs: np.ndarray
    features: np.ndarray

    def __len__(self) -> int:
        return int(self.logits.shape[0])


def _feature_hook(model, feature_layer):
    """(module, register) for the features: the last nn.Linear's input by default, else the named module's output."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"features need a torch.nn.Module `model` (a forward hook reads them); got "
                        f"{type(model).__name__}")
    modules = dict(model.named_modules())
    if feature_layer is None:
        linears = [m for m in modules.values() if isinstance(m, torch.nn.Linear)]
        if not linears:
            raise ValueError("the model has no nn.Linear layer whose input could serve as features; name a module "
                             f"with `feature_layer=` (one of: {', '.join(n for n in modules if n) or 'none'})")
        return linears[-1], "input"
    if not isinstance(feature_layer, str):
        raise TypeError(f"`feature_layer` must be a module name (str) or None; got {type(feature_layer).__name__}")
    if feature_layer not in modules or feature_layer == "":
        raise ValueError(f"`feature_layer` {feature_layer!r} is not a module of the model; valid names are: "
                         f"{', '.join(n for n in modules if n)}")
    return modules[feature_layer], "output"


class TorchAdapter:
    """Base class: subclasses implement `_check_inputs(inputs) -> (n, batch_fn)` where ``batch_fn(lo, hi)``
    returns the model's input tensor for items lo..hi-1."""

    _progress_min_batches = 20

    def __init__(self, model, *, device="cpu", batch_size=256, num_classes=None, progress="auto",
                 feature_layer=None):
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.num_classes = num_classes
        self.progress = progress
        self.feature_layer = feature_layer

    # --- parameters ----------------------------------------------------------------------------------------
    def _check_common(self):
        if not callable(self.model):
            raise TypeError(f"`model` must be a torch.nn.Module or a callable batch -> logits (torch or NumPy); got "
                            f"{type(self.model).__name__}")
        dev = check_device(self.device)
        bs = check_int(self.batch_size, "batch_size")
        if self.num_classes is not None:
            check_int(self.num_classes, "num_classes", minimum=2)
        if self.progress not in ("auto", True, False):
            raise ValueError(f"`progress` must be 'auto', True or False; got {self.progress!r}")
        return dev, bs

    @property
    def temperature(self) -> float:
        """The fitted temperature (`temperature_`), or 1.0 before `fit_temperature`."""
        return getattr(self, "temperature_", 1.0)

    # --- inference -----------------------------------------------------------------------------------------
    def predict_logits(self, inputs) -> np.ndarray:
        """Model outputs for `inputs` as float32 NumPy (n, K), computed in batches under torch.inference_mode()."""
        return self._forward(inputs, features=False)[0]

    def predict_outputs(self, inputs, *, feature_layer=None) -> ModelOutputs:
        """Logits, probabilities and features of `inputs` from one forward pass per batch (see `ModelOutputs`).

        Features are read by a forward hook: the input of the model's last ``nn.Linear`` (the penultimate
        features), or the flattened output of the module named `feature_layer` (default: the adapter's
        `feature_layer`). The hook is removed afterwards; logits equal `predict_logits`'s."""
        layer = self.feature_layer if feature_layer is None else feature_layer
        logits, feats = self._forward(inputs, features=True, feature_layer=layer)
        return ModelOutputs(logits=logits, probs=softmax(logits, self.temperature), features=feats)

    def _forward(self, inputs, *, features: bool, feature_layer=None):
        """(logits float32 (n, K), features float32 (n, d) or None)."""
        dev, bs = self._check_common()
        n, batch_fn = self._check_inputs(inputs)
        if isinstance(self.model, torch.nn.Module):
            self.model.to(dev)
            self.model.eval()  # BatchNorm / dropout in inference mode
        starts = range(0, n, bs)
        show = self.progress is True or (self.progress == "auto" and len(starts) >= self._progress_min_batches)
        if show:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=type(self).__name__, unit="batch")
        k, captured, handle = self.num_classes, [], None
        if features:
            module, where = _feature_hook(self.model, feature_layer)
            if where == "input":
                handle = module.register_forward_pre_hook(lambda mod, args: captured.append(args[0]))
            else:
                handle = module.register_forward_hook(lambda mod, args, output: captured.append(output))
        try:
            out, feats = self._batches(starts, n, bs, dev, batch_fn, k, captured if features else None)
        finally:
            if handle is not None:
                handle.remove()
        if not np.all(np.isfinite(out)):
            raise ValueError("`model` returned NaN or inf logits (check the inputs and the weights)")
        return out, feats

    def _batches(self, starts, n, bs, dev, batch_fn, k, captured):
        out, feats = None, None
        with torch.inference_mode():
            for lo in starts:
                hi = min(lo + bs, n)
                x = batch_fn(lo, hi)
                y = self.model(x.to(dev, non_blocking=True))
                if isinstance(y, np.ndarray):  # ONNX Runtime, TensorRT host wrappers, NumpyModel
                    y = torch.from_numpy(y)
                if not isinstance(y, torch.Tensor):
                    raise TypeError(f"`model` must return logits as a torch.Tensor or a NumPy array; got "
                                    f"{type(y).__name__}")
                if y.ndim != 2 or y.shape[0] != hi - lo:
                    raise ValueError(f"`model` must return logits of shape (batch, K); for a batch of {hi - lo} "
                                     f"it returned {tuple(y.shape)}")
                if k is None:
                    k = int(y.shape[1])
                if y.shape[1] != k:
                    what = "`num_classes`" if self.num_classes is not None else "earlier batches"
                    raise ValueError(f"`model` returned {y.shape[1]} classes but {what} said {k}")
                if out is None:
                    out = np.empty((n, k), dtype=np.float32)
                out[lo:hi] = y.detach().to("cpu", torch.float32).numpy()
                if captured is not None:
                    if len(captured) != 1 or not isinstance(captured[0], torch.Tensor):
                        raise ValueError(f"the feature layer ran {len(captured)} times in one forward pass (or "
                                         f"gave no tensor); name a module that runs once with `feature_layer=`")
                    f = captured.pop().detach().to("cpu", torch.float32).reshape(hi - lo, -1).numpy()
                    if feats is None:
                        feats = np.empty((n, f.shape[1]), dtype=np.float32)
                    feats[lo:hi] = f
        return out, feats

    def predict_proba(self, inputs) -> np.ndarray:
        """Softmax of logits / `temperature` as float64 (n, K) (rows sum to 1)."""
        return softmax(self.predict_logits(inputs), self.temperature)

    # --- temperature scaling -------------------------------------------------------------------------------
    def fit_temperature(self, inputs, labels, *, max_iter: int = 100) -> "TorchAdapter":
        """Fit one temperature T > 0 by minimising the NLL of softmax(logits / T) with LBFGS (Guo et al. 2017).

        Optional. Use held-out data the model was not trained on, and, if the same adapter later feeds a conformal
        calibrator, data *disjoint* from that calibrator's calibration set: then the calibrator sees a fixed model
        and its coverage guarantee is unchanged (temperature only changes set sizes / efficiency).
        Sets `temperature_` and `nll_before_`, `nll_after_`; returns self.
        """
        logits = self.predict_logits(inputs)
        y = check_labels(to_host(labels), logits.shape[0], logits.shape[1])
        z = torch.from_numpy(logits.astype(np.float64))
        t = torch.from_numpy(y)
        log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=check_int(max_iter, "max_iter"),
                                line_search_fn="strong_wolfe")
        nll = torch.nn.functional.cross_entropy

        def closure():
            opt.zero_grad()
            loss = nll(z / torch.exp(log_t), t)
            loss.backward()
            return loss

        with torch.no_grad():
            before = float(nll(z, t))
        opt.step(closure)
        temp = float(torch.exp(log_t).detach())
        with torch.no_grad():
            after = float(nll(z / temp, t))
        if not np.isfinite(temp) or after > before:  # LBFGS failed to improve: keep T = 1
            temp, after = 1.0, before
        sat_before, sat_after = (float(np.mean(softmax(logits, t_).max(axis=1) > SATURATED)) for t_ in (1.0, temp))
        if temp < 1.0 and sat_after >= 0.25 and sat_after > sat_before + 0.05:
            warnings.warn(f"fit_temperature sharpened the model into saturation: T = {temp:.3g} gives "
                          f"{sat_after:.1%} of the {logits.shape[0]} fit inputs a top probability > 1 - 1e-6 (T = 1: "
                          f"{sat_before:.1%}); rank scores (APS, RAPS) then tie and non-randomized sets degenerate. "
                          f"The fit data may be too easy or too few (NLL {before:.3g} -> {after:.3g}); fit on harder "
                          f"held-out data, keep T = 1, or use randomized sets / score='lac'", UserWarning,
                          stacklevel=2)
        self.temperature_ = temp
        self.nll_before_, self.nll_after_ = before, after
        return self
