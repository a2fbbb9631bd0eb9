"""`conformal-audit` (and `python -m audit`): run, list, report, train, validate."""
from __future__ import annotations

import argparse
import sys

from audit.config import dump, load
from audit.errors import AuditError, ConfigError


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
    r.add_argument("--overwrite", action="store_true", help="write into a non-empty --out the audit did not create "
                   "(files the audit did not create are never replaced)")
    r.add_argument("--quiet", action="store_true")
    sub.add_parser("list", help="list data sources, models, corruptions, scores, statistics and rules")
    rp = sub.add_parser("report", help="rebuild plots and report.html from a finished audit directory")
    rp.add_argument("dir")
    rp.add_argument("--png", action="store_true", help="also render report.html to report.png (headless Chromium)")
    t = sub.add_parser("train", help="train the reference model named by a config")
    t.add_argument("config")
    i = sub.add_parser("init", help="write one of the shipped configs to start from (works after a pip install)")
    i.add_argument("name", nargs="?", help="a shipped config (see --list)")
    i.add_argument("--out", default=None, help="file to write (default: NAME.yaml here; never overwritten)")
    i.add_argument("--list", action="store_true", help="list the shipped configs")
    w = sub.add_parser("warmup", help="compile every Numba kernel now (fills the cache: no later process compiles)")
    w.add_argument("--core-only", action="store_true", help="only the conformal core (no corruptions)")
    v = sub.add_parser("validate", help="check a config and print it with every default filled in")
    v.add_argument("config")
    v.add_argument("--dry-run", action="store_true", help="also build the data and the model and run one small batch "
                   "(the clean cell and each corruption at its highest severity)")
    return p


def _list() -> None:
    from audit.tasks import TASKS

    print("tasks (task):")
    for name, task in TASKS.items():
        print(f"  {name:18s} {task.help}")
    for task in TASKS.values():
        print(task.listing())
    print("executors: local (--workers N for N processes), ray (--executor ray; RAY_ADDRESS or executor.address)")


def shipped_configs() -> dict:
    """{name: text} of the configs shipped in the package (audit/configs, the repository's configs/)."""
    from importlib.resources import files

    root = files("audit") / "configs"
    return {p.name[:-5]: p.read_text() for p in sorted(root.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".yaml")}


def _init(name, out, listing: bool) -> None:
    from pathlib import Path

    configs = shipped_configs()
    if listing or name is None:
        print("shipped configs (conformal-audit init NAME):")
        for n, text in configs.items():
            first = next((line[2:] for line in text.splitlines() if line.startswith("# ")), "")
            print(f"  {n:32s} {first}")
        return
    if name not in configs:
        raise ConfigError(f"no shipped config {name!r}; shipped: {', '.join(configs)}")
    path = Path(out or f"{name}.yaml")
    if path.exists():
        raise ConfigError(f"{str(path)!r} exists; conformal-audit init never overwrites a file (choose --out)")
    path.write_text(configs[name])
    print(f"wrote {path}; run it with: conformal-audit run {path} --out audit-out/{name}")


def _warmup(core_only: bool) -> None:
    import time

    import conformal

    t0 = time.perf_counter()
    steps = conformal.warmup(verbose=True)
    if not core_only:
        import perturbations

        steps.update(perturbations.warmup(verbose=True))
    print(f"warm-up done in {time.perf_counter() - t0:.1f} s ({len(steps)} steps); the Numba cache is filled, so "
          f"later processes load compiled code instead of compiling")


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            _list()
        elif args.command == "validate":
            cfg = load(args.config)
            print(dump(cfg), end="")
            if args.dry_run:
                from audit.runner.run import dry_run
                from audit.tasks import get_task

                dry_run(get_task(cfg["task"]), cfg, log=print)
                print("dry run: ok")
        elif args.command == "run":
            from audit import run_audit

            if args.workers is not None and args.workers < 1:
                raise ConfigError(f"--workers must be >= 1; got {args.workers}")
            cfg = load(args.config)
            results = run_audit(cfg, args.out, workers=args.workers, executor=args.executor, resume=args.resume,
                                quiet=args.quiet, overwrite=args.overwrite)
            print(f"report: {args.out}/report.html" if cfg["output"]["report"] else f"results: {args.out}")
            if results["failed_cells"]:
                print(f"conformal-audit: {len(results['failed_cells'])} cell(s) FAILED: "
                      f"{', '.join(results['failed_cells'])} (tracebacks in {args.out}/results.json)", file=sys.stderr)
                return 1
        elif args.command == "report":
            from audit.report import build, render_png

            path = build(args.dir)
            if args.png:
                print(f"rendered: {render_png(path, path.with_suffix('.png'))}")
            print(f"report: {path}")
        elif args.command == "init":
            _init(args.name, args.out, args.list)
        elif args.command == "warmup":
            _warmup(core_only=args.core_only)
        elif args.command == "train":
            from audit.tasks import get_task

            cfg = load(args.config, check_names=True)
            print(f"weights: {get_task(cfg['task']).train(cfg)}")
    except (ConfigError, ValueError, TypeError) as exc:
        print(f"conformal-audit: error: {exc}", file=sys.stderr)
        return 2
    except AuditError as exc:
        print(f"conformal-audit: error: {exc}", file=sys.stderr)
        return 3
    return 0
