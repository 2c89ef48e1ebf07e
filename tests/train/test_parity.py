"""The parity trial: flossing, solving short delays, ensembles, divergence, checkpoints."""

import math

import numpy as np
import pytest
import torch
from conftest import SMALL

from flosssweep.config import resolve
from flosssweep.train import ParityTrial as Trial
from flosssweep.train import epochs_to_success, train

torch.set_num_threads(1)


def test_epochs_to_success_by_hand():
    acc = np.array([0.0] * 30 + [1.0] * 30)
    # the 20-epoch moving mean is m/20 with m epochs at 1.0; it first reaches 0.93 at m = 19: epoch 30 + 19
    assert epochs_to_success(acc, 0.93) == 49
    assert epochs_to_success(np.full(100, 0.9), 0.95) is None
    assert epochs_to_success(np.ones(10), 0.95) is None  # shorter than the window


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


def test_records_hold_the_log_condition_before_after_pre_flossing_and_at_the_end():
    # Flossing all N exponents toward 0 makes every direction neutral, so the Tp-step Jacobian's condition
    # number (lambda_1 - lambda_N) * Tp must collapse; without flossing the two early stages are the same network
    # (estimated on fresh inputs each time, so equal up to the estimate's noise).
    base = {
        "model.hidden": 12,
        "floss.k": 12,
        # the default 500 steps: at 300 the drop is about 4x, so member 0 of seed 0 passed or failed with the stream
        "floss.pre_steps": 500,
        "floss.horizon": 40,
        "floss.warmup": 10,
        "train.epochs": 2,
        "train.success_window": 1,
        "train.length": 40,
        "ensemble": 2,
    }
    flossed = train(resolve(base, {"floss.mode": "pre"}))
    plain = train(resolve(base, {"floss.mode": "none"}))
    for row in flossed:
        assert row["log_condition_initial"] > 5 and row["log_condition_pre"] < row["log_condition_initial"] / 4, row
    for row in plain:
        assert row["log_condition_pre"] == pytest.approx(row["log_condition_initial"], rel=0.15)
        assert math.isfinite(row["log_condition_final"])


def test_short_delayed_copy_is_solved_by_every_member():
    config = resolve(
        {
            "task.bits": 1,
            "task.delay": 5,
            "ensemble": 4,
            "model.hidden": 32,
            "train.length": 60,
            "train.epochs": 200,
            "floss.mode": "none",
        }
    )
    rows = train(config)
    assert [r["success"] for r in rows] == [True] * 4
    assert all(r["status"] == "ok" and r["final_accuracy"] >= 0.95 for r in rows)
    assert all(isinstance(r["epochs_to_success"], int) for r in rows)


def run_trial(**overrides):
    trial = Trial(resolve(SMALL, {"floss.mode": "pre+during", "floss.every": 10, "floss.steps": 3}, overrides))
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


def test_a_record_agrees_with_itself_and_with_the_final_report():
    # One spectrum estimate per training state: the final stage column, the outcome columns and the
    # last report's metrics all read it, so log_condition_final is (lambda_1 - lambda_k) * Tp to the
    # float32 rounding of the exponents (version 2 drew two estimates: 0.80 against 3.09 in one record).
    config = resolve(SMALL, {"ensemble": 3, "floss.k": 4, "floss.mode": "pre", "train.report_every": 10})
    reported = {}
    rows = train(config, report=lambda metrics, epoch: reported.setdefault(epoch, metrics))
    horizon = config["floss"]["horizon"]
    for row in rows:
        assert row["log_condition_final"] == pytest.approx((row["lambda_1"] - row["lambda_k"]) * horizon, rel=1e-5)
    last = reported[config["train"]["epochs"]]
    assert last["lyapunov/lambda_1"] == pytest.approx(np.mean([r["lambda_1"] for r in rows]), rel=1e-5)
    assert last["lyapunov/log_condition"] == pytest.approx(np.mean([r["log_condition_final"] for r in rows]), rel=1e-5)
    # the estimate depends on the state alone, not on how many reports drew before it
    quiet = train(config)
    for a, b in zip(rows, quiet):
        assert (a["lambda_1"], a["log_condition_pre"]) == (b["lambda_1"], b["log_condition_pre"])


@pytest.mark.parametrize("mode", ["pre+during", "pre"])
def test_restoring_a_checkpoint_continues_the_same_trajectory(mode):
    config = resolve(
        SMALL,
        {"ensemble": 2, "floss.mode": mode, "floss.every": 10, "floss.steps": 2, "train.report_every": 10},
    )
    saved, reported, reported_after_restore = {}, {}, {}
    uninterrupted = train(
        config,
        checkpoint=lambda state, epoch: saved.setdefault(epoch, state),
        report=lambda metrics, epoch: reported.setdefault(epoch, metrics),
    )
    resumed = train(config, restore=saved[10], report=lambda m, epoch: reported_after_restore.setdefault(epoch, m))
    # every record column but the wall time, and every report after the restore (a checkpoint without the
    # flossing loss made losses/floss NaN from there on), is what the uninterrupted trial gave
    for a, b in zip(uninterrupted, resumed):
        assert set(a) == set(b)
        for name in set(a) - {"train_seconds"}:
            same = a[name] if isinstance(a[name], (str, bool)) or a[name] is None else pytest.approx(a[name], rel=1e-6)
            assert b[name] == same, name
    assert sorted(reported_after_restore) == [20, 30]
    for epoch, metrics in reported_after_restore.items():
        assert set(metrics) == set(reported[epoch])
        for name, value in reported[epoch].items():
            assert metrics[name] == pytest.approx(value, rel=1e-6, nan_ok=True), (epoch, name)


def test_a_checkpoint_of_another_records_version_is_refused():
    trial = Trial(resolve(SMALL, {"floss.mode": "none"}))
    state = trial.state_dict()
    with pytest.raises(ValueError, match=r"^checkpoint of records version 2, this trainer makes version 3"):
        Trial(trial.config).load_state_dict({**state, "records_version": 2})
