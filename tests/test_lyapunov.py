"""Known answers for the differentiable Lyapunov spectrum."""

import math

import pytest
import torch

from flosssweep import models
from flosssweep.floss import floss_loss, model_spectrum
from flosssweep.lyapunov import lyapunov_spectrum

torch.set_num_threads(1)
f64 = torch.float64


def linear(A):
    return lambda state, _x: state @ A.T


def random_orthogonal(n, seed):
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=f64))
    return q


def test_normal_linear_map_gives_log_eigenvalue_moduli():
    moduli = torch.tensor([1.3, 1.0, 0.7, 0.4, 0.2], dtype=f64)
    U = random_orthogonal(5, 1)
    A = U @ torch.diag(moduli * torch.tensor([1, -1, 1, -1, 1], dtype=f64)) @ U.T
    steps = 400
    lam = lyapunov_spectrum(linear(A), torch.zeros(1, 5, dtype=f64), [None] * steps, 5, warmup=200)
    torch.testing.assert_close(lam[0], moduli.log(), atol=1e-6, rtol=0)


def test_normal_map_with_a_rotation_block():
    # A complex pair r e^{+-i theta} of a normal matrix: both exponents are log r.
    r, theta = 0.9, 0.7
    block = r * torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]], dtype=f64)
    A = torch.zeros(3, 3, dtype=f64)
    A[:2, :2], A[2, 2] = block, 0.5
    U = random_orthogonal(3, 2)
    A = U @ A @ U.T
    lam = lyapunov_spectrum(linear(A), torch.zeros(3, dtype=f64), [None] * 4000, 3, warmup=100)
    expected = torch.tensor([math.log(r), math.log(r), math.log(0.5)], dtype=f64)
    torch.testing.assert_close(lam, expected, atol=2e-3, rtol=0)


def test_non_normal_linear_map_converges_to_log_eigenvalue_moduli():
    A = torch.tensor([[1.1, 20.0, -7.0], [0.0, 0.8, 15.0], [0.0, 0.0, 0.5]], dtype=f64)
    lam = lyapunov_spectrum(linear(A), torch.zeros(3, dtype=f64), [None] * 3000, 3, warmup=500)
    expected = torch.tensor([1.1, 0.8, 0.5], dtype=f64).log()
    torch.testing.assert_close(lam, expected, atol=2e-3, rtol=0)
    # Transient growth of a non-normal map makes short estimates wrong: the test can fail.
    short = lyapunov_spectrum(linear(A), torch.zeros(3, dtype=f64), [None] * 30, 3, warmup=0)
    assert (short - expected).abs().max() > 0.05


def henon(state, _x, a=1.4, b=0.3):
    return torch.stack([1 - a * state[..., 0] ** 2 + state[..., 1], b * state[..., 0]], dim=-1)


def test_henon_map_published_spectrum():
    # Henon (a = 1.4, b = 0.3): lambda_1 = 0.41922 (Sprott, Chaos and Time-Series Analysis, 2003,
    # table A.1); lambda_1 + lambda_2 = ln b exactly, since the Jacobian determinant is -b.
    gen = torch.Generator().manual_seed(0)
    state = torch.tensor([0.1, 0.1], dtype=f64) + 0.01 * torch.rand(16, 2, generator=gen, dtype=f64)
    for _ in range(500):
        state = henon(state, None)
    # 16 x 1500 steps: a standard error near 1e-3 on lambda_1, under the 4e-3 asked
    lam = lyapunov_spectrum(henon, state, [None] * 1500, 2, warmup=100)
    assert lam[:, 0].mean().item() == pytest.approx(0.41922, abs=4e-3)
    assert lam[:, 1].mean().item() == pytest.approx(math.log(0.3) - 0.41922, abs=4e-3)
    torch.testing.assert_close(lam.sum(dim=1), torch.full((16,), math.log(0.3), dtype=f64), atol=1e-10, rtol=0)


