"""A chaotic-data trial through every command: `trial`, `run` (Ray + MLflow) and `report`."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from flosssweep import run, trial
from flosssweep.report import cli as report_cli

torch.set_num_threads(1)

# Lorenz-63 data small enough for seconds: a short trajectory, a few epochs and short evaluations
CHAOTIC = {
    "model.arch": "plrnn",
    "model.hidden": 8,
    "task.name": "lorenz63",
    "task.tau": 5,
    "task.train_steps": 3000,
    "task.test_steps": 1000,
    "train.epochs": 6,
    "train.length": 20,
    "train.batch": 4,
    "train.success_window": 3,
    "train.report_every": 3,
    "train.eval_trajectories": 2,
    "train.eval_steps": 200,
    "ensemble": 2,
}


@pytest.fixture(scope="module")
def chaotic_records(tmp_path_factory) -> tuple[int, str, str]:
    out = tmp_path_factory.mktemp("chaotic") / "c.parquet"
    code = trial.main([f"{k}={v}" for k, v in CHAOTIC.items()] + ["--quiet", "--out", str(out)])
    return code, out


def test_chaotic_trial_completes(chaotic_records, capsys):
    code, out = chaotic_records
    assert code == 0
    rows = pq.read_table(out).to_pylist()
    assert [r["member"] for r in rows] == [0, 1] and {r["task"] for r in rows} == {"lorenz63"}
    assert all(r["dstsp"] is not None and r["tau"] == 5 for r in rows)
    # the table's accuracy and epochs_to_success columns are "-": chaotic data has neither
    table = trial.member_table(rows)
    assert table.splitlines()[1].split()[3] == "-" and "members succeeded" in table


def test_chaotic_report_completes(chaotic_records, capsys):
    """The report's x defaults to tau for chaotic records (they have no delay)."""
    _, out = chaotic_records
    code = report_cli.main(["--from-parquet", str(out), "--n-boot", "10"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "tau" in captured.out and "Traceback" not in captured.err


@pytest.mark.slow
def test_chaotic_run_completes(ray_local, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base: dict = {}
    for key, value in CHAOTIC.items():
        node = base
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    sweep = tmp_path / "chaotic.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {"name": "chaotic-tiny", "checkpoint_seconds": 0, "base": base, "space": {"task.tau": {"grid": [5]}}}
        )
    )
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    code = run.main([str(sweep), "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "T50 [95% CI]" in out and "tau" in out
    code = report_cli.main(["--tracking-uri", uri, "--n-boot", "10", "--no-log"])
    assert code == 0, capsys.readouterr().err
