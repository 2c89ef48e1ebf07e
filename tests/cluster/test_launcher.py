"""cluster/local.yaml through Ray's own cluster launcher: `ray up`, `ray submit`, `ray exec`, `ray down`
from a "laptop", against three machines on one box.

Each machine (head, worker1, worker2) is a process tree in its own network, PID, mount and UTS
namespaces with its own sshd, home directory (/root), /tmp and /run; the network namespaces are
joined by a bridge in the laptop's network namespace (10.18.0.0/24, which exists nowhere else). A
folder bind-mounted at /mnt/flosssweep on every machine stands in for the NFS export, and a wheel
folder built beforehand from the package index (tests/cluster/wheelhouse.py) for the index the
machines cannot reach. The test changes only EDIT values of local.yaml: the addresses, the user and
key, the cluster name, and pip's wheel folder on the environment line.

Everything the test starts lives in those namespaces and is ended by killing each machine's PID 1
and deleting the network namespaces, in a finally, whatever happened. Phase timings are printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from machines import Machine, Network, argv, fresh_home, netns_refusal, refusal, report_table
from wheelhouse import build, default_dir

pytestmark = pytest.mark.slow

SUBNET = "10.18.0"
LAPTOP_IP = f"{SUBNET}.1"
HEAD_IP, WORKER_IPS = f"{SUBNET}.10", [f"{SUBNET}.11", f"{SUBNET}.12"]
SWEEP = "launcher"
DELAYS = [2, 4]
MODES = ["none", "pre"]
TRIALS = len(DELAYS) * len(MODES)
TINY = {
    "name": SWEEP,
    "max_concurrent": 4,
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
SSHD_CONFIG = """ListenAddress {ip}
HostKey /mnt/machine/host_key
AuthorizedKeysFile /mnt/machine/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxSessions 50
MaxStartups 50
PidFile /run/sshd.pid
Subsystem sftp /usr/lib/openssh/sftp-server
"""


def edited_local_yaml(key: Path, name: str) -> str:
    """local.yaml with this test's values on its EDIT lines, and nothing else changed."""
    original = (ROOT / "cluster" / "local.yaml").read_text()
    text = original.replace("192.168.0.10", HEAD_IP)
    for old, new in zip(["192.168.0.11", "192.168.0.12"], WORKER_IPS):
        text = text.replace(f"- {old}", f"- {new}")
    text = text.replace("cluster_name: flosssweep-local", f"cluster_name: {name}")
    text = text.replace("ssh_user: researcher", "ssh_user: root")
    text = text.replace("ssh_private_key: ~/.ssh/id_ed25519", f"ssh_private_key: {key}")
    text = text.replace(
        "echo 'export FLOSSSWEEP_STORAGE_PATH=",
        "echo 'export PIP_NO_INDEX=1 PIP_FIND_LINKS=/mnt/wheelhouse FLOSSSWEEP_STORAGE_PATH=",
    )
    before, after = original.splitlines(), text.splitlines()
    assert len(before) == len(after)
    # each changed line is marked EDIT, or is one of the lines right below such a mark (a worker IP
    # under `worker_ips: # EDIT`, a folded command under its `# EDIT:` comment)
    for number, (old, new) in enumerate(zip(before, after)):
        if old != new:
            assert any("EDIT" in line for line in before[max(0, number - 4) : number + 1]), old
    return text


