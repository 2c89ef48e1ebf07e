"""Chaotic data: flows integrated by the project, their Lyapunov exponents, and the metrics of a
reconstruction (Mikhaeil, Monfared & Durstewitz, NeurIPS 2022).

Data. Lorenz-63 (sigma 10, rho 28, beta 8/3) and Roessler (a 0.2, b 0.2, c 5.7) are integrated with
the classical fourth-order Runge-Kutta method at a fixed step dt, one RK4 step per sample. The
initial condition is a fixed point of the phase space plus a seeded Gaussian kick; a transient is
discarded so that the samples lie on the attractor. One trajectory is split in time: the first
`train_steps` samples are the training set, the next `test_steps` the test set. Both are standardized
with the mean and standard deviation of the training set (a linear change of coordinates, so the
Lyapunov exponents do not change).

Exponents. `flow_lyapunov` runs the project's `lyapunov_spectrum` on the RK4 step itself, i.e. the
exponents of the sampled map, per sample step; divided by dt they are per time unit and converge to
those of the flow as dt -> 0. The tangent of the RK4 step is exact (the variational equation pushed
through the same four stages), so the estimate has no finite-difference error.

Metrics of a generated trajectory against data (both (T, D) arrays):

- `state_space_divergence` (D_stsp): KL(p_data || p_model) between binned occupancies. Bins: `bins`
  per dimension spanning the data's range in each dimension; model points outside that range (and
  non-finite ones) are counted in the nearest edge bin, so mass that leaves the attractor still counts
  as misplaced instead of being dropped. Empty bins get a Laplace pseudo-count `alpha` (default
  1e-5 per bin, added to the counts before normalising), so the KL is finite; for identical inputs
  it is exactly 0.
- `power_spectrum_distance` (D_H): per dimension, Welch power spectra (Hann window, `segment` samples,
  half overlap) of the standardized series, smoothed by a Gaussian of `smoothing` frequency bins and
  normalised to unit sum; the Hellinger distance sqrt(1 - sum sqrt(p q)) between them, averaged over
  dimensions. 0 for identical spectra, 1 for disjoint ones (and for non-finite trajectories).
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from scipy.signal import welch

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
    "lorenz63": System("lorenz63", lorenz63, lorenz63_jvp, dict(sigma=10.0, rho=28.0, beta=8.0 / 3.0),
                       start=(1.0, 1.0, 20.0), published=(0.9056, 0.0, -14.5723), align=10.0, window=40.0),
    "roessler": System("roessler", roessler, roessler_jvp, dict(a=0.2, b=0.2, c=5.7),
                       start=(1.0, -5.0, 0.0), published=(0.0714, 0.0, -5.3943), align=150.0, window=200.0),
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
def make_data(system: str, dt: float, train_steps: int, test_steps: int, transient: float = 50.0,
              seed: int = 2) -> ChaoticData:
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
def flow_lyapunov(system: str, dt: float, k: int = 3, trajectories: int = 1024, time: float | None = None,
                  align: float | None = None, transient: float = 50.0, qr_every: int = 5,
                  seed: int = 0) -> np.ndarray:
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
        exponents = lyapunov_spectrum(lambda s, _x: rk4_step(sys_, s, dt), state, [None] * steps, k,
                                      warmup=warmup, qr_every=qr_every, tangent=rk4_tangent(sys_, dt))
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
# --------------------------------------------------------------------------------------------

DSTSP_BINS = 30
DSTSP_ALPHA = 1e-5


def _bin_index(points: np.ndarray, lo: np.ndarray, hi: np.ndarray, bins: int) -> np.ndarray:
    """Flat bin index of each point; outside the range (or non-finite) goes to the nearest edge bin."""
    points = np.where(np.isfinite(points), points, np.inf)
    scaled = (points - lo) / np.where(hi > lo, hi - lo, 1.0) * bins
    idx = np.clip(np.nan_to_num(np.floor(scaled), nan=bins - 1, posinf=bins - 1, neginf=0), 0, bins - 1)
    return np.ravel_multi_index(idx.astype(np.int64).T, (bins,) * points.shape[1])


def occupancy(points: np.ndarray, lo: np.ndarray, hi: np.ndarray, bins: int = DSTSP_BINS,
              alpha: float = DSTSP_ALPHA) -> np.ndarray:
    """Laplace-smoothed normalised histogram (flat, bins**D entries) of the points."""
    counts = np.bincount(_bin_index(points, lo, hi, bins), minlength=bins ** points.shape[1]).astype(np.float64)
    return (counts + alpha) / (counts.sum() + alpha * counts.size)


def _trajectories(x) -> np.ndarray:
    """(T, D) or (n, T, D) -> (n, T, D) float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"expected a (T, D) or (n, T, D) array, got shape {x.shape}")
    return x


def state_space_divergence(data, generated, bins: int = DSTSP_BINS, alpha: float = DSTSP_ALPHA) -> float:
    """D_stsp = KL(p_data || p_generated) of binned occupancies (see the module docstring).
    data and generated: (T, D) or (n, T, D) arrays (n trajectories pooled) of the same D; bins**D
    cells, so meant for D <= 4."""
    data, generated = _trajectories(data), _trajectories(generated)
    if data.shape[-1] != generated.shape[-1]:
        raise ValueError(f"data and generated differ in dimension: {data.shape[-1]} vs {generated.shape[-1]}")
    if data.shape[-1] > 4:
        raise ValueError(f"binned D_stsp is for D <= 4 dimensions, got {data.shape[-1]}")
    data, generated = data.reshape(-1, data.shape[-1]), generated.reshape(-1, data.shape[-1])
    lo, hi = data.min(axis=0), data.max(axis=0)
    hi = hi + 1e-9 * np.maximum(1.0, np.abs(hi))  # the data maximum falls inside the last bin
    p = occupancy(data, lo, hi, bins, alpha)
    q = occupancy(generated, lo, hi, bins, alpha)
    return float(np.sum(p * (np.log(p) - np.log(q))))


def power_spectrum(series, segment: int = 1000, smoothing: float = 2.0) -> np.ndarray:
    """Smoothed, normalised power spectrum of each dimension of (T, D) or (n, T, D) series: Welch
    periodograms (Hann window, `segment` samples, half overlap) of each standardized trajectory,
    averaged over trajectories, smoothed by a Gaussian of `smoothing` frequency bins and normalised
    to unit sum. Returns (D, frequencies)."""
    x = _trajectories(series)
    std = x.std(axis=1, keepdims=True)
    x = (x - x.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)
    _, psd = welch(x, nperseg=min(segment, x.shape[1]), axis=1)
    psd = psd.mean(axis=0).T
    if smoothing > 0:
        psd = gaussian_filter1d(psd, smoothing, axis=-1, mode="nearest")
    return psd / psd.sum(axis=-1, keepdims=True)


def power_spectrum_distance(data, generated, segment: int = 1000, smoothing: float = 2.0) -> float:
    """D_H: Hellinger distance between the smoothed power spectra (`power_spectrum`), averaged over
    dimensions; 1.0 (the maximum) when a generated trajectory is not finite or is constant."""
    generated = _trajectories(generated)
    if not np.isfinite(generated).all() or (generated.std(axis=1) == 0).any():
        return 1.0
    segment = min(segment, generated.shape[1], _trajectories(data).shape[1])
    p = power_spectrum(data, segment, smoothing)
    q = power_spectrum(generated, segment, smoothing)
    overlap = np.sqrt(p * q).sum(axis=-1)
    return float(np.sqrt(np.clip(1.0 - overlap, 0.0, 1.0)).mean())
