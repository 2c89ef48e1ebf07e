"""Sparse teacher forcing: the forcing cuts the gradient chain, the schedule, the chaotic trial end to
end (records, ensembles, checkpoints, flossing toward the data) and its configuration."""

import math

import numpy as np
import pytest
import torch

from flosssweep import chaos, models
from flosssweep.config import ConfigError, resolve
from flosssweep.records import to_table
from flosssweep.train import chaotic as stf
from flosssweep.train import member_generators, train

ARCHS = ("plrnn", "rnn", "lstm", "gru")


def model_and_params(arch, hidden=6, members=2, dtype=torch.float64):
    model = models.ARCHITECTURES[arch](hidden, inputs=0, outputs=3)
    return model, models.init_params(model, member_generators(0, members), dtype=dtype)


def observations(length, members=2, batch=3):
    return torch.randn(length + 1, members, batch, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("arch", ARCHS)
def test_forcing_cuts_the_gradient_chain(arch):
    model, p = model_and_params(arch)
    obs = observations(12)
    z0 = torch.randn(2, 3, model.state_size, dtype=torch.float64, requires_grad=True)
    tau = 4
    predictions, _ = stf.rollout(model, p, obs, tau, z0=z0)
    # losses after the first forcing point (predictions of x_5 onward come from states stepped after
    # z_4 was replaced by B^+ x_4) do not depend on the state before it ...
    after = torch.autograd.grad(
        predictions[tau:].pow(2).sum(), z0, retain_graph=True, allow_unused=True, materialize_grads=True
    )[0]
    assert torch.equal(after, torch.zeros_like(after))
    # ... while the losses before it do, and without forcing the later ones do too
    before = torch.autograd.grad(predictions[:tau].pow(2).sum(), z0)[0]
    assert before.abs().max() > 0
    unforced, _ = stf.rollout(model, p, obs, None, z0=z0)
    assert torch.autograd.grad(unforced[tau:].pow(2).sum(), z0)[0].abs().max() > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_forcing_step_jacobians(arch):
    model, p = model_and_params(arch)
    x = torch.randn(2, 3, 3, dtype=torch.float64)
    z = torch.randn(2, 3, model.state_size, dtype=torch.float64)
    full = stf.Forcer(model, p, "full")
    observed = stf.Forcer(model, p, "observed")
    jac_full = torch.autograd.functional.jacobian(lambda s: full.force(s, x), z)
    assert torch.equal(jac_full, torch.zeros_like(jac_full))
    # the inferred state reproduces the observation
    assert torch.allclose(model.readout(p, full.infer(x)), x, atol=1e-10)
    # `observed` replaces only the component the observation sees: d z'/d z = I - B^+ B
    z1, x1 = z[:, :1], x[:, :1]
    jac = torch.autograd.functional.jacobian(lambda s: observed.force(s, x1), z1)  # (R, 1, S, R, 1, S)
    per_member = torch.stack([jac[r, 0, :, r, 0, :] for r in range(2)])
    expected = torch.eye(model.state_size, dtype=torch.float64) - observed.B_pinv @ observed.B
    assert torch.allclose(per_member, expected, atol=1e-10)
    assert torch.allclose(model.readout(p, observed.force(z, x)), x, atol=1e-10)


def test_tau_one_is_one_step_teacher_forcing_and_the_schedule():
    model, p = model_and_params("plrnn")
    obs = observations(6)
    predictions, _ = stf.rollout(model, p, obs, 1)
    step = model.stepper(p)
    expected = torch.stack([model.readout(p, step(stf.Forcer(model, p).infer(obs[t]))) for t in range(6)])
    assert torch.allclose(predictions, expected, atol=1e-12)
    assert [t for t in range(13) if stf.forced_at(t, 4)] == [4, 8, 12]
    assert not any(stf.forced_at(t, None) for t in range(13))
    assert stf.resolve_tau("none", 0.01) is None
    assert stf.resolve_tau(7, 0.01) == 7
    assert stf.resolve_tau("auto", math.log(2) / 33.2) == 33


def test_plrnn_tangent_and_stepper_agree_with_its_step():
    model, p = model_and_params("plrnn")
    z = torch.randn(2, 3, 6, dtype=torch.float64)
    none = z.new_zeros(2, 3, 0)
    assert torch.allclose(model.stepper(p)(z), model.step(p, z, none), atol=1e-12)
    Q = torch.randn(2, 3, 6, 2, dtype=torch.float64)
    from flosssweep.lyapunov import jvp_tangent

    assert torch.allclose(model.tangent(p, z, none, Q), jvp_tangent(lambda s, x: model.step(p, s, x))(z, none, Q))


SMALL = {
    "model": {"arch": "plrnn", "hidden": 8},
    "task": {"name": "lorenz63", "tau": 5, "train_steps": 4000, "test_steps": 1500},
    "train": {
        "epochs": 12,
        "batch": 4,
        "length": 20,
        "lr": 5e-3,
        "report_every": 6,
        "eval_trajectories": 3,
        "eval_steps": 600,
    },
    "floss": {"mode": "none"},
}


def small(**dotted):
    return resolve(SMALL, dotted)


def test_chaotic_trial_records_and_reports():
    reports = []
    rows = train(small(ensemble=2, **{"train.dstsp_threshold": 1e9}), report=lambda m, e: reports.append((e, m)))
    assert [e for e, _ in reports] == [0, 6, 12]
    metrics = reports[-1][1]
    for name in (
        "losses/task",
        "charts/success_rate",
        "charts/dstsp",
        "charts/dh",
        "lyapunov/lambda_1",
        "lyapunov/lambda_max_data_per_time",
    ):
        assert name in metrics
    assert len(rows) == 2
    for j, row in enumerate(rows):
        assert row["member"] == j and row["status"] == "ok" and row["task"] == "lorenz63"
        assert row["tau"] == 5 and row["arch"] == "plrnn"
        assert not {"bits", "delay", "train_success_threshold"} & set(row)  # parity-only columns
        assert np.isfinite(row["final_loss"]) and row["dstsp"] >= 0 and 0 <= row["dh"] <= 1
        assert row["success"]  # threshold 1e9: every finite D_stsp passes
        assert row["lambda_max_data"] == pytest.approx(row["lambda_max_data_per_time"] * 0.01)
        assert row["tau_predicted"] == pytest.approx(math.log(2) / row["lambda_max_data"])
    assert rows[0]["config_key"] == rows[1]["config_key"]
    assert "delay" not in to_table(rows).column_names  # converts to Arrow, fixed types where present


@pytest.mark.slow  # two free runs of 100 000 steps: about 20 s each on a quiet core
def test_the_authors_dstsp_convention_scores_one_long_free_run_from_the_first_test_point():
    trial = stf.ChaoticTrial(small(ensemble=2, **{"train.dstsp_convention": "authors", "train.epochs": 2}))
    run = trial.generate_authors_run(steps=50)
    assert run.shape == (2, 50, 3)
    np.testing.assert_allclose(run[:, 0], np.broadcast_to(trial.data.test[0], (2, 3)), atol=1e-5)
    rows = trial.run()
    runs = trial.generate_authors_run()
    assert runs.shape == (2, chaos.AUTHORS_FREE_RUN, 3)
    for row, one in zip(rows, runs):
        expected = chaos.authors_state_space_divergence(trial.data.test, one)
        assert row["dstsp"] == pytest.approx(expected, nan_ok=True)
        assert row["train_dstsp_convention"] == "authors"


def test_tau_none_and_auto_become_numbers_in_the_records():
    none = train(small(**{"task.tau": "none", "train.epochs": 2}))
    assert none[0]["tau"] == 20  # the window length: no forcing inside a window
    auto = train(small(**{"task.tau": "auto", "train.epochs": 2, "train.length": 100}))
    assert auto[0]["tau"] == chaos.forcing_interval(auto[0]["lambda_max_data"]) in (76, 77)
    # a tau longer than the window forces nothing inside it either: recorded as the window length
    assert train(small(**{"task.tau": "auto", "train.epochs": 2}))[0]["tau"] == 20
    assert none[0]["config_key"] != auto[0]["config_key"]


def test_member_is_the_same_whatever_the_ensemble_size():
    one = train(small(ensemble=1))
    three = train(small(ensemble=3))
    assert one[0]["final_loss"] == pytest.approx(three[0]["final_loss"], rel=1e-5)
    assert one[0]["dstsp"] == pytest.approx(three[0]["dstsp"], rel=1e-4, abs=1e-6)
    assert three[1]["final_loss"] != pytest.approx(three[0]["final_loss"], rel=1e-5)


def test_checkpoint_restore_continues_exactly():
    config = small(ensemble=2)
    saved = {}
    full = train(config, checkpoint=lambda state, epoch: saved.setdefault(epoch, state))
    resumed = train(config, restore=saved[6])
    for a, b in zip(full, resumed):
        assert a["final_loss"] == pytest.approx(b["final_loss"], rel=1e-6)
        assert a["dstsp"] == pytest.approx(b["dstsp"], rel=1e-6)


def test_flossing_toward_the_data_exponent():
    config = small(
        ensemble=2,
        **{"floss.mode": "pre", "floss.pre_steps": 3, "floss.target": "data", "floss.horizon": 30, "floss.warmup": 10},
    )
    trial = stf.ChaoticTrial(config)
    assert trial.floss_target == pytest.approx(trial.lambda_data)
    exponents = trial.flosser.spectrum()
    assert exponents.shape == (2, 1)
    before = [t.detach().clone() for t in trial.flosser.flossed]
    loss = trial.flosser.run(3, trial.active)
    assert torch.isfinite(loss).all()
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, trial.flosser.flossed))
    rows = trial.run()
    assert rows[0]["floss_target"] == pytest.approx(rows[0]["lambda_max_data"])
    assert rows[0]["floss_mode"] == "pre"
    # the regularizer form runs through the same spectrum
    rows = train(
        small(
            **{
                "floss.mode": "regularizer",
                "floss.strength": 0.1,
                "floss.target": "data",
                "floss.horizon": 30,
                "floss.warmup": 10,
                "train.epochs": 3,
            }
        )
    )
    assert rows[0]["status"] == "ok"


