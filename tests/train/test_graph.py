"""The graphed epoch (`train.graph`): on a CPU its structure runs with the capture replaced by eager
calls (warm-up steps, the trial's state put back, outputs in fixed buffers, the masked Adam step), and
it must train exactly the realization the eager loop trains, in float64."""

import pytest
import torch
from conftest import SMALL

from flosssweep.config import ConfigError, resolve
from flosssweep.names import RECORDS_VERSION
from flosssweep.optim import MemberAdam
from flosssweep.train import ParityTrial, train
from flosssweep.train.graph import GraphedEpoch, epoch_runner

torch.set_num_threads(1)
EPOCHS = 6


def float64_trial(config: dict, graphed: bool) -> ParityTrial:
    trial = ParityTrial(config)
    trial.params = {name: t.detach().double().requires_grad_() for name, t in trial.params.items()}
    trial.optimizer = MemberAdam(list(trial.params.values()), lr=config["train"]["lr"])
    trial.flosser = trial.make_flosser()
    trial.loss = trial.loss_device = trial.loss_device.double()
    trial.accuracy = trial.accuracy_device = trial.accuracy_device.double()
    trial.grad_norm, trial.floss_value = trial.grad_norm.double(), trial.floss_value.double()
    trial.epoch_step = epoch_runner(trial, capture=False) if graphed else trial.guarded_step
    return trial


def train_epochs(trial: ParityTrial, epochs: int = EPOCHS) -> list[dict]:
    """`epochs` epochs; after each, the first moments m (0.1 x the clipped gradient after the first)."""
    moments = []
    for _ in range(epochs):
        trial.train_step()
        trial.epoch += 1
        moments.append({name: m.clone() for name, m in zip(trial.params, trial.optimizer.m)})
    return moments


def assert_same(eager: ParityTrial, graphed: ParityTrial, moments: tuple[list, list]) -> None:
    close = {"rtol": 1e-12, "atol": 1e-14, "equal_nan": True}
    for first, second in zip(*moments):
        for name in first:
            torch.testing.assert_close(second[name], first[name], **close)
    for name in eager.params:
        torch.testing.assert_close(graphed.params[name], eager.params[name], **close)
    for a, b in zip(eager.optimizer.v, graphed.optimizer.v):
        torch.testing.assert_close(b, a, **close)
    torch.testing.assert_close(graphed.loss[:EPOCHS], eager.loss[:EPOCHS], **close)
    torch.testing.assert_close(graphed.accuracy[:EPOCHS], eager.accuracy[:EPOCHS], **close)
    torch.testing.assert_close(graphed.grad_norm, eager.grad_norm, **close)
    torch.testing.assert_close(graphed.floss_value, eager.floss_value, **close)
    for name in ("active", "nonfinite", "consecutive_nonfinite"):
        assert torch.equal(getattr(graphed, name), getattr(eager, name)), name
    assert int(graphed.streams.draws) == int(eager.streams.draws)


@pytest.mark.parametrize("arch", ["rnn", "lstm"])
@pytest.mark.parametrize("flossing", [False, True])
def test_graphed_and_eager_epochs_give_the_same_values_and_gradients_in_float64(arch, flossing):
    floss = {"floss.mode": "regularizer", "floss.strength": 0.05, "floss.k": 3} if flossing else {"floss.mode": "none"}
    config = resolve(SMALL, {"ensemble": 3, "model.arch": arch, "train.clip": 0.5, **floss})
    eager, graphed = float64_trial(config, graphed=False), float64_trial(config, graphed=True)
    assert eager.epoch_step == eager.guarded_step and isinstance(graphed.epoch_step, GraphedEpoch)
    moments = train_epochs(eager), train_epochs(graphed)
    assert_same(eager, graphed, moments)
    # the warm-up steps really ran (and were undone): without putting the state back, the graphed
    # trial would be WARMUP_STEPS draws and Adam steps ahead
    assert graphed.epoch_step.outputs is not None and int(graphed.optimizer.steps[0]) == EPOCHS


def test_graphed_epochs_skip_and_diverge_a_non_finite_member_like_eager_ones():
    config = resolve(SMALL, {"ensemble": 3, "floss.mode": "none", "train.max_nonfinite": 3})
    eager, graphed = float64_trial(config, graphed=False), float64_trial(config, graphed=True)
    for trial in (eager, graphed):
        with torch.no_grad():
            trial.params["J"][1, 0, 0] = float("inf")
    moments = train_epochs(eager), train_epochs(graphed)
    assert_same(eager, graphed, moments)
    assert graphed.active.tolist() == [True, False, True] and graphed.nonfinite.tolist() == [0, 3, 0]


def test_graph_auto_is_the_eager_step_on_cpu_and_on_needs_cuda():
    trial = ParityTrial(resolve(SMALL, {"floss.mode": "none"}))
    assert trial.config["train"]["graph"] == "auto" and trial.epoch_step == trial.guarded_step
    assert not trial.optimizer.always_masked
    with pytest.raises(ConfigError, match=r"^train.graph: expected auto or off unless device is cuda"):
        resolve(SMALL, {"train.graph": "on"})
    with pytest.raises(ConfigError, match="train.graph"):
        resolve(SMALL, {"train.graph": "yes"})


def test_records_carry_the_records_version_of_their_random_streams():
    rows = train(resolve(SMALL, {"ensemble": 2, "floss.mode": "none"}))
    assert RECORDS_VERSION == 3 and {row["records_version"] for row in rows} == {RECORDS_VERSION}
