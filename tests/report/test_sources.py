"""The report under bad input and faults: one line and the right exit status, in seconds; and every
realization counted once, however many times its records are read.

Test names: `test_bad_input_*` are inputs a user may get wrong, `test_fault_*` are things that go
wrong around the report (records read twice, launches that never started a trial)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import in_process

from flosssweep import records, report


def rows(sweep="dup", delays=(2, 4), members=4, wins=None, trial="t"):
    """A sweep's records: per delay one configuration, `members` realizations; the first
    wins[delay] succeed (default: all)."""
    out = []
    for delay in delays:
        for m in range(members):
            ok = m < (wins or {}).get(delay, members)
            out.append(
                {
                    "sweep": sweep,
                    "trial_id": f"{trial}{delay}",
                    "member": m,
                    "seed": 0,
                    "config_key": f"key{delay}",
                    "delay": delay,
                    "success": ok,
                    "status": "ok",
                    "final_loss": 0.01 if ok else 0.7,
                    "train_seconds": 1.0 + m,
                }
            )
    return out


def report_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return in_process(report.main, *args, cwd=cwd)


def report_process(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flosssweep.report", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def refused(result: subprocess.CompletedProcess, code: int, first: str) -> None:
    """Exit `code`, and stderr one line starting with the report's prefix and `first`."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith(f"flosssweep.report: error: {first}"), result.stderr
    assert "Traceback" not in result.stdout + result.stderr and "usage:" not in result.stderr


def counts(out: str) -> list[str]:
    return [
        word
        for line in out.splitlines()
        for word in line.split()
        if word.count("/") == 1 and word.replace("/", "").isdigit()
    ]


# -- nothing counted twice -------------------------------------------------------------------------
def test_fault_same_file_twice_and_overlapping_paths_count_once(tmp_path, capsys):
    path = records.write(rows(wins={2: 3, 4: 1}), tmp_path / "a" / "r.parquet")
    once = report.main(["--from-parquet", str(path), "--n-boot", "0"])
    single = capsys.readouterr().out
    assert once == 0 and counts(single) == ["3/4", "1/4"]
    # the same file twice, its directory and the file, a relative spelling of it
    for args in (
        [str(path), str(path)],
        [str(tmp_path / "a"), str(path)],
        [str(tmp_path / "a"), str(tmp_path / "a" / ".." / "a" / "r.parquet")],
    ):
        assert report.main(["--from-parquet", *args, "--n-boot", "0"]) == 0
        assert capsys.readouterr().out == single, args


def test_fault_a_replayed_trial_in_a_ray_folder_counts_once(tmp_path, capsys):
    """After a resume, Ray's folder holds a trial's finished checkpoint twice: the same records
    (under Optuna with a new trial id) in two checkpoint directories."""
    first = rows(wins={2: 2, 4: 0}, trial="old")
    records.write(first, tmp_path / "ray" / "trial_old" / "checkpoint_000003" / "records.parquet")
    replay = [{**r, "trial_id": r["trial_id"].replace("old", "new"), "train_seconds": 9.0} for r in first]
    records.write(replay, tmp_path / "ray" / "trial_new" / "checkpoint_000000" / "records.parquet")
    assert report.main(["--from-parquet", str(tmp_path / "ray"), "--n-boot", "0"]) == 0
    captured = capsys.readouterr()
    assert counts(captured.out) == ["2/4", "0/4"]
    assert "8 record row(s) read twice were counted once" in captured.err


def test_bad_input_conflicting_records_are_refused_naming_them(tmp_path):
    records.write(rows(), tmp_path / "a.parquet")
    changed = rows()
    changed[5] = {**changed[5], "success": False}  # delay 4, member 1: another outcome
    records.write(changed, tmp_path / "b.parquet")
    result = report_process("--from-parquet", "a.parquet", "b.parquet", cwd=tmp_path)  # in its own process
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "flosssweep.report: error: conflicting records of one realization "
        "(sweep=dup config_key=key4 seed=0 member=1): success is True in one and False"
    )
    assert "a.parquet" in last and "b.parquet" in last


