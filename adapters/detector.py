"""TorchDetector: a torch detector with torchvision-style output as `conformal.detection` frames."""
from __future__ import annotations

import numpy as np
import torch

from adapters._base import TorchAdapter, check_int
from adapters.camera import CameraClassifier

__all__ = ["TorchDetector"]

_FLOAT_KEYS = ("boxes", "scores", "class_probs", "box_std")


class TorchDetector(TorchAdapter):
    """Wrap a detector whose forward returns ``list[dict(boxes, scores, labels[, class_probs][, box_std])]``
    (torchvision's detection convention) so it maps camera frames to `conformal.detection` prediction frames.

    Parameters
    ----------
    model : torch.nn.Module or callable
        Takes a float tensor (b, C, H, W) on `device` (or a list of (C, H, W) tensors with
        ``input_format="list"``, as torchvision's detectors do) and returns one dict per image: "boxes" (m, 4)
        xyxy in input pixels, "scores" (m,), "labels" (m,) and optionally "class_probs" (m, K) and "box_std"
        (m, 4). A Module is moved to `device` and put in eval mode at prediction time.
    preprocess, device, batch_size, channels, progress, layout : as in `CameraClassifier` (the same input checks and
        preprocessing). When `preprocess` resizes (it has a ``size``), boxes and box_std are scaled back to each
        image's own pixels.
    num_classes : int or None
        If given, labels must be < num_classes and class_probs must have num_classes columns.
    label_offset : int
        Subtracted from the model's labels (1 for torchvision models, whose label 0 is the background).
    input_format : "batch" or "list"

    Examples
    --------
    >>> from adapters import reference
    >>> from adapters.datasets import load_composite_scenes
    >>> images, gts = load_composite_scenes("test", 4)
    >>> det = reference.load("scenes_detector")
    >>> frames = det.predict(images)
    >>> len(frames), sorted(frames[0])
    (4, ['boxes', 'class_probs', 'labels', 'scores'])
    """

    def __init__(self, model, preprocess=None, device="cpu", batch_size: int = 64, channels: str = "rgb", *,
                 num_classes: int | None = None, label_offset: int = 0, input_format: str = "batch",
                 progress="auto", layout: str = "auto"):
        super().__init__(model, device=device, batch_size=batch_size, num_classes=num_classes, progress=progress)
        self.preprocess = preprocess
        self.channels = channels
        self.label_offset = label_offset
        self.input_format = input_format
        self.layout = layout

    _check_inputs = CameraClassifier._check_inputs
    _as_batch = CameraClassifier._as_batch

    def _scales(self, images, n):
        size = getattr(self.preprocess, "size", None)
        if size is None or (isinstance(images, torch.Tensor) and images.is_floating_point()):
            return np.ones((n, 2))  # a ready float tensor goes to the model unchanged
        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
        if isinstance(images, np.ndarray):
            images = self._as_batch(images)
        return np.array([[im.shape[1] / size[1], im.shape[0] / size[0]] for im in images], np.float64)

    def _frame(self, out, i, scales):
        where = f"`model` output for image {i}"
        if not isinstance(out, dict):
            raise TypeError(f"{where} must be a dict with boxes, scores, labels; got {type(out).__name__}")
        missing = [k for k in ("boxes", "scores", "labels") if k not in out]
        if missing:
            raise ValueError(f"{where} lacks {missing}; keys present: {sorted(out)}")
        f = {}
        for k, v in out.items():
            if k not in ("labels", *_FLOAT_KEYS) or v is None:
                continue
            a = v.detach().to("cpu").numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            f[k] = a.astype(np.int64) if k == "labels" else a.astype(np.float64)
        m = f["scores"].reshape(-1).shape[0]
        f["boxes"] = f["boxes"].reshape(-1, 4)
        if f["boxes"].shape[0] != m or f["labels"].reshape(-1).shape[0] != m:
            raise ValueError(f"{where}: boxes {f['boxes'].shape}, scores ({m},) and labels "
                             f"{f['labels'].shape} disagree in length")
        f["scores"], f["labels"] = f["scores"].reshape(-1), f["labels"].reshape(-1) - self.label_offset
        if m and f["labels"].min() < 0:
            raise ValueError(f"{where}: label {int(f['labels'].min()) + self.label_offset} < label_offset "
                             f"{self.label_offset}")
        if self.num_classes is not None and m and f["labels"].max() >= self.num_classes:
            raise ValueError(f"{where}: label {int(f['labels'].max())} >= num_classes={self.num_classes}")
        if "class_probs" in f and (f["class_probs"].ndim != 2 or f["class_probs"].shape[0] != m or (
                self.num_classes is not None and f["class_probs"].shape[1] != self.num_classes)):
            raise ValueError(f"{where}: class_probs must be (m={m}, K); got {f['class_probs'].shape}")
        sx, sy = scales[i]
        if sx != 1.0 or sy != 1.0:
            f["boxes"] = f["boxes"] * np.array([sx, sy, sx, sy])
            if "box_std" in f:
                f["box_std"] = f["box_std"].reshape(-1, 4) * np.array([sx, sy, sx, sy])
        for k in _FLOAT_KEYS:
            if k in f and not np.all(np.isfinite(f[k])):
                raise ValueError(f"{where}: {k} holds NaN or inf")
        return f

    def predict(self, images) -> list[dict]:
        """One prediction frame per image: {"boxes" (m, 4) xyxy float64, "scores", "labels" int64[, "class_probs",
        "box_std"]}, in the images' own pixel coordinates; batched under torch.inference_mode()."""
        dev, bs = self._check_common()
        check_int(self.label_offset, "label_offset", minimum=0)
        if self.input_format not in ("batch", "list"):
            raise ValueError(f"`input_format` must be 'batch' or 'list'; got {self.input_format!r}")
        n, batch_fn = self._check_inputs(images)
        scales = self._scales(images, n)
        if isinstance(self.model, torch.nn.Module):
            self.model.to(dev)
            self.model.eval()
        starts = range(0, n, bs)
        if self.progress is True or (self.progress == "auto" and len(starts) >= self._progress_min_batches):
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=type(self).__name__, unit="batch")
        frames = []
        with torch.inference_mode():
            for lo in starts:
                hi = min(lo + bs, n)
                x = batch_fn(lo, hi).to(dev, non_blocking=True)
                out = self.model(list(x) if self.input_format == "list" else x)
                if not isinstance(out, (list, tuple)) or len(out) != hi - lo:
                    raise TypeError(f"`model` must return a list of {hi - lo} dicts (one per image) for a batch of "
                                    f"{hi - lo}; got {type(out).__name__}"
                                    + (f" of length {len(out)}" if isinstance(out, (list, tuple)) else ""))
                frames.extend(self._frame(o, lo + j, scales) for j, o in enumerate(out))
        return frames

    def __repr__(self) -> str:
        return (f"TorchDetector(model={type(self.model).__name__}, preprocess={self.preprocess!r}, "
                f"device={self.device!r}, batch_size={self.batch_size!r}, label_offset={self.label_offset!r})")
