"""The piecewise-linear RNN of the sparse-teacher-forcing paper, for chaotic data."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flosssweep.models.protocol import Model, Params, bmm_t, unroll


class PLRNN(Model):
    """Piecewise-linear RNN (Durstewitz, PLoS Comput. Biol. 2017), the model of Mikhaeil, Monfared &
    Durstewitz (NeurIPS 2022) for chaotic data:

        z_next = A z + W relu(z) + h + C s_next,   x = B z

    A is diagonal (stored as a vector), W off-diagonal (its stored diagonal is masked out in every
    step, so it neither acts nor receives gradient). The observation is linear and learned, without
    bias, as in the authors' code: x = B z with B (outputs x M), so a data-inferred state B^+ x
    spreads over all M latents. (With the identity observation B = [I 0] instead, replacing the
    state by B^+ x would zero the unobserved latents at every forcing point, and the step after it
    could not use them.) Init as in the authors' code: [A | W], h and B uniform in +-1/sqrt(M);
    C (inputs, often none) likewise; the initial state x0 (used when no data-inferred state is
    given, e.g. on the parity task) is zero.
    """

    arch = "plrnn"
    # The Jacobian diag(A) + W diag(relu'(z)) depends on h and C only through the switching pattern
    # relu'(z), which has no gradient: flossing can move A and W alone.
    flossed = ("A", "W")

    def __init__(self, hidden: int, inputs: int = 1, outputs: int = 1, **_ignored):
        if outputs > hidden:
            raise ValueError(f"plrnn: hidden ({hidden}) must be >= the observed dimensions ({outputs})")
        self.hidden, self.inputs, self.outputs = hidden, inputs, outputs
        self.state_size = hidden

    def init_member(self, gen: torch.Generator) -> Params:
        m, bound = self.hidden, 1 / math.sqrt(self.hidden)

        def uniform(*shape):
            return (2 * torch.rand(*shape, generator=gen, dtype=torch.float64) - 1) * bound

        AW = uniform(m, m)
        return {
            "A": torch.diagonal(AW).clone(),
            "W": AW - torch.diag(torch.diagonal(AW)),
            "h": uniform(m),
            "C": uniform(m, self.inputs),
            "B": uniform(self.outputs, m),
            "x0": torch.zeros(m, dtype=torch.float64),
        }

    def initial_state(self, p: Params, batch: int) -> Tensor:
        return p["x0"].unsqueeze(1).expand(-1, batch, -1)

    @staticmethod
    def off_diagonal(W: Tensor) -> Tensor:
        return W * (1 - torch.eye(W.shape[-1], dtype=W.dtype, device=W.device))

    def step(self, p: Params, z: Tensor, s: Tensor) -> Tensor:
        drive = (p["A"].unsqueeze(1) * z + p["h"].unsqueeze(1)) + bmm_t(s, p["C"])
        return torch.baddbmm(drive, torch.relu(z), self.off_diagonal(p["W"]).transpose(1, 2))

    def stepper(self, p: Params):
        """The input-free step `z -> z_next` with the masked, transposed W computed once (for long
        autonomous runs: three ops a step instead of seven)."""
        WT, A, h = self.off_diagonal(p["W"]).transpose(1, 2), p["A"].unsqueeze(1), p["h"].unsqueeze(1)

        def step(z: Tensor) -> Tensor:
            return torch.baddbmm(torch.addcmul(h, A, z), torch.relu(z), WT)

        return step

    def run(self, p: Params, z: Tensor, inputs: Tensor) -> Tensor:
        return unroll(self.step, p, z, inputs)

    def tangent(self, p: Params, z: Tensor, s: Tensor, Q: Tensor) -> Tensor:
        """D Q with D = diag(A) + W diag(relu'(z)); Q (R, B, S, k)."""
        gain = (z > 0).to(Q.dtype).unsqueeze(-1)
        return p["A"][:, None, :, None] * Q + self.off_diagonal(p["W"]).unsqueeze(1) @ (gain * Q)

    def readout(self, p: Params, states: Tensor) -> Tensor:
        """x = B z: (..., R, B, S) -> (..., R, B, O)."""
        return torch.einsum("...rbs,ros->...rbo", states, p["B"])