def test_deduplicate_keeps_distinct_realizations_and_treats_nan_as_equal():
    table = records.to_table(rows() + [{**r, "seed": 1} for r in rows()])  # seed 1: other realizations
    assert records.deduplicate(table) == (table, 0)
    nan = [{**r, "final_loss": float("nan")} for r in rows()]
    deduped, dropped = records.deduplicate(records.to_table(nan + nan))
    assert dropped == 8 and deduped.num_rows == 8


# -- bad input: one line before any work --------------------------------------------------------------
def test_bad_input_success_column_of_strings(tmp_path):
    table = records.to_table(rows()).drop_columns(["success"]).append_column("success", pa.array(["yes"] * 8))
    pq.write_table(table, tmp_path / "s.parquet")
    refused(
        report_cli("--from-parquet", "s.parquet", cwd=tmp_path),
        2,
        f"{tmp_path / 's.parquet'}: column success: expected true/false values, got string",
    )


@pytest.mark.parametrize(
    "out, first",
    [
        ("afile", "--out: expected a directory"),
        ("afile/sub", "--out: expected a directory"),
        ("/proc/flosssweep-report", "--out: cannot write /proc/flosssweep-report"),
    ],
)
def test_bad_input_out_that_cannot_be_written(tmp_path, out, first):
    records.write(rows(), tmp_path / "r.parquet")
    (tmp_path / "afile").write_text("x")
    refused(report_cli("--from-parquet", "r.parquet", "--out", out, cwd=tmp_path), 2, first)


@pytest.mark.parametrize(
    "args, code, first",
    [
        (["--tracking-uri", "http://127.0.0.1:9"], 3, "MLflow tracking server http://127.0.0.1:9 is not reachable"),
        (["--tracking-uri", "foo://nowhere"], 2, "tracking URI foo://nowhere: expected http://"),
        (["--tracking-uri", "sqlite:///notes.db"], 2, "NOTES/notes.db is not an SQLite database"),
        (["--tracking-uri", "sqlite:///missing.db"], 2, "no MLflow tracking store at NOTES/missing.db"),
        (["--threshold", "2"], 2, "--threshold must be in (0, 1]"),
        (["--n-boot", "x"], 2, "argument --n-boot: invalid int value"),
        (["--experiment", "a", "--run", "b"], 2, "argument --run/--launch: not allowed with argument --experiment"),
    ],
)
def test_bad_input_store_and_options_fail_in_seconds(tmp_path, args, code, first):
    (tmp_path / "notes.db").write_text("these are notes, not a database\n")
    started = time.monotonic()
    result = report_cli(*args, cwd=tmp_path)
    assert time.monotonic() - started < 30
    refused(result, code, first.replace("NOTES", str(tmp_path)))


# -- the latest sweep is one that ran ------------------------------------------------------------------
def test_fault_a_launch_without_trials_is_not_the_latest_sweep(tmp_path, capsys, mlflow_uri):
    from mlflow import MlflowClient

    uri = mlflow_uri
    client = MlflowClient(uri)
    experiment = client.create_experiment("ran", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(experiment, tags={"flosssweep.role": "parent", "flosssweep.sweep": "ran"})
    staged = records.write(rows(sweep="ran", wins={2: 1, 4: 0}), tmp_path / "stage" / "records.parquet")
    for _ in range(2):  # the same records under two child runs (a re-created trial): counted once
        child = client.create_run(
            experiment, tags={"flosssweep.role": "child", "mlflow.parentRunId": parent.info.run_id}
        )
        client.log_artifact(child.info.run_id, str(staged))
        client.set_terminated(child.info.run_id)
    client.set_terminated(parent.info.run_id)
    time.sleep(0.01)
    # a later launch refused before its first trial (closed, as the driver now does)
    refused_launch = client.create_run(experiment, tags={"flosssweep.role": "parent", "flosssweep.sweep": "ran"})
    client.set_terminated(refused_launch.info.run_id, status="FAILED")
    for args in ([], ["--experiment", "ran"]):
        assert report.main(["--tracking-uri", uri, "--no-log", "--n-boot", "0", *args]) == 0
        captured = capsys.readouterr()
        assert parent.info.run_id in captured.err and counts(captured.out) == ["1/4", "0/4"]
