"""The epoch as a CUDA graph (`train.graph`): the guarded step recorded once and replayed every epoch.

A GPU epoch of N = 80, T = 300 is launch-bound: a few kernels per time step, forward and backward,
whatever the ensemble size. `Trial.guarded_step` is written to be capturable (fixed shapes, no host
sync, every piece of state changed in place, the data drawn from device-side counters), so the whole
of it (draw, forward, backward, guards, Adam) becomes one graph launch.

Capture needs a few eager runs first (cuBLAS workspaces, autograd's buffers); those would be real
training steps, so the trial's state is saved before them and put back after, and the realization
is exactly the one the eager loop trains. `capture=False` runs the same structure (warm-up, restore,
outputs in fixed buffers) with the capture replaced by eager calls: that is what the CPU tests check.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from torch import Tensor

WARMUP_STEPS = 3  # eager runs before capture (PyTorch's documented whole-network capture uses 3)

Step = Callable[[], tuple[Tensor, Tensor | None]]


def state_tensors(trial) -> list[Tensor]:
    """Every tensor a guarded step changes: what warm-up must leave as it found it."""
    adam = trial.optimizer
    return [
        *trial.params.values(),
        *adam.m,
        *adam.v,
        adam.steps,
        trial.streams.draws,
        trial.active,
        trial.nonfinite,
        trial.consecutive_nonfinite,
        trial.grad_norm,
        trial.floss_value,
    ]


class GraphedEpoch:
    """`step` recorded as a CUDA graph on first call and replayed after (or, `capture=False`, called
    eagerly in the same structure); returns the step's (loss, accuracy) in buffers it reuses."""

    def __init__(self, step: Step, state: list[Tensor], capture: bool):
        self.step, self.state, self.capture = step, state, capture
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs: tuple[Tensor, Tensor | None] | None = None

    def _warm_up(self) -> None:
        saved = [t.detach().clone() for t in self.state]
        if self.capture:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    self.step()
            torch.cuda.current_stream().wait_stream(side)
        else:
            for _ in range(WARMUP_STEPS):
                self.step()
        with torch.no_grad():
            for live, kept in zip(self.state, saved):
                live.copy_(kept)

    def __call__(self) -> tuple[Tensor, Tensor | None]:
        if self.capture:
            if self.graph is None:
                self._warm_up()
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):
                    self.outputs = self.step()
            self.graph.replay()
            return self.outputs
        if self.outputs is None:
            self._warm_up()
        loss, accuracy = self.step()
        if self.outputs is None:
            self.outputs = (loss.clone(), None if accuracy is None else accuracy.clone())
        else:
            self.outputs[0].copy_(loss)
            if accuracy is not None:
                self.outputs[1].copy_(accuracy)
        return self.outputs


class FallbackEpoch:
    """`train.graph: auto`: the graphed epoch, or the eager one for good if capture fails (with one
    line on stderr naming why), the trial's state restored either way."""

    def __init__(self, graphed: GraphedEpoch, eager: Step):
        self.graphed, self.eager, self.failed = graphed, eager, False

    def __call__(self) -> tuple[Tensor, Tensor | None]:
        if not self.failed:
            saved = [t.detach().clone() for t in self.graphed.state] if self.graphed.graph is None else None
            try:
                return self.graphed()
            except RuntimeError as error:
                if saved is None:
                    raise
                self.failed = True
                with torch.no_grad():
                    for live, kept in zip(self.graphed.state, saved):
                        live.copy_(kept)
                print(f"train.graph auto: CUDA graph capture failed, epochs run eagerly ({error})", file=sys.stderr)
        return self.eager()


def wanted(config: dict) -> bool:
    """Whether this trial's epochs are graphed: `on`, or `auto` on cuda without a flossing loss in
    every step (the spectrum's QR is the part least sure to be capturable)."""
    mode = config["train"]["graph"]
    if mode == "auto":
        return config["device"] == "cuda" and config["floss"]["strength"] == 0
    return mode == "on"


def epoch_runner(trial, capture: bool | None = None) -> Step:
    """The trial's epoch: `trial.guarded_step` itself, or graphed as `train.graph` says. `capture`
    False forces the graphed structure without capture (the CPU tests); None captures on cuda."""
    if capture is None:
        if not wanted(trial.config):
            return trial.guarded_step
        capture = True
    trial.optimizer.always_masked = True  # a graph cannot branch on whether every member is active
    graphed = GraphedEpoch(trial.guarded_step, state_tensors(trial), capture)
    if capture and trial.config["train"]["graph"] == "auto":
        return FallbackEpoch(graphed, trial.guarded_step)
    return graphed
