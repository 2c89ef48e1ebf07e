"""The fused LSTM and GRU kernels and their tangent maps against autograd through the plain step
and against torch.nn's own cells, in float64."""

import pytest
import torch

from flosssweep import models
from flosssweep.floss import floss_loss
from flosssweep.lyapunov import jvp_tangent, lyapunov_spectrum
from flosssweep.train.loop import member_generators

torch.set_num_threads(1)
f64 = torch.float64
GATED = [models.LSTM, models.GRU]


def members(cls, hidden=5, count=3, inputs=2, outputs=2, seed=0):
    """A float64 ensemble with a random (non-zero) initial state, so the x0 gradient is exercised."""
    model = cls(hidden, inputs=inputs, outputs=outputs)
    p = models.init_params(model, member_generators(seed, count), dtype=f64)
    with torch.no_grad():
        p["x0"].copy_(0.5 * torch.randn(p["x0"].shape, generator=torch.Generator().manual_seed(seed), dtype=f64))
    return model, p


def drive(steps, count, batch, inputs=2, seed=1):
    return torch.randn(steps, count, batch, inputs, generator=torch.Generator().manual_seed(seed), dtype=f64)


def plain_logits(model, p, inputs):
    x0 = model.initial_state(p, inputs.shape[2])
    return model.readout(p, models.unroll(model.step, p, x0, inputs))


def fused_logits(model, p, inputs, workspace=None):
    return model.logits(p, model.initial_state(p, inputs.shape[2]), inputs, workspace)


@pytest.mark.parametrize("cls", GATED)
def test_the_step_is_torch_nn_cell(cls):
    """Known answer for the step the fused kernels are checked against: torch.nn's cell."""
    model, p = members(cls, count=1, outputs=1)
    cell = (torch.nn.LSTMCell if cls is models.LSTM else torch.nn.GRUCell)(2, 5, dtype=f64)
    with torch.no_grad():
        for name in ("W_ih", "W_hh", "b_ih", "b_hh"):
            getattr(cell, name.replace("W", "weight").replace("b_", "bias_")).copy_(p[name][0])
    x, s = torch.randn(1, 4, model.state_size, dtype=f64), torch.randn(1, 4, 2, dtype=f64)
    with torch.no_grad():
        got = model.step(p, x, s)[0]
        if cls is models.LSTM:
            h, c = cell(s[0], (x[0, :, :5], x[0, :, 5:]))
            expected = torch.cat([h, c], dim=-1)
        else:
            expected = cell(s[0], x[0])
    torch.testing.assert_close(got, expected, atol=1e-14, rtol=0)


