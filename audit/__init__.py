"""Robustness audits: calibrate on clean data, then measure coverage, set size, abstention (classification) or
box, class-set and recall guarantees (detection) as each corruption worsens; results, plots and a report.

A top-level application on the library: it may import `conformal`, `perturbations` and `adapters`, which never
import it. Needs the `audit` extra (pyyaml, matplotlib, tqdm, scikit-learn, threadpoolctl).

    from audit import load_config, run_audit
    results = run_audit(load_config("configs/digits_camera.yaml"), "audit-out/digits")
"""
from __future__ import annotations

from audit.config import load as load_config
from audit.config import validate as validate_config
from audit.errors import AuditError, ConfigError
from audit.tasks import TASKS, get_task

__all__ = ["AuditError", "ConfigError", "TASKS", "load_config", "run_audit", "validate_config"]


def run_audit(cfg: dict, out, *, workers: int | None = None, executor: str | None = None, resume: bool = False,
              quiet: bool = False, overwrite: bool = False) -> dict:
    """Run the audit a validated config describes into the folder `out`: result files, then plots and
    report.html when the config asks for them. Returns the results dict (also in out/results.json).

    `out` must be new, empty, or the folder of an earlier audit; `overwrite=True` accepts any folder in which no
    file the audit writes exists yet (the audit never replaces a file it did not create). Cells that fail are
    listed in results["failed_cells"]; the others are audited."""
    import sys
    import time

    from audit import report
    from audit.runner import run

    t0 = time.perf_counter()
    task = get_task(cfg.get("task", "classification"))
    results = run(task, cfg, out, workers=workers, executor=executor, resume=resume, quiet=quiet,
                  overwrite=overwrite)
    if cfg["output"]["plots"] or cfg["output"]["report"]:
        report.build(out, quiet=quiet)
    if not quiet:
        print(f"[audit] done in {time.perf_counter() - t0:.1f} s: {out}/results.csv"
              + (f", {out}/report.html" if cfg["output"]["report"] else ""), file=sys.stderr)
    return results
