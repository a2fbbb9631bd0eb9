"""Every data source of the project, real and synthetic, in one place; nothing here downloads anything.

REAL data (``adapters.datasets.real``), read from local files:

* `load_fashion_mnist` -- Fashion-MNIST images (Debian's ``dataset-fashion-mnist`` package).
* `load_digits_images` -- scikit-learn's 8 x 8 handwritten digits, upscaled.

REAL parts, SYNTHETIC composition (``.composite``):

* `load_composite_scenes` -- detection scenes: real Fashion-MNIST objects pasted on crops of real photographs
  (scikit-learn / scikit-image), exact boxes and labels, disjoint pools per split.

SYNTHETIC data, generated (use it to exercise code paths and to test guarantees with a known truth, not to
claim accuracy on real sensors):

* `make_shapes` (``.shapes``) -- point clouds of primitive shapes, a stand-in for ModelNet-style objects.
* `make_scenes` (``.detection``) -- a simulated 2D / 3D detector on simulated scenes, with known ground truth.
* `street_scan` (``.street``) -- one ray-cast 64-ring LiDAR sweep over a simulated street.
* `load_lidar_scenes` (``.lidar_scenes``) -- ray-cast 32/64-ring scans of randomised street layouts with 3D boxes
  of cars, trucks, pedestrians and cyclists (train / calibration / test splits, disjoint seeds).

A new source gets a module here (real loaders beside ``real``, generators beside the others) and a line
above. ``import adapters.datasets`` needs numpy alone: OpenCV, scikit-learn and open3d are imported inside
the functions that use them.
"""
from __future__ import annotations

from .composite import load_composite_scenes
from .detection import CLASS_SIZES_3D, make_scenes
from .lidar_scenes import CLASSES as LIDAR_CLASSES
from .lidar_scenes import load_lidar_scenes, make_lidar_scene
from .real import FASHION_MNIST_CLASSES, load_digits_images, load_fashion_mnist
from .shapes import SHAPE_CLASSES, make_shapes
from .street import street_scan

__all__ = ["FASHION_MNIST_CLASSES", "SHAPE_CLASSES", "CLASS_SIZES_3D", "load_fashion_mnist", "load_digits_images",
           "load_composite_scenes", "make_shapes", "make_scenes", "street_scan", "LIDAR_CLASSES", "load_lidar_scenes",
           "make_lidar_scene"]
