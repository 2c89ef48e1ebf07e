"""What a model is: the `Model` protocol, its parameter dict, and the plain pieces every step is made of.

Models are functional: parameters live in a dict of tensors whose first axis is the member index R,
and `step(params, z, s)` maps a state of shape (R, B, S) and an input (R, B, I) to the next state.
Keeping parameters outside the model lets the trainer cast them (float64 tangent loops), stack them
(one Adam for R independent members) and close over them (the Lyapunov spectrum of any step).
Member j is initialised from its own generator, so it is the same network whatever R is.

Fast paths are optional and explicit: an architecture that has one sets the attribute to a method,
one that has none leaves it None, and callers test `is not None` (never `hasattr`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor

Params = dict[str, Tensor]
# (params, state (R, B, S), input (R, B, I), frame Q (R, B, S, k)) -> D Q, the step's Jacobian applied to Q
TangentMap = Callable[[Params, Tensor, Tensor, Tensor], Tensor]
# (params, state (R, B, S), inputs (T, R, B, I), workspace) -> readout(run(...)) (T, R, B, O)
FusedLogits = Callable[..., Tensor]
# (params, state, inputs (Tp, R, B, I), k, *, warmup, qr_every, ...) -> exponents (R, B, k)
FusedSpectrum = Callable[..., Tensor]
# params -> the input-free step z -> z_next with its constants computed once
AutonomousStepper = Callable[[Params], Callable[[Tensor], Tensor]]
# (params, state (R, B, S), input (R, B, I)) -> the gate that carries the state over (R, B, N)
RetentionGate = Callable[[Params, Tensor, Tensor], Tensor]


@runtime_checkable
class Model(Protocol):
    arch: ClassVar[str]
    flossed: ClassVar[tuple[str, ...]]  # parameters the flossing optimizer moves
    hidden: int
    inputs: int
    outputs: int
    state_size: int  # dimension S of the state the Lyapunov spectrum lives in

    def init_member(self, gen: torch.Generator) -> Params: ...
    def initial_state(self, p: Params, batch: int) -> Tensor: ...
    def step(self, p: Params, z: Tensor, s: Tensor) -> Tensor: ...
    def run(self, p: Params, z: Tensor, inputs: Tensor) -> Tensor: ...
    def readout(self, p: Params, states: Tensor) -> Tensor: ...

    # Optional fast paths; None where the architecture has none.
    logits: FusedLogits | None = None  # fused forward with a hand-written backward
    spectrum: FusedSpectrum | None = None  # fused Lyapunov loop with a hand-written backward
    tangent: TangentMap | None = None  # analytic tangent map (else jvp of `step`)
    stepper: AutonomousStepper | None = None  # fast input-free step for long free runs
    retention: RetentionGate | None = None  # gated cells: near 1 a unit carries its state over


def bmm_t(a: Tensor, weight: Tensor) -> Tensor:
    """a (R, B, M) times weight (R, N, M) transposed -> (R, B, N)."""
    return torch.bmm(a, weight.transpose(1, 2))


def unroll(step, p: Params, z: Tensor, inputs: Tensor) -> Tensor:
    """States after each input, by a plain time loop: inputs (T, R, B, I) -> states (T, R, B, S).
    `unbind` gives one backward node where indexing inputs[t] would give T of them."""
    states = []
    for s in inputs.unbind(0):
        z = step(p, z, s)
        states.append(z)
    return torch.stack(states)
