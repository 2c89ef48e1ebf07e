"""Gradient flossing (Engelken, NeurIPS 2023): push the first k Lyapunov exponents toward a target.

The loss `mean_i (lambda_i - target)^2` is minimised by its own Adam over the recurrent weights,
input weights and bias only (never the readout, never the initial state), either alone (before
training, or in episodes during training) or added to the task loss with a weight (`strength`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flosssweep.config import flosses_before_training
from flosssweep.lyapunov import lyapunov_spectrum
from flosssweep.optim import MemberAdam, finite_members
from flosssweep.streams import MemberStreams

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def floss_loss(exponents: Tensor, target: float | Tensor = 0.0) -> Tensor:
    """mean over the k exponents of (lambda_i - target)^2; shape (..., k) -> (...)."""
    return ((exponents - target) ** 2).mean(dim=-1)


def exponents_of(
    model,
    p: dict,
    state: Tensor,
    inputs,
    k: int,
    *,
    warmup: int,
    qr_every: int = 1,
    analytic: bool = True,
    fused: bool = True,
) -> Tensor:
    """`lyapunov_spectrum` of the model's step under parameters `p` (cast and detached as the caller
    wants), through the fastest path the model has: its fused loop (`fused`, needs a tensor of
    inputs), else its analytic tangent, else jvp of `step` (`analytic=False` forces the last).
    Returns (R, B, k)."""
    if analytic and fused and model.spectrum is not None:
        return model.spectrum(p, state, inputs, k, warmup=warmup, qr_every=qr_every)
    tangent = None
    if analytic and model.tangent is not None:

        def tangent(z, s, Q):
            return model.tangent(p, z, s, Q)

    return lyapunov_spectrum(
        lambda z, s: model.step(p, z, s), state, inputs, k, warmup=warmup, qr_every=qr_every, tangent=tangent
    )


def model_spectrum(
    model,
    params: dict,
    inputs: Tensor,
    k: int,
    *,
    warmup: int,
    qr_every: int = 1,
    dtype=torch.float32,
    analytic: bool = True,
) -> Tensor:
    """Exponents (R, k) of each member along the trajectory from its initial state driven by
    `inputs` (Tp, R, 1, I). Gradients reach the flossed parameters only."""
    p = {name: (t if name in model.flossed else t.detach()).to(dtype) for name, t in params.items()}
    exponents = exponents_of(
        model, p, model.initial_state(p, 1), inputs.to(dtype), k, warmup=warmup, qr_every=qr_every, analytic=analytic
    )
    return exponents[:, 0].to(params[model.flossed[0]].dtype)


class Flosser:
    """The flossing optimizer and schedule of one trial (config block `floss`)."""

    def __init__(self, cfg: dict, model, params: dict, streams: MemberStreams):
        self.cfg, self.model, self.params, self.streams = cfg, model, params, streams
        self.flossed = [params[name] for name in model.flossed]
        self.optimizer = MemberAdam(self.flossed, lr=cfg["lr"])
        self.episodes_done = 0
        self.nonfinite = torch.zeros(len(streams), dtype=torch.long, device=streams.device)

    @property
    def before_training(self) -> bool:
        return flosses_before_training(self.cfg["mode"], self.cfg["pre_steps"])

    def episode_due(self, epoch: int) -> bool:
        """An episode runs at epochs every, 2*every, ... (counted from 0), at most `episodes` times."""
        cfg = self.cfg
        return (
            cfg["mode"] in ("during", "pre+during")
            and epoch > 0
            and epoch % cfg["every"] == 0
            and self.episodes_done < cfg["episodes"]
        )

    def inputs(self, streams: MemberStreams | None = None) -> Tensor:
        """A fresh random input sequence (horizon, R, 1, 1) of the members' streams (or the given ones)."""
        horizon = self.cfg["horizon"]
        return (streams or self.streams).bits((horizon,)).T.reshape(horizon, -1, 1, 1)

    def spectrum(self, streams: MemberStreams | None = None) -> Tensor:
        """Exponents (R, k) on a fresh random input sequence of length `horizon` per member, drawn
        from the members' streams (or the given ones)."""
        cfg = self.cfg
        return model_spectrum(
            self.model,
            self.params,
            self.inputs(streams),
            cfg["k"],
            warmup=cfg["warmup"],
            qr_every=cfg["qr_every"],
            dtype=DTYPES[cfg["dtype"]],
        )

    def loss(self) -> Tensor:
        """Per-member flossing loss (R,) on fresh inputs."""
        return floss_loss(self.spectrum(), self.cfg["target"])

    def run(self, steps: int, active: Tensor, done: Callable[[int], None] | None = None) -> Tensor:
        """`steps` flossing-only steps for the active members; returns the last per-member loss.
        `done(n)` hears after each step how many are done (an episode can take minutes)."""
        loss = torch.full((len(self.streams),), float("nan"), device=self.streams.device)
        for step in range(steps):
            loss = self.loss()
            grads = torch.autograd.grad(loss.sum(), self.flossed)
            ok = finite_members(loss.detach(), grads) & active
            self.nonfinite += active & ~ok
            self.optimizer.step(grads, ok)
            if done is not None:
                done(step + 1)
        return loss.detach()

    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "episodes_done": self.episodes_done,
            "nonfinite": self.nonfinite,
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.episodes_done = state["episodes_done"]
        self.nonfinite.copy_(state["nonfinite"])
