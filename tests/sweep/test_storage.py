"""Storage path resolution, the single-node side of the reachability check (the multi-node side, with
nodes that cannot see the driver's disk, is in test_multinode.py), and a storage disk that fills."""

from __future__ import annotations

import copy
import subprocess

import pytest
from conftest import fill, sweep_environment
from test_driver import TINY_BASE, runs_of, sweep_command, write_sweep

from flosssweep import names
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


# -- a storage disk that fills during a sweep --------------------------------------------------------------
def test_a_filled_storage_disk_is_full_and_others_are_not(small_disk, tmp_path):
    disk = small_disk("storage", size="4m")
    assert not storage.full(str(disk / "ray")), "an empty 4 MiB disk has room for a checkpoint"
    fill(disk)
    assert storage.full(str(disk / "ray" / "not-made-yet")) and storage.full(f"file://{disk}")
    assert not storage.full(str(tmp_path)) and not storage.full("s3://bucket/ray")


@pytest.mark.slow
@pytest.mark.parametrize("tracking_too", [False, True], ids=["storage", "storage-and-mlflow"])
def test_a_storage_disk_that_fills_mid_sweep_stops_it_in_one_line_and_resume_records_each_trial_once(
    small_disk, tmp_path, tracking_too
):
    """Before: every trial failed three times into the full disk (21 tracebacks), and the sweep ended
    with "EOFError: Ran out of input" from an empty error file. Now the first failure stops the sweep:
    one line naming the disk, runs closed; with room made, --resume records every trial once. With
    MLflow's SQLite store on the same disk (the default: both in the working directory), whichever
    fills first is named, and the runs that cannot be closed are closed by the resumed launch."""
    disk = small_disk("storage", size="64m", inodes=10000)
    base = copy.deepcopy(TINY_BASE)
    base["train"].update({"epochs": 600, "report_every": 50})
    path = write_sweep(
        tmp_path, "filled", base=base, max_concurrent=1, checkpoint_seconds=1, space={"task.delay": {"grid": [2, 4]}}
    )
    uri = f"sqlite:///{disk if tracking_too else tmp_path}/mlflow.db"
    args = [str(path), "--tracking-uri", uri, "--storage-path", str(disk / "ray"), "--address", "local"]
    env = sweep_environment(tmp_path)
    driver = subprocess.Popen(
        sweep_command(*args, "--num-cpus", "2"),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    try:
        for line in driver.stdout:
            lines.append(line)
            if line.startswith("started"):
                break
        fill(disk)
        out, err = driver.communicate(timeout=300)
    finally:
        driver.kill()  # the disk is unmounted after the test: nothing of the sweep may hold it
    out = "".join(lines) + out
    assert driver.returncode == 1, out + err
    assert "Traceback" not in out + err and "(run_trial pid=" not in out + err, out + err
    said = err.strip().splitlines()
    assert len(said) == 1 and said[0].endswith("(make room, then --resume)"), err
    if tracking_too:
        assert " is full (no space left on the device); the sweep was stopped" in said[0], err
    else:
        assert said == [
            f"flosssweep.run: error: the disk of the storage path {disk / 'ray'} is full (no space left on the "
            "device); the sweep was stopped and its runs closed (make room, then --resume)"
        ], err
        parents, children = runs_of(uri, "filled")
        assert [p.info.status for p in parents] == ["FAILED"]
        assert "is full" in parents[0].data.tags[names.END_REASON]
        assert all(c.info.status != "RUNNING" for c in children)

    (disk / "filler").unlink()
    again = subprocess.run(
        sweep_command(*args, "--resume", "--no-report"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if tracking_too and again.returncode == 2:
        # Ray's own copy of its experiment state to the full disk may be cut short; the launch is then
        # refused as any unreadable state is, and --close ends it with nothing left RUNNING
        assert "experiment state" in again.stderr and len(again.stderr.strip().splitlines()) == 1, again.stderr
        closed = subprocess.run(sweep_command(*args, "--close"), cwd=tmp_path, env=env, capture_output=True, text=True)
        assert closed.returncode == 0, closed.stdout + closed.stderr
        parents, children = runs_of(uri, "filled")
        assert all(r.info.status != "RUNNING" for r in parents + children)
        return
    assert again.returncode == 0, again.stdout + again.stderr
    parents, children = runs_of(uri, "filled")
    recorded = [c for c in children if c.data.tags.get(names.RECORDED) == "true"]
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert sorted(c.data.params["task.delay"] for c in recorded) == ["2", "4"], "each trial recorded once"
