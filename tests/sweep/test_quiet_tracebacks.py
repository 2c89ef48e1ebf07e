"""Library tracebacks off the terminal unless --verbose (issue 24): what Ray, MLflow and SQLAlchemy log
with a traceback is one line naming the exception. Real loggers and handlers, as a driver process has
them after importing the libraries (pytest's own log capture would hide what a terminal shows)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import logging, sys
import mlflow, ray, sqlalchemy  # each sets up its loggers as in a driver
from flosssweep.sweep import quiet
quiet.configure(verbose=sys.argv[1] == "verbose")
for name in ("ray.tune.execution", "mlflow.store", "sqlalchemy.pool.impl.QueuePool"):
    try:
        raise RuntimeError("database is locked\\nmore detail")
    except RuntimeError:
        logging.getLogger(name).error("could not log batch", exc_info=True)
logging.getLogger("sqlalchemy.engine").error(
    'worker died\\nTraceback (most recent call last):\\n  File "x.py", line 1\\nValueError: bad worker'
)
"""


@pytest.mark.slow  # two fresh interpreters that import Ray and MLflow
@pytest.mark.parametrize("mode", ["quiet", "verbose"])
def test_library_tracebacks_are_one_line_unless_verbose(mode):
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    err = done.stderr
    if mode == "verbose":
        assert err.count("Traceback (most recent call last)") >= 3
        return
    lines = [line for line in err.splitlines() if "could not log batch" in line or "worker died" in line]
    assert "Traceback" not in err, err
    assert len(lines) == 4, err
    assert all("(RuntimeError: database is locked; --verbose shows the traceback)" in line for line in lines[:3])
    assert "worker died (ValueError: bad worker" in lines[3]
