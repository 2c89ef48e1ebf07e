"""Both cluster files' head commands, run as Ray's launcher runs them (`bash --login -c -i
'<command>'`) on a throwaway head: new PID, mount and network namespaces (loopback only), a fresh home
directory, the real `ray start`, `mlflow server` and backup loop. cluster/config.yaml (AWS) cannot be
launched here; this is how its start commands are tested. A `ray up` runs them again on a running
head, so they run twice: each service must run exactly once, and MLflow must answer on its port.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from machines import Machine, argv, fresh_home, refusal

pytestmark = pytest.mark.slow

CLUSTER = ROOT / "cluster"
BUCKET = "flosssweep-start-test"
S3_PORT = 9000


def launcher(name: str) -> dict:
    """The file with this head's EDIT values: config.yaml's bucket (a name moto's S3 server accepts),
    local.yaml's head address (--node-ip-address must be one of the head's: here its loopback)."""
    text = (CLUSTER / name).read_text().replace("YOUR-BUCKET", BUCKET).replace("192.168.0.10", "127.0.0.1")
    return yaml.safe_load(text)


def installs(line: str) -> bool:
    """Lines that install software (pip, a venv) or mount the NFS: the throwaway head has it all."""
    return "pip install" in line or "-m venv" in line or "mount " in line


def service(machine: Machine, *words: str) -> list[int]:
    """PIDs of the machine's processes whose command line has `words` in a row."""
    found = []
    for pid in machine.processes():
        args = [Path(a).name for a in argv(pid)]
        if any(args[i : i + len(words)] == list(words) for i in range(len(args))):
            found.append(pid)
    return found


def run_all(machine: Machine, lines: list[str], env: dict, what: str) -> None:
    """Ray's launcher stops at the first command that fails, and so does `ray up`."""
    for line in lines:
        done = machine.as_ray_runs(line, env, timeout=180)
        assert done.returncode == 0, f"{what}: `{line}` exited {done.returncode}:\n{done.stdout}\n{done.stderr}"


@pytest.fixture
def head(tmp_path, request):
    why = refusal()
    if why:
        pytest.skip(why)
    logs = tmp_path / "logs"
    logs.mkdir()
    # /mnt/flosssweep (local.yaml's NFS mount) as a private tmpfs, so nothing lands on the host's /mnt
    machine = Machine("head", logs, setup="mount -t tmpfs tmpfs /mnt && mkdir /mnt/flosssweep")
    request.addfinalizer(machine.stop)
    return machine


