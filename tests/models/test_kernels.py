"""The fused tanh-RNN kernels compute what plain autograd computes, values and gradients, in float64."""

import pytest
import torch

from flosssweep import models
from flosssweep.floss import floss_loss
from flosssweep.lyapunov import lyapunov_spectrum

torch.set_num_threads(1)
f64 = torch.float64


def autograd_states(p, x, inputs):
    """The RNN forward pass as plain recorded autograd ops (the reference for the fused one)."""
    states = []
    for s in inputs.unbind(0):
        x = torch.tanh(x) @ p["J"].transpose(1, 2) + p["b"].unsqueeze(1) + s @ p["W_in"].transpose(1, 2)
        states.append(x)
    return torch.stack(states)


def members(model, count, dtype=f64):
    return models.init_params(model, [torch.Generator().manual_seed(j) for j in range(count)], dtype=dtype)


@pytest.mark.parametrize("inputs_dim, outputs", [(1, 1), (3, 2)])
def test_fused_rnn_forward_and_backward_match_autograd(inputs_dim, outputs):
    model = models.RNN(10, inputs=inputs_dim, outputs=outputs, relax_steps=5)
    p = members(model, 3)
    inputs = torch.bernoulli(
        torch.full((25, 3, 4, inputs_dim), 0.5, dtype=f64), generator=torch.Generator().manual_seed(1)
    )
    x0 = model.initial_state(p, 4)
    weights = torch.randn(25, 3, 4, outputs, dtype=f64, generator=torch.Generator().manual_seed(2))
    reference = model.readout(p, autograd_states(p, x0, inputs))
    names = list(p)
    expected = torch.autograd.grad((reference * weights).sum(), [p[n] for n in names])
    for out in (model.readout(p, model.run(p, x0, inputs)), model.logits(p, x0, inputs, models.Workspace())):
        torch.testing.assert_close(out, reference, rtol=0, atol=1e-12)
        got = torch.autograd.grad((out * weights).sum(), [p[n] for n in names])
        for name, g, e in zip(names, got, expected):
            torch.testing.assert_close(g, e, rtol=0, atol=1e-11, msg=name)


def test_fused_rnn_gradcheck():
    model = models.RNN(4, inputs=2, outputs=2, relax_steps=2)
    p = members(model, 2)
    inputs = torch.randn(6, 2, 3, 2, dtype=f64, generator=torch.Generator().manual_seed(0))

    def logits(J, W_in, b, w_out, c, x0):
        q = {"J": J, "W_in": W_in, "b": b, "w_out": w_out, "c": c, "x0": x0}
        return model.logits(q, model.initial_state(q, 3), inputs)

    assert torch.autograd.gradcheck(logits, tuple(p[n] for n in ("J", "W_in", "b", "w_out", "c", "x0")))


def test_reusing_a_workspace_before_backward_is_refused_not_silent():
    model = models.RNN(6, relax_steps=0)
    p = members(model, 2, dtype=torch.float32)
    workspace, inputs = models.Workspace(), torch.ones(5, 2, 3, 1)
    first = model.logits(p, model.initial_state(p, 3), inputs, workspace)
    model.logits(p, model.initial_state(p, 3), inputs, workspace)  # overwrites what `first` needs
    with pytest.raises(RuntimeError, match="inplace"):
        first.sum().backward()


@pytest.mark.parametrize(
    "batch, inputs_dim, k, qr_every, warmup", [(1, 1, 8, 1, 10), (2, 2, 12, 3, 10), (1, 1, 1, 1, 3), (2, 1, 4, 4, 0)]
)
def test_fused_spectrum_matches_the_reference_loop(batch, inputs_dim, k, qr_every, warmup):
    model = models.RNN(12, inputs=inputs_dim)
    p = members(model, 3)
    inputs = torch.bernoulli(
        torch.full((40, 3, batch, inputs_dim), 0.5, dtype=f64), generator=torch.Generator().manual_seed(3)
    )
    x = p["x0"].unsqueeze(1) + 0.1 * torch.randn(3, batch, 12, dtype=f64, generator=torch.Generator().manual_seed(4))
    reference = lyapunov_spectrum(
        lambda s, u: model.step(p, s, u),
        x,
        inputs,
        k,
        warmup=warmup,
        qr_every=qr_every,
        tangent=lambda s, u, Q: model.tangent(p, s, u, Q),
    )
    fused = model.spectrum(p, x, inputs, k, warmup=warmup, qr_every=qr_every)
    torch.testing.assert_close(fused, reference, rtol=0, atol=1e-10)
    names = ("J", "W_in", "b", "x0")
    expected = torch.autograd.grad(floss_loss(reference).sum(), [p[n] for n in names])
    got = torch.autograd.grad(floss_loss(fused).sum(), [p[n] for n in names])
    for name, g, e in zip(names, got, expected):
        torch.testing.assert_close(g, e, rtol=1e-7, atol=1e-7 * float(e.abs().max()), msg=name)


def test_fused_spectrum_gradcheck():
    model = models.RNN(4, relax_steps=2)
    p = members(model, 2)
    inputs = torch.bernoulli(torch.full((9, 2, 1, 1), 0.5, dtype=f64), generator=torch.Generator().manual_seed(5))
    x = torch.randn(2, 1, 4, dtype=f64, requires_grad=True)

    def spectrum(J, W_in, b, x):
        return model.spectrum({"J": J, "W_in": W_in, "b": b}, x, inputs, 3, warmup=2, qr_every=2)

    assert torch.autograd.gradcheck(spectrum, (p["J"], p["W_in"], p["b"], x))