@pytest.mark.parametrize("arch", ["lstm", "rnn", "gru"])
def test_other_architectures_train_as_generators(arch):
    rows = train(small(**{"model.arch": arch, "train.epochs": 3}))
    assert rows[0]["status"] == "ok" and np.isfinite(rows[0]["final_loss"])


def test_plrnn_also_runs_the_parity_task():
    rows = train(
        resolve(
            {
                "model": {"arch": "plrnn", "hidden": 8},
                "task": {"delay": 2},
                "train": {"epochs": 3, "length": 10, "success_window": 2},
                "floss": {"mode": "pre", "pre_steps": 2},
            }
        )
    )
    assert rows[0]["status"] == "ok"


@pytest.mark.parametrize(
    "override, key",
    [
        ({"floss.target": "data"}, "floss.target"),  # parity: no data exponent to floss toward
        ({"task.name": "lorenz63", "model.hidden": 2}, "model.hidden"),
        ({"task.name": "lorenz63", "task.train_steps": 100, "train.length": 100}, "train.length"),
        ({"task.tau": 0}, "task.tau"),
        ({"task.tau": "sometimes"}, "task.tau"),
        ({"task.dt": -0.1}, "task.dt"),
        ({"train.forcing": "partial"}, "train.forcing"),
        ({"floss.target": "zero"}, "floss.target"),
        ({"task.name": "lorenz63", "train.dstsp_convention": "paper"}, "train.dstsp_convention"),
        ({"train.dstsp_convention": "authors"}, "train.dstsp_convention"),  # parity has no D_stsp
    ],
)
def test_bad_chaotic_config_names_the_key(override, key):
    with pytest.raises(ConfigError) as err:
        resolve(override)
    assert err.value.key == key


