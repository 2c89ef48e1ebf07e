"""LSTM and GRU ensembles with PyTorch's cell equations and init, and their fast paths: the fused
recurrences of `gated_kernels` for training, and the step with its tangent from one evaluation of the
gates for flossing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import torch
from torch import Tensor

from flosssweep.lyapunov import check_arguments, initial_frame, lyapunov_spectrum, qr_schedule
from flosssweep.models.gated_kernels import Advance, gru_advance, gru_states, lstm_advance, lstm_states, readout_rows
from flosssweep.models.gated_spectrum import gru_spectrum, lstm_spectrum
from flosssweep.models.kernels import Workspace, _Fresh
from flosssweep.models.protocol import Model, Params, bmm_t


class GatedCell(Model):
    """Shared parts of LSTM and GRU: PyTorch's cell equations and its uniform init."""

    flossed = ("W_ih", "W_hh", "b_ih", "b_hh")
    gates = 0
    advance: ClassVar[Callable[[Params], Advance]]  # params -> (state, input, Q) -> (next state, D Q)
    fused_spectrum: ClassVar[Callable[..., Tensor]]  # (p, z, inputs, k, q0, flags, counted, min_diag) -> exponents

    def __init__(self, hidden: int, inputs: int = 1, outputs: int = 1, **_ignored):
        self.hidden, self.inputs, self.outputs = hidden, inputs, outputs

    def init_member(self, gen: torch.Generator) -> Params:
        n, bound = self.hidden, 1 / math.sqrt(self.hidden)

        def uniform(*shape):
            return (2 * torch.rand(*shape, generator=gen, dtype=torch.float64) - 1) * bound

        return {
            "W_ih": uniform(self.gates * n, self.inputs),
            "W_hh": uniform(self.gates * n, n),
            "b_ih": uniform(self.gates * n),
            "b_hh": uniform(self.gates * n),
            "w_out": uniform(self.outputs, n),
            "c": uniform(self.outputs),
            "x0": torch.zeros(self.state_size, dtype=torch.float64),
        }

    def initial_state(self, p: Params, batch: int) -> Tensor:
        return p["x0"].unsqueeze(1).expand(-1, batch, -1)

    def tangent(self, p: Params, z: Tensor, s: Tensor, Q: Tensor) -> Tensor:
        """D Q, the step's Jacobian at state z applied to the frame Q (R, B, S, k)."""
        return self.advance(p)(z, s, Q)[1]

    def spectrum(
        self,
        p: Params,
        z: Tensor,
        inputs,
        k: int,
        *,
        warmup: int | None = None,
        qr_every: int = 1,
        q0: Tensor | None = None,
        min_diag: float = 1e-30,
    ) -> Tensor:
        """`lyapunov_spectrum(step, z, inputs, k, tangent=self.tangent, ...)` as one autograd node
        with a hand-written backward (`gated_spectrum`): the same numbers up to round-off; gradients
        reach W_ih, W_hh, b_ih, b_hh and z (not q0). z (R, B, S), inputs (Tp, R, B, I) -> (R, B, k).
        Inputs that are not one tensor go through the loop with the step and tangent sharing the
        gates (`advance`), differentiated by autograd."""
        if not isinstance(inputs, Tensor):
            return lyapunov_spectrum(
                None, z, inputs, k, warmup=warmup, qr_every=qr_every, q0=q0, min_diag=min_diag, advance=self.advance(p)
            )
        warmup = check_arguments(self.state_size, inputs.shape[0], k, warmup, qr_every)
        flags, counted = qr_schedule(inputs.shape[0], warmup, qr_every)
        if q0 is None:
            q0 = initial_frame(self.state_size, k, dtype=z.dtype, device=z.device)
        return self.fused_spectrum(p, z, inputs, k, q0, flags, counted, min_diag)

    def readout(self, p: Params, states: Tensor) -> Tensor:
        h = states[..., : self.hidden]
        return torch.einsum("...rbs,ros->...rbo", h, p["w_out"]) + p["c"].unsqueeze(1)

    def _preactivations(self, p: Params, h: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        return bmm_t(s, p["W_ih"]) + p["b_ih"].unsqueeze(1), bmm_t(h, p["W_hh"]) + p["b_hh"].unsqueeze(1)


class LSTM(GatedCell):
    """torch.nn.LSTMCell with the state (h, c) concatenated, so the spectrum has 2N exponents."""

    arch = "lstm"
    gates = 4

    def __init__(self, hidden: int, **kwargs):
        super().__init__(hidden, **kwargs)
        self.state_size = 2 * hidden

    def step(self, p: Params, z: Tensor, s: Tensor) -> Tensor:
        h, c = z[..., : self.hidden], z[..., self.hidden :]
        gi, gh = self._preactivations(p, h, s)
        i, f, g, o = (gi + gh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return torch.cat([h, c], dim=-1)

    def retention(self, p: Params, z: Tensor, s: Tensor) -> Tensor:
        """The forget gate f (R, B, N) at state z and input s."""
        gi, gh = self._preactivations(p, z[..., : self.hidden], s)
        return torch.sigmoid((gi + gh).chunk(4, dim=-1)[1])

    advance = staticmethod(lstm_advance)
    fused_spectrum = staticmethod(lstm_spectrum)

    def run(self, p: Params, z: Tensor, inputs: Tensor) -> Tensor:
        """States [h, c] after each input, (T, R, B, 2N), by the fused recurrence."""
        hidden, cells = lstm_states(p, z, inputs, _Fresh)
        return torch.cat([hidden.transpose(0, 1), cells], dim=-1)

    def logits(self, p: Params, z: Tensor, inputs: Tensor, workspace: Workspace | None = None) -> Tensor:
        """`readout(run(z, inputs))` by the fused recurrence and one readout matmul: (T, R, B, O)."""
        return readout_rows(p, lstm_states(p, z, inputs, workspace or _Fresh)[0])


class GRU(GatedCell):
    """torch.nn.GRUCell."""

    arch = "gru"
    gates = 3

    def __init__(self, hidden: int, **kwargs):
        super().__init__(hidden, **kwargs)
        self.state_size = hidden

    def step(self, p: Params, z: Tensor, s: Tensor) -> Tensor:
        gi, gh = self._preactivations(p, z, s)
        ir, iz, in_ = gi.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r, u = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + r * hn)
        return (1 - u) * n + u * z

    def retention(self, p: Params, z: Tensor, s: Tensor) -> Tensor:
        """The update gate u (R, B, N) at state z and input s."""
        gi, gh = self._preactivations(p, z, s)
        return torch.sigmoid(gi.chunk(3, dim=-1)[1] + gh.chunk(3, dim=-1)[1])

    advance = staticmethod(gru_advance)
    fused_spectrum = staticmethod(gru_spectrum)

    def run(self, p: Params, z: Tensor, inputs: Tensor) -> Tensor:
        """States after each input, (T, R, B, N), by the fused recurrence."""
        return gru_states(p, z, inputs, _Fresh).transpose(0, 1)

    def logits(self, p: Params, z: Tensor, inputs: Tensor, workspace: Workspace | None = None) -> Tensor:
        """`readout(run(z, inputs))` by the fused recurrence and one readout matmul: (T, R, B, O)."""
        return readout_rows(p, gru_states(p, z, inputs, workspace or _Fresh))
