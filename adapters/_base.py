"""Shared machinery of the model adapters: device checks, batched inference, softmax and temperature scaling."""
from __future__ import annotations

import numbers
import warnings

import numpy as np
import torch

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


class TorchAdapter:
    """Base class: subclasses implement `_check_inputs(inputs) -> (n, batch_fn)` where ``batch_fn(lo, hi)``
    returns the model's input tensor for items lo..hi-1."""

    _progress_min_batches = 20

    def __init__(self, model, *, device="cpu", batch_size=256, num_classes=None, progress="auto"):
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.num_classes = num_classes
        self.progress = progress

    # --- parameters ----------------------------------------------------------------------------------------
    def _check_common(self):
        if not callable(self.model):
            raise TypeError(f"`model` must be a torch.nn.Module or a callable batch -> logits; got "
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
        out, k = None, self.num_classes
        with torch.inference_mode():
            for lo in starts:
                hi = min(lo + bs, n)
                x = batch_fn(lo, hi)
                y = self.model(x.to(dev, non_blocking=True))
                if not isinstance(y, torch.Tensor):
                    raise TypeError(f"`model` must return a torch.Tensor of logits; got {type(y).__name__}")
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
        if not np.all(np.isfinite(out)):
            raise ValueError("`model` returned NaN or inf logits (check the inputs and the weights)")
        return out

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
        y = check_labels(labels, logits.shape[0], logits.shape[1])
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
