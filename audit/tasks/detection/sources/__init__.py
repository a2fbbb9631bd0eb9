"""Where a detection audit's frames come from: one entry per data source (`data.name`), each knowing its models,
its corruptions and how a cell's (prediction, ground truth) frames are made. A new source (real images through a
detector, a user's COCO files, ray-cast LiDAR scans) is one module here and one entry in `SOURCES`."""
from __future__ import annotations

from audit.tasks.detection.sources.base import Source
from audit.tasks.detection.sources.coco import CocoFiles
from audit.tasks.detection.sources.composite import CompositeScenes
from audit.tasks.detection.sources.lidar import LidarScenes
from audit.tasks.detection.sources.synthetic import SyntheticScenes

__all__ = ["SOURCES", "Source"]

SOURCES = {"synthetic_scenes": SyntheticScenes(), "composite_scenes": CompositeScenes(),
           "coco": CocoFiles(), "lidar_scenes": LidarScenes()}
