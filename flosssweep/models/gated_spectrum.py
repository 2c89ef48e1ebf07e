"""The LSTM's Lyapunov spectrum loop (the flossing step) as one autograd node with a hand-written backward.

Same loop, schedule and floor as `lyapunov.lyapunov_spectrum` with `lstm_advance`; the backward
differentiates the tangent by hand, which needs the second derivatives of the gates, and shares
the reduced-QR adjoint with the rnn's `_TanhSpectrum`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flosssweep.models.gated_kernels import _drive, _rows, _with_ones
from flosssweep.models.kernels import qr_adjoint


class _LSTMSpectrum(torch.autograd.Function):
    """Forward, per step t (gates in torch's order i, f, g, o; state [h, c]):
    a = [sigmoid, sigmoid, tanh, sigmoid](b + W_ih s + W_hh h), c' = f c + i g, h' = o tanh(c');
    the tangent dG = W_hh Q_h, dc = f Q_c + sum_j K_j dG_j (j = i, f, g) and
    dh = K_o dG_o + o (1 - tanh^2 c') dc with K = [g i', c f', i (1 - g^2), tanh(c') o'];
    then QR of P = [dh; dc].
    Backward, per step in reverse, from the frame's gradient g_P: the tangent is linear in Q and dG
    (giving g_Q and the dW_hh term g_dG Q_h^T), and its coefficients K, f, o (1 - tanh^2 c') are
    functions of the gates and c, whose gradients join those of the state path
    (h' = o tanh(c'), c' = f c + i g) before going through the gate nonlinearities to the
    pre-activations; dW_hh, dW_ih, db of the state path are single matmuls over all steps at the end.
    """

    @staticmethod
    def forward(ctx, h0, c0, inputs, W_ih, W_hh, b, q0, flags, counted, min_diag):
        steps, R, Bs, _ = inputs.shape
        N, k = W_hh.shape[-1], q0.shape[-1]
        M = R * Bs  # independent trajectories; frames are (M, 2N, k)
        drive = _drive(inputs, W_ih, b, W_hh.new_empty(steps, R, Bs, 4 * N))
        W_hhT = W_hh.transpose(1, 2).contiguous()
        Wm = W_hh if Bs == 1 else W_hh.repeat_interleave(Bs, dim=0)  # (M, 4N, N)
        A = W_hh.new_empty(steps, R, Bs, 4 * N)  # activated gates
        Cs, H = W_hh.new_empty(steps + 1, R, Bs, N), W_hh.new_empty(R, steps + 1, Bs, N)
        Cs[0], H[:, 0] = c0, h0
        TC = W_hh.new_empty(steps, R, Bs, N)  # tanh(c_{t+1})
        K = W_hh.new_empty(steps, M, 4 * N, 1)
        dGs, dCs = W_hh.new_empty(steps, M, 4 * N, k), W_hh.new_empty(steps, M, N, k)
        frames, factors, diagonals = [q0.expand(M, 2 * N, k)], {}, []
        Q = frames[0]
        for t, (qr, accumulate) in enumerate(flags):
            a = torch.baddbmm(drive[t], H[:, t], W_hhT, out=A[t])
            a[..., :2 * N].sigmoid_()
            a[..., 2 * N:3 * N].tanh_()
            a[..., 3 * N:].sigmoid_()
            i, f, g, o = a.split(N, dim=-1)
            c = Cs[t]
            torch.addcmul(f * c, i, g, out=Cs[t + 1])
            tc = torch.tanh(Cs[t + 1], out=TC[t])
            torch.mul(o, tc, out=H[:, t + 1])
            slope = torch.addcmul(a, a, a, value=-1)  # sigmoid' in the i, f, o slots
            Kt = K[t].view(R, Bs, 4 * N)
            torch.mul(g, slope[..., :N], out=Kt[..., :N])
            torch.mul(c, slope[..., N:2 * N], out=Kt[..., N:2 * N])
            torch.addcmul(i, i, g * g, value=-1, out=Kt[..., 2 * N:3 * N])
            torch.mul(tc, slope[..., 3 * N:], out=Kt[..., 3 * N:])
            dG = torch.bmm(Wm, Q[:, :N], out=dGs[t])
            dc = torch.mul(f.reshape(M, N, 1), Q[:, N:], out=dCs[t])
            dc.add_((K[t][:, :3 * N] * dG[:, :3 * N]).view(M, 3, N, k).sum(1))
            gain = (o - o * tc * tc).reshape(M, N, 1)
            P = torch.cat([torch.addcmul(K[t][:, 3 * N:] * dG[:, 3 * N:], gain, dc), dc], dim=1)
            if qr:
                Q, factors[t] = torch.linalg.qr(P)
                if accumulate:
                    diagonals.append(factors[t].diagonal(dim1=-2, dim2=-1))
            else:
                Q = P
            frames.append(Q)
        diagonals = torch.stack(diagonals)
        growth = diagonals.abs().clamp_min(min_diag).log().sum(0) / counted
        ctx.save_for_backward(inputs, W_hh, A, Cs, H, TC, K, dGs, dCs)
        ctx.frames, ctx.factors, ctx.diagonals = frames, factors, diagonals
        ctx.flags, ctx.counted, ctx.min_diag = flags, counted, min_diag
        return growth.view(R, Bs, k)

    @staticmethod
    def backward(ctx, grad):
        inputs, W_hh, A, Cs, H, TC, K, dGs, dCs = ctx.saved_tensors
        frames, factors = ctx.frames, ctx.factors
        steps, R, Bs, I = inputs.shape
        N, k = W_hh.shape[-1], grad.shape[-1]
        M = R * Bs
        weights = ((ctx.diagonals.abs() >= ctx.min_diag) * (grad.reshape(M, k) / ctx.counted)).unbind(0)
        Wm = W_hh if Bs == 1 else W_hh.repeat_interleave(Bs, dim=0)
        WmT = Wm.transpose(1, 2).contiguous()
        g_Wm = torch.zeros_like(Wm)
        g_pre = W_hh.new_zeros(R, steps, Bs, 4 * N)  # gradient w.r.t. the pre-activations of each step
        g_h, g_c = W_hh.new_zeros(R, Bs, N), W_hh.new_zeros(R, Bs, N)  # w.r.t. h_{t+1}, c_{t+1}
        g_Q = None  # w.r.t. the frame after step t
        accumulated = len(weights)
        for t in range(steps - 1, -1, -1):
            qr, accumulate = ctx.flags[t]
            if qr:
                if accumulate:
                    accumulated -= 1
                g_P = qr_adjoint(g_Q, frames[t + 1], factors[t], weights[accumulated] if accumulate else None)
            else:
                g_P = g_Q
            a, c, tc = A[t], Cs[t], TC[t]
            i, f, g, o = a.split(N, dim=-1)
            slope = torch.addcmul(a, a, a, value=-1)
            si, sf, so = slope[..., :N], slope[..., N:2 * N], slope[..., 3 * N:]
            stc = 1 - tc * tc
            g_tc, g_o = g_h * o, g_h * tc  # the state path h' = o tanh(c')
            g_i = g_f = g_g = None
            if g_P is not None:
                Q = frames[t]
                g_dh = g_P[:, :N]
                g_dc = torch.addcmul(g_P[:, N:], (o * stc).reshape(M, N, 1), g_dh)
                g_dG = torch.cat([g_dc, g_dc, g_dc, g_dh], dim=1)
                g_K = (g_dG * dGs[t]).sum(-1).view(R, Bs, 4 * N)
                g_dG.mul_(K[t])
                g_gain = (g_dh * dCs[t]).sum(-1).view(R, Bs, N)  # w.r.t. o (1 - tanh^2 c')
                g_Wm.baddbmm_(g_dG, Q[:, :N].transpose(1, 2))
                g_f = (g_dc * Q[:, N:]).sum(-1).view(R, Bs, N)
                g_Q = torch.cat([torch.bmm(WmT, g_dG), f.reshape(M, N, 1) * g_dc], dim=1)
                k_i, k_f, k_g, k_o = g_K.split(N, dim=-1)
                # through K_i = g i', K_f = c f', K_g = i (1 - g^2), K_o = tanh(c') o', o (1 - tanh^2 c')
                g_tc = g_tc + k_o * so - 2 * g_gain * o * tc
                g_o = g_o + k_o * tc * (1 - 2 * o) + g_gain * stc
                g_i = k_i * g * (1 - 2 * i) + k_g * (1 - g * g)
                g_g = k_i * si - 2 * k_g * i * g
                g_f = g_f + k_f * c * (1 - 2 * f)
                g_c_coef = k_f * sf
            g_cell = torch.addcmul(g_c, g_tc, stc)  # total w.r.t. c_{t+1}
            g_i = g_cell * g if g_i is None else g_i.addcmul_(g_cell, g)
            g_g = g_cell * i if g_g is None else g_g.addcmul_(g_cell, i)
            g_f = g_cell * c if g_f is None else g_f.addcmul_(g_cell, c)
            g_c = g_cell * f if g_P is None else torch.addcmul(g_c_coef, g_cell, f)
            gp = g_pre[:, t]
            torch.mul(g_i, si, out=gp[..., :N])
            torch.mul(g_f, sf, out=gp[..., N:2 * N])
            torch.mul(g_g, 1 - g * g, out=gp[..., 2 * N:3 * N])
            torch.mul(g_o, so, out=gp[..., 3 * N:])
            g_h = torch.bmm(gp, W_hh)
        needs = ctx.needs_input_grad
        g_W_hh = g_Wm if Bs == 1 else g_Wm.view(R, Bs, 4 * N, N).sum(1)
        rows = _rows(g_pre)
        g_W_hh = g_W_hh.baddbmm(rows.transpose(1, 2), _rows(H[:, :steps]))
        g_Wb = torch.bmm(_with_ones(inputs).transpose(1, 2), rows)
        return (g_h if needs[0] else None, g_c if needs[1] else None, None,
                g_Wb[:, :I].transpose(1, 2) if needs[3] else None, g_W_hh if needs[4] else None,
                g_Wb[:, I] if needs[5] else None, None, None, None, None)


def lstm_spectrum(p: dict, x: Tensor, inputs: Tensor, k: int, q0: Tensor, flags, counted: int,
                  min_diag: float) -> Tensor:
    """Exponents (R, B, k) of the LSTM from the state x = [h, c] (R, B, 2N); arguments checked and
    the schedule made by the caller (`GatedCell.spectrum`)."""
    N = p["W_hh"].shape[-1]
    return _LSTMSpectrum.apply(x[..., :N], x[..., N:], inputs, p["W_ih"], p["W_hh"], p["b_ih"] + p["b_hh"], q0,
                               flags, counted, min_diag)
