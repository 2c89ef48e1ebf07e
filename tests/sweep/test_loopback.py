"""A local sweep's Ray listens on the loopback interface only: every listening socket of every process
the driver started (GCS, raylet, object manager, agents, workers, the driver's own core worker) is
read from `ss` while the sweep runs, and any address other than 127.0.0.0/8 or ::1 fails the test."""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import TINY, sweep_environment

from flosssweep.names import LOOPBACK_ONLY
from flosssweep.sweep.loopback import loopback_only


def descendants(root: int) -> set[int]:
    """`root` and every process below it, from the parent ids in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # ended meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def listening(pids: set[int]) -> set[tuple[str, str]]:
    """(local address, process name) of every TCP socket listening and UDP socket bound by `pids`."""
    out = subprocess.run(["ss", "-H", "-l", "-t", "-u", "-n", "-p"], capture_output=True, text=True, check=True)
    found = set()
    for line in out.stdout.splitlines():
        users = re.findall(r'\("([^"]*)",pid=(\d+)', line)
        mine = [name for name, pid in users if int(pid) in pids]
        if mine:
            found.add((line.split()[4], mine[0]))  # Netid State Recv-Q Send-Q Local ...
    return found


def is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]").split("%")[0]
    if host == "*":
        return False
    ip = ipaddress.ip_address(host)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def test_loopback_addresses_are_told_apart():
    assert is_loopback("127.0.0.1:6379") and is_loopback("[::ffff:127.0.0.1]:4000") and is_loopback("[::1]:80")
    assert not any(is_loopback(a) for a in ("*:6379", "0.0.0.0:1", "[::]:2", "192.0.2.2:3", "[::ffff:10.0.0.1]:4"))


def test_the_loopback_setting_lives_only_around_rays_start(monkeypatch):
    """Set while Ray is imported and started, gone after: a `ray start` joining a cluster refuses to
    run with it, so no child process started later may inherit it."""
    (key,) = LOOPBACK_ONLY
    monkeypatch.delenv(key, raising=False)
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    with loopback_only(True):
        assert os.environ[key] == LOOPBACK_ONLY[key]
    assert key not in os.environ
    with loopback_only(False):  # joining a Ray at a given address
        assert key not in os.environ
    monkeypatch.setitem(sys.modules, "ray", object())  # imported already: too late to take effect
    with loopback_only(True):
        assert key not in os.environ


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to list listening sockets")
def test_a_local_sweep_listens_on_loopback_only(tmp_path):
    sweep = yaml.safe_load(yaml.safe_dump(TINY))
    sweep["base"]["train"]["epochs"] = 200  # trials long enough to be seen running
    sweep["name"] = "tiny-loopback"
    path = tmp_path / "tiny-loopback.yaml"
    path.write_text(yaml.safe_dump(sweep))
    env = sweep_environment(tmp_path)
    # A Ray temp folder of its own (short: Ray's socket paths must fit 107 bytes), so that the driver,
    # started as a user starts it (no --address), cannot find another Ray running on this machine.
    ray_tmp = tempfile.mkdtemp(prefix="ray-lo-", dir="/tmp")
    env["RAY_TMPDIR"] = ray_tmp
    command = [sys.executable, "-m", "flosssweep.run", str(path), "--num-cpus", "2", "--no-report"]
    command += ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--storage-path", str(tmp_path / "ray")]
    log = tmp_path / "driver.log"
    seen: set[tuple[str, str]] = set()
    with log.open("w") as out:
        driver = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 400
            while driver.poll() is None and time.monotonic() < deadline:
                seen |= listening(descendants(driver.pid))
                time.sleep(1.0)
        finally:
            if driver.poll() is None:
                driver.kill()
            driver.wait()
            shutil.rmtree(ray_tmp, ignore_errors=True)
    assert driver.returncode == 0, log.read_text()
    names = {name for _, name in seen}
    # the test saw the processes it is about, so it cannot pass on an empty list
    assert {"gcs_server", "raylet"} <= names and any(n.startswith("ray::") for n in names), sorted(seen)
    exposed = sorted((address, name) for address, name in seen if not is_loopback(address))
    assert not exposed, f"listening beyond loopback: {exposed}"