def test_chaotic_config_values():
    config = resolve(
        {"task.name": "roessler", "task.tau": "none", "floss.target": "data", "model.arch": "plrnn", "train.epochs": 10}
    )
    assert config["task"]["tau"] == "none" and config["floss"]["target"] == "data"
    assert resolve({"task.name": "lorenz63", "task.tau": "40"})["task"]["tau"] == 40


def test_report_marks_the_predicted_tau_on_the_tau_axis(tmp_path, monkeypatch):
    report = pytest.importorskip("flosssweep.report")
    from flosssweep import records
    from flosssweep.report import figures

    rows = []
    for tau in (2, 5):
        rows += train(small(**{"task.tau": tau, "train.epochs": 2}))
    records.write(rows, tmp_path / "records.parquet")
    seen = {}
    plot = figures.plot_success_curves

    def spy(curves, path, *args, marker=None, **kwargs):
        seen["marker"] = marker
        return plot(curves, path, *args, marker=marker, **kwargs)

    monkeypatch.setattr(figures, "plot_success_curves", spy)
    assert (
        report.main(
            [
                "--from-parquet",
                str(tmp_path / "records.parquet"),
                "--x",
                "tau",
                "--n-draws",
                "0",
                "--out",
                str(tmp_path / "report"),
            ]
        )
        == 0
    )
    ((value, label),) = seen["marker"]
    assert value == pytest.approx(rows[0]["tau_predicted"]) and "ln 2" in label
    assert (tmp_path / "report" / "success_vs_tau.png").exists()
