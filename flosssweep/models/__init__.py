"""Recurrent networks with a leading ensemble axis: rnn, lstm, gru and plrnn, built from a config."""

from __future__ import annotations

import torch

from flosssweep.models.gated import GRU, LSTM
from flosssweep.models.kernels import Workspace
from flosssweep.models.plrnn import PLRNN
from flosssweep.models.protocol import Model, Params, unroll
from flosssweep.models.rnn import RNN

ARCHITECTURES: dict[str, type[Model]] = {cls.arch: cls for cls in (RNN, LSTM, GRU, PLRNN)}

__all__ = [
    "ARCHITECTURES",
    "GRU",
    "LSTM",
    "PLRNN",
    "RNN",
    "Model",
    "Params",
    "Workspace",
    "build",
    "init_params",
    "unroll",
]


def build(config: dict, inputs: int = 1, outputs: int = 1) -> Model:
    m = config["model"]
    return ARCHITECTURES[m["arch"]](
        m["hidden"], inputs=inputs, outputs=outputs, g=m["g"], init=m["init"], relax_steps=m["relax_steps"]
    )


def init_params(model: Model, generators: list[torch.Generator], dtype=torch.float32, device="cpu") -> Params:
    """Stacked parameters of one member per generator, as leaf tensors that require grad."""
    members = [model.init_member(gen) for gen in generators]
    return {
        name: torch.stack([m[name] for m in members]).to(dtype=dtype, device=device).requires_grad_()
        for name in members[0]
    }
