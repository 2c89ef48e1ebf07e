"""The vanilla tanh RNN of the flossing paper, with its fused forward, fused spectrum and analytic tangent."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from flosssweep.lyapunov import check_arguments, initial_frame, qr_schedule
from flosssweep.models.kernels import Workspace, _Fresh, _TanhRecurrence, _TanhSpectrum
from flosssweep.models.protocol import Model, Params, bmm_t


class RNN(Model):
    """The vanilla network of the flossing paper; the state z is the pre-activation.

    z_next = J tanh(z) + b + W_in s_next,   logit = w_out . z + c
    """

    arch = "rnn"
    flossed = ("J", "W_in", "b")

    def __init__(
        self,
        hidden: int,
        inputs: int = 1,
        outputs: int = 1,
        g: float = 1.0,
        init: str = "gaussian",
        relax_steps: int = 100,
    ):
        self.hidden, self.inputs, self.outputs = hidden, inputs, outputs
        self.g, self.init, self.relax_steps = g, init, relax_steps
        self.state_size = hidden

    def init_member(self, gen: torch.Generator) -> Params:
        n = self.hidden
        if self.init == "orthogonal":
            q, r = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
            J = self.g * q * torch.sign(torch.diagonal(r))  # sign fix makes q Haar-distributed
        else:
            J = self.g * torch.randn(n, n, generator=gen, dtype=torch.float64) / math.sqrt(n)
        W_in = torch.randn(n, self.inputs, generator=gen, dtype=torch.float64)
        w_out = torch.randn(self.outputs, n, generator=gen, dtype=torch.float64)
        b = 0.1 * torch.rand(n, generator=gen, dtype=torch.float64)
        z0 = torch.randn(n, generator=gen, dtype=torch.float64)
        for _ in range(self.relax_steps):
            z0 = J @ torch.tanh(z0) + b
        c = torch.full((self.outputs,), 0.001, dtype=torch.float64)
        return {"J": J, "W_in": W_in, "b": b, "w_out": w_out, "c": c, "x0": z0}

    def initial_state(self, p: Params, batch: int) -> Tensor:
        return p["x0"].unsqueeze(1).expand(-1, batch, -1)

    def step(self, p: Params, z: Tensor, s: Tensor) -> Tensor:
        return torch.baddbmm(p["b"].unsqueeze(1) + bmm_t(s, p["W_in"]), torch.tanh(z), p["J"].transpose(1, 2))

    def tangent(self, p: Params, z: Tensor, s: Tensor, Q: Tensor) -> Tensor:
        """D Q with D = J diag(1 - tanh(z)^2); 1 - tanh^2 rather than sech^2, which underflows."""
        gain = 1 - torch.tanh(z) ** 2
        return p["J"].unsqueeze(1) @ (gain.unsqueeze(-1) * Q)

    def run(self, p: Params, z: Tensor, inputs: Tensor) -> Tensor:
        """States after each input; inputs (T, R, B, I) -> states (T, R, B, S), one autograd node
        with a hand-written backward (`_TanhRecurrence`)."""
        return _TanhRecurrence.apply(z, inputs, p["J"], p["W_in"], p["b"], None, None, _Fresh)

    def readout(self, p: Params, states: Tensor) -> Tensor:
        """states (..., R, B, S) -> outputs (..., R, B, O)."""
        return torch.einsum("...rbs,ros->...rbo", states, p["w_out"]) + p["c"].unsqueeze(1)

    def logits(self, p: Params, z: Tensor, inputs: Tensor, workspace: Workspace | None = None) -> Tensor:
        """`readout(run(z, inputs))` fused, the trainer's forward pass: outputs (T, R, B, O). The
        states stay in (reused) scratch memory; pass a `Workspace` to keep it between calls."""
        return _TanhRecurrence.apply(
            z, inputs, p["J"], p["W_in"], p["b"], p["w_out"], p["c"], workspace if workspace is not None else _Fresh
        )

    def spectrum(
        self,
        p: Params,
        z: Tensor,
        inputs: Tensor,
        k: int,
        *,
        warmup: int | None = None,
        qr_every: int = 1,
        q0: Tensor | None = None,
        min_diag: float = 1e-30,
    ) -> Tensor:
        """`lyapunov_spectrum(step, z, inputs, k, tangent=self.tangent, ...)` as one autograd node
        with a hand-written backward (`_TanhSpectrum`): same arguments and numbers (up to float
        round-off); forward + backward 2.4-2.8x faster for k <= 16, 1.4x at k = 75 (where
        LAPACK's QR is the largest part). z (R, B, S), inputs (Tp, R, B, I) -> (R, B, k);
        gradients reach J, W_in, b and z (not q0)."""
        warmup = check_arguments(self.state_size, inputs.shape[0], k, warmup, qr_every)
        flags, counted = qr_schedule(inputs.shape[0], warmup, qr_every)
        if q0 is None:
            q0 = initial_frame(self.state_size, k, dtype=z.dtype, device=z.device)
        return _TanhSpectrum.apply(z, inputs, p["J"], p["W_in"], p["b"], q0, flags, counted, min_diag)
