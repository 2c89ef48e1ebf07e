"""A sweep launch under bad input and faults: one line and the right exit status before any work,
in bounded time; a launch stopped by SIGTERM closed and resumable; a second launch over an
unfinished one refused with the way out; a launch whose storage is gone closed by --close;
nothing left RUNNING in MLflow.

Test names: `test_bad_input_*` are inputs a user may get wrong, `test_fault_*` things that go wrong
while a sweep is launched or runs. The Ray-starting ones are marked slow."""

from __future__ import annotations

import contextlib
import copy
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import in_process, sweep_environment
from sweep.test_driver import TINY_BASE, runs_of, sweep_command, write_sweep
from sweep.test_multinode import descendants, named

from flosssweep import names, run
from flosssweep.protocol import LaunchFile
from flosssweep.sweep import preflight
from flosssweep.tracking.store import TrackingStore


def run_cli(*args, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        sweep_command(*args), cwd=cwd, env=sweep_environment(cwd), capture_output=True, text=True, timeout=timeout
    )


def run_in_process(*args, cwd: Path) -> subprocess.CompletedProcess:
    """The sweep command in this process: for refusals, which must come before Ray starts."""
    return in_process(run.main, *args, cwd=cwd, env=sweep_environment(cwd))


def refused(result, code: int, first: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"flosssweep.run: error: {first}"), result.stderr
    assert "Traceback" not in result.stdout + result.stderr and "usage:" not in result.stderr


def nothing_running(uri: str, experiment: str) -> None:
    parents, children = runs_of(uri, experiment)
    assert not [r.info.run_id for r in parents + children if r.info.status == "RUNNING"]


# -- refused before anything starts --------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, code, first",
    [
        (["--num-cpus", "0"], 2, "--num-cpus: expected an integer >= 1, got 0"),
        (["--report-out", "/proc/flosssweep-report"], 2, "--report-out: cannot write /proc/flosssweep-report"),
        (["--report-out", "r", "--no-report"], 2, "--report-out: not with --no-report"),
        (["--storage-path", "/proc/flosssweep-ray"], 2, "--storage-path: cannot write /proc/flosssweep-ray"),
        (["--storage-path", "afile/ray"], 2, "--storage-path: expected a directory, TMP/afile is a file"),
        (["--storage-path", "foo://bucket/ray"], 2, "--storage-path foo://bucket/ray: not a storage URI"),
        (["--storage-path", "file:///proc/flosssweep-ray"], 2, "--storage-path: cannot write /proc/flosssweep-ray"),
        (["--address", "127.0.0.1:1"], 3, "Ray: no cluster answers at 127.0.0.1:1"),
        (["--address", "headnode"], 2, "--address: expected host:port"),
        (["--tracking-uri", "foo://nowhere"], 2, "tracking URI foo://nowhere: expected http://"),
        (["--tracking-uri", "sqlite:///notes.db"], 2, "TMP/notes.db is not an SQLite database"),
        (["--close", "--tracking-uri", "http://127.0.0.1:9"], 3, "MLflow tracking server http://127.0.0.1:9"),
    ],
)
def test_bad_input_refused_in_seconds_before_ray_starts(tmp_path, args, code, first):
    path = write_sweep(tmp_path, "refused")
    (tmp_path / "afile").write_text("x")
    (tmp_path / "notes.db").write_text("notes, not a database\n")
    started = time.monotonic()
    result = run_in_process(str(path), *args, cwd=tmp_path)
    assert time.monotonic() - started < 30
    refused(result, code, first.replace("TMP", str(tmp_path)))
    assert "Started a local Ray instance" not in result.stderr + result.stdout
    assert not (tmp_path / "ray_results").exists()


@pytest.mark.slow
def test_fault_two_sweeps_creating_one_database_together(tmp_path):
    """The first connection to a new SQLite store migrates its schema; two at once must both work."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = f"from flosssweep.tracking.store import TrackingStore; TrackingStore({uri!r}).check()"
    env = sweep_environment(tmp_path)
    both = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    errors = [p.communicate(timeout=120)[1] for p in both]
    assert [p.returncode for p in both] == [0, 0], errors
    TrackingStore(uri).check()


# -- which Ray a launch without --address joins ----------------------------------------------------
def cluster_file(ray_tmp: Path, address: str) -> Path:
    """Ray's record of the last `ray start` on this machine, as `ray start --head` writes it."""
    (ray_tmp / "ray").mkdir(exist_ok=True)
    named = ray_tmp / "ray" / names.RAY_CURRENT_CLUSTER
    named.write_text(address)
    return named


