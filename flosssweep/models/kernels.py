"""Fused autograd kernels of the tanh RNN: the forward pass and the spectrum loop, each one node with a
hand-written backward, and the scratch memory they reuse between calls.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Workspace:
    """Large scratch tensors kept between calls of `RNN.logits` (shapes are fixed within a trial).

    Freeing and reallocating the (T, R, B, N) buffers every epoch costs as much as filling them:
    the allocator hands such blocks back to the operating system, which faults them in page by
    page again. A workspace serves one forward + backward at a time: a second forward before the
    first one's backward overwrites what that backward needs, and autograd then refuses it (the
    buffers are saved for backward, so their version counters are checked), never a silent error.
    """

    def __init__(self):
        self.buffers: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        buffer = self.buffers.get(name)
        if buffer is None or buffer.shape != shape or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = self.buffers[name] = like.new_empty(shape)
        return buffer


class _Fresh:
    """A stand-in workspace that allocates every time (for callers that keep what they get)."""

    @staticmethod
    def get(name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        return like.new_empty(shape)


CHUNK_BYTES = 1 << 19  # one chunk of steps of one (T, R, B, N) buffer; a few such stay in cache


def _chunks(T: int, R: int, B: int, N: int, element_size: int) -> list[tuple[int, int]]:
    """Consecutive step ranges [t0, t1) whose slices of a (T, R, B, N) buffer take about
    CHUNK_BYTES (4 to 64 steps)."""
    size = max(4, min(64, CHUNK_BYTES // (R * B * N * element_size)))
    return [(t0, min(T, t0 + size)) for t0 in range(0, T, size)]


class _TanhRecurrence(torch.autograd.Function):
    """The whole RNN forward pass over T steps as one autograd node, with a hand-written backward.

    Forward: z_{t+1} = J tanh(z_t) + W_in s_{t+1} + b for all members at once (two ops a step: tanh
    into the saved buffer H, an in-place batched multiply-add onto the input drive), and, if
    `w_out` is given, the readout.
    Backward (backpropagation through time): a_t = g_t + (a_{t+1} J) * (1 - tanh(z_{t+1})^2), again
    two ops a step, and the weight gradients as large matmuls (dJ = sum_t a_t^T tanh(z_t) is an
    (N x CB) @ (CB x N) product per member and chunk of C steps). Autograd would instead record
    four nodes per step and accumulate dJ with T small products and T additions.

    Memory traffic: with R = 16 the (T, R, B, N) tensors are 25 MB each and every pass over one
    costs ~3 ms, a third of an epoch when the drive, states, readout gradient, tanh' and adjoints
    each had their own. So everything that is not a per-step op runs chunk by chunk on small
    scratch buffers that stay in cache, right next to the steps that produce or use them; only H
    (tanh of the states, which the backward needs) goes through memory, once each way. With the
    readout fused, the states themselves are never stored: dw_out = sum_t g_t z_{t+1}^T is
    expanded through z_{t+1} = b + W_in s_t + J h_t into sums over g, s and h.
    Same arithmetic up to float round-off (summation order).
    """

    @staticmethod
    def forward(ctx, z0, inputs, J, W_in, b, w_out, c, workspace):
        T, R, B, I = inputs.shape
        N = J.shape[-1]
        readout = w_out is not None
        chunks = _chunks(T, R, B, N, J.element_size())
        steps = max(t1 - t0 for t0, t1 in chunks)
        H = workspace.get("H", (R, T, B, N), J)  # tanh(z_0) .. tanh(z_{T-1}); member-major for dJ
        Hs = H.unbind(1)
        if readout:  # states z_{t+1} live in two alternating chunk buffers
            X = [workspace.get(f"X{i}", (steps, R, B, N), J) for i in (0, 1)]
            logits = J.new_empty(T, R, w_out.shape[1], B)
            w_out_b = w_out.unsqueeze(0)
        else:
            X_all = J.new_empty(T, R, B, N)
        JT = J.transpose(1, 2).contiguous()
        z = z0
        for k, (t0, t1) in enumerate(chunks):
            X_c = X[k % 2][: t1 - t0] if readout else X_all[t0:t1]
            # the input drive b + W_in s of these steps, then the steps adding J tanh(z) onto it
            torch.addcmul(b.unsqueeze(1), inputs[t0:t1, ..., :1], W_in[:, :, 0].unsqueeze(1), out=X_c)
            for i in range(1, I):
                X_c.addcmul_(inputs[t0:t1, ..., i : i + 1], W_in[:, :, i].unsqueeze(1))
            for t, z_next in enumerate(X_c.unbind(0), start=t0):
                torch.tanh(z, out=Hs[t])
                z = z_next.baddbmm_(Hs[t], JT)
            if readout:  # (C, R, O, B) = w_out (1, R, O, N) @ z^T (C, R, N, B)
                torch.matmul(w_out_b, X_c.transpose(-1, -2), out=logits[t0:t1])
        ctx.workspace, ctx.readout, ctx.chunks = workspace, readout, chunks
        ctx.save_for_backward(inputs, J, W_in, b, H, w_out)
        if not readout:
            return X_all
        return logits.transpose(-1, -2) + c.view(1, R, 1, -1)

    @staticmethod
    def backward(ctx, grad):
        workspace, readout, chunks = ctx.workspace, ctx.readout, ctx.chunks
        inputs, J, W_in, b, H, w_out = ctx.saved_tensors
        T, R, B, I = inputs.shape
        N = J.shape[-1]
        needs = ctx.needs_input_grad
        steps = max(t1 - t0 for t0, t1 in chunks)
        grad = grad.contiguous()  # (T, R, B, O) with the readout, else (T, R, B, N)
        # A: a_t, the total gradient of the loss w.r.t. z_{t+1}, chunk by chunk in two alternating
        # buffers (a chunk's first step needs a_{t+1} from the chunk before); S: tanh'(z_{t+1})
        A = [workspace.get(f"A{i}", (R, steps, B, N), J) for i in (0, 1)]
        S = workspace.get("S", (R, steps, B, N), J)
        one, pulled = H.new_ones(()), H.new_empty(R, B, N)
        # [s_t, 1] per row of a chunk: [dW_in | db] = sum_t [s_t, 1]^T a_t
        drives = torch.cat([inputs.transpose(0, 1).reshape(R, T * B, I), inputs.new_ones(R, T * B, 1)], dim=2)
        g_J, g_Wb = torch.zeros_like(J), J.new_zeros(R, I + 1, N)
        if readout:
            O = w_out.shape[1]
            grad_rows = grad.transpose(0, 1).reshape(R, T * B, O)
            g_wh = J.new_zeros(R, O, N)  # sum_t g_t h_t^T, the J h_t part of dw_out
        a = None
        for k, (t0, t1) in enumerate(reversed(chunks)):
            C = t1 - t0
            A_c, H_c = A[k % 2][:, :C], H[:, t0:t1]
            # the gradient reaching z_{t+1} directly
            if not readout:
                A_c.transpose(0, 1).copy_(grad[t0:t1])
            elif O == 1:
                torch.mul(grad[t0:t1], w_out, out=A_c.transpose(0, 1))
            else:
                A_c.transpose(0, 1).copy_(torch.matmul(grad[t0:t1], w_out))
            # tanh'(z_{t+1}) for t = t0 .. t1 - 1 (1 - tanh^2, never sech^2, which underflows)
            S_c = S[:, : min(t1 + 1, T) - t0 - 1]
            torch.addcmul(one, H[:, t0 + 1 : t1 + 1], H[:, t0 + 1 : t1 + 1], value=-1, out=S_c)
            A_steps, S_steps = A_c.unbind(1), S_c.unbind(1)
            for i in range(C - 1, -1, -1):  # step t = t0 + i
                if a is not None:  # a = a_{t+1}
                    torch.bmm(a, J, out=pulled)
                    A_steps[i].addcmul_(pulled, S_steps[i])
                a = A_steps[i]
            A_rows, H_rows = A_c.reshape(R, C * B, N), H_c.reshape(R, C * B, N)
            g_J.baddbmm_(A_rows.transpose(1, 2), H_rows)
            g_Wb.baddbmm_(drives[:, t0 * B : t1 * B].transpose(1, 2), A_rows)
            if readout:
                g_wh.baddbmm_(grad_rows[:, t0 * B : t1 * B].transpose(1, 2), H_rows)
        g_x0 = torch.bmm(a, J).mul_(torch.addcmul(one, H[:, 0], H[:, 0], value=-1)) if needs[0] else None
        g_W_in, g_b = g_Wb[:, :I].transpose(1, 2), g_Wb[:, I]
        g_w_out = g_c = None
        if readout:
            g_c = grad_rows.sum(dim=1)  # (R, O)
            if needs[5]:  # sum_t g_t z_{t+1}^T with z_{t+1} = b + W_in s_t + J h_t
                g_w_out = torch.baddbmm(
                    g_c.unsqueeze(2) * b.unsqueeze(1),
                    torch.bmm(grad_rows.transpose(1, 2), drives[..., :I]),
                    W_in.transpose(1, 2),
                )
                g_w_out.baddbmm_(g_wh, J.transpose(1, 2))
        return (
            g_x0,
            None,
            g_J if needs[2] else None,
            g_W_in if needs[3] else None,
            g_b if needs[4] else None,
            g_w_out,
            g_c if needs[6] else None,
            None,
        )


def qr_adjoint(g_Q: Tensor | None, Q: Tensor, Rt: Tensor, weight: Tensor | None) -> Tensor:
    """Gradient w.r.t. P of a reduced QR, P = Q Rt (M, S, k), given the gradient g_Q w.r.t. Q (or
    None) and, where log|R_ii| entered the loss, `weight` (M, k) = R_ii times its gradient w.r.t.
    R_ii (Walter & Lehmann, 2018; Seeger et al., 2017): with M = R gR^T - gQ^T Q and copyltu(M) the
    symmetric matrix built from its lower triangle, gP = (gQ + Q copyltu(M)) R^{-T}; gR is diagonal
    here, so the lower triangle of R gR^T is diag(weight)."""
    lower = torch.bmm(g_Q.transpose(1, 2), Q).neg_() if g_Q is not None else Q.new_zeros(Q.shape[0], *Rt.shape[-2:])
    if weight is not None:
        lower.diagonal(dim1=-2, dim2=-1).add_(weight)
    lower = lower.tril_()
    sym = lower + lower.tril(-1).transpose(1, 2)
    g_P = torch.bmm(Q, sym) if g_Q is None else torch.baddbmm(g_Q, Q, sym)
    return torch.linalg.solve_triangular(Rt.transpose(1, 2), g_P, upper=False, left=False)


class _TanhSpectrum(torch.autograd.Function):
    """The Lyapunov spectrum loop of `lyapunov.lyapunov_spectrum` for the tanh RNN with its
    analytic tangent, as one autograd node with a hand-written backward.

    Forward, per step: h = tanh(z_t); the frame scaled by tanh' (saved), P = J (tanh' * Q);
    z_{t+1} = J h + b + W_in s; then on re-orthonormalisation steps Q, R = qr(P). The logs of
    |diag R| are summed once at the end.
    Backward, per step in reverse: the reduced-QR adjoint (`qr_adjoint`), then through the tangent and the
    state update by the chain rule, with dJ, dW_in, db of the state path as single matmuls over
    all steps at the end. Frames are handled as (R * B, N, k) stacks so that every step is a few
    plain batched ops; autograd records more than twice as many for the same loop.
    """

    @staticmethod
    def forward(ctx, state, inputs, J, W_in, b, q0, flags, counted, min_diag):
        steps, R, Bs, I = inputs.shape
        N, k = J.shape[-1], q0.shape[-1]
        M = R * Bs  # independent trajectories; frames are (M, N, k)
        drive = torch.addcmul(b.unsqueeze(1), inputs[..., :1], W_in[:, :, 0].unsqueeze(1))
        for i in range(1, I):
            drive.addcmul_(inputs[..., i : i + 1], W_in[:, :, i].unsqueeze(1))
        JT = J.transpose(1, 2).contiguous()
        Jm = J if Bs == 1 else J.repeat_interleave(Bs, dim=0)  # (M, N, N)
        H = J.new_empty(R, steps, Bs, N)  # tanh(z_t), member-major for the final dJ product
        scaled = J.new_empty(steps, M, N, k)  # tanh'(z_t) * Q_t, the right factor of dJ
        frames, factors, diagonals = [q0.expand(M, N, k)], {}, []
        one = J.new_ones(())
        Q, z = frames[0], state
        for t, (h, d, (qr, accumulate)) in enumerate(zip(H.unbind(1), drive.unbind(0), flags)):
            torch.tanh(z, out=h)
            gain = torch.addcmul(one, h, h, value=-1)  # 1 - tanh^2 (never sech^2)
            P = torch.bmm(Jm, torch.mul(gain.view(M, N, 1), Q, out=scaled[t]))
            z = torch.baddbmm(d, h, JT)
            Q = reorthonormalize(P, qr, accumulate, factors, t, diagonals)
            frames.append(Q)
        diagonals = torch.stack(diagonals)
        growth = diagonals.abs().clamp_min(min_diag).log().sum(0) / counted
        ctx.save_for_backward(inputs, J, H)
        ctx.scaled, ctx.frames, ctx.factors, ctx.diagonals = scaled, frames, factors, diagonals
        ctx.flags, ctx.counted, ctx.min_diag = flags, counted, min_diag
        return growth.view(R, Bs, k)

    @staticmethod
    def backward(ctx, grad):
        inputs, J, H = ctx.saved_tensors
        scaled, frames, factors = ctx.scaled, ctx.frames, ctx.factors
        steps, R, Bs, I = inputs.shape
        N, k = J.shape[-1], grad.shape[-1]
        M = R * Bs
        needs = ctx.needs_input_grad
        # R_ii times the gradient w.r.t. R_ii of each accumulated log max(|R_ii|, floor): the
        # gradient w.r.t. the exponent over the number of steps, or 0 where |R_ii| is floored
        weights = (ctx.diagonals.abs() >= ctx.min_diag) * (grad.reshape(M, k) / ctx.counted)
        weights = weights.unbind(0)
        gains = torch.addcmul(
            H.new_ones(()), H.transpose(0, 1), H.transpose(0, 1), value=-1, out=H.new_empty(steps, R, Bs, N)
        )  # step-major: each step's slice is contiguous
        gain_steps, h_steps = gains.unbind(0), H.unbind(1)
        Jm = J if Bs == 1 else J.repeat_interleave(Bs, dim=0)
        JmT = Jm.transpose(1, 2).contiguous()
        g_Jm = torch.zeros_like(Jm)
        g_states = J.new_zeros(R, steps, Bs, N)  # gradient w.r.t. z_{t+1}, paired with h_t and s_t
        g_x_steps = g_states.unbind(1)
        g_Q = g_z = None  # gradients w.r.t. the frame after step t and the state z_{t+1}
        accumulated = len(weights)
        for t in range(steps - 1, -1, -1):
            qr, accumulate = ctx.flags[t]
            g_P, accumulated = frame_gradient(g_Q, qr, accumulate, frames[t + 1], factors.get(t), weights, accumulated)
            gain, h = gain_steps[t], h_steps[t]
            g_h = torch.bmm(g_z, J) if g_z is not None else None  # through z_{t+1} = J h_t + ...
            if g_P is not None:
                g_Jm.baddbmm_(g_P, scaled[t].transpose(1, 2))
                g_scaled = torch.bmm(JmT, g_P)
                g_Q = g_scaled * gain.view(M, N, 1)
                g_gain = (g_scaled * frames[t]).sum(-1).view(R, Bs, N)
                g_h = g_gain.mul_(h).mul_(-2) if g_h is None else g_h.addcmul_(g_gain, h, value=-2)
            if g_h is None:
                g_z = None
            elif t > 0:
                g_z = torch.mul(g_h, gain, out=g_x_steps[t - 1])
            else:
                g_z = g_h * gain
        g_J = g_W_in = g_b = None
        if needs[2]:
            g_J = g_Jm if Bs == 1 else g_Jm.view(R, Bs, N, N).sum(1)
            g_J.baddbmm_(g_states.view(R, steps * Bs, N).transpose(1, 2), H.view(R, steps * Bs, N))
        if needs[3] or needs[4]:
            drives = torch.cat(
                [inputs.transpose(0, 1).reshape(R, steps * Bs, I), inputs.new_ones(R, steps * Bs, 1)], dim=2
            )
            g_Wb = torch.bmm(drives.transpose(1, 2), g_states.view(R, steps * Bs, N))
            g_W_in, g_b = g_Wb[:, :I].transpose(1, 2), g_Wb[:, I]
        return g_z if needs[0] else None, None, g_J, g_W_in, g_b, None, None, None, None


def reorthonormalize(P: Tensor, qr: bool, accumulate: bool, factors: dict, t: int, diagonals: list) -> Tensor:
    """One step of a spectrum loop's frame: on a QR step, Q R = P (R kept in `factors[t]`, its diagonal
    appended to `diagonals` once the warmup is over); otherwise the frame is P itself."""
    if not qr:
        return P
    Q, factors[t] = torch.linalg.qr(P)
    if accumulate:
        diagonals.append(factors[t].diagonal(dim1=-2, dim2=-1))
    return Q


def frame_gradient(
    g_Q: Tensor | None, qr: bool, accumulate: bool, Q: Tensor, Rt: Tensor | None, weights: list, accumulated: int
) -> tuple[Tensor | None, int]:
    """`reorthonormalize` in reverse: the gradient w.r.t. P given the one w.r.t. the frame Q after the
    step, and the count of accumulated diagonals still to walk back through."""
    if not qr:
        return g_Q, accumulated
    if accumulate:
        accumulated -= 1
    return qr_adjoint(g_Q, Q, Rt, weights[accumulated] if accumulate else None), accumulated
