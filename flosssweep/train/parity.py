"""Delayed parity tasks (copy, XOR, higher parity): the flossing paper's benchmark of long memory."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from flosssweep import models, tasks
from flosssweep.floss import floss_loss
from flosssweep.names import RETENTION_GATE
from flosssweep.streams import MemberStreams
from flosssweep.train.diagnostics import gradient_by_lag, jacobian_log_singular_values, retention_by_unit
from flosssweep.train.loop import Trial, nanmean

CONVERGENCE_WINDOW = 20  # epochs of the moving mean that defines epochs_to_success


def epochs_to_success(accuracy: np.ndarray, threshold: float, window: int = CONVERGENCE_WINDOW) -> int | None:
    """First epoch (counted from 1) at which the mean accuracy of the last `window` epochs reaches
    `threshold`, or None."""
    if len(accuracy) < window:
        return None
    moving = np.convolve(accuracy, np.ones(window) / window, mode="valid")
    hits = np.flatnonzero(moving >= threshold)
    return int(hits[0]) + window if len(hits) else None


class ParityTrial(Trial):
    """Binary inputs, one logit per step; scored where the target is defined (t >= delay)."""

    def __init__(self, config: dict):
        super().__init__(config, inputs=1, outputs=1)
        task, train = config["task"], config["train"]
        self.task = tasks.Parity(task["bits"], task["delay"], train["batch"], train["length"])
        self.workspace = models.Workspace()  # scratch memory of a fused forward, reused every epoch
        self._state_spectrum: tuple[tuple[int, bool], Tensor] | None = None
        # the batches of the gradient-against-lag diagnostic: a third stream, numbered like the spectrum's
        self.lag_streams = MemberStreams(config["seed"], config["ensemble"], stream=2, device=self.device)

    def batch_loss(self) -> tuple[Tensor, Tensor]:
        x0 = self.model.initial_state(self.params, self.config["train"]["batch"])
        inputs, targets = (t.to(x0.dtype) for t in self.task.sample(self.streams))  # float64 trials in tests
        if self.model.logits is not None:
            logits = self.model.logits(self.params, x0, inputs, self.workspace)
        else:
            logits = self.model.readout(self.params, self.model.run(self.params, x0, inputs))
        logits = logits[..., 0][self.task.scored]
        scored = targets[self.task.scored]
        loss = F.binary_cross_entropy_with_logits(logits, scored, reduction="none").mean(dim=(0, 2))
        accuracy = ((logits > 0) == (scored > 0.5)).float().mean(dim=(0, 2))
        return loss, accuracy

    def spectrum(self) -> Tensor:
        """Exponents (R, k) on a fresh input sequence from the diagnostic streams, no gradients."""
        with torch.no_grad():
            return self.flosser.spectrum(streams=self.diagnostic_streams).cpu()

    def state_spectrum(self) -> Tensor:
        """The exponents (R, k) of the current training state, estimated once: every metric, stage
        column and outcome of one state reads this one estimate, so a record agrees with itself
        (log_condition_final is exactly (lambda_1 - lambda_k) * Tp). A state is (epoch, pre-flossed):
        within `run` nothing else changes the parameters. Its input sequence is diagnostic draw number
        2 * epoch + pre-flossed, so the estimate depends on the state alone, not on how many reports
        came before it (a run with and without progress reports records the same values)."""
        key = (self.epoch, self.pre_flossed)
        if self._state_spectrum is None or self._state_spectrum[0] != key:
            self.diagnostic_streams.draws.fill_(self.state_draw())
            self._state_spectrum = (key, self.spectrum())
        return self._state_spectrum[1]

    def state_draw(self) -> int:
        """The diagnostic draw number of the current training state."""
        return 2 * self.epoch + int(self.pre_flossed)

    def stage_curves(self, stage: str) -> dict[str, Tensor]:
        """Every k exponents of the state's spectrum estimate; at the stages also the log singular values
        of the Tp-step Jacobian along that estimate's trajectory (its own inputs, drawn again) and the
        gradient norm against the lag on a fresh batch of the lag streams (flosssweep.train.diagnostics)."""
        curves = {"lyapunov": self.state_spectrum()}
        if stage == "train":
            return curves
        self.diagnostic_streams.draws.fill_(self.state_draw())
        curves["jacobian_log_sv"] = jacobian_log_singular_values(
            self.model, self.params, self.flosser.inputs(self.diagnostic_streams)
        )
        self.lag_streams.draws.fill_(self.state_draw())
        dtype = self.params[self.model.flossed[0]].dtype
        inputs, targets = (t.to(dtype) for t in self.task.sample(self.lag_streams))

        def last_loss(p: dict, z: Tensor) -> Tensor:
            logits = self.model.readout(p, z)[..., 0]
            return F.binary_cross_entropy_with_logits(logits, targets[-1], reduction="none")

        curves["grad_norm_by_lag"] = gradient_by_lag(self.model, self.params, inputs, last_loss)
        if self.model.retention is not None:
            curves[RETENTION_GATE] = retention_by_unit(self.model, self.params, inputs)
        return curves

    def succeeding(self) -> Tensor:
        """Bool (R,): mean accuracy over the last success_window epochs (fewer early on) passes."""
        train = self.config["train"]
        window = self.accuracy[max(0, self.epoch - train["success_window"]) : self.epoch]
        if len(window) == 0:
            return torch.zeros(len(self.streams), dtype=torch.bool)
        return (window.mean(dim=0) >= train["success_threshold"]) & self.active.cpu()

    def task_metrics(self) -> dict:
        exponents = self.state_spectrum()
        alive = self.active.cpu()
        last = self.epoch - 1
        accuracy = self.accuracy[last][alive] if last >= 0 else torch.tensor([])
        lambda_1, lambda_k = exponents[:, 0][alive], exponents[:, -1][alive]
        return {
            "losses/floss_now": nanmean(floss_loss(exponents, self.config["floss"]["target"])[alive]),
            "charts/accuracy": nanmean(accuracy),
            "lyapunov/lambda_1": nanmean(lambda_1),
            "lyapunov/lambda_k": nanmean(lambda_k),
            "lyapunov/mean_abs": nanmean(exponents[alive].abs()),
            "lyapunov/log_condition": nanmean((lambda_1 - lambda_k) * self.config["floss"]["horizon"]),
        }

    def stage_diagnostics(self) -> dict[str, Tensor]:
        """log condition number of the Tp-step Jacobian along a trajectory, estimated as
        (lambda_1 - lambda_k) * Tp from the first k exponents (with k = N, of the whole Jacobian)."""
        exponents = self.state_spectrum()
        return {"log_condition": (exponents[:, 0] - exponents[:, -1]) * self.config["floss"]["horizon"]}

    def outcome(self, j: int) -> dict:
        train = self.config["train"]
        window = slice(train["epochs"] - train["success_window"], train["epochs"])
        return {
            "final_accuracy": float(self.accuracy[window, j].mean()),
            "epochs_to_success": epochs_to_success(self.accuracy[:, j].numpy(), train["success_threshold"]),
            "lambda_1": float(self.state_spectrum()[j, 0]),
            "lambda_k": float(self.state_spectrum()[j, -1]),
        }
