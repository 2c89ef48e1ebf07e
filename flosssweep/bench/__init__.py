"""The benchmark harness: `python -m flosssweep.bench` (see `flosssweep.bench.harness`)."""

from flosssweep.bench.harness import main

__all__ = ["main"]
