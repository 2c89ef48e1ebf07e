"""Behaviour of the trainer: flossing, tasks, ensembles, divergence, checkpoints, the CLI."""

import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from flosssweep.config import ConfigError, resolve
from flosssweep.optim import MemberAdam
from flosssweep.tasks import parity_targets
from flosssweep.trainer import Trial, epochs_to_success, train

torch.set_num_threads(1)

SMALL = {"model.hidden": 16, "train.length": 40, "train.batch": 8, "train.epochs": 30, "train.success_window": 10,
         "floss.pre_steps": 5, "floss.horizon": 20, "floss.warmup": 5}


def test_parity_targets_by_hand():
    s = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0], dtype=torch.float32)
    # copy with d = 3: y_t = s_{t-3}
    assert parity_targets(s, 1, 3)[3:].tolist() == [1, 0, 1, 1, 0]
    # XOR with d = 4: y_t = s_{t-2} xor s_{t-4}, for t = 4..7
    #   t=4: s2^s0 = 1^1, t=5: s3^s1 = 1^0, t=6: s4^s2 = 0^1, t=7: s5^s3 = 0^1
    assert parity_targets(s, 2, 4)[4:].tolist() == [0, 1, 1, 1]
    # 3-bit parity with d = 6: y_t = s_{t-2} xor s_{t-4} xor s_{t-6}, for t = 6, 7
    #   t=6: s4^s2^s0 = 0^1^1, t=7: s5^s3^s1 = 0^1^0
    assert parity_targets(s, 3, 6)[6:].tolist() == [0, 1]


def test_epochs_to_success_by_hand():
    acc = np.array([0.0] * 30 + [1.0] * 30)
    # the 20-epoch moving mean is m/20 with m epochs at 1.0; it first reaches 0.93 at m = 19: epoch 30 + 19
    assert epochs_to_success(acc, 0.93) == 49
    assert epochs_to_success(np.full(100, 0.9), 0.95) is None
    assert epochs_to_success(np.ones(10), 0.95) is None  # shorter than the window


def test_member_adam_matches_torch_adam_and_freezes_inactive_members():
    torch.manual_seed(0)
    start = torch.randn(2, 3, 4)
    grads = [torch.randn(2, 3, 4) for _ in range(5)]
    mine = start.clone()
    ours = MemberAdam([mine], lr=1e-2)
    reference = start[0].clone().requires_grad_()
    theirs = torch.optim.Adam([reference], lr=1e-2)
    for g in grads:
        ours.step([g], torch.tensor([True, False]))
        reference.grad = g[0].clone()
        theirs.step()
    torch.testing.assert_close(mine[0], reference.detach())
    torch.testing.assert_close(mine[1], start[1])  # untouched, not nudged by stale moments


def spectrum_mean_abs(trial):
    return trial.spectrum().abs().mean().item()


def test_pre_flossing_drives_the_first_k_exponents_to_zero():
    config = resolve({"model.hidden": 32, "model.g": 1.0, "floss.k": 8, "floss.mode": "pre", "ensemble": 2})
    trial = Trial(config)
    before = spectrum_mean_abs(trial)
    trial.flosser.run(300, trial.active)
    after = spectrum_mean_abs(trial)
    assert before > 0.1  # a g = 1 network driven by input is contracting: exponents well below 0
    assert after < before / 10, (before, after)


def test_short_delayed_copy_is_solved_by_every_member():
    config = resolve({"task.bits": 1, "task.delay": 5, "ensemble": 4, "model.hidden": 32, "train.length": 60,
                      "train.epochs": 200, "floss.mode": "none"})
    rows = train(config)
    assert [r["success"] for r in rows] == [True] * 4
    assert all(r["status"] == "ok" and r["final_accuracy"] >= 0.95 for r in rows)
    assert all(isinstance(r["epochs_to_success"], int) for r in rows)


def run_trial(**overrides):
    trial = Trial(resolve(SMALL, {"floss.mode": "pre+during", "floss.every": 10, "floss.steps": 3,
                                  "floss.strength": 0.1}, overrides))
    rows = trial.run()
    return trial, rows


def test_member_is_the_same_realization_whatever_the_ensemble_size():
    single, rows1 = run_trial(ensemble=1, seed=7)
    double, rows2 = run_trial(ensemble=2, seed=7)
    quad, rows4 = run_trial(ensemble=4, seed=7)
    for name, tensor in quad.params.items():
        torch.testing.assert_close(tensor[0], single.params[name][0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(tensor[1], double.params[name][1], atol=1e-5, rtol=1e-5)
    assert rows4[0]["final_loss"] == pytest.approx(rows1[0]["final_loss"], rel=1e-4, abs=1e-6)
    assert rows4[1]["lambda_1"] == pytest.approx(rows2[1]["lambda_1"], rel=1e-4, abs=1e-6)
    assert rows4[0]["config_key"] == rows1[0]["config_key"]
    # and different members really are different realizations
    assert not torch.allclose(quad.params["J"][0], quad.params["J"][1])


def test_a_non_finite_member_is_marked_diverged_while_the_others_finish():
    trial = Trial(resolve(SMALL, {"ensemble": 3, "floss.mode": "none", "train.max_nonfinite": 3}))
    with torch.no_grad():
        trial.params["J"][1, 0, 0] = float("inf")
    rows = trial.run()
    assert [r["status"] for r in rows] == ["ok", "diverged", "ok"]
    assert not rows[1]["success"]
    assert rows[1]["nonfinite_steps"] == 3
    for j in (0, 2):
        assert np.isfinite(rows[j]["final_loss"]) and rows[j]["nonfinite_steps"] == 0
        assert torch.isfinite(trial.params["J"][j]).all()


def test_restoring_a_checkpoint_continues_the_same_trajectory():
    config = resolve(SMALL, {"ensemble": 2, "floss.mode": "pre+during", "floss.every": 10, "floss.steps": 2,
                             "train.report_every": 10})
    saved = {}
    uninterrupted = train(config, checkpoint=lambda state, epoch: saved.setdefault(epoch, state))
    resumed = train(config, restore=saved[10])
    for a, b in zip(uninterrupted, resumed):
        assert a["final_loss"] == pytest.approx(b["final_loss"], rel=1e-6)
        assert a["lambda_1"] == pytest.approx(b["lambda_1"], rel=1e-6)


@pytest.mark.parametrize("overrides, key", [
    ({"task.dleay": 3}, "task.dleay"),
    ({"train.epochs": "many"}, "train.epochs"),
    ({"floss.k": 81}, "floss.k"),
    ({"model.arch": "lstm", "floss.k": 161}, "floss.k"),
    ({"task.bits": 3, "task.delay": 10}, "task.delay"),
    ({"floss.mode": "sometimes"}, "floss.mode"),
])
def test_bad_config_names_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        resolve(overrides)
    assert err.value.key == key


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
