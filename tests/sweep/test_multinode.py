"""A sweep on a three-node Ray cluster on one machine: a head with no CPUs and two worker nodes that,
like separate machines, cannot see the head's disk; trial storage and MLflow artifacts in an
S3-compatible object store (moto's server), MLflow behind `mlflow server`. One worker node's raylet
is killed mid-sweep; its trials must resume from their checkpoints in the bucket.

Every process is started here in a process group of its own and stopped by PID and group at the
end, whatever happened; everything listens on 127.0.0.1 only. Phase timings go to the terminal.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import fcntl
import json
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import answers, sweep_environment

from flosssweep import names

pytestmark = pytest.mark.slow

BUCKET = "flosssweep-multinode"
SWEEP = "multinode"
TRIALS = 6
MEMBERS = 2
EPOCHS, REPORT_EVERY = 160, 20
BASE = {
    "model": {"hidden": 8},
    "task": {"bits": 1},
    "train": {"epochs": EPOCHS, "length": 40, "success_window": 10, "report_every": REPORT_EVERY},
    "floss": {"mode": "pre", "pre_steps": 5, "horizon": 20, "warmup": 5},
    "ensemble": MEMBERS,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """Every live process below `pid`, read from /proc (children first found, grandchildren after)."""
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


def named(pids: list[int], comm: str) -> list[int]:
    out = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                out.append(pid)
        except OSError:
            pass
    return out


CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


@contextlib.contextmanager
def loopback_only_network():
    """Move this thread (and so every process it starts) into a new network namespace whose only
    interface is loopback, and back afterwards. Ray's gRPC servers bind every interface whatever
    --node-ip-address says; here the only one there is is 127.0.0.1. Yields None, or why not."""
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            yield f"unshare(CLONE_NEWNET) refused: {os.strerror(ctypes.get_errno())}"
            return
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                name = struct.pack("16sH", b"lo", 0)
                flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, name))[1]
                fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP))
            yield None
        finally:
            if libc.setns(original, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the original network namespace")
    finally:
        os.close(original)


def interfaces() -> list[str]:
    """Network interfaces this thread sees."""
    lines = Path("/proc/thread-self/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":")[0].strip() for line in lines)


class Processes:
    """What the test starts: each in a new session (so one killpg takes its whole group), logged to a file."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, command: list[str], env: dict, **kwargs) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")
        process = subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **kwargs,
        )
        log.close()
        self.started.append((name, process))
        return process

    def all_pids(self) -> set[int]:
        pids = set()
        for _, process in self.started:
            pids.add(process.pid)
            pids.update(descendants(process.pid))
        return pids

    def stop_one(self, name: str) -> None:
        process = dict(self.started)[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop(self) -> None:
        for _, process in reversed(self.started):
            pids = [process.pid, *descendants(process.pid)]
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass


def wait_until(check, timeout: float, what: str, processes: Processes, log: str):
    """Poll `check` until it returns something true; fail early when the process logging to `log` exits."""
    process = dict(processes.started)[log]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if process.poll() is not None:
            break
        time.sleep(0.3)
    raise AssertionError(
        f"{what}: not within {timeout:.0f} s (exit status {process.poll()}); {log}.log:\n{processes.log(log)[-3000:]}"
    )


def unshare_refusal(directory: Path) -> str | None:
    """Why this machine cannot give a process a private tmpfs in its own mount namespace, or None."""
    try:
        probe = subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                f"mount -t tmpfs tmpfs {shlex.quote(str(directory))}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unshare: {err}"
    return None if probe.returncode == 0 else f"unshare --mount refused: {probe.stderr.strip()}"


class Cluster:
    """Ray head (0 CPUs) + two worker nodes in private mount namespaces, moto's S3 and mlflow server."""

    def __init__(self, root: Path, processes: Processes, timings: dict):
        self.root, self.processes, self.timings = root, processes, timings
        self.ray_tmp = Path(tempfile.mkdtemp(prefix="fsr-", dir="/tmp"))  # short: Ray's socket paths
        self.s3_port, self.gcs_port, self.mlflow_port = free_port(), free_port(), free_port()
        self.address = f"127.0.0.1:{self.gcs_port}"
        self.tracking_uri = f"http://127.0.0.1:{self.mlflow_port}"
        self.storage = f"s3://{BUCKET}/ray"
        self.env = sweep_environment(root)
        for key in [k for k in self.env if k.startswith(("AWS_", "FLOSSSWEEP_STORAGE"))]:
            del self.env[key]
        endpoint = f"http://127.0.0.1:{self.s3_port}"
        self.env.update(
            {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": endpoint,
                "MLFLOW_S3_ENDPOINT_URL": endpoint,
                "AWS_EC2_METADATA_DISABLED": "true",  # no credential lookups beyond 127.0.0.1
                # a dead node found in ~3 s instead of Ray's default ~30 s
                "RAY_health_check_period_ms": "500",
                "RAY_health_check_timeout_ms": "1000",
                "RAY_health_check_failure_threshold": "3",
                "RAY_health_check_initial_delay_ms": "0",
                "OMP_NUM_THREADS": "1",
                "MKL_NUM_THREADS": "1",
            }
        )
        self.ray = str(Path(sys.executable).parent / "ray")
        self.workers: list[subprocess.Popen] = []

    def s3(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def keys(self, prefix: str) -> list[str]:
        out, token = [], None
        while True:
            page = self.s3().list_objects_v2(
                Bucket=BUCKET, Prefix=prefix, **({"ContinuationToken": token} if token else {})
            )
            out += [item["Key"] for item in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not token:
                return out

    def node_flags(self) -> list[str]:
        return [
            "--node-ip-address",
            "127.0.0.1",
            "--object-store-memory",
            str(80 * 1024 * 1024),
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--block",
        ]

    def start(self) -> None:
        t0 = time.monotonic()
        self.processes.start(
            "s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.s3_port)], self.env
        )
        wait_until(
            lambda: answers(f"{self.env['AWS_ENDPOINT_URL']}/moto-api/"), 60, "moto server", self.processes, "s3"
        )
        self.s3().create_bucket(Bucket=BUCKET)
        self.mlflow_server("mlflow", self.root / "mlflow.db", self.mlflow_port)
        self.processes.start(
            "head",
            [
                self.ray,
                "start",
                "--head",
                "--num-cpus",
                "0",
                "--port",
                str(self.gcs_port),
                "--include-dashboard=false",
                "--temp-dir",
                str(self.ray_tmp),
                *self.node_flags(),
            ],
            self.env,
            cwd=self.root,
        )
        wait_until(lambda: "Ray runtime started" in self.processes.log("head"), 90, "Ray head", self.processes, "head")
        self.timings["start head, S3, MLflow"] = time.monotonic() - t0
        t0 = time.monotonic()
        # A worker node sees a private, empty tmpfs where the head keeps this test's files (its
        # storage folder, the MLflow store) and Ray's session: a second machine's view.
        hide = " && ".join(
            f"mount -t tmpfs -o size=256m tmpfs {shlex.quote(str(d))}" for d in (self.root, self.ray_tmp)
        )
        for i in range(2):
            start = shlex.join(
                [
                    self.ray,
                    "start",
                    "--address",
                    self.address,
                    "--num-cpus",
                    "1",
                    "--temp-dir",
                    str(self.ray_tmp),
                    *self.node_flags(),
                ]
            )
            self.workers.append(
                self.processes.start(
                    f"worker{i}",
                    ["unshare", "--mount", "--propagation", "private", "sh", "-c", f"{hide} && exec {start}"],
                    self.env,
                    cwd="/",
                )
            )
        for i in range(2):
            wait_until(
                lambda name=f"worker{i}": "Ray runtime started" in self.processes.log(name),
                90,
                f"worker node {i}",
                self.processes,
                f"worker{i}",
            )
        wait_until(lambda: answers(f"{self.tracking_uri}/health"), 90, "mlflow server", self.processes, "mlflow")
        self.timings["start 2 worker nodes"] = time.monotonic() - t0

    def mlflow_server(self, name: str, database: Path, port: int) -> subprocess.Popen:
        """As the cluster files start it: bound to 127.0.0.1, SQLite store, artifacts in the bucket."""
        return self.processes.start(
            name,
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--backend-store-uri",
                f"sqlite:///{database}",
                "--artifacts-destination",
                f"s3://{BUCKET}/mlartifacts",
                "--workers",
                "1",
            ],
            self.env,
            cwd=database.parent,
        )

    def report(self, tracking_uri: str) -> dict:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "flosssweep.report",
                "--tracking-uri",
                tracking_uri,
                "--experiment",
                SWEEP,
                "--format",
                "json",
            ],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def raylet(self, worker: int) -> int:
        found = named(descendants(self.workers[worker].pid), "raylet")
        assert len(found) == 1, f"worker node {worker}: raylets {found}"
        return found[0]

    def driver(self, sweep: Path, storage: str, log: str) -> subprocess.Popen:
        return self.processes.start(
            log,
            [
                sys.executable,
                "-m",
                "flosssweep.run",
                str(sweep),
                "--address",
                self.address,
                "--storage-path",
                storage,
                "--tracking-uri",
                self.tracking_uri,
            ],
            self.env,
            cwd=self.root,
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, request):
    root = tmp_path_factory.mktemp("multinode")
    refusal = unshare_refusal(root)
    if refusal:
        pytest.skip(refusal)
    logs = root / "logs"
    logs.mkdir()
    processes = Processes(logs)
    timings: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        refusal = stack.enter_context(loopback_only_network())
        if refusal:
            pytest.skip(refusal)
        stack.callback(stop, processes, timings, request.config.pluginmanager.getplugin("capturemanager"))
        made = Cluster(root, processes, timings)
        stack.callback(shutil.rmtree, made.ray_tmp, True)
        made.start()
        yield made


def stop(processes: Processes, timings: dict, capture) -> None:
    t0 = time.monotonic()
    processes.stop()
    timings["stop everything"] = time.monotonic() - t0
    with capture.global_and_fixture_disabled():  # on the terminal (and CI's log) even under -q
        print("\nmultinode phase timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()), flush=True)


def write_sweep(directory: Path) -> Path:
    sweep = {
        "name": SWEEP,
        "max_concurrent": 2,
        "checkpoint_seconds": 0,
        "max_failures": 2,
        "resources": {"cpu": 1, "gpu": 0},
        "base": copy.deepcopy(BASE),
        "space": {"task.delay": {"grid": list(range(2, 2 + TRIALS))}},
    }
    path = directory / f"{SWEEP}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_a_local_storage_path_is_refused_on_a_multinode_cluster(cluster):
    sweep = write_sweep(cluster.root)
    t0 = time.monotonic()
    driver = cluster.driver(sweep, str(cluster.root / "ray_results"), "driver-local")
    code = driver.wait(timeout=60)
    took = time.monotonic() - t0
    cluster.timings["local storage refused"] = took
    out = cluster.processes.log("driver-local")
    assert code == 2, out
    assert took < 15, f"refused after {took:.1f} s"
    lines = [line for line in out.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("flosssweep.run: error:")]
    assert len(errors) == 1 and "--storage-path" in errors[0], out
    assert "Traceback" not in out
    assert not cluster.keys(f"ray/{SWEEP}"), "nothing launched"


def test_a_sweep_survives_losing_a_worker_node(cluster):
    from mlflow import MlflowClient

    sweep = write_sweep(cluster.root)
    assert interfaces() == ["lo"], "the cluster can be reached from beyond 127.0.0.1"
    t0 = time.monotonic()
    driver = cluster.driver(sweep, cluster.storage, "driver")

    def running_with_checkpoints() -> set[str]:
        """Trial directories in the bucket with a checkpoint to resume from and no final one yet."""
        keys = cluster.keys(f"ray/{SWEEP}/")
        with_state = {k.rsplit("/", 2)[0] for k in keys if k.endswith("/state.pt")}
        done = {k.rsplit("/", 2)[0] for k in keys if k.endswith("/records.parquet")}
        return with_state - done

    # Both worker nodes hold one trial each (1 CPU apiece, the head has none): once two trials are
    # under way with a checkpoint in the bucket, the killed node's trial has one to resume from.
    wait_until(
        lambda: len(running_with_checkpoints()) >= 2, 120, "two trials with checkpoints", cluster.processes, "driver"
    )
    cluster.timings["sweep start to first checkpoints"] = time.monotonic() - t0
    victim = cluster.raylet(0)
    os.kill(victim, signal.SIGKILL)
    t1 = time.monotonic()
    code = driver.wait(timeout=300)
    out = cluster.processes.log("driver")
    cluster.timings["kill to sweep end"] = time.monotonic() - t1
    cluster.timings["sweep"] = time.monotonic() - t0
    assert code == 0, out[-5000:]
    assert "retrying" in out, "the lost node's trial was not retried:\n" + out[-3000:]

    # the store saved to the bucket while its server runs (as the head does before `ray down`) and
    # restored on "the laptop", whose server starts while the checks below run
    t3 = time.monotonic()
    saved = f"s3://{BUCKET}/mlflow/mlflow.db"
    backup = [sys.executable, "-m", "flosssweep.tracking.backup"]
    laptop = cluster.root / "laptop"
    laptop.mkdir()
    for action, database in (("save", cluster.root / "mlflow.db"), ("restore", laptop / "mlflow.db")):
        done = subprocess.run(
            backup + [action, str(database), saved], env=cluster.env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
    assert "restored" in done.stdout, done.stdout
    port = free_port()
    cluster.mlflow_server("mlflow-laptop", laptop / "mlflow.db", port)
    cluster.timings["save and restore the store"] = time.monotonic() - t3
    t3 = time.monotonic()

    client = MlflowClient(cluster.tracking_uri)
    experiment = client.get_experiment_by_name(SWEEP)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get(names.ROLE) == "parent"]
    children = [r for r in runs if r.data.tags.get(names.ROLE) == "child"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == TRIALS, [c.data.tags for c in children]
    assert {c.data.params["task.delay"] for c in children} == {str(d) for d in range(2, 2 + TRIALS)}

    # every trial recorded exactly once, its records in the bucket, its metrics each epoch once
    artifacts = set(cluster.keys("mlartifacts/"))
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags[names.RECORDED] == "true"
        key = f"mlartifacts/{experiment.experiment_id}/{child.info.run_id}/artifacts/{names.RECORDS_ARTIFACT}"
        assert key in artifacts, f"{key} not in the bucket: {sorted(artifacts)[:10]}"
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "charts/accuracy")]
        assert sorted(steps) == list(range(0, EPOCHS + 1, REPORT_EVERY)), steps

    # the lost node's trial started again from its checkpoint in the bucket, not from epoch 0
    retried = [c for c in children if int(c.data.tags.get(names.RETRIES, "0")) > 0]
    assert retried, "no trial was retried after its node died"
    for child in retried:
        starts = sorted((m.step, m.value) for m in client.get_metric_history(child.info.run_id, names.RESTORED_FROM))
        assert len(starts) >= 2 and starts[0][1] == 0, starts
        assert all(value > 0 for _, value in starts[1:]), f"restarted from epoch 0: {starts}"
    never = [c for c in children if c not in retried]
    for child in never:
        assert [m.value for m in client.get_metric_history(child.info.run_id, names.RESTORED_FROM)] == [0]

    # the report reads the sweep back through the server
    t2 = time.monotonic()
    report = cluster.report(cluster.tracking_uri)
    cluster.timings["report"] = time.monotonic() - t2
    [read] = report["sweeps"]
    [group] = read["groups"]
    assert read["sweep"] == SWEEP and group["n"] == TRIALS * MEMBERS
    successes = {int(c.data.params["task.delay"]): int(c.data.tags[f"{names.TAG_PREFIX}successes"]) for c in children}
    assert {point["delay"]: point["k"] for point in group["curve"]} == successes

    # after `ray down`: the head's disk gone, the store restored elsewhere (the laptop); a new
    # server on it reads the same sweep, artifacts and all
    cluster.processes.stop_one("mlflow")
    (cluster.root / "mlflow.db").unlink()
    wait_until(
        lambda: answers(f"http://127.0.0.1:{port}/health"),
        90,
        "second mlflow server",
        cluster.processes,
        "mlflow-laptop",
    )
    cluster.timings["second server up (waited)"] = time.monotonic() - t3
    t3 = time.monotonic()
    assert cluster.report(f"http://127.0.0.1:{port}") == report
    later = MlflowClient(f"http://127.0.0.1:{port}")
    path = later.download_artifacts(children[0].info.run_id, names.RECORDS_ARTIFACT, str(laptop))
    assert len(pq.read_table(path)) == MEMBERS
    cluster.timings["report through it"] = time.monotonic() - t3
