"""Where a sweep keeps its trial checkpoints: a storage path that every node of the Ray cluster reaches.

A trial reports its checkpoints from whatever node runs it, and a retried or resumed trial reads
them back from another one; so on a cluster of several nodes the storage path must be either an
object-store URI or a directory that every node mounts (NFS). The driver checks this before it
launches anything: a local directory is probed by writing a file and having a task on each other
node read it and write one back.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from flosssweep.checks import PROBE_BYTES

STORAGE_ENV = "FLOSSSWEEP_STORAGE_PATH"  # set by the cluster files, so `ray submit` needs no flag
DEFAULT_STORAGE = "ray_results"
# pyarrow filesystems that every node reaches the same way, whatever its disk
OBJECT_STORES = ("s3://", "gs://", "gcs://", "abfs://", "abfss://", "az://", "hdfs://", "viewfs://")
PROBE_SECONDS = 30.0  # a node that has not answered by then counts as one that cannot see the path
EXPECTED = "expected an object-store URI (s3://BUCKET/PATH, gs://, abfs://) or a directory that every node mounts (NFS)"


class StorageUnreachable(ValueError):
    """Some node of the cluster cannot use the storage path; the message says which and what to do."""


def resolve(flag: str | None, launch_dir: Path) -> str:
    """`--storage-path`, else $FLOSSSWEEP_STORAGE_PATH, else ./ray_results; URIs as given, local
    paths absolute (Ray and every trial see them from directories of their own)."""
    path = flag or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE
    if "://" in path:
        return path.rstrip("/")
    return str((launch_dir / path).expanduser().resolve())


def is_object_store(path: str) -> bool:
    return path.lower().startswith(OBJECT_STORES)


def full(storage: str) -> bool:
    """A local storage path whose disk has less room left than one checkpoint needs (about a
    records file); an object store, or a path that cannot be asked, is never called full."""
    if is_object_store(storage):
        return False
    path = Path(storage.removeprefix("file://"))
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free < PROBE_BYTES
        except OSError:
            continue
    return False


def check(storage: str, probe_seconds: float = PROBE_SECONDS) -> None:
    """Raise StorageUnreachable unless every node that may run a trial can read and write `storage`.
    Needs a connected Ray."""
    import ray

    if is_object_store(storage):
        return
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if not needs_shared(nodes):
        return
    if storage.startswith("file://"):
        storage = storage[len("file://") :]
    if len(nodes) == 1:
        raise StorageUnreachable(
            f"--storage-path: {EXPECTED}; {storage} is a directory on this node, which has no CPU for "
            f"trials, and the nodes that will run them are not up yet to check that they mount it"
        )
    missing = _probe(Path(storage), nodes, probe_seconds)
    if missing:
        raise StorageUnreachable(
            f"--storage-path: {EXPECTED}; {storage} cannot be read and written from {len(missing)} of the "
            f"{len(nodes)} nodes of this Ray cluster ({', '.join(missing)})"
        )


def needs_shared(nodes: list[dict]) -> bool:
    """Whether trials may run on a node other than this one: a cluster of several nodes, or a lone
    node without CPUs (a head kept for the driver, waiting for an autoscaler's workers)."""
    return len(nodes) > 1 or any(node.get("Resources", {}).get("CPU", 0) == 0 for node in nodes)


def _answer_probe(path: str, token: str, node_id: str) -> bool:
    """On one node: the probe file reads back as written, and a reply can be written beside it."""
    try:
        if Path(path).read_text() != token:
            return False
        Path(f"{path}.{node_id}").write_text(token)
        return True
    except OSError:
        return False


def _probe(directory: Path, nodes: list[dict], seconds: float) -> list[str]:
    """The nodes (id prefix @ address) that cannot read the driver's file in `directory` or whose
    reply the driver cannot read back."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex
    made = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".flosssweep-probe-{token}"
        probe.write_text(token)
    except OSError as err:
        raise StorageUnreachable(
            f"--storage-path: cannot write {directory} on this node: {err.strerror or err}"
        ) from None
    here = ray.get_runtime_context().get_node_id()
    answered = {here} if _answer_probe(str(probe), token, here) else set()  # the driver's node, without a task
    answer = ray.remote(num_cpus=0, max_retries=0)(_answer_probe)
    pending = {}
    for node in [n for n in nodes if n["NodeID"] != here]:
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        pending[answer.options(scheduling_strategy=strategy).remote(str(probe), token, node["NodeID"])] = node
    ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=seconds) if pending else ([], [])
    for ref in ready:
        node = pending[ref]
        try:
            ok = ray.get(ref)
        except ray.exceptions.RayError:
            ok = False
        reply = Path(f"{probe}.{node['NodeID']}")
        if ok and reply.is_file() and reply.read_text() == token:
            answered.add(node["NodeID"])
        reply.unlink(missing_ok=True)
    Path(f"{probe}.{here}").unlink(missing_ok=True)
    probe.unlink(missing_ok=True)
    if made:
        directory.rmdir()  # leave no trace of a refused launch
    return [
        f"{node['NodeID'][:8]}@{node.get('NodeManagerAddress', '?')}"
        for node in nodes
        if node["NodeID"] not in answered
    ]
