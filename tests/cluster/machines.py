"""Throwaway machines for the cluster tests: a process tree in new PID, mount, network and UTS
namespaces (`unshare`), with its own home directory, and commands run in it as Ray's launcher runs
them (`bash --login -c -i '<command>'`). Killing a machine's first process ends every process in it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

SKEL = Path("/etc/skel")  # what `useradd -m` gives a new user: ~/.profile sources ~/.bashrc


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def refusal(*tools: str) -> str | None:
    """Why this machine cannot make namespaced machines (the reason a test skips with), or None."""
    missing = [tool for tool in ("unshare", "nsenter", "ip", *tools) if not shutil.which(tool)]
    if missing:
        return f"not installed: {', '.join(missing)}"
    try:
        probe = subprocess.run(
            ["unshare", "--net", "--pid", "--fork", "--mount", "--uts", "--mount-proc", "true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unshare: {err}"
    return None if probe.returncode == 0 else f"unshare --net --pid --mount --uts refused: {probe.stderr.strip()}"


def fresh_home(home: Path) -> Path:
    shutil.copytree(SKEL, home, symlinks=True)
    return home


class Machine:
    """A process tree in its own namespaces. `setup` is shell run as the machine's first process
    (mounts, hostname, network) before it sleeps; `net` is the network namespace to join
    (`ip netns` name; joined with nsenter, which keeps this box's /sys and its cgroups, where `ip
    netns exec` would mount a /sys without them), or None for a new one with loopback only."""

    def __init__(self, name: str, logs: Path, setup: str = "", net: str | None = None):
        self.name, self.logs = name, logs
        # PID 1 stays a shell that waits: it reaps the orphans of daemons that exit, as an init does
        boot = f"set -e; ip link set lo up; hostname {name}; {setup}\necho ready\n"
        boot += "while :; do sleep 3600 & wait $!; done"
        unshare = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--mount", "--uts"]
        unshare += ["--propagation", "private"]
        network = ["nsenter", f"--net=/run/netns/{net}"] if net else ["unshare", "--net"]
        command = network + unshare + ["sh", "-c", boot]
        self.log = logs / f"{name}.boot.log"
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + 30
        while "ready" not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"machine {name} did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        self.init = self.first_process()

    def first_process(self) -> int:
        """The machine's PID 1 (as the root namespace numbers it): unshare's child."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        if len(children) != 1:
            raise AssertionError(f"machine {self.name}: unshare {self.process.pid} has children {children}")
        return int(children[0])

    def processes(self) -> list[int]:
        return descendants(self.init)

    def enter(self) -> list[str]:
        return ["nsenter", "--target", str(self.init), "--net", "--mount", "--pid", "--uts", "--"]

    def run(self, command: list[str], env: dict, timeout: float = 300, cwd=None) -> subprocess.CompletedProcess:
        """`command` in the machine. Its output goes through files, not pipes: a daemon it leaves
        behind may hold a pipe open, and reading one would then never end. `cwd` is a path as the
        machine sees it (nsenter's own --wd looks it up before entering the mount namespace)."""
        command = (["sh", "-c", 'cd "$0" && exec "$@"', str(cwd)] if cwd else []) + command
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            done = subprocess.run(
                self.enter() + command, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, timeout=timeout
            )
            out.seek(0)
            err.seek(0)
            text = (out.read().decode(errors="replace"), err.read().decode(errors="replace"))
        return subprocess.CompletedProcess(done.args, done.returncode, *text)

    def as_ray_runs(self, command: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
        """One start or setup command, in the login shell Ray's launcher runs it in."""
        return self.run(["bash", "--login", "-c", "-i", command], env, timeout)

    def background(self, name: str, command: list[str], env: dict) -> subprocess.Popen:
        with open(self.logs / f"{self.name}.{name}.log", "w") as out:
            return subprocess.Popen(
                self.enter() + command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def stop(self) -> None:
        """SIGKILL the machine's PID 1 (unshare --kill-child does the same when unshare dies): the
        kernel then ends every process of its PID namespace."""
        for pid in (self.init, self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


def report_table(text: str, sweep: str) -> str:
    """The table `flosssweep report` printed for `sweep`, cut out of whatever surrounds it (a job's
    output, say): its title line ("sweep NAME: N group(s), ..."), a blank line, the header, the
    rule, and one row per group."""
    lines = [line.rstrip() for line in text.splitlines()]
    titles = [i for i, line in enumerate(lines) if re.match(rf"sweep {re.escape(sweep)}: \d+ group\(s\), ", line)]
    assert titles, f"no report of sweep {sweep} in:\n{text[-3000:]}"
    start = titles[-1]
    groups = int(re.match(r"sweep .*?: (\d+) group", lines[start]).group(1))
    return "\n".join(lines[start : start + 4 + groups])


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Network:
    """A private subnet: a bridge in a network namespace of its own (`ip netns`, named `tag`-lan),
    with `address` on it, and one network namespace per machine joined to it by a veth pair. The
    pairs are made inside the bridge's namespace, so nothing appears in the root namespace."""

    def __init__(self, tag: str, address: str):
        self.tag, self.lan, self.names = tag, f"{tag}-lan", []
        ip("netns", "add", self.lan)
        self.names.append(self.lan)
        for step in (["link", "set", "lo", "up"], ["link", "add", "br0", "type", "bridge"]):
            ip("-n", self.lan, *step)
        ip("-n", self.lan, "addr", "add", f"{address}/24", "dev", "br0")
        ip("-n", self.lan, "link", "set", "br0", "up")

    def join(self, name: str, address: str) -> str:
        """A network namespace for machine `name`, its eth0 at `address` on the bridge; its name."""
        ns, port = f"{self.tag}-{name}", f"v{len(self.names)}"
        ip("netns", "add", ns)
        self.names.append(ns)
        ip("-n", self.lan, "link", "add", port, "type", "veth", "peer", "name", "eth0")
        ip("-n", self.lan, "link", "set", "eth0", "netns", ns)
        ip("-n", self.lan, "link", "set", port, "master", "br0", "up")
        ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        return ns

    def delete(self) -> None:
        """Kill what still runs in the bridge's namespace (the machines' own end with them), then
        delete every namespace made here."""
        pids = subprocess.run(["ip", "netns", "pids", self.lan], capture_output=True, text=True, timeout=30)
        for pid in pids.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        for ns in reversed(self.names):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def netns_refusal(tag: str) -> str | None:
    """Why `ip netns add` is refused here, or None."""
    probe = subprocess.run(["ip", "netns", "add", f"{tag}-probe"], capture_output=True, text=True)
    subprocess.run(["ip", "netns", "del", f"{tag}-probe"], capture_output=True)
    return None if probe.returncode == 0 else f"ip netns add refused: {probe.stderr.strip()}"
