"""Image and point-cloud corruptions for robustness audits."""
