"""Diagnostics over training: what a trial measures beyond its records, per member, as one long table.

- `lyapunov`: the k exponents of the spectrum estimate of every report (index i = 1..k), the same
  estimate the report's metrics and the record's lambda columns read.
- `jacobian_log_sv`: log singular values (index 1..S, largest first) of the Tp-step Jacobian
  d z_Tp / d z_0 along the spectrum estimate's own trajectory, in float64: the quantity whose
  condition number (lambda_1 - lambda_k) * Tp estimates from k exponents.
- `grad_norm_by_lag`: ||dL_T / dz_{T - tau}|| against tau = 0..T for the task loss of the last step
  of a fresh batch, averaged over its sequences: how the gradient of a loss grows or fades with the lag.
- `retention_gate` (LSTM, GRU): per unit (index 1..N), the mean over that batch's steps and sequences
  of the gate that carries the state over (the LSTM's forget gate, the GRU's update gate). A gate g
  near 1 contracts the unit's state by about ln g per step, so saturated gates are one way a gated
  network can bring its exponents near 0 without holding any memory of its input.

All but the first are measured at the stages (before training, after pre-flossing, at the end) only.
`curves_table` turns the collected values into the Parquet artifact of a child run (`names.DIAGNOSTICS_ARTIFACT`).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from flosssweep.lyapunov import jvp_tangent
from flosssweep.names import DIAGNOSTIC_COLUMNS

Curves = list[tuple[int, str, dict[str, Tensor]]]  # (epoch, stage, {quantity: (R, n)}) in the order measured


def jacobian_log_singular_values(model, params: dict, inputs: Tensor) -> Tensor:
    """Log singular values (R, S), largest first, of the product of the step Jacobians along the
    trajectory from each member's initial state driven by `inputs` (T, R, 1, I); float64, no gradients."""
    p = {name: t.detach().double() for name, t in params.items()}
    state = model.initial_state(p, 1)
    size = state.shape[-1]
    frame = torch.eye(size, dtype=torch.float64, device=state.device).expand(*state.shape[:-1], size, size)
    if model.tangent is not None:

        def tangent(z, s, Q):
            return model.tangent(p, z, s, Q)
    else:
        tangent = jvp_tangent(lambda z, s: model.step(p, z, s))
    with torch.no_grad():
        for s in inputs.double().unbind(0):
            frame = tangent(state, s, frame)
            state = model.step(p, state, s)
        product = frame[:, 0]
        finite = torch.isfinite(product).flatten(1).all(dim=1)  # a diverged member has no singular values
        singular = torch.linalg.svdvals(torch.where(finite[:, None, None], product, 0.0))
    logs = singular.clamp_min(torch.finfo(torch.float64).tiny).log()
    return torch.where(finite[:, None], logs, float("nan"))


def gradient_by_lag(model, params: dict, inputs: Tensor, last_loss) -> Tensor:
    """(R, T + 1): entry tau is the norm of d L_T / d z_{T - tau}, averaged over the batch, where z_t
    is the state after t inputs (z_0 the initial state) and L_T = last_loss(params, z_T) (R, B) the
    loss of the last step of each sequence. inputs (T, R, B, I)."""
    p = {name: t.detach() for name, t in params.items()}
    state = model.initial_state(p, inputs.shape[2]).detach().requires_grad_(True)
    states = [state]
    for s in inputs.unbind(0):
        state = model.step(p, state, s)
        states.append(state)
    grads = torch.autograd.grad(last_loss(p, states[-1]).sum(), states)
    norms = torch.stack([g.norm(dim=-1).mean(dim=-1) for g in grads], dim=-1)  # (R, T + 1), by t
    return norms.flip(-1).detach()


def retention_by_unit(model, params: dict, inputs: Tensor) -> Tensor:
    """(R, N): the mean of `model.retention` over the steps and sequences of `inputs` (T, R, B, I),
    from the initial state; no gradients."""
    p = {name: t.detach() for name, t in params.items()}
    state = model.initial_state(p, inputs.shape[2])
    total = 0.0
    with torch.no_grad():
        for s in inputs.unbind(0):
            total = total + model.retention(p, state, s).mean(dim=1)
            state = model.step(p, state, s)
    return total / inputs.shape[0]


def curves_table(curves: Curves, config_key: str, seed: int) -> pa.Table:
    """The long table of a trial's diagnostics: one row per (epoch, stage, member, quantity, index)."""
    columns: dict[str, list[np.ndarray]] = {name: [] for name in DIAGNOSTIC_COLUMNS}
    for epoch, stage, values in curves:
        for quantity, tensor in values.items():
            matrix = tensor.detach().cpu().double().numpy()
            members, n = matrix.shape
            columns["epoch"].append(np.full(members * n, epoch, dtype=np.int64))
            columns["stage"].append(np.full(members * n, stage, dtype=object))
            columns["member"].append(np.repeat(np.arange(members, dtype=np.int64), n))
            columns["quantity"].append(np.full(members * n, quantity, dtype=object))
            columns["index"].append(np.tile(np.arange(n, dtype=np.int64), members) + (quantity != "grad_norm_by_lag"))
            columns["value"].append(matrix.reshape(-1))
    rows = sum(len(v) for v in columns["value"])
    table = {
        "config_key": pa.array([config_key] * rows, pa.string()),
        "seed": pa.array(np.full(rows, seed, dtype=np.int64)),
    }
    types = {"stage": pa.string(), "quantity": pa.string(), "value": pa.float64()}
    for name, parts in columns.items():
        if name in ("config_key", "seed"):
            continue
        data = np.concatenate(parts) if parts else []  # a task without diagnostics: an empty table
        table[name] = pa.array(data, type=types.get(name, pa.int64()))
    return pa.table(table)
