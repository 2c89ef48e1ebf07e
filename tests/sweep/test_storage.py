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


@pytest.mark.parametrize(
    "path, expected",
    [
        ("s3://b/p", True),
        ("gs://b/p", True),
        ("abfs://c@a.dfs.core.windows.net/p", True),
        ("S3://B/p", True),
        ("/mnt/nfs/ray", False),
        ("file:///mnt/nfs/ray", False),
        ("ray_results", False),
    ],
)
def test_object_stores(path, expected):
    assert storage.is_object_store(path) is expected


@pytest.mark.slow
def test_one_node_with_cpus_needs_nothing_shared(ray_local, tmp_path):
    storage.check(str(tmp_path / "ray"))
    assert not (tmp_path / "ray").exists(), "nothing probed, nothing written"


@pytest.mark.slow
def test_which_clusters_need_shared_storage(ray_local):
    import ray

    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert len(nodes) == 1 and not storage.needs_shared(nodes)
    # a second node, or a lone head kept free of trials (CPU: 0, as the cluster files start it)
    assert storage.needs_shared(nodes + [dict(nodes[0], NodeID="f" * 56)])
    assert storage.needs_shared([dict(nodes[0], Resources={**nodes[0]["Resources"], "CPU": 0.0})])
    storage.check("s3://bucket/ray")  # an object store is every node's: nothing to probe
