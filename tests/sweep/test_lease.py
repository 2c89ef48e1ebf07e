"""One live driver per launch, and Ray state that cannot be read (issue 24): --resume and --close refuse
a launch whose driver still runs, take over a dead one, and a corrupt experiment state is one line
with the way out, the same every time (no resume loop). No Ray: the refusals come before it starts."""

from __future__ import annotations

import copy
import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from conftest import fresh_store, sweep_environment
from test_driver import TINY_BASE, runs_of, sweep_command, write_sweep

from flosssweep import run
from flosssweep.protocol import LaunchFile
from flosssweep.sweep import driver, lease, spec
from flosssweep.tracking.store import TrackingStore


@pytest.fixture
def launch(tmp_path, monkeypatch, migrated_store):
    """A launch as a driver leaves it while it runs: parent run RUNNING, the launch file in the
    experiment folder. Returns (sweep path, storage, experiment folder, tracking URI)."""
    monkeypatch.chdir(tmp_path)
    path = write_sweep(tmp_path, "leased")
    sweep = spec.load(path)
    storage = tmp_path / "ray"
    experiment_dir = f"{storage}/{sweep.name}"
    uri = fresh_store(migrated_store, tmp_path / "mlflow.db")
    tracking = TrackingStore(uri)
    tracking.check()
    experiment_id, parent = tracking.start_parent(sweep, experiment_dir)
    driver._write_launch(experiment_dir, LaunchFile(parent, experiment_id, uri, str(path), sweep.fingerprint()))
    return path, storage, experiment_dir, uri


def hold(experiment_dir: str, pid: int, heartbeat: float | None = None, host: str | None = None) -> None:
    body = {
        "pid": pid,
        "host": host or socket.gethostname(),
        "parent_run_id": "p",
        "heartbeat": heartbeat or time.time(),
    }
    with open(f"{experiment_dir}/{lease.LEASE_FILE}", "w") as out:
        json.dump(body, out)


@pytest.fixture
def live_driver():
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def one_line(capsys, *words: str) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def test_resume_refuses_a_live_launch(launch, live_driver, capsys):
    path, storage, experiment_dir, _ = launch
    hold(experiment_dir, live_driver.pid)
    assert run.main([str(path), "--resume", "--storage-path", str(storage)]) == 2
    one_line(capsys, "--resume: the launch in", "still running", f"pid {live_driver.pid}")


def test_close_refuses_a_live_launch_and_takes_over_a_dead_one(launch, live_driver, capsys):
    path, storage, experiment_dir, uri = launch
    hold(experiment_dir, live_driver.pid)
    assert run.main([str(path), "--close", "--storage-path", str(storage)]) == 2
    one_line(capsys, "--close: the launch in", "still running")
    (parent,), _ = runs_of(uri, "leased")
    assert parent.info.status == "RUNNING", "a live launch is left alone"
    live_driver.kill()
    live_driver.wait()
    assert run.main([str(path), "--close", "--storage-path", str(storage)]) == 0
    (parent,), _ = runs_of(uri, "leased")
    assert parent.info.status == "KILLED"


def test_lease_liveness_by_heartbeat_host_and_pid(live_driver):
    now = time.time()
    here = socket.gethostname()
    assert lease.live({"pid": live_driver.pid, "host": here, "heartbeat": now})
    assert not lease.live({"pid": live_driver.pid, "host": here, "heartbeat": now - 2 * lease.STALE_SECONDS})
    assert lease.live({"pid": 1, "host": "another-node", "heartbeat": now})
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert not lease.live({"pid": gone.pid, "host": here, "heartbeat": now})
    assert not lease.live(None)


def test_lease_is_held_while_working_and_released(tmp_path):
    held = lease.Lease(str(tmp_path), "parent-1").acquire()
    try:
        assert lease.live(lease.read(str(tmp_path)))
        with pytest.raises(Exception, match="still running"):
            lease.check_free(str(tmp_path), "--resume")
    finally:
        held.release()
    assert lease.read(str(tmp_path)) is None


