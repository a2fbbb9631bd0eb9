"""`python -m conformal.audit ...` is the same as the `conformal-audit` console script."""
import sys

from conformal.audit.cli import main

sys.exit(main())
