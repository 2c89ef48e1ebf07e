"""Recurrent networks with a leading ensemble axis.

Models are functional: parameters live in a dict of tensors whose first axis is the member index R,
and `step(params, state, x)` maps a state of shape (R, B, S) and an input (R, B, I) to the next state.
Keeping parameters outside the model lets the trainer cast them (float64 tangent loops), stack them
(one Adam for R independent members) and close over them (the Lyapunov spectrum of any step).

Member j is initialised from its own generator, so it is the same network whatever R is.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

Params = dict[str, Tensor]


def _bmm_t(x: Tensor, weight: Tensor) -> Tensor:
    """x (R, B, M) times weight (R, N, M) transposed -> (R, B, N)."""
    return torch.bmm(x, weight.transpose(1, 2))


class RNN:
    """The vanilla network of the flossing paper; the state x is the pre-activation.

    x_next = J tanh(x) + b + W_in s_next,   logit = w_out . x + c
    """

    arch = "rnn"
    flossed = ("J", "W_in", "b")

    def __init__(self, hidden: int, inputs: int = 1, outputs: int = 1, g: float = 1.0,
                 init: str = "gaussian", relax_steps: int = 100):
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
        x0 = torch.randn(n, generator=gen, dtype=torch.float64)
        for _ in range(self.relax_steps):
            x0 = J @ torch.tanh(x0) + b
        c = torch.full((self.outputs,), 0.001, dtype=torch.float64)
        return {"J": J, "W_in": W_in, "b": b, "w_out": w_out, "c": c, "x0": x0}

    def initial_state(self, p: Params, batch: int) -> Tensor:
        return p["x0"].unsqueeze(1).expand(-1, batch, -1)

    def step(self, p: Params, x: Tensor, s: Tensor) -> Tensor:
        return torch.baddbmm(p["b"].unsqueeze(1) + _bmm_t(s, p["W_in"]), torch.tanh(x), p["J"].transpose(1, 2))

    def tangent(self, p: Params, x: Tensor, s: Tensor, Q: Tensor) -> Tensor:
        """D Q with D = J diag(1 - tanh(x)^2); 1 - tanh^2 rather than sech^2, which underflows."""
        gain = 1 - torch.tanh(x) ** 2
        return p["J"].unsqueeze(1) @ (gain.unsqueeze(-1) * Q)

    def run(self, p: Params, x: Tensor, inputs: Tensor) -> Tensor:
        """States after each input; inputs (T, R, B, I) -> states (T, R, B, S). The input drive
        of all steps is one matmul, leaving one fused multiply-add per step in the loop."""
        T, R, B, _ = inputs.shape
        drive = (inputs.permute(1, 0, 2, 3).reshape(R, T * B, -1) @ p["W_in"].transpose(1, 2))
        drive = drive.reshape(R, T, B, -1).permute(1, 0, 2, 3) + p["b"].unsqueeze(1)
        JT = p["J"].transpose(1, 2)
        states = []
        for drive_t in drive.unbind(0):  # unbind: one backward node, where indexing makes T of them
            x = torch.baddbmm(drive_t, torch.tanh(x), JT)
            states.append(x)
        return torch.stack(states)

    def readout(self, p: Params, states: Tensor) -> Tensor:
        """states (..., R, B, S) -> outputs (..., R, B, O)."""
        return torch.einsum("...rbs,ros->...rbo", states, p["w_out"]) + p["c"].unsqueeze(1)


class GatedCell:
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
        states = []
        for s in inputs.unbind(0):
            x = self.step(p, x, s)
            states.append(x)
        return torch.stack(states)

    def readout(self, p: Params, states: Tensor) -> Tensor:
        h = states[..., : self.hidden]
        return torch.einsum("...rbs,ros->...rbo", h, p["w_out"]) + p["c"].unsqueeze(1)

    def _preactivations(self, p: Params, h: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
        return _bmm_t(s, p["W_ih"]) + p["b_ih"].unsqueeze(1), _bmm_t(h, p["W_hh"]) + p["b_hh"].unsqueeze(1)


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


ARCHITECTURES = {cls.arch: cls for cls in (RNN, LSTM, GRU)}


def build(config: dict, inputs: int = 1, outputs: int = 1):
    m = config["model"]
    return ARCHITECTURES[m["arch"]](m["hidden"], inputs=inputs, outputs=outputs, g=m["g"], init=m["init"],
                                    relax_steps=m["relax_steps"])


def init_params(model, generators: list[torch.Generator], dtype=torch.float32, device="cpu") -> Params:
    """Stacked parameters of one member per generator, as leaf tensors that require grad."""
    members = [model.init_member(gen) for gen in generators]
    return {name: torch.stack([m[name] for m in members]).to(dtype=dtype, device=device).requires_grad_()
            for name in members[0]}
