"""A folder of wheels for machines without a package index: what cluster/local.yaml's pip lines
install (torch, Ray, MLflow, the project's dependencies, pip and setuptools for the editable
install), downloaded from the package index this interpreter's pip is configured with.

    python tests/cluster/wheelhouse.py [DIR]     # default: $FLOSSSWEEP_WHEELHOUSE, else ~/.cache/flosssweep/wheelhouse

The folder is kept and reused while the requirements stay the same (a stamp file lists them), so CI
can cache it. The launcher test builds it when missing and skips, with pip's last line, when it cannot.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAMP = "requirements.txt"


def default_dir() -> Path:
    return Path(os.environ.get("FLOSSSWEEP_WHEELHOUSE") or Path.home() / ".cache" / "flosssweep" / "wheelhouse")


def requirements() -> list[str]:
    torch = version("torch").split("+")[0]
    pinned = [f"torch=={torch}", f"ray[default,tune]=={version('ray')}", f"mlflow=={version('mlflow')}"]
    return pinned + ["pip", "setuptools>=68", "wheel"]


def build(directory: Path) -> str | None:
    """Make sure `directory` holds the wheels; None when it does, else why not (pip's last lines)."""
    wanted = "\n".join(requirements()) + "\n"
    stamp = directory / STAMP
    if stamp.is_file() and stamp.read_text() == wanted:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    # the project itself is installed from its checkout (`pip install -e`): only its dependencies here
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(directory), "--only-binary=:all:"]
    done = subprocess.run(
        command + requirements() + [str(ROOT)], capture_output=True, text=True, timeout=1800, check=False
    )
    if done.returncode != 0:
        return "pip download failed: " + " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
    for stray in directory.glob("flosssweep-*"):  # pip download of the checkout leaves its own sdist
        stray.unlink()
    stamp.write_text(wanted)
    return None


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else default_dir()
    why = build(target)
    if why:
        sys.exit(f"wheelhouse: {why}")
    print(f"wheelhouse: {target} ({sum(1 for _ in target.glob('*.whl'))} wheels)")
