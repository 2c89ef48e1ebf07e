"""Chaotic flows integrated by the project (RK4), their data sets and their Lyapunov exponents."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from flosssweep.lyapunov import lyapunov_spectrum

# --------------------------------------------------------------------------------------------
# Flows
# --------------------------------------------------------------------------------------------
# Vector fields and their Jacobian-vector products are written on components, so the same code runs
# on Python floats (fast scalar integration of the data), numpy arrays and torch tensors (batched
# integration, differentiable exponents).


def lorenz63(x, y, z, sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0):
    """dx/dt of Lorenz (1963)."""
    return sigma * (y - x), x * (rho - z) - y, x * y - beta * z


def lorenz63_jvp(x, y, z, qx, qy, qz, sigma: float = 10.0, rho: float = 28.0, beta: float = 8.0 / 3.0):
    """Jacobian of `lorenz63` at (x, y, z) times the tangent vector (qx, qy, qz)."""
    return sigma * (qy - qx), (rho - z) * qx - qy - x * qz, y * qx + x * qy - beta * qz


def roessler(x, y, z, a: float = 0.2, b: float = 0.2, c: float = 5.7):
    """dx/dt of Roessler (1976)."""
    return -y - z, x + a * y, b + z * (x - c)


def roessler_jvp(x, y, z, qx, qy, qz, a: float = 0.2, b: float = 0.2, c: float = 5.7):
    return -qy - qz, qx + a * qy, z * qx + (x - c) * qz


@dataclass(frozen=True)
class System:
    """A flow with its parameters, a point near its attractor and its published exponents per time
    unit (Sprott, "Chaos and Time-Series Analysis", Oxford 2003, appendix A)."""

    name: str
    field: Callable
    jvp: Callable
    params: dict = field(default_factory=dict)
    start: tuple = (1.0, 1.0, 1.0)
    published: tuple = ()
    align: float = 10.0  # time units for the Lyapunov frame to settle: several 1 / (lambda_1 - lambda_2)
    window: float = 40.0  # time units each Lyapunov window accumulates

    def f(self, *components):
        return self.field(*components, **self.params)

    def df(self, *components):
        return self.jvp(*components, **self.params)


SYSTEMS = {
    "lorenz63": System(
        "lorenz63",
        lorenz63,
        lorenz63_jvp,
        dict(sigma=10.0, rho=28.0, beta=8.0 / 3.0),
        start=(1.0, 1.0, 20.0),
        published=(0.9056, 0.0, -14.5723),
        align=10.0,
        window=40.0,
    ),
    "roessler": System(
        "roessler",
        roessler,
        roessler_jvp,
        dict(a=0.2, b=0.2, c=5.7),
        start=(1.0, -5.0, 0.0),
        published=(0.0714, 0.0, -5.3943),
        align=150.0,
        window=200.0,
    ),
}


def _axpy(a, x, y):
    """y + a * x, componentwise on tuples."""
    return tuple(yi + a * xi for xi, yi in zip(x, y))


def rk4(f: Callable, state: tuple, dt: float) -> tuple:
    """One classical Runge-Kutta step of dx/dt = f(x) on a tuple of components (floats, arrays or
    tensors of any common shape)."""
    k1 = f(*state)
    k2 = f(*_axpy(0.5 * dt, k1, state))
    k3 = f(*_axpy(0.5 * dt, k2, state))
    k4 = f(*_axpy(dt, k3, state))
    return tuple(s + (dt / 6.0) * (a + 2.0 * b + 2.0 * c + d) for s, a, b, c, d in zip(state, k1, k2, k3, k4))


def rk4_step(system: System, state, dt: float):
    """One RK4 step of `system` on a state array (..., 3), numpy or torch."""
    out = rk4(system.f, tuple(state[..., i] for i in range(state.shape[-1])), dt)
    return torch.stack(out, dim=-1) if isinstance(state, torch.Tensor) else np.stack(out, axis=-1)


def rk4_tangent(system: System, dt: float):
    """`tangent(state, _, Q) -> D Q` with D the exact Jacobian of `rk4_step` at `state` (..., 3) and Q
    (..., 3, k): the same four stages applied to the variational equation dQ/dt = Df(x(t)) Q."""

    def tangent(state, _x, Q):
        s1 = tuple(state[..., i, None] for i in range(3))  # (..., 1): broadcasts over the k columns
        q = tuple(Q[..., i, :] for i in range(3))
        k1 = system.f(*s1)
        q1 = system.df(*s1, *q)
        s2 = _axpy(0.5 * dt, k1, s1)
        k2 = system.f(*s2)
        q2 = system.df(*s2, *_axpy(0.5 * dt, q1, q))
        s3 = _axpy(0.5 * dt, k2, s1)
        k3 = system.f(*s3)
        q3 = system.df(*s3, *_axpy(0.5 * dt, q2, q))
        s4 = _axpy(dt, k3, s1)
        q4 = system.df(*s4, *_axpy(dt, q3, q))
        out = tuple(qi + (dt / 6.0) * (a + 2.0 * b + 2.0 * c + d) for qi, a, b, c, d in zip(q, q1, q2, q3, q4))
        return torch.stack(out, dim=-2)

    return tangent


def integrate(system: System, x0, dt: float, steps: int, transient: int = 0) -> np.ndarray:
    """`steps` samples (steps, 3) of the trajectory from x0, one RK4 step of dt apart, after
    discarding `transient` steps; float64 (integrated on Python floats: a 3-D state is faster so
    than as an array)."""
    state = tuple(float(v) for v in x0)
    for _ in range(transient):
        state = rk4(system.f, state, dt)
    out = [state] * steps
    for t in range(steps):
        state = rk4(system.f, state, dt)
        out[t] = state
    return np.array(out, dtype=np.float64).reshape(steps, len(state))


# --------------------------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChaoticData:
    """One standardized trajectory split in time; `mean`/`std` map standardized back to raw units."""

    system: str
    dt: float
    train: np.ndarray  # (train_steps, 3) standardized, float64
    test: np.ndarray  # (test_steps, 3) standardized, float64
    mean: np.ndarray
    std: np.ndarray

    def lyapunov(self, **kwargs) -> np.ndarray:
        """Exponents of the data's flow per sample step (see `flow_lyapunov`)."""
        return flow_lyapunov(self.system, self.dt, **kwargs)

    def lambda_max(self) -> float:
        """Largest exponent per sample step (the estimate `tau: auto` and `floss.target: data` use)."""
        return float(self.lyapunov()[0])


