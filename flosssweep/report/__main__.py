"""`python -m flosssweep.report`: the report of a sweep (see `flosssweep.report.cli`)."""

import sys

from flosssweep.report.cli import main

sys.exit(main())
