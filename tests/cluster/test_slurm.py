"""cluster/slurm/flosssweep.sbatch under a real SLURM: Debian's slurmctld and slurmd with munge, on one
node, submitted to with `sbatch`.

The node is a process tree in its own network, PID, mount and UTS namespaces (hostname node1, an
address 10.19.0.1 on a link that exists only there, its own /tmp and /dev/shm), so slurmctld,
slurmd, munged, Ray and MLflow listen nowhere else, and killing the node's PID 1 ends all of them
whatever happened. One node only: Debian's slurmd serves one node per host, and a second node would
need a second set of namespaced machines joined by a bridge, as the launcher test builds; the
script's several-node path (`--nodes`) is Ray's own `symmetric-run` and is not exercised here.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from machines import Machine, refusal, report_table

from flosssweep import names

pytestmark = pytest.mark.slow

SWEEP = "slurm"
DELAYS, MODES = [2, 4], ["none", "pre"]
TINY = {
    "name": SWEEP,
    "max_concurrent": 2,
    "resources": {"cpu": 1, "gpu": 0},
    "base": {
        "model": {"hidden": 8},
        "task": {"bits": 1},
        "train": {"epochs": 40, "length": 40, "success_window": 10, "report_every": 20},
        "floss": {"pre_steps": 5, "horizon": 20, "warmup": 5},
        "ensemble": 2,
    },
    "space": {"task.delay": {"grid": DELAYS}, "floss.mode": {"grid": MODES}},
}
NODE_IP = "10.19.0.1"
MOUNT = "/mnt/slurm"  # the test's folder, as the node sees it (its /tmp is its own)
SLURM_CONF = f"""ClusterName=flosssweep-test
SlurmctldHost=node1({NODE_IP})
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={MOUNT}/munge.socket
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation={MOUNT}/state
SlurmdSpoolDir={MOUNT}/spool
SlurmctldPidFile={MOUNT}/slurmctld.pid
SlurmdPidFile={MOUNT}/slurmd.pid
SlurmctldLogFile={MOUNT}/slurmctld.log
SlurmdLogFile={MOUNT}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmdParameters=config_overrides
NodeName=node1 NodeAddr={NODE_IP} CPUs=2 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=node1 Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture
def node(tmp_path, request):
    why = refusal("munged", "slurmctld", "slurmd", "sbatch", "sinfo")
    if why:
        pytest.skip(why)
    for name in ("state", "spool", "home", "shared"):
        (tmp_path / name).mkdir()
    (tmp_path / "slurm.conf").write_text(SLURM_CONF)
    key = tmp_path / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    (tmp_path / "hosts").write_text(f"127.0.0.1 localhost\n{NODE_IP} node1\n")
    conf = f"{MOUNT}/slurm.conf"
    setup = f"""
ip link add eth0 type veth peer name eth1
ip addr add {NODE_IP}/24 dev eth0
ip link set eth1 up
ip link set eth0 up
mount -t tmpfs tmpfs /mnt
mkdir {MOUNT}
mount --bind {tmp_path} {MOUNT}
mount --bind {MOUNT}/hosts /etc/hosts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /dev/shm
munged --force --socket={MOUNT}/munge.socket --key-file={MOUNT}/munge.key --log-file={MOUNT}/munged.log \
    --pid-file={MOUNT}/munged.pid --seed-file={MOUNT}/munged.seed
slurmctld -f {conf}
slurmd -f {conf} -N node1
"""
    logs = tmp_path / "logs"
    logs.mkdir()
    machine = Machine("node1", logs, setup=setup)
    request.addfinalizer(machine.stop)
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": f"{MOUNT}/home",
        "LANG": "C.UTF-8",
        "SLURM_CONF": conf,
        "FLOSSSWEEP_SHARED": f"{MOUNT}/shared",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    deadline = time.monotonic() + 60
    while True:
        state = machine.run(["sinfo", "--noheader", "--format=%T"], env, timeout=30).stdout.strip()
        if state == "idle":
            break
        assert time.monotonic() < deadline, f"node not idle: {state!r}; {(tmp_path / 'slurmd.log').read_text()[-2000:]}"
        time.sleep(1)
    return machine, env, tmp_path


def test_sbatch_runs_a_sweep_recorded_in_mlflow_with_its_report(node):
    machine, env, root = node
    (root / "shared" / f"{SWEEP}.yaml").write_text(yaml.safe_dump(TINY))
    t0 = time.monotonic()
    done = machine.run(
        ["sbatch", "--wait", "--output", f"{MOUNT}/job-%j.out", "cluster/slurm/flosssweep.sbatch"]
        + [f"{MOUNT}/shared/{SWEEP}.yaml"],
        env,
        timeout=1200,
        cwd=ROOT,
    )
    took = time.monotonic() - t0
    [out] = list(root.glob("job-*.out")) or [None]
    said = out.read_text() if out else "(no job output)"
    print(f"\nsbatch --wait of a {len(DELAYS) * len(MODES)}-trial sweep: {took:.1f} s")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{said[-5000:]}"
    job = out.name[len("job-") : -len(".out")]

    # MLflow recorded every trial once, in the database on the shared file system
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'shared' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(SWEEP)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get(names.ROLE) == "parent"]
    children = [r for r in runs if r.data.tags.get(names.ROLE) == "child"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted((c.data.params["task.delay"], c.data.params["floss.mode"]) for c in children) == sorted(
        (str(d), m) for d in DELAYS for m in MODES
    )
    assert all(c.data.tags[names.RECORDED] == "true" for c in children)
    # artifacts and checkpoints on the shared file system, the report's files next to them
    artifacts = root / "shared" / "mlartifacts" / experiment.experiment_id
    for child in children:
        assert (artifacts / child.info.run_id / "artifacts" / names.RECORDS_ARTIFACT).is_file()
    assert (root / "shared" / "ray" / SWEEP).is_dir()
    report_dir = root / "shared" / f"report-{job}"
    assert (report_dir / "report.md").is_file(), sorted(p.name for p in report_dir.iterdir())
    # the table the job printed is the one its records give, read again after the job through a
    # server of the database and artifacts on the shared file system, as on the login node
    server = machine.background(
        "mlflow",
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", "5001", "--workers", "1"]
        + ["--backend-store-uri", f"sqlite:///{MOUNT}/shared/mlflow.db"]
        + ["--artifacts-destination", f"{MOUNT}/shared/mlartifacts"],
        env,
    )
    report = [sys.executable, "-m", "flosssweep.report", "--tracking-uri", "http://127.0.0.1:5001"]
    report += ["--experiment", SWEEP, "--no-log"]
    deadline = time.monotonic() + 120
    while True:
        again = machine.run(report, env, timeout=300, cwd=MOUNT)
        if again.returncode == 0 or time.monotonic() > deadline or server.poll() is not None:
            break
        time.sleep(2)
    assert again.returncode == 0, again.stderr[-3000:]
    table = report_table(said, SWEEP)
    assert report_table(again.stdout, SWEEP) == table, f"job:\n{said[-3000:]}\nafter:\n{again.stdout}"
    assert f"{len(children) * TINY['base']['ensemble']} realization(s)" in table, table
    assert "MLflow: http://127.0.0.1:" in said