@functools.lru_cache(maxsize=8)
def make_data(
    system: str, dt: float, train_steps: int, test_steps: int, transient: float = 50.0, seed: int = 2
) -> ChaoticData:
    """Integrate `system` at step dt: discard `transient` time units, keep train_steps + test_steps
    samples, split in time, standardize with the training statistics. Deterministic in its arguments
    (cached per process)."""
    sys_ = SYSTEMS[system]
    gen = np.random.default_rng(seed)
    x0 = np.asarray(sys_.start) + gen.standard_normal(3)
    raw = integrate(sys_, x0, dt, train_steps + test_steps, transient=int(round(transient / dt)))
    train, test = raw[:train_steps], raw[train_steps:]
    mean, std = train.mean(axis=0), train.std(axis=0)
    train.flags.writeable = test.flags.writeable = False
    return ChaoticData(system, dt, (train - mean) / std, (test - mean) / std, mean, std)


@functools.lru_cache(maxsize=16)
def flow_lyapunov(
    system: str,
    dt: float,
    k: int = 3,
    trajectories: int = 1024,
    time: float | None = None,
    align: float | None = None,
    transient: float = 50.0,
    qr_every: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """The k largest Lyapunov exponents of `system` sampled at dt, per sample step (divide by dt for
    per time unit), from the project's `lyapunov_spectrum` on the RK4 step with its exact tangent.

    The estimate is the mean over `trajectories` independent windows of `time` time units, batched:
    the windows start from a point on the attractor plus seeded N(0, 1) kicks, relaxed for
    `transient` time units so that they spread over the attractor; each window then runs `align`
    time units unaccumulated so that the frame settles onto the leading directions (this takes
    several 1 / (lambda_1 - lambda_2): 10 time units for Lorenz-63, 150 for Roessler, whose gap is
    only 0.07). `time` and `align` default to the system's `window` and `align`. The standard error
    is about 0.05 / sqrt(trajectories) per time unit for Lorenz-63 at the defaults (0.0015).
    Deterministic (cached per process).
    """
    sys_ = SYSTEMS[system]
    time = sys_.window if time is None else time
    align = sys_.align if align is None else align
    gen = np.random.default_rng(seed)
    on_attractor = integrate(sys_, sys_.start, dt, 1, transient=int(round(transient / dt)))[-1]
    state = torch.as_tensor(on_attractor + gen.standard_normal((trajectories, 3)))
    warmup = int(round(align / dt))
    steps = warmup + int(round(time / dt))
    with torch.no_grad(), _threads(1):
        for _ in range(int(round(transient / dt))):
            state = rk4_step(sys_, state, dt)
        exponents = lyapunov_spectrum(
            lambda s, _x: rk4_step(sys_, s, dt),
            state,
            [None] * steps,
            k,
            warmup=warmup,
            qr_every=qr_every,
            tangent=rk4_tangent(sys_, dt),
        )
    return exponents.mean(dim=0).numpy()


@contextlib.contextmanager
def _threads(n: int):
    """Batched 3x3 QRs are much slower with several intra-op threads (thread start-up per call)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def forcing_interval(lambda_max_per_step: float) -> int:
    """The predicted optimal forcing interval tau = ln 2 / lambda_max (in steps, rounded, >= 1):
    the time over which a perturbation along the most unstable direction doubles."""
    if not lambda_max_per_step > 0:
        raise ValueError(f"tau: auto needs a positive largest exponent, got {lambda_max_per_step}")
    return max(1, int(round(math.log(2.0) / lambda_max_per_step)))


# --------------------------------------------------------------------------------------------
# Metrics of generated trajectories
