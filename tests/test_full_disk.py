"""Output checked before the work, or kept after it (issue 24): devices and full disks refused before
training; records that cannot be written after training kept in a fallback file named in the error;
a full disk named as such. The full disks are real: small tmpfs mounts (root only, as in CI)."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SMALL, fill

from flosssweep import records, trial
from flosssweep.report import cli as report_cli


def one_line(capsys, *words: str) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def test_out_dev_full_refused_before_training(capsys):
    started = time.monotonic()
    assert trial.main(["--out", "/dev/full"]) == 2
    assert time.monotonic() - started < 5
    one_line(capsys, "--out: expected a regular file, /dev/full")


def test_out_on_a_full_disk_refused_before_training(small_disk, capsys):
    disk = small_disk("full")
    fill(disk)
    started = time.monotonic()
    assert trial.main(["--out", str(disk / "r.parquet")]) == 2
    assert time.monotonic() - started < 5
    one_line(capsys, "disk full: no space left on the device", str(disk))


def test_out_with_too_little_space_refused_before_training(small_disk, capsys):
    """A disk with some free bytes takes an empty probe file: the probe has a record file's size."""
    disk = small_disk("little", size="256k")
    assert trial.main(["--out", str(disk / "r.parquet")]) == 2
    one_line(capsys, "disk full")


def test_records_kept_in_a_fallback_file_when_the_write_fails(small_disk, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    disk = small_disk("filled-during-training")
    fill(disk)  # filled after the (passed) probe: as by another job during a long trial
    rows = [{"member": j, "seed": 0, "success": j == 0, "final_loss": 0.5} for j in range(3)]
    with pytest.raises(records.NotWritten) as failed:
        records.write_or_keep(rows, disk / "r.parquet")
    message = str(failed.value)
    assert "disk full: no space left on the device" in message and str(disk / "r.parquet") in message
    kept = Path(message.rsplit("they are kept in ", 1)[1])
    assert kept.parent == tmp_path and pq.read_table(kept).to_pylist() == records.to_table(rows).to_pylist()
    assert not (disk / "r.parquet").exists(), "no truncated file left where the records were asked for"


def test_trial_that_cannot_write_its_records_names_the_fallback(small_disk, tmp_path, monkeypatch, capsys):
    """The trial command: exit 1, one line naming the fallback, the records there."""
    monkeypatch.chdir(tmp_path)
    disk = small_disk("vanishing", size="8m")
    out = disk / "sub" / "r.parquet"
    args = [f"{k}={v}" for k, v in SMALL.items()] + ["task.delay=4", "train.epochs=10", "--out", str(out)]

    def fill_after_first_report(metrics, epoch):
        if epoch >= 5:
            fill(disk)

    monkeypatch.setattr(
        trial.ProgressPrinter, "report", lambda self, metrics, epoch: fill_after_first_report(metrics, epoch)
    )
    assert trial.main(args) == 1
    err = one_line(capsys, "disk full", "they are kept in")
    assert pq.read_table(err.strip().rsplit("they are kept in ", 1)[1]).num_rows == 1


def test_report_on_a_disk_that_fills_is_one_line(small_disk, tmp_path, capsys):
    path = tmp_path / "r.parquet"
    rows = [
        {"delay": d, "success": d < 6, "member": m, "seed": 0, "config_key": f"k{d}"} for d in (2, 4, 8) for m in (0, 1)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    disk = small_disk("few-files", size="8m", inodes=4)  # room for the probe, not for every figure
    code = report_cli.main(["--from-parquet", str(path), "--n-boot", "10", "--out", str(disk)])
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("aggregating"), err
    assert "cannot write the report to" in err.splitlines()[-1] and "disk full" in err.splitlines()[-1]
