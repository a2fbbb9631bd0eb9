"""CameraClassifier: a torch image classifier (or any callable batch -> logits) as probabilities for conformal."""
from __future__ import annotations

import numpy as np
import torch

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
    feature_layer : str or None
        Module whose (flattened) output `predict_outputs` returns as features; None: the input of the last
        ``nn.Linear`` (penultimate features).

    Inputs: a list/tuple of uint8 arrays (H x W, H x W x 1 or H x W x 3; sizes may differ if `preprocess`
    resizes), an (n, H, W[, C]) uint8 array, or a ready float tensor (n, C, H, W) that goes to the model unchanged.

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
                 num_classes: int | None = None, progress="auto", feature_layer: str | None = None):
        super().__init__(model, device=device, batch_size=batch_size, num_classes=num_classes, progress=progress,
                         feature_layer=feature_layer)
        self.preprocess = preprocess
        self.channels = channels

    def _check_inputs(self, images):
        if self.channels not in ("rgb", "bgr"):
            raise ValueError(f"`channels` must be 'rgb' or 'bgr'; got {self.channels!r}")
        if self.preprocess is not None and not callable(self.preprocess):
            raise TypeError(f"`preprocess` must be a callable (images, channels) -> array; got "
                            f"{type(self.preprocess).__name__}")
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or not images.is_floating_point():
                raise ValueError(f"a tensor given as `images` must be float (n, C, H, W); got "
                                 f"{images.dtype} of shape {tuple(images.shape)}")
            if images.shape[0] == 0:
                raise ValueError("`images` is empty")
            return images.shape[0], lambda lo, hi: images[lo:hi]
        if isinstance(images, np.ndarray):
            if images.ndim not in (3, 4):
                raise ValueError(f"an array given as `images` must be (n, H, W) or (n, H, W, C) uint8; got shape "
                                 f"{images.shape}. For one image, pass images[None] or [image]")
            items = images
        elif isinstance(images, (list, tuple)):
            items = images
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

    def __repr__(self) -> str:
        return (f"CameraClassifier(model={type(self.model).__name__}, preprocess={self.preprocess!r}, "
                f"device={self.device!r}, batch_size={self.batch_size!r}, channels={self.channels!r})")
