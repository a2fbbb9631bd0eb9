"""Default image preprocessing for `CameraClassifier`, built on OpenCV: colour conversion, resize, scale to [0, 1],
per-channel mean/std. A plain callable; pass your own ``preprocess(images, channels) -> float32 (n, C, H, W)``
to the adapter instead if your model expects something else."""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["ImagePreprocess", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_INTERP = {"area": 3, "linear": 1, "nearest": 0, "cubic": 2}  # cv2.INTER_* values


class ImagePreprocess:
    """uint8 H x W x C images (or H x W greyscale) -> float32 (n, C, H', W') array.

    Parameters
    ----------
    size : (height, width) or None
        Output size; None keeps the input size (then all images must share it).
    color : "rgb", "bgr" or "gray"
        What the model expects (the channel order of its input). Inputs are converted from the adapter's
        `channels` ("rgb" or "bgr"; greyscale inputs are repeated to 3 channels for "rgb" / "bgr").
    mean, std : float or one per output channel, in the output's channel order
        Applied after scaling to [0, 1]: (x / 255 - mean) / std. Defaults: ImageNet statistics for "rgb" (and
        reversed for "bgr"), 0 and 1 for "gray".

    The default, ``ImagePreprocess()``, is what `CameraClassifier` uses when given no `preprocess`: 3-channel RGB
    (greyscale repeated), [0, 1], ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), no resize.
    interpolation : "area", "linear", "nearest" or "cubic"
        OpenCV interpolation for resizing.
    """

    def __init__(self, size=None, *, color: str = "rgb", mean=None, std=None, interpolation: str = "area"):
        if color not in ("rgb", "bgr", "gray"):
            raise ValueError(f"`color` must be 'rgb', 'bgr' or 'gray'; got {color!r}")
        if size is not None:
            if (not isinstance(size, (tuple, list)) or len(size) != 2
                    or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s > 0 for s in size)):
                raise ValueError(f"`size` must be None or (height, width) positive ints; got {size!r}")
            size = (int(size[0]), int(size[1]))
        if interpolation not in _INTERP:
            raise ValueError(f"`interpolation` must be one of {sorted(_INTERP)}; got {interpolation!r}")
        nc = 1 if color == "gray" else 3
        order = slice(None, None, -1 if color == "bgr" else 1)
        mean = (IMAGENET_MEAN[order] if nc == 3 else 0.0) if mean is None else mean
        std = (IMAGENET_STD[order] if nc == 3 else 1.0) if std is None else std
        self.size, self.color, self.interpolation = size, color, interpolation
        self.mean = self._per_channel(mean, "mean", nc)
        self.std = self._per_channel(std, "std", nc)
        if np.any(self.std <= 0):
            raise ValueError(f"`std` must be positive; got {std!r}")

    @staticmethod
    def _per_channel(v, name, nc):
        arr = np.asarray(v, dtype=np.float32).reshape(-1)
        if arr.size == 1:
            arr = np.repeat(arr, nc)
        if arr.size != nc or not np.all(np.isfinite(arr)):
            raise ValueError(f"`{name}` must be a finite float or {nc} floats (one per channel); got {v!r}")
        return arr

    @property
    def out_channels(self) -> int:
        return 1 if self.color == "gray" else 3

    def __repr__(self) -> str:
        return (f"ImagePreprocess(size={self.size!r}, color={self.color!r}, mean={self.mean.tolist()!r}, "
                f"std={self.std.tolist()!r}, interpolation={self.interpolation!r})")

    def _convert(self, im: np.ndarray, channels: str) -> np.ndarray:
        import cv2

        if im.ndim == 2:
            src = "gray"
        elif im.shape[2] == 1:
            im, src = im[:, :, 0], "gray"
        else:
            src = channels
        if self.color == "gray":
            if src == "gray":
                return im
            return cv2.cvtColor(im, cv2.COLOR_BGR2GRAY if src == "bgr" else cv2.COLOR_RGB2GRAY)
        if src == "gray":
            return cv2.cvtColor(im, cv2.COLOR_GRAY2RGB)  # equal channels: RGB and BGR are the same
        return cv2.cvtColor(im, cv2.COLOR_BGR2RGB) if src != self.color else im

    def __call__(self, images, channels: str = "rgb") -> np.ndarray:
        """Checked uint8 images (a list or an (n, H, W[, C]) array) -> float32 (n, C, H', W'). Inputs are not
        modified."""
        import cv2

        out = None
        for i, im in enumerate(images):
            x = self._convert(im, channels)
            if self.size is not None and x.shape[:2] != self.size:
                x = cv2.resize(x, (self.size[1], self.size[0]), interpolation=_INTERP[self.interpolation])
            if out is None:
                h, w = x.shape[:2]
                out = np.empty((len(images), self.out_channels, h, w), dtype=np.float32)
            elif x.shape[:2] != out.shape[2:]:
                raise ValueError(f"`images` must share one size when `size` is None; image {i} is "
                                 f"{im.shape[:2]}, image 0 was {out.shape[2:]} (set ImagePreprocess(size=...))")
            x = x.astype(np.float32) * np.float32(1.0 / 255.0)
            if x.ndim == 2:
                x = x[:, :, None]
            out[i] = ((x - self.mean) / self.std).transpose(2, 0, 1)
        return out
