"""Entry point of a sweep: `python -m flosssweep.run`, or this very file under `ray submit`.

    python -m flosssweep.run search_spaces/quickstart.yaml          # on this machine
    python flosssweep/run.py quickstart --dry-run                   # the trials it would run
    ray submit cluster/config.yaml flosssweep/run.py quickstart     # on a Ray cluster

`ray submit` copies this file alone to the head node and runs it there, so everything lives in the
installed `flosssweep` package (`flosssweep.sweep.driver`); run as a file, this one only hands over.
`python -m flosssweep.run --help` lists the options and the exit codes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None, **kwargs) -> int:
    from flosssweep.sweep.driver import main as driver_main

    return driver_main(argv, **kwargs)


if __name__ == "__main__":
    # Run as a file (`python flosssweep/run.py`, or `ray submit` from the head node's home directory):
    # hand over to the installed package, so that Ray pickles the trainable by reference; in a
    # checkout that is not installed, the package next to this file.
    _here = Path(__file__).resolve().parent
    if sys.path and Path(sys.path[0] or ".").resolve() == _here:
        sys.path.pop(0)  # this directory would shadow top-level modules with config.py, tasks.py, ...
    try:
        import flosssweep  # noqa: F401
    except ImportError:
        if (_here / "__init__.py").is_file():
            sys.path.insert(0, str(_here.parent))
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_here.parent), os.environ.get("PYTHONPATH")]))
    from flosssweep.run import main as _main

    sys.exit(_main())
