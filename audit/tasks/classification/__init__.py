"""`task: classification` (the default): a classifier's conformal sets and abstention under input corruptions.

A cell corrupts the audit pool (images or point clouds) with its own generator and runs the model on it; per
split a `DualThresholdConformal` is fitted on the clean calibration outputs only and predicts, without labels,
on every cell's test outputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audit.errors import ConfigError
from audit.runner.cache import file_digest, fingerprint, pack_records
from audit.runner.cells import cell_list, cell_rng
from audit.runner.task import Prepared, Task
from audit.tasks.classification import config, corrupt, data, evaluate, models, reference, report
from audit.tasks.classification import shift as shift_cols

__all__ = ["ClassificationTask"]


def _model_key(cfg: dict) -> str:
    params = dict(cfg["model"]["params"])
    files = [params[k] for k in ("weights", "path") if k in params]
    files += [params["class"].rpartition(":")[0]] if str(params.get("class", "")).rpartition(":")[0].endswith(".py") \
        else []  # a model class given as a file: its code shapes the outputs too
    digest = "".join(file_digest(f) for f in files)
    return fingerprint(cfg["data"], cfg["model"], digest, cfg["seed"], cfg["split"]["train_fraction"],
                       cfg["split"]["max_samples"])


def _predictor_state(predictor) -> list:
    """Arrays and plain fields of a prepared model (e.g. the fitted logistic regression), for the cache key."""
    if predictor is None:
        return []
    return [v for k, v in sorted(vars(predictor).items()) if not k.startswith("_")]


def _corruption_code(name: str) -> str:
    """Digest of the code a corruption runs: the perturbations package for built-ins, the module of a custom one."""
    import importlib
    import inspect

    if name == "clean":
        return ""
    module = name.partition(":")[0] if ":" in name else "perturbations"
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return ""
    path = Path(inspect.getfile(mod))
    files = sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]
    return fingerprint(*[f.read_bytes().decode("utf-8", "replace") for f in files])


def _model_provenance(cfg: dict, predictor) -> dict:
    """The model the results rest on: the sha256 of its weights file, or a digest of the model fitted in-process."""
    import hashlib

    weights = (getattr(predictor, "weights", None) or cfg["model"]["params"].get("weights")
               or cfg["model"]["params"].get("path"))
    if isinstance(weights, str) and Path(weights).is_file():
        return {"model_file": weights, "model_sha256": hashlib.sha256(Path(weights).read_bytes()).hexdigest()}
    return {"model_fitted_here": cfg["model"]["name"], "model_digest": fingerprint(_predictor_state(predictor))}


def _pack_examples(ex) -> dict:
    """Example inputs of any shape (images H x W [x C], clouds N_i x 3) as one array split by counts."""
    if not ex:
        return {}
    return {"examples": np.concatenate([np.asarray(x) for x in ex]),
            "example_counts": np.array([len(x) for x in ex], dtype=np.int64)}


def _check_probs(probs: np.ndarray, cell: str) -> None:
    """The model's outputs on a cell must be probabilities; a NaN from a corruption or a model fails this cell only,
    with its row named, instead of aborting the whole audit later."""
    bad = ~np.isfinite(probs).all(axis=1)
    if bad.any():
        raise ValueError(f"the model's outputs on cell {cell!r} hold NaN or inf (first in row {int(np.argmax(bad))}); "
                         f"check the corruption's output and the model")
    off = (probs.min(axis=1) < 0) | (probs.max(axis=1) > 1) | (np.abs(probs.sum(axis=1) - 1.0) > 1e-3)
    if off.any():
        i = int(np.argmax(off))
        raise ValueError(f"the model's outputs on cell {cell!r} are not probabilities (row {i} sums to "
                         f"{probs[i].sum():.6g}, range [{probs[i].min():.3g}, {probs[i].max():.3g}])")


@dataclass
class _Cell:
    probs: np.ndarray
    features: np.ndarray | None
    quality: np.ndarray | None = None  # raw quality_features rows (shift.statistics with input_quality)


@dataclass
class _SplitModel:
    dual: object           # the config's DualThresholdConformal, fitted on the split's clean calibration part
    shift: object          # shift_cols.ShiftParts, or None (no `shift` section, or past shift.repeats)
    seed: int


class ClassificationTask(Task):
    name = "classification"
    help = "a classifier's conformal sets and abstention under image or point-cloud corruptions (default)"
    metrics = {**evaluate.METRICS, **shift_cols.SHIFT_METRICS}
    csv_metrics = ("coverage", "set_size", "empty_rate", "accuracy", "abstain_rate", "selective_risk",
                   "coverage_accepted", "auroc", "auroc_miscoverage", "auroc_label_nll",
                   "abstain_gridmean_label_nll", "qhat", "tau", "class_coverage_min",
                   *shift_cols.SHIFT_METRICS)
    count_metric = "coverage"

    def validate(self, raw, *, base_dir=None, check_names=True):
        return config.validate(raw, base_dir=base_dir, check_names=check_names)

    def listing(self) -> str:
        lines = ["task: classification (default)", "  data sources (data.name):"]
        lines += [f"    {name:18s} [{src.modality}] {src.help}" for name, src in data.DATA_SOURCES.items()]
        lines.append("  models (model.name):")
        lines += [f"    {name:18s} {m.help}" for name, m in models.MODELS.items()]
        for modality in ("image", "pointcloud"):
            try:
                names = corrupt.corruption_names(modality)
            except ImportError as exc:
                names = [f"(unavailable: {exc})"]
            lines.append(f"  {modality} corruptions (corruptions[].name):\n    " + ", ".join(names))
        lines.append("    or a function of your own: 'package.module:function' called as "
                     "function(x, severity, rng, **params)")
        lines.append("  scores (conformal.score.name): " + ", ".join(
            f"{k}({', '.join(v)})" if v else k for k, v in config.SCORES.items()))
        lines.append("  abstention statistics (abstention.statistic): " + ", ".join(config.STATISTICS))
        lines.append("  abstention rules (abstention.rule.name): " + ", ".join(
            f"{k}({', '.join(v)})" if v else k for k, v in config.RULES.items()))
        lines.append("  abstention targets (abstention.target): " + ", ".join(config.TARGETS))
        return "\n".join(lines)

    def train(self, cfg):
        return reference.train_from_config(cfg)

    # --- run -------------------------------------------------------------------------------------------------
    def prepare(self, cfg, out, log) -> Prepared:
        source = data.DATA_SOURCES[cfg["data"]["name"]]
        dataset = source.load(cfg["data"]["params"], cfg["split"], cfg["seed"])
        labels = dataset.pool_labels
        if np.unique(labels).shape[0] < 2:
            raise ConfigError("the audit pool holds a single class; an audit needs at least 2")
        cells = cell_list(cfg["corruptions"])
        info = {"description": dataset.description, "synthetic": dataset.synthetic, "modality": dataset.modality,
                "n_pool": int(labels.shape[0]), "n_train": int(dataset.train_labels.shape[0]),
                "class_names": list(dataset.class_names),
                "n_calibration": int(round(cfg["split"]["calibration_fraction"] * labels.shape[0]))}
        state = {"labels": labels}
        prov = {"data_fingerprint": fingerprint(labels, dataset.pool_inputs if dataset.modality != "outputs" else
                                                [dataset.extra["cells"][k] for k in sorted(dataset.extra["cells"],
                                                                                           key=str)])}
        if dataset.modality == "outputs":
            given = dataset.extra["cells"]
            ready = {}
            for t in cells:
                key = "clean" if t["name"] == "clean" else (t["name"], t["severity"])
                if key not in given:
                    raise ConfigError(f"precomputed outputs {cfg['data']['params']['path']!r} have no array "
                                      f"`probs_{t['name']}_s{t['severity']}` for config corruption {t['name']!r}")
                ready[t["cell"]] = {"probs": given[key]}
            prov["model"] = "precomputed outputs (supplied by the user; not checked here)"
            return Prepared(dataset.description, int(labels.shape[0]), {}, {}, info, ready=ready, state=state,
                            provenance=prov)
        predictor = models.MODELS[cfg["model"]["name"]].prepare(cfg["model"]["params"], dataset, cfg["seed"],
                                                                train_dir=Path(out) / "model")
        # The cache key covers everything that shapes a cell's outputs: config, weights bytes, the audit inputs
        # and labels themselves, the fitted in-process model, and the source of the corruption code.
        mkey = fingerprint(_model_key(cfg), labels, dataset.pool_inputs, _predictor_state(predictor))
        features = cfg.get("shift") is not None or config.needs_features(cfg)
        quality = shift_cols.uses_quality(cfg.get("shift"))
        # configs without features (or quality) keep their cache keys
        extra_key = ("features",) * features + ("quality",) * quality
        keys = {t["cell"]: fingerprint(mkey, t["name"], t["severity"], t["params"], cfg["output"]["examples"],
                                       _corruption_code(t["name"]), *extra_key) for t in cells}
        context = {"inputs": dataset.pool_inputs, "modality": dataset.modality, "predictor": predictor,
                   "seed": cfg["seed"], "n_classes": dataset.n_classes, "n_examples": cfg["output"]["examples"],
                   "features": features, "quality": quality}
        prov.update(_model_provenance(cfg, predictor))
        return Prepared(dataset.description, int(labels.shape[0]), context, keys, info, state=state,
                        provenance=prov)

    def setup_worker(self, context):
        if getattr(context.get("predictor"), "needs_torch", False):
            import torch  # noqa: F401  (loaded before the thread limits, so they reach torch's pool)

    def compute_cell(self, context, cell):
        inputs, applied = context["inputs"], {}
        if cell["name"] != "clean":
            rng = cell_rng(context["seed"], cell["name"], cell["severity"])
            inputs, records = corrupt.corrupt_inputs(context["modality"], inputs, cell["name"], cell["severity"],
                                                     cell["params"], rng)
            applied = {"applied": pack_records(records)}
        probs = np.asarray(context["predictor"].predict_proba(inputs), dtype=np.float64)
        n = len(context["inputs"])
        if probs.shape != (n, context["n_classes"]):
            raise ValueError(f"model outputs have shape {probs.shape}; expected ({n}, {context['n_classes']})")
        _check_probs(probs, cell["cell"])
        examples = [np.array(x) for x in inputs[: context["n_examples"]]]
        out = {"probs": probs, **_pack_examples(examples), **applied}
        if context.get("features"):
            feats = np.asarray(models.predictor_features(context["predictor"], inputs, context["modality"]))
            out["features"] = feats.reshape(n, -1).astype(np.float32)
        if context.get("quality"):
            from conformal.abstention import quality_features
            out["quality"] = quality_features(inputs, modality=shift_cols.QUALITY_MODALITY[context["modality"]])
        return out

    def subset_context(self, context, n):
        return {**context, "inputs": context["inputs"][:n]} if "inputs" in context else context

    def load_cell(self, prepared, arrays):
        return _Cell(arrays["probs"], arrays.get("features"), arrays.get("quality"))

    def cell_artifacts(self, prepared, cell, arrays):
        return {k: arrays[k] for k in ("examples", "example_counts") if k in arrays}

    def cell_files(self, prepared, cell, arrays):
        return {f"applied/{cell}.json.gz": arrays["applied"].tobytes()} if "applied" in arrays else {}

    def fit_split(self, cfg, prepared, clean, calibration, r):
        labels = prepared.state["labels"]
        seed = cfg["seed"] + 1000 * r + 17
        model = config.make_calibrator(cfg, seed)
        side = {"features": clean.features[calibration]} if config.needs_features(cfg) else {}
        model.fit(clean.probs[calibration], labels[calibration], **side)
        sh, parts = cfg.get("shift"), None
        if sh is not None and r < sh["repeats"]:
            test = np.setdiff1d(np.arange(labels.shape[0]), calibration)
            parts = shift_cols.fit(sh, cfg, clean.probs, clean.features, labels, calibration, test, seed,
                                   quality=clean.quality, modality=prepared.context.get("modality"))
        return _SplitModel(model, parts, seed)

    def score_cell(self, cfg, prepared, split_model, data, test, first, cell):
        model = split_model.dual
        labels = prepared.state["labels"][test]
        target, allow_empty = cfg["abstention"]["target"], cfg["conformal"]["allow_empty"]
        alpha = cfg["conformal"]["alpha"]
        p = data.probs[test]
        d = model.predict(p, **({"features": data.features[test]} if config.needs_features(cfg) else {}))
        m = evaluate.cell_metrics(d, p, labels, target, allow_empty)
        # several statistics: "tau" is the first one's (as d.statistic is its column)
        m["qhat"], m["tau"] = float(np.max(model.qhat_)), float(np.atleast_1d(model.tau_)[0])
        m.update(evaluate.harm_metrics(d, p, labels, alpha, allow_empty))
        if split_model.shift is not None:
            m.update(shift_cols.metrics(cfg["shift"], split_model.shift, p, data.features[test], labels, alpha,
                                        split_model.seed,
                                        quality=None if data.quality is None else data.quality[test]))
        else:
            m.update(shift_cols.nan_metrics())
        if not first:
            return m, None
        sets = np.asarray(d.sets) if allow_empty else evaluate.nonempty(np.asarray(d.sets), p)
        covered = sets[np.arange(test.shape[0]), labels]
        err = np.asarray(d.prediction) != labels
        return m, {"statistic": np.asarray(d.statistic, dtype=np.float64),
                   "event": (err if target == "error" else ~covered),
                   "set_size": sets.sum(1).astype(np.int64), "abstain": np.asarray(d.abstain, dtype=bool),
                   "label": labels.astype(np.int64), "covered": covered}

    def results_extra(self, cfg, prepared):
        if prepared.ready:  # precomputed outputs: nothing was corrupted here
            return {}
        return {"applied": "applied/<cell>.json.gz: one JSON record per audit-pool input of what its corruption "
                           "applied (parameters and the generator state before the call); "
                           "perturbations.registry.replay(input, record) reproduces the corrupted input bit for bit"}

    def report(self, results, curves, plot_dir):
        return report.report_parts(results, curves, plot_dir)
