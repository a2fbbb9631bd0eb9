"""The contract of a detection data source (see `audit.tasks.detection.sources`)."""
from __future__ import annotations

__all__ = ["Source", "corrupt_cell_images"]


def corrupt_cell_images(images, cell: dict, seed: int) -> tuple[list, list]:
    """A cell's camera corruption applied to every image, one generator per cell (seeded by the audit seed, the
    corruption's name and the severity), images in pool order; returns (corrupted images, one replayable record
    per image: perturbations.registry.replay reproduces each bit for bit)."""
    import zlib

    import numpy as np

    from perturbations.registry import corrupt_logged

    rng = np.random.default_rng(np.random.SeedSequence(
        [seed, 8123, zlib.crc32(cell["name"].encode()), cell["severity"]]))
    out, records = [], []
    for im in images:
        y, rec = corrupt_logged(im, cell["name"], cell["severity"], rng, "image")
        out.append(y)
        records.append(rec)
    return out, records


class Source:
    """A detection data source. Subclasses set the class attributes and implement the methods.

    Frames are the `conformal.detection` format: predictions ``{"boxes" | "boxes3d", "scores", "labels",
    "class_probs", "box_std"}`` and ground truth ``{"boxes" | "boxes3d", "labels"}``, one dict per image or scan.
    """

    name = ""
    help = ""
    synthetic = False  # the data (and/or the detector) are synthetic: said on every plot and in the report
    tag = ""  # short provenance note for plot titles, e.g. "SYNTHETIC scenes, SIMULATED detector"
    models: dict = {}  # model.name -> help, for the models this source can run
    corruption_kind = ""  # what the corruptions act on, for messages: "detector degradations", "image corruptions"

    def validate(self, data: dict, model: dict, base_dir) -> tuple[dict, dict]:
        """(data, model) components with every default filled in and checked; ConfigError otherwise."""
        raise NotImplementedError

    def dim(self, data: dict) -> int:
        raise NotImplementedError

    def n_frames(self, data: dict) -> int:
        raise NotImplementedError

    def class_names(self, cfg: dict) -> list:
        raise NotImplementedError

    def image_size(self, data: dict):
        """[height, width] in px of 2D frames (for drawing examples), or None."""
        return None

    def check_corruption(self, name: str, path: str, data: dict) -> None:
        """ConfigError when `name` is not a corruption this source can apply."""
        raise NotImplementedError

    def check_cells(self, corruptions: list, data: dict) -> None:
        """ConfigError when a listed corruption / severity cannot be made (checked after the list is parsed)."""

    def describe(self, cfg: dict) -> str:
        raise NotImplementedError

    def listing(self) -> str:
        return ""

    def context(self, cfg: dict) -> dict:
        """The picklable inputs of `frames` (shipped to every worker)."""
        raise NotImplementedError

    def code_digest(self, cfg: dict) -> str:
        """Digest of the code and files that make the frames (enters the cache key)."""
        raise NotImplementedError

    def provenance(self, cfg: dict) -> dict:
        """What the frames rest on beyond the config (e.g. {"model_file", "model_sha256"})."""
        return {}

    def subset_context(self, context: dict, n: int) -> dict:
        """The context restricted to the first `n` frames (for `validate --dry-run`)."""
        return context

    def setup_worker(self, context: dict) -> None:
        """Import what the model needs before the thread limits are set (see audit.runner.executors)."""

    def frames(self, context: dict, cell: dict) -> tuple[list, list, list]:
        """(predictions, ground truth, records) of the pool for one cell (the clean cell: uncorrupted). records: one
        JSON-able record per frame of what its corruption applied (`perturbations.registry.corrupt_logged`), or
        [] for the clean cell."""
        raise NotImplementedError

    def example_image(self, context: dict, index: int):
        """The clean image (uint8 H x W x 3) of pool frame `index`, drawn behind the example plots' boxes (each
        cell's corruption is replayed on it from its record), or None when the source has no images."""
        return None

    def example_points(self, context: dict, cell: dict, index: int):
        """(K, 3) x, y, intensity of the sensor points behind example frame `index` in `cell` (drawn under the
        bird's-eye view of 3D examples), or None when the source has no points."""
        return None

    def extra_metrics(self, preds: list, gts: list, test=None, memo=None) -> dict:
        """Source-specific metrics of one cell's test frames `test` (indices into the cell's `preds` / `gts`, raw
        detections; e.g. AP), {name: float}; they are summarised over splits like the others (results.json) and
        shown in the report's table. `memo` is a dict kept per cell over the splits, for work that does not depend
        on the split (e.g. matching each frame once)."""
        return {}

    def cell_metrics(self, context: dict, preds: list, gts: list) -> dict:
        """Metrics of a cell's whole pool that need no calibration (e.g. {"ap50", "ap"}); {} if none."""
        return {}

    def train(self, cfg: dict):
        """`conformal-audit train CONFIG`: train the config's detector; returns the weights path."""
        from audit.errors import ConfigError

        raise ConfigError(f"data source {self.name!r} with model {cfg['model']['name']!r} has no model to train")

    def caveats(self, results: dict) -> list:
        """Source-specific caveats (HTML strings), shown first in the report."""
        return []

    def corruption_table(self, results: dict) -> str:
        """An HTML table of the corruptions used and their values, or ""."""
        return ""
