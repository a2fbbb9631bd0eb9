"""`conformal-audit`: run, list, report, train."""
from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="conformal-audit", description="Robustness audits of conformal perception "
                                "models: calibrate on clean data, corrupt the test data, measure.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an audit from a YAML config")
    r.add_argument("config")
    r.add_argument("--out", required=True, help="output directory (results, cache, plots, report.html)")
    r.add_argument("--workers", type=int, default=None, help="worker processes / Ray CPUs (default: config)")
    r.add_argument("--executor", choices=("local", "ray"), default=None, help="default: config (local)")
    r.add_argument("--resume", action="store_true", help="reuse model outputs cached in --out")
    r.add_argument("--quiet", action="store_true")
    sub.add_parser("list", help="list data sources, models, corruptions, scores, statistics and rules")
    rp = sub.add_parser("report", help="rebuild plots and report.html from a finished audit directory")
    rp.add_argument("dir")
    rp.add_argument("--png", action="store_true", help="also render report.html to report.png (headless Chromium)")
    t = sub.add_parser("train", help="train the reference model named by a config")
    t.add_argument("config")
    v = sub.add_parser("validate", help="check a config and print it with every default filled in")
    v.add_argument("config")
    return p


def _list() -> None:
    from conformal.audit import config, registry

    print("data sources (data.name):")
    for name, src in registry.DATA_SOURCES.items():
        print(f"  {name:18s} [{src.modality}] {src.help}")
    print("models (model.name):")
    for name, m in registry.MODELS.items():
        print(f"  {name:18s} {m.help}")
    for modality in ("image", "pointcloud"):
        try:
            names = registry.corruption_names(modality)
        except ImportError as exc:
            names = [f"(unavailable: {exc})"]
        print(f"{modality} corruptions (corruptions[].name):\n  " + ", ".join(names))
    print("  or a function of your own: 'package.module:function' called as function(x, severity, rng, **params)")
    from conformal.audit import degradations, detection

    print("task: detection (SYNTHETIC scenes, SIMULATED detector; see docs/audit.md)")
    for name, help_ in {**detection.DATA_SOURCES, **detection.MODELS}.items():
        print(f"  {name:18s} {help_}")
    print("  detector degradations (corruptions[].name), values at severity 1..5:")
    for name, d in degradations.DEGRADATIONS.items():
        t2 = "n/a" if d.table_2d is None else ", ".join(f"{v:g}" for v in d.table_2d) + f" {d.unit_2d}"
        t3 = "n/a" if d.table_3d is None else ", ".join(f"{v:g}" for v in d.table_3d) + f" {d.unit_3d}"
        print(f"    {name:16s} {d.help}\n{'':22s}{d.rule}; 2D: {t2.strip()}; 3D: {t3.strip()}")
    print("scores (conformal.score.name): " + ", ".join(
        f"{k}({', '.join(v)})" if v else k for k, v in config.SCORES.items()))
    print("abstention statistics (abstention.statistic): " + ", ".join(config.STATISTICS))
    print("abstention rules (abstention.rule.name): " + ", ".join(
        f"{k}({', '.join(v)})" if v else k for k, v in config.RULES.items()))
    print("abstention targets (abstention.target): " + ", ".join(config.TARGETS))
    print("executors: local (--workers N for N processes), ray (--executor ray; RAY_ADDRESS or executor.address)")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from conformal.audit.config import ConfigError, dump, load

    try:
        if args.command == "list":
            _list()
        elif args.command == "validate":
            print(dump(load(args.config)), end="")
        elif args.command == "run":
            from conformal.audit.pipeline import run

            if args.workers is not None and args.workers < 1:
                raise ConfigError(f"--workers must be >= 1; got {args.workers}")
            cfg = load(args.config)
            run(cfg, args.out, workers=args.workers, executor=args.executor, resume=args.resume, quiet=args.quiet)
            print(f"report: {args.out}/report.html" if cfg["output"]["report"] else f"results: {args.out}")
        elif args.command == "report":
            from conformal.audit.report import build, render_png

            path = build(args.dir)
            if args.png:
                print(f"rendered: {render_png(path, path.with_suffix('.png'))}")
            print(f"report: {path}")
        elif args.command == "train":
            from conformal.audit.reference import train_from_config

            cfg = load(args.config, check_names=True)
            if cfg.get("task") == "detection":
                raise ConfigError("task 'detection' audits a simulated detector; there is no model to train")
            print(f"weights: {train_from_config(cfg)}")
    except (ConfigError, ValueError, TypeError) as exc:
        print(f"conformal-audit: error: {exc}", file=sys.stderr)
        return 2
    return 0
