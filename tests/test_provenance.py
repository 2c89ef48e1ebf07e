"""Provenance: the commit of the checkout the code was imported from, its dirty flag, versions, command."""

import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from flosssweep import names, provenance

PACKAGE = Path(provenance.__file__).resolve().parent


def collect_in(directory: Path, *argv: str) -> dict:
    """provenance.collect() of a copy of the package under `directory`, in a fresh interpreter."""
    code = (
        "import json, sys; from flosssweep import provenance; "
        "print(json.dumps(provenance.collect(sys.argv[1:] or None)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *argv],
        cwd=directory,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(directory)},
        timeout=120,
        check=True,
    )
    return json.loads(done.stdout)


def git(directory: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(directory), *args],
        capture_output=True,
        text=True,
        check=True,
        env={
            "PATH": "/usr/bin:/bin",
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
            "HOME": str(directory),
        },
    ).stdout.strip()


@pytest.fixture
def checkout(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    shutil.copytree(PACKAGE, tmp_path / "flosssweep", ignore=shutil.ignore_patterns("__pycache__"))
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "flosssweep")
    git(tmp_path, "commit", "-qm", "x")
    return tmp_path


def test_commit_and_dirty_flag_of_the_checkout_that_ran(checkout):
    made = collect_in(checkout, "flosssweep", "run", "quickstart")
    assert made["code_commit"] == git(checkout, "rev-parse", "HEAD") and made["code_dirty"] is False
    assert made["command"] == "flosssweep run quickstart"
    (checkout / "notes.txt").write_text("an untracked file is not a change to the code")
    assert collect_in(checkout)["code_dirty"] is False
    with open(checkout / "flosssweep" / "tasks.py", "a") as f:
        f.write("# edited\n")
    assert collect_in(checkout)["code_dirty"] is True


def test_a_copy_outside_git_says_unknown(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "flosssweep", ignore=shutil.ignore_patterns("__pycache__"))
    made = collect_in(tmp_path)
    assert made["code_commit"] == "unknown" and made["code_dirty"] is None


def test_versions_columns_and_tags():
    made = provenance.collect(["a", "b c"])
    assert tuple(made) == names.PROVENANCE_COLUMNS
    assert made["torch_version"] == metadata.version("torch") and made["ray_version"] == metadata.version("ray")
    assert made["mlflow_version"] == metadata.version("mlflow")
    assert made["optuna_version"] == metadata.version("optuna")
    assert made["command"] == "a 'b c'"
    tags = provenance.tags({**made, "code_commit": "abc", "code_dirty": True}, "flosssweep.")
    assert tags["flosssweep.code_dirty"] == "true" and tags["mlflow.source.git.commit"] == "abc"
    assert "mlflow.source.git.commit" not in provenance.tags({**made, "code_commit": "unknown"}, "p.")
