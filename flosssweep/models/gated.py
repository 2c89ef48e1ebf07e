"""LSTM and GRU ensembles with PyTorch's cell equations and init.
"""

from __future__ import annotations

import math
import torch
from torch import Tensor
from flosssweep.models.protocol import Model, Params, bmm_t, unroll


class GatedCell(Model):
    """Shared parts of LSTM and GRU: PyTorch's cell equations and its uniform init."""

    flossed = ("W_ih", "W_hh", "b_ih", "b_hh")
    gates = 0

    def __init__(self, hidden: int, inputs: int = 1, outputs: int = 1, **_ignored):
        self.hidden, self.inputs, self.outputs = hidden, inputs, outputs

    def init_member(self, gen: torch.Generator) -> Params:
        n, bound = self.hidden, 1 / math.sqrt(self.hidden)

        def uniform(*shape):
            return (2 * torch.rand(*shape, generator=gen, dtype=torch.float64) - 1) * bound

        return {
            "W_ih": uniform(self.gates * n, self.inputs), "W_hh": uniform(self.gates * n, n),
            "b_ih": uniform(self.gates * n), "b_hh": uniform(self.gates * n),
            "w_out": uniform(self.outputs, n), "c": uniform(self.outputs),
            "x0": torch.zeros(self.state_size, dtype=torch.float64),
        }

    def initial_state(self, p: Params, batch: int) -> Tensor:
        return p["x0"].unsqueeze(1).expand(-1, batch, -1)

    def run(self, p: Params, x: Tensor, inputs: Tensor) -> Tensor:
        return unroll(self.step, p, x, inputs)

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

    def step(self, p: Params, x: Tensor, s: Tensor) -> Tensor:
        h, c = x[..., : self.hidden], x[..., self.hidden:]
        gi, gh = self._preactivations(p, h, s)
        i, f, g, o = (gi + gh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return torch.cat([h, c], dim=-1)


class GRU(GatedCell):
    """torch.nn.GRUCell."""

    arch = "gru"
    gates = 3

    def __init__(self, hidden: int, **kwargs):
        super().__init__(hidden, **kwargs)
        self.state_size = hidden

    def step(self, p: Params, x: Tensor, s: Tensor) -> Tensor:
        gi, gh = self._preactivations(p, x, s)
        ir, iz, in_ = gi.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
        n = torch.tanh(in_ + r * hn)
        return (1 - z) * n + z * x