def test_logistic_map_at_r4_has_exponent_log2():
    state = torch.rand(64, 1, generator=torch.Generator().manual_seed(1), dtype=f64) * 0.8 + 0.1
    lam = lyapunov_spectrum(lambda x, _u: 4 * x * (1 - x), state, [None] * 500, 1, warmup=50)
    assert lam.mean().item() == pytest.approx(math.log(2), abs=5e-3)


def rnn_members(hidden=12, members=3, seed=0):
    model = models.RNN(hidden)
    gens = [torch.Generator().manual_seed(seed + j) for j in range(members)]
    return model, models.init_params(model, gens, dtype=f64)


@pytest.mark.parametrize("qr_every", [1, 3])
def test_analytic_rnn_tangent_equals_generic_autodiff_path(qr_every):
    model, p = rnn_members()
    inputs = torch.bernoulli(torch.full((40, 3, 2, 1), 0.5, dtype=f64), generator=torch.Generator().manual_seed(3))
    state = model.initial_state(p, 2)

    def step(s, x):
        return model.step(p, s, x)

    generic = lyapunov_spectrum(step, state, inputs, 8, warmup=10, qr_every=qr_every)
    analytic = lyapunov_spectrum(
        step, state, inputs, 8, warmup=10, qr_every=qr_every, tangent=lambda s, x, Q: model.tangent(p, s, x, Q)
    )
    torch.testing.assert_close(analytic, generic, atol=1e-12, rtol=0)
    # and their gradients agree too
    g_generic = torch.autograd.grad(floss_loss(generic).sum(), p["J"])[0]
    g_analytic = torch.autograd.grad(floss_loss(analytic).sum(), p["J"])[0]
    torch.testing.assert_close(g_analytic, g_generic, atol=1e-11, rtol=0)


def test_rnn_tangent_is_the_jacobian():
    model, p = rnn_members(hidden=5, members=1)
    x = torch.randn(1, 1, 5, dtype=f64)
    s = torch.ones(1, 1, 1, dtype=f64)
    jac = torch.autograd.functional.jacobian(lambda v: model.step(p, v, s), x)[0, 0, :, 0, 0, :]
    expected = p["J"][0] @ torch.diag(1 - torch.tanh(x[0, 0]) ** 2)
    torch.testing.assert_close(jac, expected)
    torch.testing.assert_close(model.tangent(p, x, s, torch.eye(5, dtype=f64).expand(1, 1, 5, 5))[0, 0], expected)


@pytest.mark.parametrize("analytic", [True, False])
def test_gradcheck_through_the_flossing_loss(analytic):
    model, p = rnn_members(hidden=4, members=2)
    inputs = torch.bernoulli(torch.full((12, 2, 1, 1), 0.5, dtype=f64), generator=torch.Generator().manual_seed(5))

    def loss(J, W_in, b):
        q = {**p, "J": J, "W_in": W_in, "b": b}
        return floss_loss(model_spectrum(model, q, inputs, 2, warmup=3, dtype=f64, analytic=analytic))

    params = tuple(p[name].detach().clone().requires_grad_() for name in ("J", "W_in", "b"))
    assert torch.autograd.gradcheck(loss, params, eps=1e-6, atol=1e-6)


def test_gated_cells_have_a_finite_spectrum_through_the_generic_path():
    for cls in (models.LSTM, models.GRU):
        model = cls(6)
        p = models.init_params(model, [torch.Generator().manual_seed(0)], dtype=f64)
        inputs = torch.bernoulli(torch.full((30, 1, 1, 1), 0.5, dtype=f64))
        lam = model_spectrum(model, p, inputs, model.state_size, warmup=5, dtype=f64)
        assert lam.shape == (1, model.state_size)
        assert torch.isfinite(lam).all()
        assert lam[0, 0] < 0.5  # contracting at PyTorch's default init


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="k"):
        lyapunov_spectrum(henon, torch.zeros(2), [None] * 10, 3, warmup=1)
    with pytest.raises(ValueError, match="warmup"):
        lyapunov_spectrum(henon, torch.zeros(2), [None] * 10, 1, warmup=10)
