"""Which code and which libraries made a result: git commit, dirty flag, versions, command line.

Computed once per process that starts work (the sweep driver, the trial CLI) and carried from
there: a Ray worker's own `sys.argv` is Ray's, not the user's, so the driver hands its provenance
to every trial. The same values become record columns (`names.PROVENANCE_COLUMNS`) and tags of the
parent run (`flosssweep.<column>`, plus MLflow's own `mlflow.source.git.commit`).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from flosssweep.checks import redact
from flosssweep.names import PROVENANCE_COLUMNS

LIBRARIES = ("torch", "ray", "mlflow", "optuna")
UNKNOWN = "unknown"


def _git(*args: str) -> str | None:
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def git_state() -> tuple[str, bool | None]:
    """(commit, dirty) of the checkout the package was imported from; (unknown, None) for an
    installed copy outside git. Dirty counts changes to tracked files only: a stray output file in
    the checkout does not change the code that ran."""
    top = _git("rev-parse", "--show-toplevel")
    # A package installed into a virtual environment that sits inside some other repository would
    # otherwise report that repository's commit.
    if top is None or not (Path(top.strip()) / "flosssweep" / "__init__.py").is_file():
        return UNKNOWN, None
    commit = (_git("rev-parse", "HEAD") or "").strip() or UNKNOWN
    status = _git("status", "--porcelain", "--untracked-files=no")
    return commit, (bool(status.strip()) if status is not None else None)


def version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return UNKNOWN


def collect(argv: list[str] | None = None) -> dict:
    """The provenance columns of this process; `argv` defaults to how the process was started."""
    from flosssweep import __version__

    commit, dirty = git_state()
    values = {"code_commit": commit, "code_dirty": dirty, "flosssweep_version": __version__}
    values.update({f"{lib}_version": version(lib) for lib in LIBRARIES})
    values["command"] = command_line(sys.argv if argv is None else argv)
    assert tuple(values) == PROVENANCE_COLUMNS, "names.PROVENANCE_COLUMNS and collect() disagree"
    return values


SECRET_WORDS = ("password", "passwd", "secret", "token", "key")


def command_line(argv: list[str]) -> str:
    """The command as typed, for every run and record, less what it would be wrong to keep with each
    result: URI passwords (`user:***@`) and the value of any option or KEY=value whose name says
    secret (--password, AWS_SECRET_ACCESS_KEY=..., token=...)."""
    words, hide_next = [], False
    for word in map(redact, argv):
        name, sep, _ = word.partition("=")
        secret = any(s in name.lower() for s in SECRET_WORDS)
        if hide_next:
            word, hide_next = "***", False
        elif secret and sep:
            word = f"{name}=***"
        elif secret and word.startswith("--"):
            hide_next = True
        words.append(word)
    return shlex.join(words)


def _tag_text(value) -> str:
    if value is None:
        return UNKNOWN
    return str(value).lower() if isinstance(value, bool) else str(value)


def mlflow_source_tags(values: dict) -> dict[str, str]:
    """MLflow's own tags of where a run comes from, which its UI shows as the run's Source."""
    out = {"mlflow.source.name": values["command"], "mlflow.source.type": "LOCAL"}
    if values.get("code_commit") not in (None, UNKNOWN):
        out["mlflow.source.git.commit"] = values["code_commit"]
    return out


def tags(values: dict, prefix: str) -> dict[str, str]:
    """The values as MLflow tags, and MLflow's own source tags."""
    return {**{f"{prefix}{k}": _tag_text(v) for k, v in values.items()}, **mlflow_source_tags(values)}
