"""Diagnostics over training: the Jacobian's singular values and the gradient against the lag, each
against a computation that does not share its code, and the long table a trial keeps."""

import pytest
import torch
import torch.nn.functional as F
from conftest import SMALL

from flosssweep import models
from flosssweep.config import resolve
from flosssweep.names import DIAGNOSTIC_COLUMNS, DIAGNOSTIC_QUANTITIES, DIAGNOSTIC_STAGES
from flosssweep.train import ParityTrial, member_generators, train
from flosssweep.train.diagnostics import gradient_by_lag, jacobian_log_singular_values, retention_by_unit

torch.set_num_threads(1)


@pytest.mark.parametrize("arch", ["rnn", "gru", "lstm"])
def test_jacobian_singular_values_are_those_of_the_composed_steps(arch):
    model = models.ARCHITECTURES[arch](4, inputs=1, outputs=1)
    p = models.init_params(model, member_generators(3, 2), dtype=torch.float64)
    inputs = torch.bernoulli(torch.full((6, 2, 1, 1), 0.5, dtype=torch.float64))
    got = jacobian_log_singular_values(model, p, inputs)
    for j in range(2):
        member = {name: t[j : j + 1] for name, t in p.items()}

        def composed(z0, member=member, j=j):
            z = z0.reshape(1, 1, -1)
            for s in inputs[:, j : j + 1]:
                z = model.step(member, z, s)
            return z.reshape(-1)

        z0 = model.initial_state(member, 1).reshape(-1)
        jacobian = torch.autograd.functional.jacobian(composed, z0)
        expected = torch.linalg.svdvals(jacobian)
        # singular values far below the largest (an LSTM's reach 1e-15 of it) carry its rounding
        torch.testing.assert_close(got[j].exp(), expected, rtol=1e-7, atol=1e-12 * float(expected[0]))


def test_gradient_at_lag_zero_is_the_readouts_by_hand():
    # d BCE(w.z + c, y) / dz = (sigmoid(w.z + c) - y) w: its norm is |sigmoid - y| ||w||
    model = models.ARCHITECTURES["rnn"](5, inputs=1, outputs=1)
    p = models.init_params(model, member_generators(0, 2), dtype=torch.float64)
    inputs = torch.bernoulli(torch.full((7, 2, 3, 1), 0.5, dtype=torch.float64))
    targets = torch.bernoulli(torch.full((2, 3), 0.5, dtype=torch.float64))

    def last_loss(q, z):
        return F.binary_cross_entropy_with_logits(model.readout(q, z)[..., 0], targets, reduction="none")

    got = gradient_by_lag(model, p, inputs, last_loss)
    assert got.shape == (2, 8)
    final = model.run(p, model.initial_state(p, 3), inputs)[-1]
    by_hand = (torch.sigmoid(model.readout(p, final)[..., 0]) - targets).abs() * p["w_out"].norm(dim=(1, 2))[:, None]
    torch.testing.assert_close(got[:, 0], by_hand.mean(dim=1))
    # the last entry is the initial state's: the gradient of the same loss through all 7 steps
    z0 = model.initial_state(p, 3).detach().requires_grad_(True)
    through = torch.autograd.grad(last_loss(p, model.run(p, z0, inputs)[-1]).sum(), z0)[0]
    torch.testing.assert_close(got[:, -1], through.norm(dim=-1).mean(dim=1))