def environment(home: Path) -> dict[str, str]:
    endpoint = f"http://127.0.0.1:{S3_PORT}"
    return {
        "HOME": str(home),
        "USER": "root",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        # the bucket of config.yaml: moto's S3 server inside the head's network namespace
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def provision(head: Machine, name: str, home: Path, env: dict) -> None:
    """What the launcher's file mounts, pip lines and setup commands leave on a head: the checkout
    at ~/flosssweep, this interpreter's environment (with Ray, MLflow, the project) as ~/venv
    (local.yaml) or on the PATH (the image of config.yaml), the cluster config at
    ~/ray_bootstrap_config.yaml, the environment the setup commands write to ~/.bashrc."""
    fresh_home(home)
    (home / "flosssweep").symlink_to(ROOT)
    venv = Path(sys.prefix)
    if name == "local.yaml":
        (home / "venv").symlink_to(venv)
    else:
        with open(home / ".bashrc", "a") as rc:
            rc.write(f"source {venv}/bin/activate\n")
        moto = head.background("s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(S3_PORT)], env)
        make = (
            "import boto3, time\nfor _ in range(100):\n"
            f" try: boto3.client('s3').create_bucket(Bucket='{BUCKET}'); break\n except Exception: time.sleep(0.3)"
        )
        done = head.run([sys.executable, "-c", make], env, timeout=60)
        assert done.returncode == 0 and moto.poll() is None, done.stderr
    config = launcher(name)
    (home / "ray_bootstrap_config.yaml").write_text(yaml.safe_dump(copy.deepcopy(config)))
    setup = [line for key in ("setup_commands", "head_setup_commands") for line in config[key] if not installs(line)]
    run_all(head, setup, env, "setup")


@pytest.mark.parametrize("name", ["local.yaml", "config.yaml"])
def test_head_start_commands_start_each_service_once_and_mlflow_answers(head, tmp_path, name):
    config = launcher(name)
    home = tmp_path / "home"
    env = environment(home)
    t0 = time.monotonic()
    provision(head, name, home, env)
    start = config["head_start_ray_commands"]
    run_all(head, start, env, "first ray up")
    first = time.monotonic() - t0

    servers, loops = service(head, "mlflow", "server"), service(head, "flosssweep.tracking.backup", "every")
    assert len(servers) == 1, f"MLflow servers running: {servers} (log: {log(home, 'mlflow-server')})"
    assert len(loops) == 1, f"backup loops running: {loops}"
    assert answers(head, env), f"MLflow does not answer on 127.0.0.1:5000 (log: {log(home, 'mlflow-server')})"

    # `ray up` again on the running head: the launcher runs every start command a second time
    t0 = time.monotonic()
    run_all(head, start, env, "second ray up")
    assert service(head, "mlflow", "server") == servers, "MLflow was started a second time"
    assert service(head, "flosssweep.tracking.backup", "every") == loops, "a second backup loop"
    assert answers(head, env)
    print(f"\n{name}: first ray up's head commands {first:.1f} s, second {time.monotonic() - t0:.1f} s")


def test_ray_up_fails_loudly_when_mlflow_cannot_take_its_port(head, tmp_path):
    """Another program on 127.0.0.1:5000: the MLflow line exits non-zero, naming the port, at once."""
    config = launcher("local.yaml")
    home = tmp_path / "home"
    env = environment(home)
    provision(head, "local.yaml", home, env)
    squatter = head.background("squatter", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "5000"], env)
    deadline = time.monotonic() + 30
    while not listening(head, env):
        assert squatter.poll() is None and time.monotonic() < deadline, "the squatter did not listen"
        time.sleep(0.2)
    [line] = [c for c in config["head_start_ray_commands"] if "mlflow server" in c]
    t0 = time.monotonic()
    done = head.as_ray_runs(line, env)
    assert done.returncode != 0, done.stdout
    assert "127.0.0.1:5000 is taken" in done.stderr, done.stderr
    assert time.monotonic() - t0 < 30
    assert service(head, "mlflow", "server") == []


def test_a_server_that_dies_fails_ray_up_with_its_log(head, tmp_path):
    """A database MLflow cannot open: the line waits no longer than the server lives, and shows its log."""
    config = launcher("local.yaml")
    home = tmp_path / "home"
    env = environment(home)
    provision(head, "local.yaml", home, env)
    (home / "mlflow.db").write_text("not a database")
    [line] = [c for c in config["head_start_ray_commands"] if "mlflow server" in c]
    done = head.as_ray_runs(line, {**env, "FLOSSSWEEP_SERVICE_WAIT": "90"})
    assert done.returncode != 0, done.stdout
    assert "exited before answering on 127.0.0.1:5000" in done.stderr, done.stderr
    assert "mlflow-server.log" in done.stderr


def answers(head: Machine, env: dict) -> bool:
    probe = "import urllib.request as u; assert u.urlopen('http://127.0.0.1:5000/health', timeout=30).status == 200"
    return head.run([sys.executable, "-c", probe], env, timeout=30).returncode == 0


def listening(head: Machine, env: dict) -> bool:
    probe = "import socket; socket.create_connection(('127.0.0.1', 5000), timeout=5).close()"
    return head.run([sys.executable, "-c", probe], env, timeout=30).returncode == 0


def log(home: Path, name: str) -> str:
    path = home / f"{name}.log"
    return path.read_text()[-2000:] if path.exists() else f"{path}: none"
