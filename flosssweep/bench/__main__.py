"""`python -m flosssweep.bench`: trainer throughput, flossing step, Ray overhead and report speed in one run."""

import sys

from flosssweep.bench.harness import main

sys.exit(main())
