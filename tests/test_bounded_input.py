"""Bounded input: hostile or careless files, overrides and counts are refused in one line, exit 2,
before any work (issue 24). The entry points run in this process, so a hang or a blow-up is the test's."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from flosssweep import run, trial
from flosssweep.report import cli as report_cli
from flosssweep.yamlio import MAX_FILE_BYTES

TINY = "name: tiny\nbase: {model: {hidden: 8}, train: {epochs: 30, length: 40, success_window: 10}}\n"


def one_line(capsys, *words: str) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def dry_run(path: Path, *extra: str) -> int:
    return run.main([str(path), "--dry-run", *extra])


def sweep_file(tmp_path: Path, text: str | bytes, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_yaml_duplicate_key_refused(tmp_path, capsys):
    path = sweep_file(tmp_path, TINY + "space:\n  task.delay: {grid: [2]}\n  task.delay: {grid: [4]}\n")
    assert dry_run(path) == 2
    one_line(capsys, "'task.delay' appears twice", "line 5")


def test_yaml_duplicate_key_in_a_trial_config_refused(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text("task:\n  delay: 4\n  delay: 6\n")
    assert trial.main(["--config", str(path), "--dry-run"]) == 2
    one_line(capsys, "'delay' appears twice", "line 3")


def test_yaml_merge_key_still_allowed(tmp_path, capsys):
    """`<<` supplies keys that the mapping may then override: that is not a duplicate."""
    text = "name: m\nbase:\n  model: {<<: {hidden: 8, arch: rnn}, hidden: 9}\n"
    assert dry_run(sweep_file(tmp_path, text)) == 0
    assert "model.hidden=9" in capsys.readouterr().out


def test_yaml_alias_bomb_refused(tmp_path, capsys):
    lines = ["name: bomb", "base:", "  a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]"]
    for previous, this in zip("abcdefgh", "bcdefghi"):
        lines.append(f"  {this}: &{this} [" + ", ".join([f"*{previous}"] * 9) + "]")
    started = time.monotonic()
    assert dry_run(sweep_file(tmp_path, "\n".join(lines) + "\n")) == 2
    assert time.monotonic() - started < 5
    one_line(capsys, "at most 100000 values once aliases are expanded")


def test_yaml_self_referencing_alias_refused(tmp_path, capsys):
    assert dry_run(sweep_file(tmp_path, "name: loop\nbase: &b {model: *b}\n")) == 2
    one_line(capsys, "aliases that do not refer to a node they are part of")


def test_yaml_deep_nesting_refused(tmp_path, capsys):
    assert dry_run(sweep_file(tmp_path, "name: deep\nbase: " + "[" * 5000 + "]" * 5000 + "\n")) == 2
    one_line(capsys, "s.yaml")


def test_config_non_regular_file_refused(capsys):
    assert trial.main(["--config", "/dev/zero"]) == 2
    one_line(capsys, "/dev/zero: expected a regular file")


def test_sweep_non_regular_file_refused(capsys):
    assert run.main(["/dev/zero", "--dry-run"]) == 2
    one_line(capsys, "/dev/zero")


def test_oversized_file_refused(tmp_path, capsys):
    big = tmp_path / "big.yaml"
    with open(big, "wb") as out:
        out.truncate(MAX_FILE_BYTES + 1)
    assert dry_run(big) == 2
    one_line(capsys, "big.yaml: expected a file of at most")
    assert trial.main(["--config", str(big)]) == 2
    one_line(capsys, "big.yaml: expected a file of at most")


def test_non_utf8_file_refused(tmp_path, capsys):
    path = sweep_file(tmp_path, b"name: caf\xe9\n")
    assert dry_run(path) == 2
    one_line(capsys, "s.yaml: expected UTF-8 text")
    assert trial.main(["--config", str(path)]) == 2
    one_line(capsys, "s.yaml: expected UTF-8 text")


@pytest.mark.parametrize(
    "override, words",
    [
        ("task.delay=[2", "task.delay: expected a YAML value"),
        ("task.delay=2\x01", "expected an override without control characters"),
        ("task.del\x1bay=2", "expected an override without control characters"),
        ("task.delay=&a [*a]", "aliases that do not refer"),
        ("0\x850=null", "expected an override without control characters"),  # found by the fuzzer
    ],
)
def test_override_invalid_yaml_refused(override, words, capsys):
    assert trial.main([override]) == 2
    err = one_line(capsys, words)
    assert "\x1b" not in err and "\x01" not in err


@pytest.mark.parametrize(
    "override, key",
    [
        ("seed=-1", "seed: expected an integer >= 0"),
        (f"seed={10**29}", "seed: expected an integer >= 0 and <= 4294967295"),
        ("ensemble=10000000", "ensemble: expected an integer > 0 and <= 100000"),
        ("model.hidden=100000000", "model.hidden: expected an integer > 0 and <= 1000000"),
        ("train.epochs=1e12", "train.epochs: expected an integer > 0 and <= 2147483647"),
        ("model.hidden=200000", "model.hidden: expected a trial that fits in memory"),
        ("train.length=100000000", "train.length: expected a trial that fits in memory"),
    ],
)
def test_trial_count_bounds_refused(override, key, capsys):
    started = time.monotonic()
    assert trial.main([override, "task.delay=2"]) == 2
    assert time.monotonic() - started < 5
    one_line(capsys, key)


def test_sweep_num_samples_bound_refused_in_dry_run(tmp_path, capsys):
    started = time.monotonic()
    assert dry_run(sweep_file(tmp_path, TINY + "num_samples: 3000000000\n")) == 2
    one_line(capsys, "num_samples: expected an integer >= 1 and <= 100000")
    grid = "space:\n" + "".join(f"  {k}: {{grid: {list(range(2, 40, 2))}}}\n" for k in ("task.delay", "floss.k"))
    assert dry_run(sweep_file(tmp_path, TINY + "num_samples: 90000\n" + grid)) == 2
    one_line(capsys, "num_samples: expected at most 100000 trials in one launch")
    assert time.monotonic() - started < 10


def test_sweep_memory_estimate_refused(tmp_path, capsys):
    assert dry_run(sweep_file(tmp_path, TINY + "space:\n  model.hidden: {grid: [8, 300000]}\n")) == 2
    one_line(capsys, "space.model.hidden: expected a trial that fits in memory")


def test_long_sweep_name_refused(tmp_path, capsys):
    assert dry_run(sweep_file(tmp_path, TINY.replace("name: tiny", "name: " + "n" * 300))) == 2
    one_line(capsys, "name: expected a name of at most 100", "300 characters")


@pytest.fixture
def records(tmp_path) -> Path:
    path = tmp_path / "r.parquet"
    rows = [
        {"delay": float(d), "success": d < 6, "member": m, "seed": 0, "config_key": f"k{d}"}
        for d in (2, 4, 8)
        for m in (0, 1)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--n-boot", "1000000000"], "--n-draws must be in 0..100000"),
        (["--seed", "-1"], "--seed must be in 0.."),
        (["--seed", str(10**29)], "--seed must be in 0.."),
        (["--marker", "inf"], "--marker must be a finite number"),
        (["--marker", "nan"], "--marker must be a finite number"),
    ],
)
def test_report_flag_bounds_refused(records, flags, words, capsys):
    assert report_cli.main(["--from-parquet", str(records), *flags]) == 2
    one_line(capsys, words)


def test_report_inf_in_x_column_refused(records, tmp_path, capsys):
    table = pq.read_table(records)
    table = table.set_column(0, "delay", pa.array([math.inf] + table["delay"].to_pylist()[1:]))
    pq.write_table(table, records)
    assert report_cli.main(["--from-parquet", str(records), "--n-boot", "10", "--out", str(tmp_path / "o")]) == 2
    one_line(capsys, "column delay: expected finite numbers")


def test_yaml_loader_is_the_one_used_everywhere():
    """No module reads YAML except through flosssweep.yamlio (one loader, one set of limits)."""
    root = Path(run.__file__).parent
    users = [p for p in root.rglob("*.py") if "yaml.safe_load" in p.read_text() or "yaml.load(" in p.read_text()]
    assert users == [], users
    assert yaml  # imported for the fixtures' readers only


@pytest.mark.parametrize(
    "args, words",
    [
        (["task.name=lorenz63", "task.delay=3"], "task.delay: expected a key that lorenz63 trials use"),
        (["task.tau=3"], "task.tau: expected a key that parity trials use"),
    ],
)
def test_key_the_task_ignores_refused(args, words, capsys):
    """A value the task never reads would make trials that differ only there one trial run twice."""
    assert trial.main([*args, "--dry-run"]) == 2
    one_line(capsys, words)


def test_axis_the_task_ignores_refused(tmp_path, capsys):
    text = "name: ig\nbase: {task: {name: lorenz63}}\nspace:\n  task.delay: {grid: [2, 4]}\n"
    assert dry_run(sweep_file(tmp_path, text)) == 2
    one_line(capsys, "space.task.delay: expected a key that lorenz63 trials use")


def test_parquet_footer_claiming_more_than_memory_refused(tmp_path, capsys, monkeypatch):
    """The footer is read before the rows: a file whose row groups claim more than half the memory
    is refused in one line. The machine's memory is shrunk to 64 KiB so that a real 200,000-row file
    (about 3 MiB uncompressed, a few KiB on disk) is such a file."""
    from flosssweep.report import sources

    path = tmp_path / "huge.parquet"
    n = 200_000
    losses = pa.array(range(n), pa.float64())  # distinct values: no encoding shrinks them
    columns = {"delay": [4] * n, "success": [True] * n, "config_key": ["k"] * n, "final_loss": losses}
    pq.write_table(pa.table(columns), path)
    monkeypatch.setattr(sources, "memory_bytes", lambda: 64 * 1024)
    assert report_cli.main(["--from-parquet", str(path), "--out", str(tmp_path / "o")]) == 2
    one_line(capsys, "huge.parquet", "fits in memory", "GiB of rows")
    assert not (tmp_path / "o").exists()


def test_a_fifo_as_records_refused_without_hanging(tmp_path, capsys):
    import os

    fifo = tmp_path / "records.parquet"
    os.mkfifo(fifo)
    assert report_cli.main(["--from-parquet", str(fifo), "--out", str(tmp_path / "o")]) == 2
    one_line(capsys, "records.parquet", "expected a regular Parquet file")