@contextlib.contextmanager
def dead_gcs_port():
    """A loopback port that refuses connections, as a dead Ray's GCS port does; held (bound, not
    listening) so that nothing else takes it meanwhile."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def test_a_cluster_file_is_followed_only_while_its_ray_answers(tmp_path, monkeypatch, capsys):
    # as in a fresh driver process: another test may have started Ray in this one (ray_local)
    monkeypatch.setattr(preflight, "ray_running", lambda: False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_TMPDIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # Ray's temporary folder on Linux when RAY_TMPDIR is unset
    assert not preflight.dead_current_cluster(None), "no file: Ray starts its own"
    with socket.socket() as gcs:
        gcs.bind(("127.0.0.1", 0))
        gcs.listen()
        cluster_file(tmp_path, f"127.0.0.1:{gcs.getsockname()[1]}")
        assert not preflight.dead_current_cluster(None), "a live cluster is Ray's to join"
    assert capsys.readouterr().out == ""
    with dead_gcs_port() as port:
        named = cluster_file(tmp_path, f"127.0.0.1:{port}")
        assert preflight.dead_current_cluster(None, timeout=1.0, attempts=1)
        assert not preflight.dead_current_cluster("local"), "an address given is not second-guessed"
        monkeypatch.setattr(preflight, "ray_running", lambda: True)
        assert not preflight.dead_current_cluster(None), "a Ray already running in the process is used"
    note = capsys.readouterr().out
    assert note.startswith(f"note: {named} names a Ray at '127.0.0.1:{port}', where none answers")
    assert "`ray stop`" in note and note.count("\n") == 1


def test_an_ipv6_ray_address_is_read_as_ray_writes_it(tmp_path, monkeypatch):
    # Ray writes IPv6 addresses in brackets ([::1]:6379): a live cluster there is joined, not taken for dead
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    with socket.socket(socket.AF_INET6) as gcs:
        try:
            gcs.bind(("::1", 0))
        except OSError:
            pytest.skip("no IPv6 loopback on this machine")
        gcs.listen()
        address = f"[::1]:{gcs.getsockname()[1]}"
        preflight.check_ray_address(address)
        cluster_file(tmp_path, address)
        assert not preflight.dead_current_cluster(None)


@pytest.mark.slow
def test_fault_a_cluster_file_left_by_a_dead_ray_does_not_hold_the_launch(tmp_path):
    # the laptop command (no --address) after a `ray start --head` whose cluster died without `ray stop`:
    # Ray's own lookup would wait for that GCS for good; a short folder, as Ray's socket paths need
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray-stale-", dir="/tmp"))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = write_sweep(tmp_path, "stale", space={"task.delay": {"grid": [2]}})
    env = {**sweep_environment(tmp_path), "RAY_TMPDIR": str(ray_tmp)}
    try:
        with dead_gcs_port() as port:
            cluster_file(ray_tmp, f"127.0.0.1:{port}")
            result = subprocess.run(
                sweep_command(str(path), "--tracking-uri", uri, "--no-report"),
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=240,
            )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "starting a Ray of its own here" in result.stdout
    parents, children = runs_of(uri, "stale")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert [c.data.tags.get(names.RECORDED) for c in children] == ["true"]


# -- once Ray is up: trials no node can hold --------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    "resources, first",
    [
        ({"cpu": 1, "gpu": 1}, "resources: each trial asks for 1 CPU and 1 GPU and no node"),
        ({"cpu": 3, "gpu": 0}, "resources: each trial asks for 3 CPU and 0 GPU and no node"),
    ],
)
def test_bad_input_trials_no_node_can_hold(ray_local, tmp_path, monkeypatch, capsys, resources, first):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = write_sweep(tmp_path, "too-big", resources=resources)
    started = time.monotonic()
    code = run.main([str(path), "--tracking-uri", uri])
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - started < 30
    assert err.startswith(f"flosssweep.run: error: {first}") and err.count("\n") == 1
    assert "gpu: 0 on a machine without a GPU" in err
    assert TrackingStore(uri).client.get_experiment_by_name("too-big") is None, "refused before any run was opened"


# -- stopped, refused again, resumed; dead and closed -------------------------------------------------
@pytest.mark.slow
def test_fault_sigterm_stops_cleanly_a_second_launch_is_refused_and_the_first_resumes(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    base = copy.deepcopy(TINY_BASE)
    base["train"].update({"epochs": 2000, "report_every": 250})
    path = write_sweep(tmp_path, "term", base=base, space={"task.delay": {"grid": [2, 4]}})
    args = [str(path), "--tracking-uri", uri, "--address", "local", "--num-cpus", "2"]
    driver = subprocess.Popen(
        sweep_command(*args),
        cwd=tmp_path,
        env=sweep_environment(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watchdog = threading.Timer(150, driver.kill)  # a hang fails the test instead of blocking it
    watchdog.start()
    lines = []
    for line in driver.stdout:
        lines.append(line)
        if line.startswith("started "):
            break
    time.sleep(2.0)
    driver.send_signal(signal.SIGTERM)  # as a batch scheduler or `kill` stops a job
    rest, _ = driver.communicate(timeout=60)
    watchdog.cancel()
    out = "".join(lines) + rest
    assert driver.returncode == 1, out
    # the driver's own lines only: a trial worker's teardown noise stays in Ray's logs
    assert "Traceback" not in out and "(run_trial pid=" not in out, out
    assert "core dumped" not in out and "SIGABRT" not in out
    assert f"interrupted: continue with  python -m flosssweep.run {path} --resume" in out
    parents, children = runs_of(uri, "term")
    assert len(parents) == 1 and parents[0].info.status == "KILLED"
    assert parents[0].data.tags[names.END_REASON] == "interrupted"
    nothing_running(uri, "term")

    # a second launch of the same sweep in the same folder would take over the first's experiment
    again = run_cli(*args, cwd=tmp_path)
    refused(again, 2, f"sweep {path} has an unfinished launch in {tmp_path}/ray_results/term")
    assert "--resume" in again.stderr and "--close" in again.stderr
    assert len(runs_of(uri, "term")[0]) == 1

    resumed = run_cli(*args, "--resume", cwd=tmp_path, timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    parents, children = runs_of(uri, "term")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(c.data.tags.get(names.RECORDED) for c in children) == ["true", "true"]
    nothing_running(uri, "term")
    from flosssweep.report.sources import find_parent_run, open_store, read_mlflow_records

    tracking = open_store(TrackingStore(uri))
    assert read_mlflow_records(tracking, *find_parent_run(tracking, "term")).num_rows == 4, "2 trials x 2 members"


def test_fault_a_dead_launch_whose_storage_is_gone_is_closed(tmp_path, mlflow_uri):
    """A driver killed outright (SIGKILL, a lost node) leaves its runs RUNNING; with its storage
    folder deleted it cannot be resumed, and --close ends it from MLflow alone."""
    from flosssweep.sweep import spec

    uri = mlflow_uri
    path = write_sweep(tmp_path, "dead")
    experiment_dir = f"{tmp_path}/ray_results/dead"
    tracking = TrackingStore(uri)
    experiment_id, parent_id = tracking.start_parent(spec.load(path), experiment_dir)
    client = tracking.client
    for trial in ("a", "b"):
        client.create_run(experiment_id, tags={names.PARENT: parent_id, names.ROLE: "child", names.TRIAL_ID: trial})
    other_id = tracking.start_parent(spec.load(path), f"{tmp_path}/elsewhere/dead")[1]  # another folder

    resume = run_in_process(str(path), "--tracking-uri", uri, "--resume", cwd=tmp_path)
    refused(resume, 2, "--resume: no launch of sweep dead")
    closed = run_in_process(str(path), "--tracking-uri", uri, "--close", cwd=tmp_path)
    assert closed.returncode == 0 and "closed 1 unfinished launch(es) of sweep dead" in closed.stdout
    assert parent_id in closed.stdout
    parents, children = runs_of(uri, "dead")
    mine = [p for p in parents if p.info.run_id == parent_id][0]
    assert mine.info.status == "KILLED" and mine.data.tags[names.END_REASON] == "closed with --close"
    assert [c.info.status for c in children] == ["KILLED", "KILLED"]
    assert all(c.data.tags.get(names.STATUS) == "abandoned" for c in children)
    assert client.get_run(other_id).info.status == "RUNNING", "a launch in another folder is not touched"
    # a closed launch no longer stands in the way of a new one
    launch_of = lambda parent: LaunchFile(parent, experiment_id, uri, str(path), None)
    preflight.check_earlier_launch(launch_of(parent_id), experiment_dir, str(path))
    with pytest.raises(preflight.Refused):
        preflight.check_earlier_launch(launch_of(other_id), experiment_dir, str(path))


@pytest.mark.slow
def test_ctrl_c_while_ray_starts_is_one_line_and_leaves_no_run_or_ray_process(tmp_path):
    """Ctrl-C (SIGINT) once `ray.init` has started Ray's GCS, before the driver has opened any run."""
    path = write_sweep(tmp_path, "early", space={"task.delay": {"grid": [2]}})
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = [str(path), "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"), "--address", "local"]
    driver = subprocess.Popen(
        sweep_command(*args, "--num-cpus", "1"),
        cwd=tmp_path,
        env=sweep_environment(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline, gcs = time.monotonic() + 120, []
    while not gcs and driver.poll() is None and time.monotonic() < deadline:
        gcs = named(descendants(driver.pid), "gcs_server")
        time.sleep(0.05)
    assert gcs, "Ray's GCS never started"
    driver.send_signal(signal.SIGINT)
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 1, out + err
    assert err.strip().splitlines() == [
        "flosssweep.run: error: interrupted while Ray was starting (nothing was launched)"
    ], out + err
    assert "Traceback" not in out + err
    from mlflow import MlflowClient

    experiment = MlflowClient(uri).get_experiment_by_name("early")
    assert experiment is None or not MlflowClient(uri).search_runs([experiment.experiment_id])
    deadline = time.monotonic() + 15
    while not gone(gcs[0]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert gone(gcs[0]), "Ray's GCS outlives the interrupted driver"


def gone(pid: int) -> bool:
    """Exited, or a zombie that has released everything and waits only for its reaper."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
