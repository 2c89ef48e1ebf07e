"""The single-trial command line: one line and exit 2 on bad input; records written."""

import re
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import torch
from conftest import SMALL, in_process

from flosssweep import trial

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "args, words",
    [
        (["task.dleay=3"], "task.dleay"),
        (["train.epochs=1.5"], "train.epochs: expected an integer"),
        (["floss.k=100"], "floss.k: expected at most the state size 80"),
        (["task.bits=2", "task.delay=7"], "task.delay: expected a multiple of task.bits = 2"),
        (["oops"], "dotted.key=value"),
        (["--diagnostics", "/proc/no/such/d.parquet"], "--diagnostics"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, words):
    done = in_process(trial.main, *args)
    assert done.returncode == 2
    assert words in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_cli_bad_input_in_its_own_process_leaves_no_traceback():
    done = subprocess.run([sys.executable, "-m", "flosssweep.trial", "task.dleay=3"], capture_output=True, text=True)
    assert done.returncode == 2 and "task.dleay" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_cli_runs_a_trial_and_writes_records(tmp_path):
    out = tmp_path / "r.parquet"
    args = [f"{k}={v}" for k, v in SMALL.items()] + ["ensemble=2", "task.delay=4", "train.report_every=10"]
    diagnostics = tmp_path / "r-diagnostics.parquet"
    done = subprocess.run(
        [sys.executable, "-m", "flosssweep.trial", *args, "--out", str(out), "--diagnostics", str(diagnostics)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert set(pq.read_table(diagnostics)["epoch"].to_pylist()) == {0, 10, 20, 30}
    assert "epoch 10/30" in done.stdout and "members succeeded" in done.stdout
    table = pq.read_table(out)
    assert table.num_rows == 2
    for column in (
        "member",
        "seed",
        "config_key",
        "arch",
        "hidden",
        "task",
        "bits",
        "delay",
        "floss_mode",
        "floss_k",
        "floss_strength",
        "success",
        "final_accuracy",
        "final_loss",
        "epochs_to_success",
        "lambda_1",
        "lambda_k",
        "status",
        "train_epochs",
        "model_g",
    ):
        assert column in table.column_names
    assert table.column("member").to_pylist() == [0, 1]
    # which code made them (the checkout under test), and the command as typed
    from flosssweep import names, provenance

    row = table.to_pylist()[0]
    assert set(names.PROVENANCE_COLUMNS) <= set(table.column_names)
    assert row["code_commit"] == provenance.git_state()[0] and row["torch_version"] == provenance.version("torch")
    assert "task.delay=4" in row["command"] and "--out" in row["command"]


# -- faults and bad input (counted with tests/sweep/test_preflight.py and tests/report/test_sources.py) --------
def trial_cli(*args) -> subprocess.CompletedProcess:
    return in_process(trial.main, *args)


@pytest.mark.parametrize(
    "args, first",
    [
        (["--out", "/proc/flosssweep-r.parquet"], "--out: cannot write /proc/flosssweep-r.parquet"),
        (["--out", "/"], "--out: expected a file name, / is a directory"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--config"], "argument --config: expected one argument"),
    ],
)
def test_bad_input_trial_refused_before_training(args, first):
    """An unwritable --out is refused before the training whose records it would lose."""
    done = trial_cli(*[f"{k}={v}" for k, v in SMALL.items()], *args)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"flosssweep.trial: error: {first}")
    assert "usage:" not in done.stderr and "Traceback" not in done.stderr and "epoch" not in done.stdout


def test_fault_nonfinite_loss_marks_members_diverged_and_prints_readably(tmp_path):
    """A recurrent gain of 1e36 saturates every unit: the loss ends infinite, the member diverged
    (not ok), whatever the guard saw. Overrides after a flag are accepted."""
    out = tmp_path / "r.parquet"
    done = trial_cli(
        "--quiet",
        *[f"{k}={v}" for k, v in SMALL.items()],
        "--out",
        str(out),
        "model.g=1e36",
        "ensemble=2",
        "task.delay=2",
        "train.epochs=20",
    )
    assert done.returncode == 0, done.stderr
    rows = pq.read_table(out).to_pylist()
    assert [r["status"] for r in rows] == ["diverged", "diverged"] and not any(r["success"] for r in rows)
    assert all(not (r["final_loss"] < float("inf")) for r in rows)
    assert "0/2 members succeeded" in done.stdout


def test_member_table_prints_huge_values_in_exponent_form():
    from flosssweep.trial import member_table

    row = {
        "member": 0,
        "status": "diverged",
        "success": False,
        "final_accuracy": 0.5,
        "final_loss": 3.2e36,
        "epochs_to_success": None,
        "lambda_1": 12.5,
        "lambda_k": -4.0e7,
    }
    text = member_table([row])
    assert "3.200e+36" in text and "-4.000e+07" in text and "+12.5000" in text
    assert not re.search(r"\d{13}", text)
