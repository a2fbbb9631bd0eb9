"""Robustness audits: calibrate on clean data, then measure coverage, set size and abstention as each
corruption worsens. Needs the `audit` extra (pyyaml, matplotlib, tqdm, scikit-learn); `import conformal` does not
import this subpackage.

    from conformal.audit import load_config, run_audit
    results = run_audit(load_config("configs/digits_camera.yaml"), "audit-out/digits")
"""
from conformal.audit.config import ConfigError, load as load_config, validate as validate_config
from conformal.audit.pipeline import run as run_audit

__all__ = ["ConfigError", "load_config", "run_audit", "validate_config"]
