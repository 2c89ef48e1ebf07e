"""A tracking server that stops answering in the middle of a sweep (issue 24). Before, every hook of
the driver waited out MLflow's HTTP retries (`on_step_end` took 61 s) and a child run that could not
be created or ended failed the sweep. Now the writes wait in order while the trials train, and are
recorded once the server answers again. A real `mlflow server` on 127.0.0.1, stopped and started."""

from __future__ import annotations

import copy
import queue
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import mlflow_server, sweep_environment
from test_driver import TINY_BASE, mlflow_client, runs_of, sweep_command, write_sweep

from flosssweep import names


def start_server(port: int, root: Path) -> subprocess.Popen:
    return mlflow_server(port, f"sqlite:///{root}/mlflow.db", root / "art", root)


def lines_of(process: subprocess.Popen) -> queue.Queue:
    """The process's output lines as they come (None at its end), read by a thread."""
    lines: queue.Queue = queue.Queue()

    def read():
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def read_until(lines: queue.Queue, seen: list[str], found, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        assert line is not None, "the driver ended early:\n" + "".join(seen)
        seen.append(line)
        if found(line):
            return line
    raise AssertionError(f"not seen within {seconds} s:\n" + "".join(seen))


def start_driver(tmp_path: Path, name: str, uri: str) -> subprocess.Popen:
    """A sweep of two trials long enough (1500 epochs) for an outage to fall inside it."""
    base = copy.deepcopy(TINY_BASE)
    base["train"].update({"epochs": 1500, "report_every": 100})
    path = write_sweep(tmp_path, name, base=base, max_concurrent=1, space={"task.delay": {"grid": [2, 4]}})
    args = [str(path), "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"), "--address", "local"]
    return subprocess.Popen(
        sweep_command(*args, "--num-cpus", "2", "--no-report"),
        cwd=tmp_path,
        env=sweep_environment(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def check_waited_and_recorded_once(driver: subprocess.Popen, lines: queue.Queue, seen: list[str], uri: str, name: str):
    """The sweep ended well with one outage line and one recovery line, no traceback, each trial
    recorded once and every metric step logged once."""
    driver.wait(timeout=400)
    while (line := lines.get(timeout=30)) is not None:
        seen.append(line)
    out = "".join(seen)
    assert driver.returncode == 0, out
    assert "Traceback" not in out and "sqlalchemy" not in out.lower(), out
    assert sum("does not answer" in line for line in seen) == 1, out
    assert sum("answers again" in line for line in seen) == 1, out
    parents, children = runs_of(uri, name)
    assert [p.info.status for p in parents] == ["FINISHED"], out
    recorded = [c for c in children if c.data.tags.get(names.RECORDED) == "true"]
    assert len(children) == 2 and sorted(c.data.params["task.delay"] for c in recorded) == ["2", "4"]
    for child in children:
        steps = [m.step for m in mlflow_client(uri).get_metric_history(child.info.run_id, "charts/accuracy")]
        assert steps == list(range(0, 1501, 100)), "every epoch's metrics logged once, none lost"


@pytest.mark.slow
def test_an_mlflow_outage_mid_sweep_neither_stalls_the_sweep_nor_loses_or_doubles_a_record(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = start_server(port, tmp_path)
    uri = f"http://127.0.0.1:{port}"
    driver = start_driver(tmp_path, "outage", uri)
    seen: list[str] = []
    try:
        lines = lines_of(driver)
        read_until(lines, seen, lambda line: line.startswith("started"), 180)
        server.terminate()
        server.wait(timeout=30)
        read_until(lines, seen, lambda line: "does not answer" in line, 120)
        # not stalled: the driver's own lines go on while the server is down
        read_until(lines, seen, lambda line: line.startswith(("-- ", "[", "started")), 90)
        server = start_server(port, tmp_path)
        check_waited_and_recorded_once(driver, lines, seen, uri, "outage")
    finally:
        driver.kill()
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_a_locked_sqlite_store_mid_sweep_waits_in_one_line_without_sqlalchemy_tracebacks(tmp_path):
    """The SQLite form of an outage: another process holds the database's write lock for 40 s (as a
    second `mlflow ui` writing, or a backup, would). Before, SQLAlchemy's multi-line errors reached the
    terminal; now the writes wait like any outage's, and are recorded once the lock is gone."""
    import sqlite3

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    driver = start_driver(tmp_path, "locked", uri)
    holder = sqlite3.connect(tmp_path / "mlflow.db", timeout=60, isolation_level=None)
    seen: list[str] = []
    try:
        lines = lines_of(driver)
        read_until(lines, seen, lambda line: line.startswith("started"), 180)
        holder.execute("BEGIN EXCLUSIVE")
        read_until(lines, seen, lambda line: "does not answer" in line, 120)
        time.sleep(40)
        holder.execute("COMMIT")
        check_waited_and_recorded_once(driver, lines, seen, uri, "locked")
    finally:
        holder.close()
        driver.kill()
