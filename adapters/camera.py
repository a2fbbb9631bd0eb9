"""CameraClassifier: a torch image classifier (or any callable batch -> logits) as probabilities for conformal."""
from __future__ import annotations

import numpy as np
import torch

from adapters._arrays import to_host
from adapters._base import TorchAdapter
from adapters.preprocess import ImagePreprocess

__all__ = ["CameraClassifier"]


class CameraClassifier(TorchAdapter):
    """Wrap an image classifier so it maps camera frames to logits / probabilities as NumPy arrays.

    Parameters
    ----------
    model : torch.nn.Module or callable
        Takes a float tensor (b, C, H, W) on `device` and returns logits (b, K). A Module is moved to `device`
        and put in eval mode at prediction time.
    preprocess : callable or None
        ``preprocess(images, channels) -> float32 (n, C, H, W)``; None uses `ImagePreprocess()` (OpenCV: to RGB,
        scale to [0, 1], ImageNet mean/std, no resize).
    device : str
        "cpu", "cuda", "cuda:1", ...; a device that does not exist is a ValueError.
    batch_size : int
    channels : "rgb" or "bgr"
        Channel order of 3-channel uint8 inputs (OpenCV's ``cv2.imread`` gives "bgr"). Greyscale (H x W or
        H x W x 1) inputs need no order.
    num_classes : int or None
        If given, a model returning another number of classes is an error.
    progress : "auto", True or False
        tqdm progress bar ("auto": for 20 batches or more).
    layout : "auto", "batch" or "image"
        How a single uint8 array is read. "batch": its first axis indexes images, (n, H, W) or (n, H, W, C);
        "image": it is one image, (H, W) or (H, W, C). "auto" (default): a 4-D array is a batch, a 3-D array whose
        last axis is not 1, 3 or 4 is a batch of grey images; a 3-D array ending in 1, 3 or 4 (one H x W x 3 image,
        or H grey images 3 px wide?) and a 2-D array are refused as ambiguous. Lists and tensors need no layout.
    feature_layer : str or None
        Module whose (flattened) output `predict_outputs` returns as features; None: the input of the last
        ``nn.Linear`` (penultimate features).

    Inputs: a list/tuple of uint8 arrays (H x W, H x W x 1 or H x W x 3; sizes may differ if `preprocess`
    resizes), an (n, H, W[, C]) uint8 array (see `layout`), a uint8 torch tensor read like that array, or a ready
    float tensor (n, C, H, W) that goes to the model unchanged. CUDA tensors are copied to the host first.

    Examples
    --------
    >>> from adapters import reference
    >>> from adapters.datasets import load_fashion_mnist
    >>> images, labels = load_fashion_mnist("test")
    >>> cam = reference.load("fashion_cnn")
    >>> cam.predict_proba(images[:5]).shape
    (5, 10)
    """

    def __init__(self, model, preprocess=None, device="cpu", batch_size: int = 256, channels: str = "rgb", *,
                 num_classes: int | None = None, progress="auto", feature_layer: str | None = None,
                 layout: str = "auto"):
        super().__init__(model, device=device, batch_size=batch_size, num_classes=num_classes, progress=progress,
                         feature_layer=feature_layer)
        self.preprocess = preprocess
        self.channels = channels
        self.layout = layout

    def _check_inputs(self, images):
        if self.channels not in ("rgb", "bgr"):
            raise ValueError(f"`channels` must be 'rgb' or 'bgr'; got {self.channels!r}")
        if self.preprocess is not None and not callable(self.preprocess):
            raise TypeError(f"`preprocess` must be a callable (images, channels) -> array; got "
                            f"{type(self.preprocess).__name__}")
        if self.layout not in ("auto", "batch", "image"):
            raise ValueError(f"`layout` must be 'auto', 'batch' or 'image'; got {self.layout!r}")
        if isinstance(images, torch.Tensor) and not images.is_floating_point():
            images = images.detach().cpu().numpy()  # uint8 frames as a tensor: read like the same array
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or not images.is_floating_point():
                raise ValueError(f"a tensor given as `images` must be float (n, C, H, W); got "
                                 f"{images.dtype} of shape {tuple(images.shape)}")
            if images.shape[0] == 0:
                raise ValueError("`images` is empty")
            return images.shape[0], lambda lo, hi: images[lo:hi]
        if isinstance(images, np.ndarray):
            items = self._as_batch(images)
        elif isinstance(images, (list, tuple)):
            items = to_host(images)  # uint8 tensors in a list are read as the same arrays
        else:
            raise TypeError(f"`images` must be a list of uint8 H x W x C arrays, an (n, H, W[, C]) uint8 array or a "
                            f"float tensor (n, C, H, W); got {type(images).__name__}")
        if len(items) == 0:
            raise ValueError("`images` is empty")
        for i, im in enumerate(items):
            if not isinstance(im, np.ndarray):
                raise TypeError(f"`images[{i}]` must be a numpy array; got {type(im).__name__}")
            if im.dtype != np.uint8:
                raise TypeError(f"`images[{i}]` must be uint8 (0-255); got dtype {im.dtype}. Convert floats in "
                                f"[0, 1] with np.rint(x * 255).astype(np.uint8), or pass a ready float tensor")
            if not (im.ndim == 2 or (im.ndim == 3 and im.shape[2] in (1, 3))):
                raise ValueError(f"`images[{i}]` must be H x W, H x W x 1 or H x W x 3; got shape {im.shape}"
                                 + (" (RGBA/BGRA: drop the alpha channel)" if im.ndim == 3 and im.shape[2] == 4
                                    else ""))
            if min(im.shape[:2]) == 0:
                raise ValueError(f"`images[{i}]` has zero size {im.shape}")
        pre = self.preprocess if self.preprocess is not None else ImagePreprocess()

        def batch(lo, hi):
            x = pre(items[lo:hi], self.channels)
            x = torch.as_tensor(np.ascontiguousarray(x))
            if x.ndim != 4 or not x.is_floating_point():
                raise ValueError(f"`preprocess` must return float (n, C, H, W); got {x.dtype} {tuple(x.shape)}")
            return x

        return len(items), batch

    def _as_batch(self, images: np.ndarray) -> np.ndarray:
        """An array as a batch of images, by `layout`; never a guess."""
        if self.layout == "image":
            if images.ndim not in (2, 3):
                raise ValueError(f"with layout='image', `images` must be one H x W or H x W x C array; got shape "
                                 f"{images.shape}")
            return images[None]
        if images.ndim not in (3, 4) or (self.layout == "auto" and images.ndim == 2):
            raise ValueError(f"an array given as `images` must be (n, H, W) or (n, H, W, C) uint8; got shape "
                             f"{images.shape}. For one image, pass [image], images[None] or layout='image'")
        if self.layout == "auto" and images.ndim == 3 and images.shape[2] in (1, 3, 4):
            raise ValueError(f"an array of shape {images.shape} given as `images` is ambiguous: one H x W x "
                             f"{images.shape[2]} image, or {images.shape[0]} grey images {images.shape[2]} px wide? "
                             f"Pass layout='image' (or [image], images[None]) for one image, layout='batch' for a "
                             f"batch")
        return images

    def __repr__(self) -> str:
        return (f"CameraClassifier(model={type(self.model).__name__}, preprocess={self.preprocess!r}, "
                f"device={self.device!r}, batch_size={self.batch_size!r}, channels={self.channels!r})")
