"""The single-trial command line: one line and exit 2 on bad input; records written."""


import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import torch


torch.set_num_threads(1)

SMALL = {"model.hidden": 16, "train.length": 40, "train.batch": 8, "train.epochs": 30, "train.success_window": 10,
         "floss.pre_steps": 5, "floss.horizon": 20, "floss.warmup": 5}



@pytest.mark.parametrize("args, words", [
    (["task.dleay=3"], "task.dleay"),
    (["train.epochs=1.5"], "train.epochs: expected an integer"),
    (["floss.k=100"], "floss.k: expected at most the state size 80"),
    (["task.bits=2", "task.delay=7"], "task.delay: expected a multiple of task.bits = 2"),
    (["oops"], "dotted.key=value"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, words):
    done = subprocess.run([sys.executable, "-m", "flosssweep.trial", *args], capture_output=True, text=True)
    assert done.returncode == 2
    assert words in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_cli_runs_a_trial_and_writes_records(tmp_path):
    out = tmp_path / "r.parquet"
    args = [f"{k}={v}" for k, v in SMALL.items()] + ["ensemble=2", "task.delay=4", "train.report_every=10"]
    done = subprocess.run([sys.executable, "-m", "flosssweep.trial", *args, "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "epoch 10/30" in done.stdout and "members succeeded" in done.stdout
    table = pq.read_table(out)
    assert table.num_rows == 2
    for column in ("member", "seed", "config_key", "arch", "hidden", "task", "bits", "delay", "floss_mode",
                   "floss_k", "floss_strength", "success", "final_accuracy", "final_loss", "epochs_to_success",
                   "lambda_1", "lambda_k", "status", "train_epochs", "model_g"):
        assert column in table.column_names
    assert table.column("member").to_pylist() == [0, 1]
    # which code made them (the checkout under test), and the command as typed
    from flosssweep import names, provenance

    row = table.to_pylist()[0]
    assert set(names.PROVENANCE_COLUMNS) <= set(table.column_names)
    assert row["code_commit"] == provenance.git_state()[0] and row["torch_version"] == provenance.version("torch")
    assert "task.delay=4" in row["command"] and "--out" in row["command"]
