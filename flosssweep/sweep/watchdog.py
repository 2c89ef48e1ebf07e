"""Noticing in seconds that Ray's control plane died under a running sweep, and closing what it opened.

When gcs_server dies, the driver's `Tuner.fit` blocks for Ray's own timeout (a minute) and then
fails, the MLflow runs stay RUNNING, and the trial workers train on as orphans. The watchdog connects
to the GCS's port every CHECK_SECONDS; after FAILURES_TO_ACT failed connections in a row it closes the
launch (the callback `close`, which ends the parent and child runs), stops the processes this driver
started (a local Ray instance: gcs_server, raylet and the trial workers, known by a snapshot of the
driver's descendants taken at every check, since orphans are re-parented away from it), and ends the
driver with one line and exit status 3. A Ray cluster the driver only attached to is not its to stop:
its processes are no descendants of the driver.

A local instance's raylet can die while its GCS lives; the one node is then gone, and Ray Tune waits
for resources that never come. A raylet the driver started (one of its descendants) that is seen
once and then gone is acted on the same way, at the next check.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

CHECK_SECONDS = 2.0
FAILURES_TO_ACT = 3
EXIT_UNAVAILABLE = 3


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat): a pid with another start
    time is another process, which is left alone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _is_raylet(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "raylet"
    except OSError:
        return False


def _zombie(pid: int) -> bool:
    """A process that exited and waits for its parent to reap it (state Z)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def descendants(root: int) -> dict[int, str]:
    """Pid -> start time of every process below `root` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            parent = int(Path(entry, "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        started = _start_time(pid)
        if started is not None:
            found[pid] = started
            todo += children.get(pid, [])
    return found


def _alive(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CHECK_SECONDS):
            return True
    except (OSError, ValueError):
        return False


class Watchdog:
    """Watches the GCS at `address`. Only the driver's own descendants are ever stopped: a local Ray
    instance it started has them, a cluster it attached to has none."""

    def __init__(self, address: str, close: Callable[[str], None]):
        self.address, self.close = address, close
        self.stopped = threading.Event()
        self.started: dict[int, str] = {}
        self.raylets: dict[int, str] = {}  # pid -> start time of the raylets among them
        self.thread = threading.Thread(target=self._watch, name="flosssweep-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopped.set()

    def _watch(self) -> None:
        failures = 0
        while not self.stopped.wait(CHECK_SECONDS):
            now = descendants(os.getpid())
            self.started.update(now)
            self.raylets.update({pid: t for pid, t in now.items() if pid not in self.raylets and _is_raylet(pid)})
            gone = [pid for pid, t in self.raylets.items() if _start_time(pid) != t or _zombie(pid)]
            if gone and not self.stopped.is_set():
                self._act(f"Ray's raylet (pid {gone[0]}) of this driver's local Ray died")
            failures = 0 if _alive(self.address) else failures + 1
            if failures >= FAILURES_TO_ACT and not self.stopped.is_set():
                self._act(f"Ray's GCS at {self.address} stopped answering")

    def _act(self, reason: str) -> None:
        try:
            self.close(reason)
        finally:
            self.end(f"{reason}; the launch was closed", "(continue it with --resume once Ray runs again)")

    def end(self, what: str, way_out: str, code: int = EXIT_UNAVAILABLE) -> None:
        """Stop the Ray processes this driver started and end the driver with one line: `what`
        happened, how many processes were stopped, and `way_out`."""
        self.stopped.set()
        stopped = 0
        for pid, started in self.started.items():
            if _start_time(pid) == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                    stopped += 1
                except OSError:
                    pass
        print(
            f"flosssweep.run: error: {what}"
            + (f" and {stopped} Ray process(es) of this driver stopped" if stopped else "")
            + f" {way_out}",
            file=sys.stderr,
            flush=True,
        )
        os._exit(code)
