"""One live driver per launch: a lease file in the launch's Ray experiment folder.

The driver that works on a launch holds `flosssweep-driver.lease` there (its pid, host, parent run
and a heartbeat it renews every HEARTBEAT_SECONDS) and removes it when it ends. `--resume` and
`--close` refuse a launch whose lease is live, in one line naming the driver; a lease is dead when
its heartbeat is older than STALE_SECONDS, or when it names this host and a pid that no longer
runs (a killed driver, a rebooted machine), and then it is taken over. The folder may be an object
store (s3://...), so the file goes through pyarrow's file systems, like the launch file.

A driver stalled past STALE_SECONDS (a suspended laptop, a paused VM) may wake to find its launch
taken over: resumed by another driver, whose lease now names it, or closed with `--close`, which
leaves a closed lease behind. Before each heartbeat the driver reads the lease; one that is not its
own means the launch is someone else's now, and the driver is told (`on_lost`) instead of writing on.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable

from flosssweep.sweep.preflight import Refused

LEASE_FILE = "flosssweep-driver.lease"
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 6 * HEARTBEAT_SECONDS  # a driver stalled this long (a suspended laptop) is given up


def _filesystem(directory: str):
    import pyarrow.fs

    if "://" in directory:
        return pyarrow.fs.FileSystem.from_uri(directory)
    return pyarrow.fs.LocalFileSystem(), directory


def read(directory: str) -> dict | None:
    fs, path = _filesystem(directory)
    try:
        with fs.open_input_stream(f"{path}/{LEASE_FILE}") as stream:
            lease = json.loads(stream.read(1 << 16).decode())
    except (OSError, ValueError):  # none, or half written: no lease
        return None
    return lease if isinstance(lease, dict) else None


def _pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def live(lease: dict | None, now: float | None = None) -> bool:
    if not lease:
        return False
    age = (time.time() if now is None else now) - float(lease.get("heartbeat", 0))
    if age > STALE_SECONDS:
        return False
    if lease.get("host") == socket.gethostname():
        return _pid_runs(int(lease.get("pid", 0)))
    return True


def describe(lease: dict) -> str:
    age = max(0.0, time.time() - float(lease.get("heartbeat", 0)))
    return (
        f"driver pid {lease.get('pid')} on host {lease.get('host')}, parent run {lease.get('parent_run_id')}, "
        f"heartbeat {age:.0f} s ago"
    )


def check_free(directory: str, option: str) -> None:
    """Refused (exit 2) when a live driver holds the launch in `directory`."""
    lease = read(directory)
    if live(lease):
        raise Refused(
            f"{option}: the launch in {directory} is still running ({describe(lease)}); "
            f"wait for it, or stop it first (kill -TERM {lease.get('pid')} on {lease.get('host')})"
        )


def mark_closed(directory: str) -> None:
    """What `--close` leaves: a lease that is never live and names who closed the launch, so a driver
    that still holds it in memory learns at its next heartbeat that the launch is closed."""
    fs, path = _filesystem(directory)
    fs.create_dir(path)
    body = {"pid": os.getpid(), "host": socket.gethostname(), "closed": True, "heartbeat": 0}
    with fs.open_output_stream(f"{path}/{LEASE_FILE}") as out:
        out.write(json.dumps(body).encode())


def lost(lease_now: dict) -> tuple[str, str]:
    """Why a driver lost its launch, from the lease it found in place of its own, and what it leaves."""
    who = f"pid {lease_now.get('pid')} on host {lease_now.get('host')}"
    if lease_now.get("closed"):
        why = f"the launch was closed with --close by {who} while this driver was stalled"
    else:
        why = f"the launch was resumed by another driver ({who}) while this driver was stalled"
    return why, "(nothing more was written to its runs)"


class Lease:
    """This driver's hold on a launch: written by `acquire`, renewed by a thread, removed by `release`.
    `on_lost(lease_now)` is called, once, from the renewing thread when the file names someone else."""

    def __init__(self, directory: str, parent_run_id: str, on_lost: Callable[[dict], None] | None = None):
        self.directory = directory
        self.fs, self.path = _filesystem(directory)
        self.file = f"{self.path}/{LEASE_FILE}"
        self.body = {"pid": os.getpid(), "host": socket.gethostname(), "parent_run_id": parent_run_id}
        self.on_lost = on_lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="flosssweep-lease", daemon=True)

    def _mine(self, lease_now: dict | None) -> bool:
        """A missing or half-written file is still ours (storage briefly away): only a readable lease
        naming another driver, or a closed one, is someone else's."""
        if lease_now is None:
            return True
        return not lease_now.get("closed") and all(lease_now.get(k) == v for k, v in self.body.items())

    def _write(self) -> None:
        self.fs.create_dir(self.path)
        with self.fs.open_output_stream(self.file) as out:
            out.write(json.dumps({**self.body, "heartbeat": time.time()}).encode())

    def _renew(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            lease_now = read(self.directory)
            if not self._mine(lease_now):
                self._stop.set()
                if self.on_lost is not None:
                    self.on_lost(lease_now)
                return
            try:
                self._write()
            except OSError:  # storage briefly away: the next beat tries again
                pass

    def acquire(self) -> Lease:
        self._write()
        self._thread.start()
        return self

    def release(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            lease_now = read(self.directory)
            if lease_now is not None and self._mine(lease_now):  # never another driver's, nor a closed one
                self.fs.delete_file(self.file)
        except OSError:
            pass
