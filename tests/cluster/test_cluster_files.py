"""The cluster files: Ray's own validation of both launcher files, what they pin and where they put
results, the environment their commands leave for `ray submit`, and the KubeRay manifests' shape."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from flosssweep.sweep import storage

CLUSTER = ROOT / "cluster"
RAY, MLFLOW, TORCH = version("ray"), version("mlflow"), version("torch").split("+")[0]


def launcher(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def commands(config: dict, *keys: str) -> str:
    return "\n".join(line for key in keys for line in config.get(key, []))


@pytest.mark.parametrize("name", ["config.yaml", "local.yaml"])
def test_launcher_files_pass_rays_own_validation(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = launcher(name)
    validate_config(prepare_config(copy.deepcopy(config)))
    assert "flosssweep" in json.dumps(config["file_mounts"])
    assert "mlflow server" in commands(config, "head_start_ray_commands")


def test_validation_would_catch_a_mistake():
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = launcher("config.yaml")
    config["setup_comands"] = config.pop("setup_commands")
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(config))


@pytest.mark.parametrize("name", ["config.yaml", "local.yaml"])
def test_versions_are_pinned_to_this_machines(name):
    config = launcher(name)
    every = commands(config, "setup_commands", "head_setup_commands", "worker_setup_commands")
    installs = [line for line in every.splitlines() if "pip install" in line]
    assert f"'ray[default,tune]=={RAY}'" in every and f"mlflow=={MLFLOW}" in every
    torch_installs = re.findall(r"pip install --quiet torch==([^\s;]+)( --index-url [^\s;]+)?", every)
    assert torch_installs and {v for v, _ in torch_installs} == {TORCH}, installs
    assert {index for _, index in torch_installs} == {"", " --index-url https://download.pytorch.org/whl/cpu"}
    if name == "config.yaml":
        # the CPU wheel on the CPU head, PyPI's CUDA build on the GPU workers, each before the project
        head, workers = commands(config, "head_setup_commands"), commands(config, "worker_setup_commands")
        assert "whl/cpu" in head and "torch==" in workers and "whl/cpu" not in workers
        for part in (head, workers):
            assert part.index("torch==") < part.index("-e ~/flosssweep")
        docker = config["docker"]
        assert docker["image"] == f"rayproject/ray:{RAY}-py311-gpu"
        assert docker["head_image"] == f"rayproject/ray:{RAY}-py311-cpu"


def test_dockerfile_builds_on_the_same_ray_gpu_image_with_the_project():
    text = (CLUSTER / "Dockerfile").read_text()
    assert re.search(rf"^FROM rayproject/ray:{re.escape(RAY)}-py311-gpu$", text, re.M)
    assert f"torch=={TORCH}" in text and f"mlflow=={MLFLOW}" in text and f"ray[default,tune]=={RAY}" in text
    assert "pip install --no-cache-dir -e /home/ray/flosssweep" in text
    assert ".venv" in (ROOT / ".dockerignore").read_text()


def bashrc_after_setup(config: dict, home: Path) -> dict[str, str]:
    """Run the setup commands that only write the home directory, then read the environment a
    login shell (what `ray submit` runs in) gets from ~/.bashrc."""
    (home / "venv" / "bin").mkdir(parents=True)
    (home / "venv" / "bin" / "activate").write_text("")
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    for line in config["setup_commands"]:
        if "pip" not in line and "venv" not in line.split("||")[0]:
            subprocess.run(["bash", "-c", line], env=env, check=True, timeout=30)
    shown = subprocess.run(
        ["bash", "-c", "source ~/.bashrc; env"], env=env, capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)


def test_aws_storage_is_the_bucket_named_on_one_edit_line(tmp_path):
    config = launcher("config.yaml")
    named = [
        line
        for line in (CLUSTER / "config.yaml").read_text().splitlines()
        if "YOUR-BUCKET" in line and not line.lstrip().startswith("#")
    ]
    assert len(named) == 1 and "# EDIT" in named[0], named
    env = bashrc_after_setup(config, tmp_path)
    assert env["FLOSSSWEEP_STORAGE_PATH"] == "s3://YOUR-BUCKET/ray"
    assert storage.is_object_store(env["FLOSSSWEEP_STORAGE_PATH"])
    assert env["RAY_AUTH_MODE"] == "token"
    assert env["FLOSSSWEEP_MLFLOW_COPY"] == "s3://YOUR-BUCKET/mlflow/mlflow.db"
    # the nodes may write the bucket: both node types carry a profile the IAM script creates
    made = (CLUSTER / "aws-iam.sh").read_text()
    for node_type in config["available_node_types"].values():
        profile = node_type["node_config"]["IamInstanceProfile"]["Name"]
        assert f" {profile}" in made.split("for name in", 1)[1].splitlines()[0]
    subprocess.run(["bash", "-n", str(CLUSTER / "aws-iam.sh")], check=True)


def test_local_storage_is_the_nfs_mount_every_node_makes(tmp_path):
    config = launcher("local.yaml")
    env = bashrc_after_setup(config, tmp_path)
    mount = re.search(r"mountpoint -q (\S+)", commands(config, "initialization_commands")).group(1)
    assert env["FLOSSSWEEP_STORAGE_PATH"].startswith(mount + "/")
    assert env["RAY_AUTH_MODE"] == "token"


@pytest.mark.parametrize("name", ["config.yaml", "local.yaml"])
def test_ray_token_made_on_the_head_and_copied_to_workers(name):
    config = launcher(name)
    assert "ray get-auth-token --generate" in commands(config, "head_setup_commands")
    assert config["cluster_synced_files"] == ["~/.ray/auth_token"]
    head = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    workers = [c for c in config["worker_start_ray_commands"] if "ray start" in c]
    assert head and workers and all("RAY_AUTH_MODE=token ray start" in c for c in head + workers)


@pytest.mark.parametrize("name", ["config.yaml", "local.yaml"])
def test_mlflow_on_localhost_with_its_database_kept_and_restored(name):
    start = commands(launcher(name), "head_start_ray_commands")
    server = next(line for line in start.splitlines() if "mlflow server" in line)
    assert "--host 127.0.0.1" in server and "--artifacts-destination" in server
    destination = re.search(r"--artifacts-destination (\S+)", server).group(1)
    assert destination.startswith("s3://") if name == "config.yaml" else destination.startswith("/mnt/")
    assert start.index("flosssweep.tracking.backup restore") < start.index("mlflow server")
    assert "flosssweep.tracking.backup every" in start
    assert "MLFLOW_TRACKING_URI=http://127.0.0.1:5000" in commands(launcher(name), "head_setup_commands")


def test_nothing_offers_mlflow_on_every_interface_without_its_protection():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    exposed = []
    for name in tracked.split():
        path = ROOT / name
        if path.suffix in {".py", ".md", ".yaml", ".yml", ".sh", ""} and path.is_file():
            text = path.read_text(errors="replace")
            if re.search(r"--host[ =]0\.0\.0\.0", text):
                exposed.append(name)
    assert exposed == ["cluster/kuberay/mlflow.yaml"], exposed
    text = (CLUSTER / "kuberay" / "mlflow.yaml").read_text()
    assert "type: ClusterIP" in text and "kind: NetworkPolicy" in text and "port-forward" in text


# -- KubeRay ----------------------------------------------------------------------------------------
def kuberay() -> tuple[dict, list[dict]]:
    job = yaml.safe_load((CLUSTER / "kuberay" / "rayjob.yaml").read_text())
    others = list(yaml.safe_load_all((CLUSTER / "kuberay" / "mlflow.yaml").read_text()))
    return job, others


def containers(template: dict) -> list[dict]:
    return template["spec"]["containers"]


def test_rayjob_runs_a_sweep_from_the_project_image_on_gpu_workers():
    job, _ = kuberay()
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob" and job["metadata"]["name"]
    spec = job["spec"]
    assert spec["entrypoint"].startswith("python -m flosssweep.run ")
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == RAY and cluster["authOptions"] == {"mode": "token"}
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    [head_container] = containers(head["template"])
    image = head_container["image"]
    assert image.endswith("/flosssweep:0.1.0")
    gpu = [
        g
        for g in cluster["workerGroupSpecs"]
        if any("nvidia.com/gpu" in c["resources"]["limits"] for c in containers(g["template"]))
    ]
    assert gpu and all(g["groupName"] and g["maxReplicas"] >= 1 for g in gpu)
    assert all(c["image"] == image for g in gpu for c in containers(g["template"]))
    env = {e["name"]: e["value"] for e in head_container["env"]}
    assert storage.is_object_store(env["FLOSSSWEEP_STORAGE_PATH"])


def test_the_driver_reaches_the_mlflow_server_of_the_manifest():
    job, others = kuberay()
    env = {
        e["name"]: e["value"] for e in containers(job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"])[0]["env"]
    }
    kinds = {o["kind"]: o for o in others}
    assert {"ServiceAccount", "PersistentVolumeClaim", "Deployment", "Service", "NetworkPolicy"} <= set(kinds)
    service = kinds["Service"]
    port = service["spec"]["ports"][0]["port"]
    assert env["MLFLOW_TRACKING_URI"] == f"http://{service['metadata']['name']}:{port}"
    assert service["spec"]["type"] == "ClusterIP"
    [server] = containers(kinds["Deployment"]["spec"]["template"])
    args = dict(a.lstrip("-").split("=", 1) for a in server["args"])
    assert args["artifacts-destination"].startswith("s3://") and args["port"] == str(port)
    database = args["backend-store-uri"][len("sqlite:///") :]
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    assert Path(database).parent.as_posix() in mounts, "the SQLite file lives on the persistent volume"
    assert service["metadata"]["name"] in args["allowed-hosts"].split(",")
    assert server["image"] == containers(job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"])[0]["image"]
    # every Ray pod runs as the service account that may write the bucket, and is admitted by the policy
    allowed = kinds["NetworkPolicy"]["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    groups = [job["spec"]["rayClusterSpec"]["headGroupSpec"], *job["spec"]["rayClusterSpec"]["workerGroupSpecs"]]
    for group in groups:
        assert group["template"]["spec"]["serviceAccountName"] == kinds["ServiceAccount"]["metadata"]["name"]
        assert allowed.items() <= group["template"]["metadata"]["labels"].items()
