"""Chaotic flows: the RK4 integrator and tangent, the exponents against published values, the data split."""

import math

import numpy as np
import pytest
import torch

from flosssweep import chaos

LORENZ = chaos.SYSTEMS["lorenz63"]
ROESSLER = chaos.SYSTEMS["roessler"]


@pytest.mark.parametrize("system", [LORENZ, ROESSLER], ids=lambda s: s.name)
def test_rk4_error_falls_sixteenfold_when_the_step_halves(system):
    # Global error of a fourth-order method ~ C dt^4: halving dt divides it by 2^4 = 16. Errors are
    # measured against a run with dt / 16, as the largest deviation along half a time unit from a
    # point on the attractor (over longer times chaos mixes the error components).
    start = chaos.integrate(system, system.start, 0.01, 1, transient=5000)[-1]

    def path(dt, horizon=0.5, grid=0.01):
        every = int(round(grid / dt))
        return chaos.integrate(system, start, dt, int(round(horizon / dt)))[every - 1 :: every]

    reference = path(0.01 / 16)
    coarse, fine = (np.abs(path(dt) - reference).max() for dt in (0.01, 0.005))
    assert 14.0 < coarse / fine < 18.5, coarse / fine


def test_rk4_tangent_is_the_exact_jacobian_of_the_step():
    state = torch.tensor([[1.0, 2.0, 20.0], [-5.0, -7.0, 25.0]], dtype=torch.float64)
    Q = torch.randn(2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for system, dt in ((LORENZ, 0.01), (ROESSLER, 0.05)):
        jac = torch.func.vmap(torch.func.jacrev(lambda s, system=system, dt=dt: chaos.rk4_step(system, s, dt)))(state)
        assert torch.allclose(chaos.rk4_tangent(system, dt)(state, None, Q), jac @ Q, atol=1e-12, rtol=0)


def test_lorenz63_exponents_match_the_published_spectrum():
    # Published 0.9056, 0, -14.5723 (Sprott 2003). 64 windows of 20 time units: the standard error of
    # lambda_1 is about 0.05 / sqrt(64 * 20 / 40) = 0.009, so 0.03 is 3.5 of them; a wrong estimator
    # (a missing QR step, a per-step instead of per-time rate) misses by far more.
    per_time = chaos.flow_lyapunov("lorenz63", 0.01, trajectories=64, time=20.0, transient=10.0) / 0.01
    assert abs(per_time[0] - 0.9056) < 0.03
    assert abs(per_time[1]) < 0.03
    # The flow contracts volume at the constant rate -(sigma + 1 + beta): the exponents must sum to it.
    assert abs(per_time.sum() + (10.0 + 1.0 + 8.0 / 3.0)) < 0.01


@pytest.mark.slow
def test_lorenz63_spectrum_at_the_size_training_uses():
    dt = 0.01
    per_step = chaos.flow_lyapunov("lorenz63", dt)  # the estimate training uses (cached)
    per_time = per_step / dt
    # Standard error of this estimate about 0.0015.
    assert abs(per_time[0] - 0.9056) < 0.01
    assert abs(per_time[1]) < 0.01
    assert abs(per_time.sum() + (10.0 + 1.0 + 8.0 / 3.0)) < 0.01
    assert chaos.make_data("lorenz63", dt, 2000, 1000).lambda_max() == pytest.approx(per_step[0])
    # Predicted forcing interval: ln 2 / (0.9056 * 0.01) = 76.5 steps.
    assert chaos.forcing_interval(per_step[0]) in (76, 77)


@pytest.mark.slow
def test_roessler_largest_exponent_matches_the_published_value():
    dt = 0.05
    per_time = chaos.flow_lyapunov("roessler", dt, trajectories=256, time=100.0, align=100.0) / dt
    assert abs(per_time[0] - 0.0714) < 0.004  # Sprott 2003: 0.0714, 0, -5.3943
    assert abs(per_time[1]) < 0.004


def test_data_are_standardized_and_split_in_time():
    data = chaos.make_data("lorenz63", 0.01, 3000, 1000, transient=10.0, seed=3)
    assert data.train.shape == (3000, 3) and data.test.shape == (1000, 3)
    assert np.allclose(data.train.mean(axis=0), 0.0, atol=1e-12)
    assert np.allclose(data.train.std(axis=0), 1.0)
    # the test part continues the training part: one RK4 step from the last training sample
    last_train = data.train[-1] * data.std + data.mean
    first_test = data.test[0] * data.std + data.mean
    assert np.allclose(chaos.rk4_step(LORENZ, last_train, 0.01), first_test, atol=1e-9)
    again = chaos.make_data("lorenz63", 0.01, 3000, 1000, transient=10.0, seed=3)
    assert again is data  # cached and deterministic
    other = chaos.make_data("lorenz63", 0.01, 3000, 1000, transient=10.0, seed=4)
    assert not np.allclose(other.train[:10], data.train[:10])


def test_forcing_interval_is_ln2_over_lambda():
    assert chaos.forcing_interval(math.log(2.0) / 20.0) == 20
    assert chaos.forcing_interval(5.0) == 1
    with pytest.raises(ValueError):
        chaos.forcing_interval(-0.01)
