"""Every architecture is a `Model`, and says which fast paths it has by attribute, not by accident."""

from __future__ import annotations

import pytest
import torch

from flosssweep import models
from flosssweep.models.protocol import Model

FAST_PATHS = ("logits", "spectrum", "tangent", "stepper")


@pytest.mark.parametrize("arch", sorted(models.ARCHITECTURES))
def test_every_architecture_is_a_model_with_explicit_fast_paths(arch):
    model = models.ARCHITECTURES[arch](8, inputs=1, outputs=1)
    assert isinstance(model, Model) and model.arch == arch
    for name in FAST_PATHS:
        path = getattr(model, name)
        assert path is None or callable(path), (arch, name)
    params = models.init_params(model, [torch.Generator().manual_seed(0)])
    assert set(model.flossed) <= set(params)
    state = model.initial_state(params, batch=3)
    assert state.shape == (1, 3, model.state_size)
    assert model.step(params, state, torch.zeros(1, 3, 1)).shape == state.shape


def test_fast_paths_where_the_architectures_have_them():
    have = {
        arch: {n for n in FAST_PATHS if getattr(models.ARCHITECTURES[arch](4), n) is not None}
        for arch in models.ARCHITECTURES
    }
    assert have["rnn"] >= {"logits", "spectrum", "tangent"}
    assert have["plrnn"] >= {"tangent", "stepper"}
    assert have["lstm"] >= {"logits", "spectrum", "tangent"} and have["gru"] >= {"logits", "spectrum", "tangent"}