class Lab:
    """The laptop's network namespace with the bridge, and the three machines."""

    def __init__(self, root: Path, wheels: Path, timings: dict):
        self.root, self.wheels, self.timings = root, wheels, timings
        self.logs = root / "logs"
        self.logs.mkdir()
        self.shared = root / "nfs"
        self.shared.mkdir()
        self.network: Network | None = None
        self.machines: dict[str, Machine] = {}
        self.key = root / "id_ed25519"
        self.laptop_home = fresh_home(root / "laptop")
        self.env = {
            "HOME": str(self.laptop_home),
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "LANG": "C.UTF-8",
            "RAY_USAGE_STATS_ENABLED": "0",
            # said once, so that ray up does not print its notice; local.yaml turns v2 off itself
            "RAY_UP_enable_autoscaler_v2": "1",
        }
        self.cluster_name = f"fs-launcher-{os.getpid()}"

    @property
    def lan(self) -> str:
        return self.network.lan

    def build(self) -> None:
        t0 = time.monotonic()
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)]
        subprocess.run(keygen, check=True, capture_output=True)
        self.network = Network(f"fs{os.getpid()}", LAPTOP_IP)
        for name, address in zip(["head", "worker1", "worker2"], [HEAD_IP, *WORKER_IPS]):
            self.machines[name] = self.machine(name, self.network.join(name, address), address)
        self.timings["machines up"] = time.monotonic() - t0

    def machine(self, name: str, ns: str, address: str) -> Machine:
        """Own home at /root, own /tmp, /run and /dev/shm, the shared folder at /mnt/flosssweep, the
        wheels at /mnt/wheelhouse, no pip configuration of this box; sshd on its address only."""
        own = self.root / name
        (own / "home").parent.mkdir(parents=True, exist_ok=True)
        fresh_home(own / "home")
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(own / "host_key")]
        subprocess.run(keygen, check=True, capture_output=True)
        shutil.copy(f"{self.key}.pub", own / "authorized_keys")
        (own / "sshd_config").write_text(SSHD_CONFIG.format(ip=address))
        setup = f"""
mount -t tmpfs tmpfs /mnt
mkdir /mnt/flosssweep /mnt/wheelhouse /mnt/machine
mount --bind {self.shared} /mnt/flosssweep
mount --bind {self.wheels} /mnt/wheelhouse
mount --bind {own} /mnt/machine
mount --bind {own}/home /root
for d in /tmp /run /dev/shm; do mount -t tmpfs tmpfs $d; done
mkdir -p /run/sshd
if [ -d /etc/xdg/pip ]; then mount -t tmpfs tmpfs /etc/xdg/pip; fi
/usr/sbin/sshd -f /mnt/machine/sshd_config -E /mnt/machine/sshd.log
"""
        return Machine(name, self.logs, setup=setup, net=ns)

    def laptop(self, *command: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
        """A command on the laptop: this box's files, the laptop's network namespace."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.lan, *command],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        name = Path(command[0]).name + "-" + (command[1] if len(command) > 1 else "")
        with open(self.logs / "laptop.log", "a") as out:
            out.write(f"$ {' '.join(command)}\n{done.stdout}\n{done.stderr}\n(exit {done.returncode})\n")
        if check:
            said = f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
            assert done.returncode == 0, f"{name} exited {done.returncode}:\n{said}"
        return done

    def ray(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return self.laptop(str(Path(sys.executable).parent / "ray"), *args, **kwargs)

    def ssh(self, address: str, command: str, **kwargs) -> subprocess.CompletedProcess:
        options = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"]
        return self.laptop("ssh", "-q", "-i", str(self.key), *options, f"root@{address}", command, **kwargs)

    def ray_processes(self, name: str) -> list[str]:
        found = []
        for pid in self.machines[name].processes():
            words = [Path(a).name for a in argv(pid)]
            if words[:1] in (["raylet"], ["gcs_server"]) or any(w.startswith("dashboard_agent") for w in words):
                found.append(words[0])
        return found

    def ray_processes_after(self, name: str, seconds: float) -> list[str]:
        """The machine's Ray processes once they are gone, or those left after `seconds`."""
        deadline = time.monotonic() + seconds
        while (found := self.ray_processes(name)) and time.monotonic() < deadline:
            time.sleep(1)
        return found

    def stop(self) -> None:
        for machine in self.machines.values():
            machine.stop()
        if self.network:  # with the laptop's leftovers: SSH connections Ray keeps open a while, a tunnel
            self.network.delete()
        for suffix in ("state", "lock"):  # the local provider's record of the cluster, on the laptop
            Path(f"/tmp/cluster-{self.cluster_name}.{suffix}").unlink(missing_ok=True)
        for cached in Path("/tmp").glob("ray-config-*"):  # `ray exec`'s cache of this cluster's config
            with contextlib.suppress(OSError):
                if self.cluster_name in cached.read_text():
                    cached.unlink()


@pytest.fixture
def lab(tmp_path, request):
    why = refusal("ssh", "ssh-keygen", "rsync", "/usr/sbin/sshd") or netns_refusal(f"fs{os.getpid()}")
    if why:
        pytest.skip(why)
    wheels = default_dir()  # after the checks above: no download where the test cannot run anyway
    why = build(wheels)
    if why:
        pytest.skip(f"no wheel folder for the machines at {wheels}: {why}")
    timings: dict[str, float] = {}
    made = Lab(tmp_path, wheels, timings)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    try:
        made.build()
        yield made
    finally:
        t0 = time.monotonic()
        made.stop()
        timings["stop everything"] = time.monotonic() - t0
        with capture.global_and_fixture_disabled():
            print("\nlauncher phase timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()), flush=True)


def test_ray_up_submit_down_on_three_namespaced_machines(lab):
    config = lab.root / "local.yaml"
    config.write_text(edited_local_yaml(lab.key, lab.cluster_name))
    (lab.shared / f"{SWEEP}.yaml").write_text(yaml.safe_dump(TINY))
    timings = lab.timings

    t0 = time.monotonic()
    up = lab.ray("up", "-y", "--no-config-cache", str(config), timeout=1500)
    timings["ray up (head)"] = time.monotonic() - t0
    assert "autoscaler v2" not in up.stdout.lower() or "RAY_enable_autoscaler_v2=0" in config.read_text()
    t0 = time.monotonic()
    nodes = wait_for_workers(lab, config, timeout=1200)
    timings["workers joined"] = time.monotonic() - t0
    by_ip = {n["ip"]: n for n in nodes}
    assert sorted(by_ip) == sorted([HEAD_IP, *WORKER_IPS]), nodes
    assert by_ip[HEAD_IP]["cpu"] == 0, "trials may run on the head"
    assert all(by_ip[ip]["cpu"] >= 1 for ip in WORKER_IPS)

    t0 = time.monotonic()
    submitted = lab.ray("submit", str(config), "flosssweep/run.py", f"/mnt/flosssweep/{SWEEP}.yaml", timeout=1200)
    timings["ray submit (sweep)"] = time.monotonic() - t0
    assert f"{TRIALS}/{TRIALS}" in submitted.stdout or "finished" in submitted.stdout.lower(), submitted.stdout[-3000:]

    # every trial ran in one of Tune's trainable actors (reused from trial to trial): all on workers
    actors = probe(lab, config, "actors")
    trainables = [ip for name, ip in actors if "run_trial" in name or "ImplicitFunc" in name]
    assert trainables, actors
    assert set(trainables) <= set(WORKER_IPS), actors

    # MLflow on the head, seen from the laptop through an SSH forward as `ray attach -p` makes it
    t0 = time.monotonic()
    records = through_forward(lab)
    timings["MLflow through the SSH forward"] = time.monotonic() - t0
    assert "<title>" in records["ui"] and "MLflow" in records["ui"]
    children = records["children"]
    assert len(children) == TRIALS, children
    assert sorted((c["delay"], c["mode"]) for c in children) == sorted((str(d), m) for d in DELAYS for m in MODES), (
        children
    )
    assert all(c["recorded"] == "true" and c["status"] == "FINISHED" for c in children), children
    assert len(records["parents"]) == 1

    t0 = time.monotonic()
    # the report into a file on the NFS: `ray exec`'s terminal adds its own lines to what it prints
    report = f"python -m flosssweep.report --experiment {SWEEP} --no-log --seed 0 > /mnt/flosssweep/report.txt"
    lab.ray("exec", str(config), report)
    on_cluster = (lab.shared / "report.txt").read_text()
    lab.ray("exec", str(config), "python -m flosssweep.tracking.backup save ~/mlflow.db $FLOSSSWEEP_MLFLOW_COPY")
    lab.ray("exec", str(config), "bash ~/flosssweep/cluster/service.sh stop mlflow-backup mlflow-server")
    timings["report and save on the head"] = time.monotonic() - t0

    t0 = time.monotonic()
    lab.ray("down", "-y", str(config), timeout=600)
    timings["ray down"] = time.monotonic() - t0
    # `ray stop` returns after its grace period with a process still tearing down (a loaded CI machine
    # showed gcs_server "terminating" at that moment): what counts is that it goes, not that it is gone
    assert lab.ray_processes_after("head", 60) == [], "ray down left Ray running on the head"
    left = {name: lab.ray_processes(name) for name in ("worker1", "worker2")}
    # what docs/CLUSTER.md says `ray down` leaves, and its line that stops it
    for address in WORKER_IPS:
        lab.ssh(address, "~/venv/bin/ray stop")
    assert all(lab.ray_processes_after(name, 60) == [] for name in ("worker1", "worker2")), "ray stop left Ray"
    assert not [p for p in lab.machines["head"].processes() if "mlflow" in " ".join(argv(p))]
    print(f"\nleft running on the workers by ray down: {left}")

    # the laptop: the database copy from the NFS, the artifacts from there too
    t0 = time.monotonic()
    laptop_report = report_on_laptop(lab)
    timings["restore and report on the laptop"] = time.monotonic() - t0
    table = report_table(on_cluster, SWEEP)
    assert report_table(laptop_report, SWEEP) == table, f"cluster:\n{on_cluster}\nlaptop:\n{laptop_report}"
    assert f"{TRIALS * TINY['base']['ensemble']} realization(s)" in table, table


PROBE = """
import json, sys
import ray
from ray.util.state import list_actors, list_nodes

ray.init(logging_level=40)
ips = {n.node_id: n.node_ip for n in list_nodes(filters=[("state", "=", "ALIVE")])}
if sys.argv[1] == "nodes":
    found = [{"ip": n["NodeManagerAddress"], "cpu": n["Resources"].get("CPU", 0)} for n in ray.nodes() if n["Alive"]]
else:  # every actor that ever ran, with the address of its node
    found = [[a.class_name, ips.get(a.node_id)] for a in list_actors(detail=True, limit=10000)]
print("FOUND", json.dumps(found))
"""


def probe(lab: Lab, config: Path, what: str) -> list:
    """Ask the cluster, from its head (`ray exec`), for its live nodes or its actors."""
    (lab.shared / "probe.py").write_text(PROBE)
    done = lab.ray("exec", str(config), f"python /mnt/flosssweep/probe.py {what}", check=False, timeout=120)
    found = [line for line in done.stdout.splitlines() if line.startswith("FOUND ")]
    return json.loads(found[-1][6:]) if found else []


def wait_for_workers(lab: Lab, config: Path, timeout: float) -> list[dict]:
    """The head's autoscaler starts the workers after `ray up` returns: wait for both to join."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = probe(lab, config, "nodes")
        if len(nodes) == 3:
            return nodes
        if time.monotonic() > deadline:
            monitor = lab.ray("exec", str(config), "tail -n 40 /tmp/ray/session_latest/logs/monitor.*", check=False)
            raise AssertionError(f"workers did not join: {nodes}\n{monitor.stdout[-4000:]}")
        time.sleep(15)


FORWARD_CHECK = """
import json, sys, urllib.request
from mlflow import MlflowClient
url = sys.argv[1]
ui = urllib.request.urlopen(url + "/", timeout=30).read().decode()
client = MlflowClient(url)
experiment = client.get_experiment_by_name(sys.argv[2])
runs = client.search_runs([experiment.experiment_id], max_results=1000)
role = lambda r: r.data.tags.get("flosssweep.role")
print("RECORDS", json.dumps({
    "ui": ui[:2000],
    "parents": [r.info.run_id for r in runs if role(r) == "parent"],
    "children": [
        {"delay": r.data.params.get("task.delay"), "mode": r.data.params.get("floss.mode"),
         "recorded": r.data.tags.get("flosssweep.recorded"), "status": r.info.status}
        for r in runs if role(r) == "child"
    ],
}))
"""


def through_forward(lab: Lab) -> dict:
    """`ssh -L` from the laptop to MLflow on the head's 127.0.0.1:5000; read it from the laptop."""
    port = 15000
    options = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"]
    forward = ["ssh", "-N", "-i", str(lab.key), *options, "-o", "ExitOnForwardFailure=yes"]
    forward += ["-L", f"127.0.0.1:{port}:127.0.0.1:5000", f"root@{HEAD_IP}"]
    tunnel = subprocess.Popen(
        ["ip", "netns", "exec", lab.lan, *forward],
        env=lab.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        script = lab.root / "forward_check.py"
        script.write_text(FORWARD_CHECK)
        deadline = time.monotonic() + 60
        while True:
            done = lab.laptop(sys.executable, str(script), f"http://127.0.0.1:{port}", SWEEP, check=False)
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RECORDS "))[8:])
    finally:
        tunnel.kill()
        tunnel.wait(timeout=30)


def report_on_laptop(lab: Lab) -> str:
    """docs/CLUSTER.md's laptop route: restore the database copy, serve it with the artifacts, report."""
    laptop = lab.root / "laptop-store"
    database = laptop / "mlflow.db"
    copy = lab.shared / "mlflow" / "mlflow.db"
    restored = lab.laptop(sys.executable, "-m", "flosssweep.tracking.backup", "restore", str(database), str(copy))
    assert "restored" in restored.stdout, restored.stdout
    port = 15001
    server = subprocess.Popen(
        ["ip", "netns", "exec", lab.lan, sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1"]
        + ["--port", str(port), "--backend-store-uri", f"sqlite:///{database}"]
        + ["--artifacts-destination", str(lab.shared / "mlartifacts"), "--workers", "1"],
        env=lab.env,
        cwd=laptop,
        stdout=open(lab.logs / "laptop-mlflow.log", "w"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        uri = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            done = lab.laptop(
                sys.executable, "-m", "flosssweep.report", "--tracking-uri", uri, "--experiment", SWEEP,
                "--no-log", "--seed", "0", check=False, timeout=300,
            )  # fmt: skip
            if done.returncode == 0 or time.monotonic() > deadline or server.poll() is not None:
                break
            time.sleep(2)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout
    finally:
        os.killpg(server.pid, 9)
        server.wait(timeout=30)
