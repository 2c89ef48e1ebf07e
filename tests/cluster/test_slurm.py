"""cluster/slurm/flosssweep.sbatch under a real SLURM: Debian's slurmctld, two slurmd and munge, submitted
to with `sbatch --nodes=2`.

Each node is a process tree in its own network, PID, mount and UTS namespaces (hostnames node1 and
node2, with their own /tmp, /run and /dev/shm), the two joined by a bridge on 10.19.0.0/24, which
exists only inside namespaces made here; slurmctld and the login side (sbatch, sinfo) run on node1.
The test's folder, bind-mounted at /mnt/slurm on both, is the cluster's shared file system. So
slurmctld, slurmd, munged, Ray and MLflow listen nowhere else, and killing each node's PID 1 ends all
of them whatever happened.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from machines import Machine, Network, netns_refusal, refusal, report_table

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
NODES = {"node1": "10.19.0.11", "node2": "10.19.0.12"}
MOUNT = "/mnt/slurm"  # the test's folder, as the node sees it (its /tmp is its own)
SLURM_CONF = f"""ClusterName=flosssweep-test
SlurmctldHost=node1({NODES["node1"]})
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=/run/munge/munge.socket.2
CredType=cred/munge
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation={MOUNT}/state
SlurmdSpoolDir={MOUNT}/spool-%n
SlurmctldPidFile={MOUNT}/slurmctld.pid
SlurmdPidFile={MOUNT}/slurmd-%n.pid
SlurmctldLogFile={MOUNT}/slurmctld.log
SlurmdLogFile={MOUNT}/slurmd-%n.log
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
NodeName=node1 NodeAddr={NODES["node1"]} CPUs=1 RealMemory=2000 State=UNKNOWN
NodeName=node2 NodeAddr={NODES["node2"]} CPUs=1 RealMemory=2000 State=UNKNOWN
PartitionName=debug Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP
"""


def boot(name: str, root: Path) -> str:
    """Shell that makes `name` a SLURM node: the shared folder, private /tmp, /run and /dev/shm,
    munged with the cluster's key, slurmd (and slurmctld on node1). The checkout and its Python stay
    where they are, also when they live under /tmp (a CI clone may): kept aside before /tmp is
    replaced, and bound back at the same path."""
    conf = f"{MOUNT}/slurm.conf"
    keep = [ROOT, Path(sys.prefix)]
    aside = "".join(f"mkdir -p /mnt/keep{i}; mount --bind {p} /mnt/keep{i}\n" for i, p in enumerate(keep))
    back = "".join(f"mkdir -p {p}; mount --bind /mnt/keep{i} {p}\n" for i, p in enumerate(keep))
    return f"""
mount -t tmpfs tmpfs /mnt
mkdir {MOUNT}
mount --bind {root} {MOUNT}
mount --bind {MOUNT}/hosts /etc/hosts
{aside}for d in /tmp /run /dev/shm; do mount -t tmpfs tmpfs $d; done
{back}mkdir -m 755 /run/munge
munged --force --key-file={MOUNT}/munge.key --log-file=/run/munge/munged.log --seed-file=/run/munge/seed
{"slurmctld -f " + conf if name == "node1" else ""}
slurmd -f {conf} -N {name}
"""


@pytest.fixture
def cluster(tmp_path, request):
    why = refusal("munged", "slurmctld", "slurmd", "sbatch", "sinfo") or netns_refusal(f"fs{os.getpid()}")
    if why:
        pytest.skip(why)
    for name in ("state", "home", "shared", "logs", "spool-node1", "spool-node2"):
        (tmp_path / name).mkdir()
    (tmp_path / "slurm.conf").write_text(SLURM_CONF)
    key = tmp_path / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for n, a in NODES.items()))
    network = Network(f"fs{os.getpid()}", "10.19.0.1")
    request.addfinalizer(network.delete)
    machines = {}
    for name, address in NODES.items():
        machines[name] = Machine(name, tmp_path / "logs", setup=boot(name, tmp_path), net=network.join(name, address))
        request.addfinalizer(machines[name].stop)
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": f"{MOUNT}/home",
        "LANG": "C.UTF-8",
        "SLURM_CONF": f"{MOUNT}/slurm.conf",
        "FLOSSSWEEP_SHARED": f"{MOUNT}/shared",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    login = machines["node1"]
    deadline = time.monotonic() + 90
    while True:
        states = login.run(["sinfo", "--noheader", "--Node", "--format=%T"], env, timeout=30).stdout.split()
        if states == ["idle", "idle"]:
            break
        logs = "".join(
            (tmp_path / f"slurmd-{n}.log").read_text()[-1000:] for n in NODES if (tmp_path / f"slurmd-{n}.log").exists()
        )
        assert time.monotonic() < deadline, f"nodes not idle: {states}; {logs}"
        time.sleep(1)
    return login, env, tmp_path


def test_sbatch_runs_a_sweep_on_two_nodes_recorded_in_mlflow_with_its_report(cluster):
    machine, env, root = cluster
    (root / "shared" / f"{SWEEP}.yaml").write_text(yaml.safe_dump(TINY))
    t0 = time.monotonic()
    done = machine.run(
        ["sbatch", "--wait", "--nodes=2", "--cpus-per-task=1", "--output", f"{MOUNT}/job-%j.out"]
        + ["cluster/slurm/flosssweep.sbatch"]
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
    # Ray by `ray symmetric-run`: node1 the head (it runs the driver), node2 joined it
    assert "On head node" in said and f"On worker node. Connecting to Ray cluster at {NODES['node1']}:" in said

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