@pytest.mark.parametrize("cls", GATED)
@pytest.mark.parametrize("steps", [7, 150])  # 150 steps span several chunks
def test_fused_logits_and_gradients_equal_autograd_through_the_step(cls, steps):
    model, p = members(cls)
    inputs = drive(steps, 3, 4)
    plain, fused = plain_logits(model, p, inputs), fused_logits(model, p, inputs, models.Workspace())
    torch.testing.assert_close(fused, plain, atol=1e-12, rtol=0)
    weights = torch.randn(plain.shape, generator=torch.Generator().manual_seed(2), dtype=f64)
    names = list(p)
    expected = torch.autograd.grad((plain * weights).sum(), [p[n] for n in names])
    got = torch.autograd.grad((fused * weights).sum(), [p[n] for n in names])
    for name, e, g in zip(names, expected, got):
        torch.testing.assert_close(g, e, atol=1e-11, rtol=0, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("cls", GATED)
def test_fused_run_states_and_their_gradients_equal_autograd_through_the_step(cls):
    """`run` returns all states (for the LSTM h and c), and gradients may reach them directly."""
    model, p = members(cls)
    inputs = drive(9, 3, 2)
    x0 = model.initial_state(p, 2)
    plain, fused = models.unroll(model.step, p, x0, inputs), model.run(p, x0, inputs)
    torch.testing.assert_close(fused, plain, atol=1e-13, rtol=0)
    weights = torch.randn(plain.shape, generator=torch.Generator().manual_seed(4), dtype=f64)
    names = [n for n in p if n not in ("w_out", "c")]
    expected = torch.autograd.grad((plain * weights).sum(), [p[n] for n in names])
    got = torch.autograd.grad((fused * weights).sum(), [p[n] for n in names])
    for name, e, g in zip(names, expected, got):
        torch.testing.assert_close(g, e, atol=1e-12, rtol=0, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("cls", GATED)
def test_gradcheck_of_the_fused_logits(cls):
    model, p = members(cls, hidden=3, count=2, inputs=1, outputs=1)
    inputs = drive(6, 2, 2, inputs=1)
    names = list(p)

    def logits(*tensors):
        return fused_logits(model, dict(zip(names, tensors)), inputs)

    leaves = tuple(p[n].detach().clone().requires_grad_() for n in names)
    assert torch.autograd.gradcheck(logits, leaves, eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("cls", GATED)
def test_member_of_an_ensemble_equals_its_own_run(cls):
    """Member j of an R = 4 ensemble gives what the R = 1 run of member j gives, values and gradients."""
    model = cls(6, inputs=1, outputs=1)
    gens = member_generators(3, 4)
    ensemble = models.init_params(model, gens, dtype=f64)
    inputs = drive(20, 4, 3, inputs=1)
    logits = fused_logits(model, ensemble, inputs)
    grads = torch.autograd.grad(logits.sum(), list(ensemble.values()))
    for j in range(4):
        single = models.init_params(model, member_generators(3, 4)[j : j + 1], dtype=f64)
        alone = fused_logits(model, single, inputs[:, j : j + 1])
        torch.testing.assert_close(alone[:, 0], logits[:, j], atol=1e-14, rtol=0)
        for g_ensemble, g_alone in zip(grads, torch.autograd.grad(alone.sum(), list(single.values()))):
            torch.testing.assert_close(g_alone[0], g_ensemble[j], atol=1e-13, rtol=0)


@pytest.mark.parametrize("cls", GATED)
def test_a_workspace_serves_repeated_calls(cls):
    """Buffers reused between calls give the same numbers as fresh ones."""
    model, p = members(cls)
    workspace = models.Workspace()
    for seed in (1, 2):
        inputs = drive(30, 3, 2, seed=seed)
        torch.testing.assert_close(
            fused_logits(model, p, inputs, workspace), plain_logits(model, p, inputs), atol=1e-12, rtol=0
        )


@pytest.mark.parametrize("cls", GATED)
def test_tangent_equals_jvp_of_the_step(cls):
    model, p = members(cls, hidden=6, count=3)
    x = torch.randn(3, 4, model.state_size, dtype=f64)
    s = torch.randn(3, 4, 2, dtype=f64)
    Q = torch.randn(3, 4, model.state_size, 5, dtype=f64)
    expected = jvp_tangent(lambda state, inp: model.step(p, state, inp))(x, s, Q)
    torch.testing.assert_close(model.tangent(p, x, s, Q), expected, atol=1e-10, rtol=0)
    state, _ = model.advance(p)(x, s, Q)  # the step it shares the gates with
    torch.testing.assert_close(state, model.step(p, x, s), atol=1e-14, rtol=0)


@pytest.mark.parametrize("cls", GATED)
def test_spectrum_by_the_analytic_tangent_equals_the_generic_path(cls):
    model, p = members(cls, hidden=6, count=2, inputs=1, outputs=1)
    inputs = torch.bernoulli(torch.full((40, 2, 1, 1), 0.5, dtype=f64), generator=torch.Generator().manual_seed(7))
    state = model.initial_state(p, 1)
    k = model.state_size  # the LSTM has 2N exponents

    def step(s, x):
        return model.step(p, s, x)

    generic = lyapunov_spectrum(step, state, inputs, k, warmup=10)
    flossed = [p[name] for name in model.flossed]
    expected = torch.autograd.grad(floss_loss(generic[..., :4]).sum(), flossed)
    analytic = lyapunov_spectrum(step, state, inputs, k, warmup=10, tangent=lambda s, x, Q: model.tangent(p, s, x, Q))
    for exponents in (analytic, model.spectrum(p, state, inputs, k, warmup=10)):
        torch.testing.assert_close(exponents, generic, atol=1e-10, rtol=0)
        got = torch.autograd.grad(floss_loss(exponents[..., :4]).sum(), flossed)
        for e, g in zip(expected, got):
            torch.testing.assert_close(g, e, atol=1e-10, rtol=0)


@pytest.mark.parametrize("cls", GATED)
@pytest.mark.parametrize("batch, k, qr_every, warmup", [(1, 8, 1, 10), (2, 5, 3, 10), (1, 1, 1, 3), (2, 4, 4, 0)])
def test_fused_spectrum_equals_the_autograd_loop(cls, batch, k, qr_every, warmup):
    model, p = members(cls, hidden=8, count=3, inputs=1, outputs=1)
    inputs = torch.bernoulli(torch.full((40, 3, batch, 1), 0.5, dtype=f64), generator=torch.Generator().manual_seed(3))
    state = model.initial_state(p, batch)
    reference = lyapunov_spectrum(None, state, inputs, k, warmup=warmup, qr_every=qr_every, advance=model.advance(p))
    fused = model.spectrum(p, state, inputs, k, warmup=warmup, qr_every=qr_every)
    torch.testing.assert_close(fused, reference, atol=1e-10, rtol=0)
    names = ("W_ih", "W_hh", "b_ih", "b_hh", "x0")
    expected = torch.autograd.grad(floss_loss(reference).sum(), [p[n] for n in names])
    got = torch.autograd.grad(floss_loss(fused).sum(), [p[n] for n in names])
    for name, e, g in zip(names, expected, got):
        torch.testing.assert_close(
            g, e, atol=1e-9 * float(e.abs().max()), rtol=0, msg=lambda m, name=name: f"{name}: {m}"
        )


@pytest.mark.parametrize("cls", GATED)
def test_fused_spectrum_gradcheck(cls):
    model, p = members(cls, hidden=3, count=2, inputs=1, outputs=1)
    inputs = torch.bernoulli(torch.full((9, 2, 1, 1), 0.5, dtype=f64), generator=torch.Generator().manual_seed(5))
    names = ("W_ih", "W_hh", "b_ih", "b_hh")
    x = torch.randn(2, 1, model.state_size, dtype=f64, generator=torch.Generator().manual_seed(6), requires_grad=True)

    def spectrum(x, *tensors):
        return model.spectrum({**p, **dict(zip(names, tensors))}, x, inputs, 3, warmup=2, qr_every=2)

    assert torch.autograd.gradcheck(spectrum, (x, *(p[n].detach().clone().requires_grad_() for n in names)), atol=1e-7)
