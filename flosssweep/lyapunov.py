"""Differentiable Lyapunov spectrum of any discrete-time step function."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

Step = Callable[[Tensor, object], Tensor]
Tangent = Callable[[Tensor, object, Tensor], Tensor]
Advance = Callable[[Tensor, object, Tensor], tuple[Tensor, Tensor]]


def jvp_tangent(step: Step) -> Tangent:
    """Tangent propagation `(state, s, Q) -> D Q` for any step, by forward-mode autodiff: one
    Jacobian-vector product per column of Q, vectorised with vmap. The result stays differentiable
    by ordinary (reverse-mode) autograd, which is what flossing backpropagates through."""

    def tangent(state: Tensor, s, Q: Tensor) -> Tensor:
        state = state.contiguous()  # forward-mode duals refuse broadcast (expanded) views

        def push(q: Tensor) -> Tensor:
            return torch.func.jvp(lambda z: step(z, s), (state,), (q,))[1]

        return torch.func.vmap(push, in_dims=-1, out_dims=-1)(Q)

    return tangent


def qr_schedule(steps: int, warmup: int, qr_every: int) -> tuple[list[tuple[bool, bool]], int]:
    """Per step t: (re-orthonormalise after it, accumulate its log growth), and the number of steps
    the accumulated growth covers (the divisor of the exponents). Shared by every implementation of
    the loop below so that they count alike."""
    flags, counted, since_qr = [], 0, 0
    for t in range(steps):
        since_qr += 1
        qr = (t + 1) % qr_every == 0 or t == steps - 1
        accumulate = qr and t + 1 > warmup
        if accumulate:
            counted += since_qr
        if qr:
            since_qr = 0
        flags.append((qr, accumulate))
    return flags, counted


def check_arguments(size: int, steps: int, k: int, warmup: int | None, qr_every: int) -> int:
    """Validates the arguments of a spectrum estimate; returns the warm-up (default filled in)."""
    if not 1 <= k <= size:
        raise ValueError(f"k: expected 1 <= k <= state size {size}, got {k}")
    if warmup is None:
        warmup = 10 + math.ceil(steps / 10)
    if not 0 <= warmup < steps:
        raise ValueError(f"warmup: expected 0 <= warmup < number of steps {steps}, got {warmup}")
    if qr_every < 1:
        raise ValueError(f"qr_every: expected >= 1, got {qr_every}")
    return warmup


def initial_frame(size: int, k: int, dtype=torch.float32, device="cpu", seed: int = 0) -> Tensor:
    """A fixed, seeded orthonormal (size x k) frame, so that a spectrum estimate is reproducible."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(size, k, generator=gen, dtype=torch.float64))
    return q.to(dtype=dtype, device=device)


def lyapunov_spectrum(
    step: Step,
    state: Tensor,
    inputs: Sequence,
    k: int,
    *,
    warmup: int | None = None,
    qr_every: int = 1,
    tangent: Tangent | None = None,
    q0: Tensor | None = None,
    min_diag: float = 1e-30,
    advance: Advance | None = None,
) -> Tensor:
    """The k largest Lyapunov exponents along one trajectory, differentiable.

    Method (Benettin, Galgani, Giorgilli & Strelcyn, Meccanica 15, 9-30, 1980; the QR form of
    Eckmann & Ruelle, Rev. Mod. Phys. 57, 617, 1985): an orthonormal frame Q of k tangent vectors is
    pushed forward with the Jacobian D_t of every step, `Q <- D_t Q`, and re-orthonormalised by a
    reduced QR decomposition every `qr_every` steps, `Q, R = qr(Q)`. The logs of |diag(R)| are the
    growth rates of the successive volumes the frame spans; their time averages after a warm-up are
    the exponents, largest first. Every operation is a differentiable torch op, so gradients reach
    whatever `step` closes over through the Jacobians and through the trajectory itself: this is the
    quantity gradient flossing (Engelken, NeurIPS 2023) pushes toward zero.

    Args:
        step: `step(state, s) -> next_state` (s the input), any differentiable torch function.
        state: initial state, shape (..., S); leading dims are independent trajectories (batched QR).
            The loop runs in this tensor's dtype: pass float64 (and a step that computes in float64)
            for a float64 tangent loop.
        inputs: the inputs, time first: `inputs[t]` is passed to `step` at step t; its length is the
            number of steps Tp. For an autonomous map pass e.g. `[None] * Tp`.
        k: number of exponents, 1 <= k <= S.
        warmup: steps before exponents are accumulated, so the frame first aligns with the leading
            directions. Default `10 + ceil(Tp / 10)` (16 for the flossing horizon Tp = 55).
        qr_every: steps between re-orthonormalisations (m); default 1. Larger m is cheaper but lets
            the columns of Q collapse onto the leading direction when exponents differ a lot.
        tangent: `tangent(state, s, Q) -> D Q` evaluated at the state before the step, shape
            (..., S, k). Default: forward-mode autodiff of `step` (`jvp_tangent`); models with a
            known Jacobian pass a hand-written one (faster, same numbers).
        q0: initial frame (S, k) or (..., S, k); default a fixed seeded orthonormal frame.
        min_diag: floor on |R_ii| before the log, so a collapsed direction gives a large negative
            exponent instead of -inf (and a finite gradient).
        advance: `advance(state, s, Q) -> (next_state, D Q)`, the step and its tangent in one call,
            for models whose tangent reuses the step's intermediates (the gates of LSTM and GRU);
            replaces `step` and `tangent`.

    Returns:
        Exponents of shape (..., k), per time step (divide by the sampling interval for per time
        unit), sorted as QR yields them: lambda_1 >= lambda_2 >= ... up to estimation noise.
    """
    size = state.shape[-1]
    steps = len(inputs)
    warmup = check_arguments(size, steps, k, warmup, qr_every)
    tangent = tangent or jvp_tangent(step)
    if q0 is None:
        q0 = initial_frame(size, k, dtype=state.dtype, device=state.device)
    Q = q0.expand(*state.shape[:-1], size, k).contiguous()

    if isinstance(inputs, Tensor):
        inputs = inputs.unbind(0)  # one backward node instead of one per indexed step
    log_growth = state.new_zeros(*state.shape[:-1], k)
    flags, counted = qr_schedule(steps, warmup, qr_every)
    for s, (qr, accumulate) in zip(inputs, flags):
        if advance is None:
            Q = tangent(state, s, Q)
            state = step(state, s)
        else:
            state, Q = advance(state, s, Q)
        if qr:
            Q, R = torch.linalg.qr(Q)
            if accumulate:
                growth = torch.diagonal(R, dim1=-2, dim2=-1).abs().clamp_min(min_diag)
                log_growth = log_growth + torch.log(growth)
    return log_growth / counted
