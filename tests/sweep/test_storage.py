"""Storage path resolution and the single-node side of the reachability check (the multi-node
side, with nodes that cannot see the driver's disk, is in test_multinode.py)."""

from __future__ import annotations

import pytest

from flosssweep.sweep import storage


def test_flag_then_environment_then_default(tmp_path, monkeypatch):
    monkeypatch.delenv(storage.STORAGE_ENV, raising=False)
    assert storage.resolve(None, tmp_path) == str(tmp_path.resolve() / "ray_results")
    assert storage.resolve("runs/ray", tmp_path) == str(tmp_path.resolve() / "runs" / "ray")
    monkeypatch.setenv(storage.STORAGE_ENV, "s3://lab-bucket/flosssweep/")
    assert storage.resolve(None, tmp_path) == "s3://lab-bucket/flosssweep"
    assert storage.resolve("/mnt/nfs/ray", tmp_path) == "/mnt/nfs/ray"


@pytest.mark.parametrize("path, expected", [
    ("s3://b/p", True), ("gs://b/p", True), ("abfs://c@a.dfs.core.windows.net/p", True), ("S3://B/p", True),
    ("/mnt/nfs/ray", False), ("file:///mnt/nfs/ray", False), ("ray_results", False),
])
def test_object_stores(path, expected):
    assert storage.is_object_store(path) is expected


def test_one_node_that_runs_trials_needs_nothing_shared(ray_local, tmp_path):
    storage.check(str(tmp_path / "ray"), {"cpu": 1, "gpu": 0})
    assert not (tmp_path / "ray").exists(), "nothing probed, nothing written"


def test_one_node_that_cannot_run_a_trial_refuses_a_local_path(ray_local, tmp_path):
    """Like a head with CPU: 0 before its autoscaler adds workers: they will not see this disk."""
    with pytest.raises(storage.StorageUnreachable) as refused:
        storage.check(str(tmp_path / "ray"), {"cpu": 1, "gpu": 1})
    message = str(refused.value)
    assert message.startswith("--storage-path: expected an object-store URI") and "\n" not in message
    assert str(tmp_path / "ray") in message
    storage.check("s3://bucket/ray", {"cpu": 1, "gpu": 1})  # an object store is every node's