@pytest.mark.parametrize("broken", ["experiment_state-2026-01-01_00-00-00.json", "tuner.pkl"])
def test_corrupt_experiment_state_on_resume_is_one_line_and_no_loop(launch, capsys, broken):
    path, storage, experiment_dir, uri = launch
    with open(f"{experiment_dir}/{broken}", "w") as out:
        out.write('{"trial_data": [[')
    for _ in range(2):  # the same answer every time, and the parent run is not reopened or failed
        assert run.main([str(path), "--resume", "--storage-path", str(storage)]) == 2
        one_line(capsys, f"{experiment_dir}/{broken} cannot be read", "--close, then start a new launch")
    (parent,), _ = runs_of(uri, "leased")
    assert parent.info.status == "RUNNING"
    assert run.main([str(path), "--close", "--storage-path", str(storage)]) == 0


def running_driver(tmp_path, name: str, epochs: int):
    """A tiny one-at-a-time sweep's driver, started as a user starts it and read until its first trial
    trains: (process, its arguments, environment, tracking URI, storage folder, lines read so far)."""
    env = sweep_environment(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    base = copy.deepcopy(TINY_BASE)
    base["train"].update({"epochs": epochs, "report_every": 50})
    path = write_sweep(tmp_path, name, base=base, max_concurrent=1)
    storage = tmp_path / "ray"
    args = [str(path), "--tracking-uri", uri, "--storage-path", str(storage), "--address", "local", "--num-cpus", "2"]
    process = subprocess.Popen(
        sweep_command(*args), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("started") or "epoch" in line or len(lines) > 40:
            break
    return process, args, env, uri, storage, lines


@pytest.mark.slow
@pytest.mark.parametrize("number", [signal.SIGHUP, signal.SIGQUIT], ids=["SIGHUP", "SIGQUIT"])
def test_a_hung_up_driver_closes_its_runs_and_a_second_driver_is_refused_meanwhile(tmp_path, number):
    """A closed terminal (SIGHUP) or Ctrl-\\ (SIGQUIT) stops the sweep as SIGTERM does: parent and child
    runs closed, the lease released; while the driver lives, --resume and --close are refused."""
    first, args, env, uri, storage, lines = running_driver(tmp_path, "hangup", epochs=2000)
    held = Path(storage, "hangup", lease.LEASE_FILE)
    assert held.is_file(), "".join(lines)
    for flag in ("--resume", "--close"):
        second = subprocess.run(sweep_command(*args, flag), cwd=tmp_path, env=env, capture_output=True, text=True)
        assert second.returncode == 2 and "still running" in second.stderr, second.stdout + second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    first.send_signal(number)
    rest, _ = first.communicate(timeout=120)
    assert first.returncode == 1, "".join(lines) + rest
    parents, children = runs_of(uri, "hangup")
    assert [p.info.status for p in parents] == ["KILLED"], "".join(lines) + rest
    assert all(c.info.status != "RUNNING" for c in children)
    assert not held.exists()


def assert_none_outlive(ours: dict[int, str]) -> None:
    """No Ray process of the driver (pid -> start time) outlives it. SIGKILL is delivered at once, but a
    loaded machine may take a moment to tear a process down; a zombie (state Z) has released
    everything and waits only for its reaper."""
    from flosssweep.sweep import watchdog

    deadline, left = time.monotonic() + 15, list(ours)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = [pid for pid, t in ours.items() if watchdog._start_time(pid) == t and not watchdog._zombie(pid)]
    assert left == [], "no Ray process of the driver outlives it"


@pytest.mark.slow
@pytest.mark.parametrize(
    "process, says",
    [
        ("gcs_server", "stopped answering; the launch was closed"),
        ("raylet", "of this driver's local Ray died; the launch was closed"),
    ],
)
def test_gcs_death_is_noticed_in_seconds_runs_closed_and_workers_stopped(tmp_path, process, says):
    """The GCS, or the raylet of the one local node (Ray Tune would wait for it for ever)."""
    from flosssweep.sweep import watchdog

    env = sweep_environment(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    base = copy.deepcopy(TINY_BASE)
    base["train"].update({"epochs": 3000, "report_every": 50})
    path = write_sweep(tmp_path, "gcs-death", base=base, max_concurrent=2)
    args = [str(path), "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"), "--address", "local"]
    driver_ = subprocess.Popen(
        [*sweep_command(*args), "--num-cpus", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in driver_.stdout:
        lines.append(line)
        if line.startswith("started") or len(lines) > 40:
            break
    time.sleep(3)  # the trials get going
    ours = watchdog.descendants(driver_.pid)
    victim = [pid for pid in ours if Path(f"/proc/{pid}/comm").read_text().strip() == process]
    assert victim, "".join(lines)
    killed_at = time.monotonic()
    subprocess.run(["kill", "-KILL", str(victim[0])], check=True)
    rest, _ = driver_.communicate(timeout=120)
    assert driver_.returncode == 3, "".join(lines) + rest
    assert time.monotonic() - killed_at < 30
    assert says in rest and "Traceback" not in rest, rest
    parents, children = runs_of(uri, "gcs-death")
    assert [p.info.status for p in parents] == ["KILLED"]
    assert children and all(c.info.status != "RUNNING" for c in children)
    assert_none_outlive(ours)


def test_a_driver_whose_launch_was_resumed_elsewhere_is_told_at_its_next_heartbeat(tmp_path, monkeypatch):
    """A driver stalled past STALE_SECONDS wakes to a lease that names another driver (which resumed
    the launch from another host): it is told, once, and renews nothing more."""
    monkeypatch.setattr(lease, "HEARTBEAT_SECONDS", 0.05)
    lost = []
    held = lease.Lease(str(tmp_path), "parent-1", lost.append).acquire()
    try:
        time.sleep(0.2)
        assert lost == [], "its own renewed lease is not a loss"
        hold(str(tmp_path), pid=4242, host="another-node")
        deadline = time.monotonic() + 5
        while not lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [(w["pid"], w["host"]) for w in lost] == [(4242, "another-node")]
        time.sleep(0.2)
        assert lease.read(str(tmp_path))["host"] == "another-node", "the new driver's lease is left as it is"
        assert "resumed by another driver (pid 4242 on host another-node)" in lease.lost(lost[0])[0]
    finally:
        held.release()
    assert lease.read(str(tmp_path))["host"] == "another-node", "release never removes another driver's lease"


def test_close_leaves_a_closed_lease_that_a_stalled_driver_reads_as_lost(tmp_path, monkeypatch):
    monkeypatch.setattr(lease, "HEARTBEAT_SECONDS", 0.05)
    lost = []
    held = lease.Lease(str(tmp_path), "parent-1", lost.append).acquire()
    try:
        lease.mark_closed(str(tmp_path))
        assert not lease.live(lease.read(str(tmp_path))), "a closed lease never holds the launch"
        deadline = time.monotonic() + 5
        while not lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(lost) == 1 and "closed with --close" in lease.lost(lost[0])[0]
    finally:
        held.release()


def test_a_lease_file_briefly_unreadable_is_not_a_loss(tmp_path, monkeypatch):
    monkeypatch.setattr(lease, "HEARTBEAT_SECONDS", 0.05)
    lost = []
    held = lease.Lease(str(tmp_path), "parent-1", lost.append).acquire()
    try:
        Path(tmp_path, lease.LEASE_FILE).write_text("{half writ")
        time.sleep(0.3)
        assert lost == [] and lease.live(lease.read(str(tmp_path))), "the next heartbeat rewrites it"
    finally:
        held.release()


@pytest.mark.slow
def test_a_running_driver_taken_over_stops_its_ray_and_writes_nothing_more(tmp_path):
    """The whole driver: its lease replaced by another host's (a resume elsewhere while it was
    stalled), it stops within a heartbeat or two, in one line, with no Ray process of its own left,
    and leaves the parent run to the new driver (still RUNNING, not ended by this one)."""
    from flosssweep.sweep import watchdog

    first, _, _, uri, storage, lines = running_driver(tmp_path, "taken", epochs=3000)
    time.sleep(3)
    ours = watchdog.descendants(first.pid)
    assert ours and Path(storage, "taken", lease.LEASE_FILE).is_file(), "".join(lines)
    taken_at = time.monotonic()
    hold(f"{storage}/taken", pid=4242, host="another-node")
    rest, _ = first.communicate(timeout=120)
    assert first.returncode == 1, "".join(lines) + rest
    assert time.monotonic() - taken_at < 3 * lease.HEARTBEAT_SECONDS
    assert "resumed by another driver (pid 4242 on host another-node)" in rest and "Traceback" not in rest, rest
    parents, _ = runs_of(uri, "taken")
    assert [p.info.status for p in parents] == ["RUNNING"], "the new driver's runs are not this driver's to end"
    assert json.loads(Path(storage, "taken", lease.LEASE_FILE).read_text())["host"] == "another-node"
    assert_none_outlive(ours)