def test_a_trial_keeps_the_spectrum_at_every_report_and_the_rest_at_its_stages():
    config = resolve(SMALL, {"ensemble": 2, "floss.k": 4, "train.report_every": 10, "floss.mode": "pre"})
    tables = []
    rows = train(config, diagnostics=tables.append)
    table = tables[0]
    assert tuple(table.column_names) == DIAGNOSTIC_COLUMNS
    seen = {(r["stage"], r["quantity"], r["epoch"]) for r in table.select(["stage", "quantity", "epoch"]).to_pylist()}
    assert {s for s, _, _ in seen} == set(DIAGNOSTIC_STAGES)
    assert {q for _, q, _ in seen} == set(DIAGNOSTIC_QUANTITIES) - {"retention_gate"}, "a tanh rnn has no gate"
    assert {e for s, q, e in seen if q == "lyapunov"} == {0, 10, 20, 30}
    assert {s for s, q, e in seen if q != "lyapunov"} == {"initial", "pre", "final"}
    # the final spectrum is the record's: lambda_1 and lambda_k of each member
    final = [r for r in table.to_pylist() if r["stage"] == "final" and r["quantity"] == "lyapunov"]
    for row in rows:
        mine = sorted((r["index"], r["value"]) for r in final if r["member"] == row["member"])
        assert [i for i, _ in mine] == [1, 2, 3, 4]
        assert (mine[0][1], mine[-1][1]) == pytest.approx((row["lambda_1"], row["lambda_k"]), rel=1e-6)
    # the Tp-step Jacobian of an N = 16 network: 16 singular values per member and stage
    initial = [r for r in table.to_pylist() if r["quantity"] == "jacobian_log_sv" and r["stage"] == "initial"]
    assert sorted(r["index"] for r in initial if r["member"] == 0) == list(range(1, 17))


def test_a_resumed_trial_keeps_the_same_diagnostics():
    config = resolve(SMALL, {"ensemble": 2, "floss.mode": "pre", "train.report_every": 10})
    saved, full, resumed = {}, [], []
    train(config, checkpoint=lambda state, epoch: saved.setdefault(epoch, state), diagnostics=full.append)
    train(config, restore=saved[20], diagnostics=resumed.append)
    assert full[0].drop_columns(["value"]).equals(resumed[0].drop_columns(["value"]))
    a, b = full[0]["value"].to_pylist(), resumed[0]["value"].to_pylist()
    assert b == pytest.approx(a, rel=1e-6)


def test_a_trial_object_reports_its_table_without_a_sweep():
    trial = ParityTrial(resolve(SMALL, {"floss.mode": "none", "train.epochs": 10, "train.success_window": 5}))
    trial.run()
    assert set(trial.diagnostics_table()["stage"].to_pylist()) == {"initial", "pre", "final"}


@pytest.mark.parametrize("arch, gate", [("lstm", 1), ("gru", 1)])  # PyTorch's order: i f g o; r z n
def test_the_retention_gate_of_a_unit_whose_gate_sees_only_its_bias_is_the_sigmoid_of_it(arch, gate):
    # with every weight 0, the gate of unit i is sigmoid(b_ih[i] + b_hh[i]) at every step and input
    model = models.ARCHITECTURES[arch](3, inputs=1, outputs=1)
    p = {k: v.detach().clone() for k, v in models.init_params(model, member_generators(1, 2), torch.float64).items()}
    p["W_ih"].zero_(), p["W_hh"].zero_(), p["b_hh"].zero_(), p["b_ih"].zero_()
    biases = torch.tensor([[-2.0, 0.0, 5.0], [1.0, 3.0, -30.0]], dtype=torch.float64)
    p["b_ih"][:, gate * 3 : (gate + 1) * 3] = biases
    inputs = torch.bernoulli(torch.full((9, 2, 4, 1), 0.5, dtype=torch.float64))
    expected = 1 / (1 + torch.exp(-biases))
    torch.testing.assert_close(retention_by_unit(model, p, inputs), expected)


def test_a_gated_trial_keeps_its_retention_gate_at_the_stages():
    config = resolve(SMALL, {"model.arch": "gru", "ensemble": 2, "floss.k": 4, "floss.mode": "pre"})
    tables = []
    train(config, diagnostics=tables.append)
    rows = [r for r in tables[0].to_pylist() if r["quantity"] == "retention_gate"]
    assert {r["stage"] for r in rows} == {"initial", "pre", "final"}
    assert sorted(r["index"] for r in rows if r["stage"] == "final" and r["member"] == 0) == list(range(1, 17))
    assert all(0.0 < r["value"] < 1.0 for r in rows)
