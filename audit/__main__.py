"""`python -m audit ...` is the same as the `conformal-audit` console script."""
import sys

from audit.cli import main

sys.exit(main())
