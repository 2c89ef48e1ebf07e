"""Shared fixtures: one local Ray instance for the sweep tests, and trainers that misbehave on cue.

Ray is started with `address="local"`, so the tests never attach to another Ray on the machine, and
with RAY_AUTH_MODE=disabled, so they need no token. Its workers inherit this process's environment:
PYTHONPATH (the checkout and this directory, so that workers can import `conftest:` trainers even
without an installed package) and FLOSSSWEEP_TEST_DIR (where those trainers leave their marks).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from unittest import mock

import pytest
import yaml

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
# A parity trial small enough for a unit test (tens of milliseconds per epoch).
SMALL = {
    "model.hidden": 16,
    "train.length": 40,
    "train.batch": 8,
    "train.epochs": 30,
    "train.success_window": 10,
    "floss.pre_steps": 5,
    "floss.horizon": 20,
    "floss.warmup": 5,
}
# A sweep file of four tiny trials, as parsed YAML.
TINY = {
    "name": "tiny",
    "base": {
        "model": {"hidden": 8},
        "train": {"epochs": 30, "length": 40, "success_window": 10},
        "floss": {"pre_steps": 5, "horizon": 20, "warmup": 5},
    },
    "space": {"floss.mode": {"grid": ["none", "pre"]}, "task.delay": {"grid": [2, 4]}},
}


def sweep_with(**changes) -> dict:
    raw = yaml.safe_load(yaml.safe_dump(TINY))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split("__")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return raw


def in_process(main, *args: str, cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """A command's `main(argv)` run in this process, as its process would end: exit status (argparse's
    refusals exit through SystemExit) and what it printed; `env`, the whole environment meanwhile.
    A refusal checked this way takes milliseconds instead of a fresh interpreter's seconds; each
    command keeps one test in a real process for what only a process shows (no traceback on the way
    out)."""
    out, err = io.StringIO(), io.StringIO()
    environment = mock.patch.dict(os.environ, env, clear=True) if env is not None else contextlib.nullcontext()
    with (
        environment,
        contextlib.chdir(cwd or Path.cwd()),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = main(list(args))
        except SystemExit as stop:
            code = stop.code
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def migrated_store(tmp_path_factory) -> Path:
    """An empty MLflow SQLite database, made once per session: creating one (its schema migrations)
    costs about 3 s of CPU, a copy of it milliseconds. Tests of the creation itself make their own."""
    from flosssweep.tracking.store import TrackingStore
    from flosssweep.tracking.uris import sqlite_uri

    path = tmp_path_factory.mktemp("migrated") / "mlflow.db"
    TrackingStore(sqlite_uri(path)).check()
    return path


def fresh_store(migrated: Path, database: Path) -> str:
    """A copy of the migrated empty store at `database`; returns its tracking URI."""
    database.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated, database)
    return f"sqlite:///{database}"


@pytest.fixture
def mlflow_uri(tmp_path, migrated_store) -> str:
    """A fresh, empty SQLite tracking store at tmp_path/mlflow.db."""
    return fresh_store(migrated_store, tmp_path / "mlflow.db")


def sweep_environment(test_dir: Path) -> dict[str, str]:
    """Environment for a sweep driver in a subprocess (and for Ray workers started from here)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(TESTS)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["RAY_AUTH_MODE"] = "disabled"
    env["FLOSSSWEEP_TEST_DIR"] = str(test_dir)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture(scope="session")
def marks_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("trainer-marks")


@pytest.fixture(scope="session")
def ray_local(marks_dir):
    """A local Ray instance for the whole session (2 CPUs, no dashboard)."""
    ray = pytest.importorskip("ray")
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(sweep_environment(marks_dir))
    for path in (str(ROOT), str(TESTS)):
        if path not in sys.path:
            sys.path.insert(0, path)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    os.environ.clear()
    os.environ.update(saved)


# -- trainers for Ray workers (imported there as `conftest:<name>`) ----------------------------------
def _mark(name: str, text: str) -> None:
    directory = Path(os.environ["FLOSSSWEEP_TEST_DIR"])
    with open(directory / name, "a") as out:
        out.write(text + "\n")


def logged_train(config, report=None, checkpoint=None, restore=None, progress=None, diagnostics=None):
    """The real trainer, noting in `starts.log` every time a trial starts training."""
    from ray import tune

    from flosssweep.train import train

    _mark("starts.log", f"{tune.get_context().get_trial_id()} {restore['epoch'] if restore else 0}")
    return train(
        config, report=report, checkpoint=checkpoint, restore=restore, progress=progress, diagnostics=diagnostics
    )


def die_once_train(config, report=None, checkpoint=None, restore=None, progress=None, diagnostics=None):
    """The real trainer, except that each trial's worker process dies once, halfway through."""
    from ray import tune

    from flosssweep.train import train

    trial_id = tune.get_context().get_trial_id()
    died = Path(os.environ["FLOSSSWEEP_TEST_DIR"], f"died-{trial_id}")
    half = config["train"]["epochs"] // 2

    def report_then_maybe_die(metrics, epoch):
        report(metrics, epoch)
        if epoch >= half and not died.exists():
            died.write_text("x")
            os._exit(1)  # the whole worker goes, as if its node were lost

    return train(
        config,
        report=report_then_maybe_die,
        checkpoint=checkpoint,
        restore=restore,
        progress=progress,
        diagnostics=diagnostics,
    )


# -- small real disks (tmpfs mounts: root only, as in CI) ---------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A mount point factory: tmpfs of `size` bytes and `inodes` files, unmounted afterwards."""
    mounted = []

    def mount(name: str, size: str = "256k", inodes: int = 100) -> Path:
        point = tmp_path / name
        point.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},nr_inodes={inodes}", "tmpfs", str(point)],
            capture_output=True,
        )
        if done.returncode:
            pytest.skip("cannot mount a small tmpfs here (needs root)")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:  # lazily: the test's own MLflow client may still hold a database there
        subprocess.run(["umount", "--lazy", str(point)], check=True)


def fill(directory: Path) -> None:
    """Write `directory/filler` until its disk is full (it may be full already)."""
    try:
        with open(directory / "filler", "wb") as out:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
    except OSError:
        pass


# -- a real MLflow tracking server ---------------------------------------------------------------------
def answers(url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status == 200
    except OSError:
        return False


def mlflow_server(port: int, backend: str, artifacts: Path, cwd: Path) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1:`port` over the store `backend`, serving its artifacts from
    `artifacts` (as `mlflow ui` does), returned once it answers."""
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", backend, "--artifacts-destination", str(artifacts)]
    server = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not answers(f"http://127.0.0.1:{port}/health"):
        assert server.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
        time.sleep(1)
    return server
