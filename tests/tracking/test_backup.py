"""The SQLite MLflow store saved to a bucket-like destination and restored on a fresh "head": the
runs read back through MLflow (the S3 round trip itself runs in tests/sweep/test_multinode.py)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from conftest import fresh_store

from flosssweep.tracking import backup


def make_store(path, migrated):
    from mlflow import MlflowClient

    client = MlflowClient(fresh_store(migrated, path))
    experiment = client.create_experiment("kept", artifact_location=(path.parent / "artifacts").as_uri())
    run = client.create_run(experiment, tags={"flosssweep.role": "parent"})
    for step in range(3):
        client.log_metric(run.info.run_id, "charts/accuracy", 0.5 + 0.1 * step, step=step)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_saved_store_restores_with_its_runs(tmp_path, migrated_store):
    from mlflow import MlflowClient

    head = tmp_path / "head"
    head.mkdir()
    run_id = make_store(head / "mlflow.db", migrated_store)
    bucket = tmp_path / "bucket" / "mlflow" / "mlflow.db"
    assert backup.save(head / "mlflow.db", str(bucket)) == bucket.stat().st_size > 0

    fresh = tmp_path / "new-head" / "mlflow.db"
    assert backup.restore(fresh, str(bucket)) is True
    client = MlflowClient(f"sqlite:///{fresh}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["flosssweep.role"] == "parent"
    assert [m.value for m in client.get_metric_history(run_id, "charts/accuracy")] == [0.5, 0.6, 0.7]
    assert backup.restore(fresh, str(bucket)) is False, "an existing store is never overwritten"


def test_snapshot_is_consistent_while_a_writer_holds_a_transaction(tmp_path):
    """MLflow keeps writing during a save: the copy has every committed row and none in flight,
    even those still only in the write-ahead log (a plain file copy would miss them all)."""
    database = tmp_path / "live.db"
    writer = sqlite3.connect(database)
    assert writer.execute("pragma journal_mode=wal").fetchone() == ("wal",)
    writer.execute("create table t (x integer)")
    writer.executemany("insert into t values (?)", [(i,) for i in range(100)])
    writer.commit()
    writer.execute("insert into t values (-1)")  # open, uncommitted
    copy = tmp_path / "copy.db"
    backup.save(database, str(copy))
    writer.rollback()
    writer.close()
    rows = sqlite3.connect(copy).execute("select count(*), min(x) from t").fetchone()
    assert rows == (100, 0)


def test_restore_without_a_copy_starts_a_new_store_and_bad_input_is_one_line(tmp_path):
    command = [sys.executable, "-m", "flosssweep.tracking.backup"]
    fresh = tmp_path / "mlflow.db"
    result = subprocess.run(
        command + ["restore", str(fresh), str(tmp_path / "none" / "mlflow.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "a new store" in result.stdout and not fresh.exists()
    result = subprocess.run(
        command + ["save", str(fresh), str(tmp_path / "copy.db")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and str(fresh) in result.stderr
    assert "Traceback" not in result.stderr
