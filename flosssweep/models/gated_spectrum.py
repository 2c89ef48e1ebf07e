"""The LSTM's and GRU's Lyapunov spectrum loops (the flossing step) as autograd nodes with hand-written backwards.

Same loop, schedule and floor as `lyapunov.lyapunov_spectrum` with `lstm_advance` / `gru_advance`;
the backward differentiates the tangent by hand, which needs the second derivatives of the gates,
and shares the reduced-QR adjoint with the rnn's `_TanhSpectrum`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from flosssweep.models.gated_kernels import _drive, _rows, _with_ones
from flosssweep.models.kernels import frame_gradient, reorthonormalize


class _LSTMSpectrum(torch.autograd.Function):
    """Forward (gates in torch's order i, f, g, o; state [h, c]): the state path
    a = [sigmoid, sigmoid, tanh, sigmoid](b + W_ih s + W_hh h), c' = f c + i g, h' = o tanh(c')
    first, for all steps, since it does not depend on the frames; then the tangent coefficients
    K = [g i', c f', i (1 - g^2), tanh(c') o'] and o (1 - tanh^2 c') for all steps at once; then the
    frame loop dG = W_hh Q_h, dc = f Q_c + sum_j K_j dG_j (j = i, f, g),
    dh = K_o dG_o + o (1 - tanh^2 c') dc, QR of P = [dh; dc].
    Backward in the same order reversed: the frame loop (QR adjoint; the tangent is linear in Q and
    dG, which gives g_Q, the dW_hh term g_dG Q_h^T and the gradients of the coefficients), then the
    coefficients' gradients through the gates for all steps at once, then the state loop, which
    per step is one matmul against W_hh and four element-wise ops: with gp the gradient w.r.t. the
    pre-activations, gp = gp_K + [g_c', g_c', g_c', g_h'] K, g_c' = g_c + g_tc_K (1 - tanh^2 c') +
    g_h' o (1 - tanh^2 c') and g_c = g_c' f + g_c_K (the _K terms coming from the coefficients).
    dW_hh, dW_ih, db of the state path are single matmuls over all steps at the end.
    """

    @staticmethod
    def forward(ctx, h0, c0, inputs, W_ih, W_hh, b, q0, flags, counted, min_diag):
        steps, R, Bs, _ = inputs.shape
        N, k = W_hh.shape[-1], q0.shape[-1]
        M = R * Bs  # independent trajectories; frames are (M, 2N, k)
        A = _drive(inputs, W_ih, b, W_hh.new_empty(steps, R, Bs, 4 * N))  # then the activated gates
        W_hhT = W_hh.transpose(1, 2).contiguous()
        Cs, H = W_hh.new_empty(steps + 1, R, Bs, N), W_hh.new_empty(R, steps + 1, Bs, N)
        Cs[0], H[:, 0] = c0, h0
        TC = W_hh.new_empty(steps, R, Bs, N)  # tanh(c_{t+1})
        for t in range(steps):
            a = A[t].baddbmm_(H[:, t], W_hhT)
            a[..., : 2 * N].sigmoid_()
            a[..., 2 * N : 3 * N].tanh_()
            a[..., 3 * N :].sigmoid_()
            i, f, g, o = a.split(N, dim=-1)
            torch.addcmul(f * Cs[t], i, g, out=Cs[t + 1])
            torch.mul(o, torch.tanh(Cs[t + 1], out=TC[t]), out=H[:, t + 1])
        i, f, g, o = A.split(N, dim=-1)
        slope = torch.addcmul(A, A, A, value=-1)  # sigmoid' in the i, f, o slots
        K = torch.empty_like(A)
        torch.mul(g, slope[..., :N], out=K[..., :N])
        torch.mul(Cs[:steps], slope[..., N : 2 * N], out=K[..., N : 2 * N])
        torch.addcmul(i, i, g * g, value=-1, out=K[..., 2 * N : 3 * N])
        torch.mul(TC, slope[..., 3 * N :], out=K[..., 3 * N :])
        gain = torch.addcmul(o, o * TC, TC, value=-1)  # o (1 - tanh^2 c')
        Kf, fs, gains = K.view(steps, M, 4 * N, 1), f.reshape(steps, M, N, 1), gain.view(steps, M, N, 1)
        Wm = W_hh if Bs == 1 else W_hh.repeat_interleave(Bs, dim=0)  # (M, 4N, N)
        dGs, dCs = W_hh.new_empty(steps, M, 4 * N, k), W_hh.new_empty(steps, M, N, k)
        frames, factors, diagonals = [q0.expand(M, 2 * N, k)], {}, []
        Q = frames[0]
        for t, (qr, accumulate) in enumerate(flags):
            dG = torch.bmm(Wm, Q[:, :N], out=dGs[t])
            dc = torch.mul(fs[t], Q[:, N:], out=dCs[t])
            dc.add_((Kf[t][:, : 3 * N] * dG[:, : 3 * N]).view(M, 3, N, k).sum(1))
            P = torch.cat([torch.addcmul(Kf[t][:, 3 * N :] * dG[:, 3 * N :], gains[t], dc), dc], dim=1)
            Q = reorthonormalize(P, qr, accumulate, factors, t, diagonals)
            frames.append(Q)
        diagonals = torch.stack(diagonals)
        growth = diagonals.abs().clamp_min(min_diag).log().sum(0) / counted
        ctx.save_for_backward(inputs, W_hh, A, Cs, H, TC, K, gain, dGs, dCs)
        ctx.frames, ctx.factors, ctx.diagonals = frames, factors, diagonals
        ctx.flags, ctx.counted, ctx.min_diag = flags, counted, min_diag
        return growth.view(R, Bs, k)

    @staticmethod
    def backward(ctx, grad):
        inputs, W_hh, A, Cs, H, TC, K, gain, dGs, dCs = ctx.saved_tensors
        frames, factors = ctx.frames, ctx.factors
        steps, R, Bs, I = inputs.shape
        N, k = W_hh.shape[-1], grad.shape[-1]
        M = R * Bs
        weights = ((ctx.diagonals.abs() >= ctx.min_diag) * (grad.reshape(M, k) / ctx.counted)).unbind(0)
        Wm = W_hh if Bs == 1 else W_hh.repeat_interleave(Bs, dim=0)
        WmT = Wm.transpose(1, 2).contiguous()
        g_Wm = torch.zeros_like(Wm)
        i, f, g, o = A.split(N, dim=-1)
        Kf, fs, gains = K.view(steps, M, 4 * N, 1), f.reshape(steps, M, N, 1), gain.view(steps, M, N, 1)
        # the frame loop: gradients w.r.t. the coefficients K, o (1 - tanh^2 c') and f of each step
        g_K, g_gain, g_f = torch.zeros_like(K), torch.zeros_like(gain), torch.zeros_like(gain)
        g_Kf, g_gains, g_fs = g_K.view(steps, M, 4 * N), g_gain.view(steps, M, N), g_f.view(steps, M, N)
        g_Q = None  # w.r.t. the frame after step t
        accumulated = len(weights)
        for t in range(steps - 1, -1, -1):
            qr, accumulate = ctx.flags[t]
            g_P, accumulated = frame_gradient(g_Q, qr, accumulate, frames[t + 1], factors.get(t), weights, accumulated)
            if g_P is None:
                continue
            Q, g_dh = frames[t], g_P[:, :N]
            g_dc = torch.addcmul(g_P[:, N:], gains[t], g_dh)
            g_dG = torch.cat([g_dc, g_dc, g_dc, g_dh], dim=1)
            torch.sum(g_dG * dGs[t], -1, out=g_Kf[t])
            g_dG.mul_(Kf[t])
            torch.sum(g_dh * dCs[t], -1, out=g_gains[t])
            torch.sum(g_dc * Q[:, N:], -1, out=g_fs[t])
            g_Wm.baddbmm_(g_dG, Q[:, :N].transpose(1, 2))
            g_Q = torch.cat([torch.bmm(WmT, g_dG), fs[t] * g_dc], dim=1)
        # the coefficients' gradients through the gates, all steps at once
        c, tc = Cs[:steps], TC
        slope = torch.addcmul(A, A, A, value=-1)
        si, sf, so = slope[..., :N], slope[..., N : 2 * N], slope[..., 3 * N :]
        k_i, k_f, k_g, k_o = g_K.split(N, dim=-1)
        stc = 1 - tc * tc
        g_pre_K = torch.empty_like(A)  # the coefficients' part of the pre-activation gradients
        torch.mul(k_i * g * (1 - 2 * i) + k_g * (1 - g * g), si, out=g_pre_K[..., :N])
        torch.mul(g_f + k_f * c * (1 - 2 * f), sf, out=g_pre_K[..., N : 2 * N])
        torch.mul(k_i * si - 2 * k_g * i * g, 1 - g * g, out=g_pre_K[..., 2 * N : 3 * N])
        torch.mul(k_o * tc * (1 - 2 * o) + g_gain * stc, so, out=g_pre_K[..., 3 * N :])
        g_cell_K = (k_o * so - 2 * g_gain * o * tc) * stc  # through tanh(c') into c'
        g_c_K = k_f * sf
        # the state loop
        g_pre = W_hh.new_empty(R, steps, Bs, 4 * N)
        g_c = g_h = None  # w.r.t. c_{t+1} (from the step after) and h_{t+1}
        for t in range(steps - 1, -1, -1):
            g_cell = g_cell_K[t] if g_c is None else g_c + g_cell_K[t]
            gp = g_pre[:, t]
            if g_h is None:
                gp.copy_(g_pre_K[t])
                gp[..., : 3 * N].unflatten(-1, (3, N)).addcmul_(
                    g_cell.unsqueeze(-2), K[t][..., : 3 * N].unflatten(-1, (3, N))
                )
            else:
                g_cell = g_cell.addcmul(g_h, gain[t])
                torch.addcmul(
                    g_pre_K[t][..., : 3 * N].unflatten(-1, (3, N)),
                    g_cell.unsqueeze(-2),
                    K[t][..., : 3 * N].unflatten(-1, (3, N)),
                    out=gp[..., : 3 * N].unflatten(-1, (3, N)),
                )
                torch.addcmul(g_pre_K[t][..., 3 * N :], g_h, K[t][..., 3 * N :], out=gp[..., 3 * N :])
            g_c = torch.addcmul(g_c_K[t], g_cell, f[t])
            g_h = torch.bmm(gp, W_hh)
        needs = ctx.needs_input_grad
        g_W_hh = g_Wm if Bs == 1 else g_Wm.view(R, Bs, 4 * N, N).sum(1)
        rows = _rows(g_pre)
        g_W_hh = g_W_hh.baddbmm(rows.transpose(1, 2), _rows(H[:, :steps]))
        g_Wb = torch.bmm(_with_ones(inputs).transpose(1, 2), rows)
        return (
            g_h if needs[0] else None,
            g_c if needs[1] else None,
            None,
            g_Wb[:, :I].transpose(1, 2) if needs[3] else None,
            g_W_hh if needs[4] else None,
            g_Wb[:, I] if needs[5] else None,
            None,
            None,
            None,
            None,
        )


class _GRUSpectrum(torch.autograd.Function):
    """The GRU's loop in the same three-part order as `_LSTMSpectrum`: the state path
    [r, z] = sigmoid(gi + gh)_{r,z}, n = tanh(gi_n + r hn) with gh = b_hh + W_hh h, hn = gh_n,
    h' = n + z (h - n) first; then the tangent coefficients K = [kn hn r', (h - n) z', kn r] with
    kn = (1 - z)(1 - n^2) for all steps; then the frames, D Q = sum_j K_j (W_hh Q)_j + z Q.
    Backward: the frame loop in reverse gives the coefficients' gradients, which go through the
    gates for all steps at once; the state loop is then gp = gp_K + g_h' K (the same K: the
    state path's backward is the transpose of the Jacobian the tangent applies), g_h = g_h_K +
    g_h' z + gp W_hh, one matmul and three element-wise ops a step.
    """

    @staticmethod
    def forward(ctx, h0, inputs, W_ih, W_hh, b_ih, b_hh, q0, flags, counted, min_diag):
        steps, R, Bs, _ = inputs.shape
        N, k = W_hh.shape[-1], q0.shape[-1]
        M = R * Bs
        GI = _drive(inputs, W_ih, b_ih, W_hh.new_empty(steps, R, Bs, 3 * N))
        W_hhT, b_hh = W_hh.transpose(1, 2).contiguous(), b_hh.unsqueeze(1)
        GH, RZ = W_hh.new_empty(steps, R, Bs, 3 * N), W_hh.new_empty(steps, R, Bs, 2 * N)
        NS, H = W_hh.new_empty(steps, R, Bs, N), W_hh.new_empty(R, steps + 1, Bs, N)
        H[:, 0] = h0
        for t in range(steps):
            gh = torch.baddbmm(b_hh, H[:, t], W_hhT, out=GH[t])
            r = torch.add(GI[t][..., : 2 * N], gh[..., : 2 * N], out=RZ[t]).sigmoid_()[..., :N]
            n = torch.addcmul(GI[t][..., 2 * N :], r, gh[..., 2 * N :], out=NS[t]).tanh_()
            torch.addcmul(n, RZ[t][..., N:], H[:, t] - n, out=H[:, t + 1])
        r, u = RZ.split(N, dim=-1)
        hn, n, h = GH[..., 2 * N :], NS, H[:, :steps].transpose(0, 1)
        kn = (1 - u) * (1 - n * n)
        K = torch.cat([kn * hn * (r - r * r), (h - n) * (u - u * u), kn * r], dim=-1)
        Kf, us = K.view(steps, M, 3 * N, 1), u.reshape(steps, M, N, 1)
        Wm = W_hh if Bs == 1 else W_hh.repeat_interleave(Bs, dim=0)
        dGs = W_hh.new_empty(steps, M, 3 * N, k)
        frames, factors, diagonals = [q0.expand(M, N, k)], {}, []
        Q = frames[0]
        for t, (qr, accumulate) in enumerate(flags):
            dG = torch.bmm(Wm, Q, out=dGs[t])
            P = (Kf[t] * dG).view(M, 3, N, k).sum(1).addcmul_(us[t], Q)
            Q = reorthonormalize(P, qr, accumulate, factors, t, diagonals)
            frames.append(Q)
        diagonals = torch.stack(diagonals)
        growth = diagonals.abs().clamp_min(min_diag).log().sum(0) / counted
        ctx.save_for_backward(inputs, W_hh, GH, RZ, NS, H, K, kn, dGs)
        ctx.frames, ctx.factors, ctx.diagonals = frames, factors, diagonals
        ctx.flags, ctx.counted, ctx.min_diag = flags, counted, min_diag
        return growth.view(R, Bs, k)

    @staticmethod
    def backward(ctx, grad):
        inputs, W_hh, GH, RZ, NS, H, K, kn, dGs = ctx.saved_tensors
        frames, factors = ctx.frames, ctx.factors
        steps, R, Bs, I = inputs.shape
        N, k = W_hh.shape[-1], grad.shape[-1]
        M = R * Bs
        weights = ((ctx.diagonals.abs() >= ctx.min_diag) * (grad.reshape(M, k) / ctx.counted)).unbind(0)
        Wm = W_hh if Bs == 1 else W_hh.repeat_interleave(Bs, dim=0)
        WmT = Wm.transpose(1, 2).contiguous()
        g_Wm = torch.zeros_like(Wm)
        r, u = RZ.split(N, dim=-1)
        Kf, us = K.view(steps, M, 3 * N, 1), u.reshape(steps, M, N, 1)
        g_K, g_z = torch.zeros_like(K), torch.zeros_like(NS)  # w.r.t. the coefficients K and z
        g_Kf, g_zs = g_K.view(steps, M, 3 * N), g_z.view(steps, M, N)
        g_Q = None
        accumulated = len(weights)
        for t in range(steps - 1, -1, -1):
            qr, accumulate = ctx.flags[t]
            g_P, accumulated = frame_gradient(g_Q, qr, accumulate, frames[t + 1], factors.get(t), weights, accumulated)
            if g_P is None:
                continue
            Q = frames[t]
            g_dG = torch.cat([g_P, g_P, g_P], dim=1)
            torch.sum(g_dG * dGs[t], -1, out=g_Kf[t])
            g_dG.mul_(Kf[t])
            torch.sum(g_P * Q, -1, out=g_zs[t])
            g_Wm.baddbmm_(g_dG, Q.transpose(1, 2))
            g_Q = torch.baddbmm(g_P * us[t], WmT, g_dG)
        # the coefficients' gradients through the gates, all steps at once
        hn, n, h = GH[..., 2 * N :], NS, H[:, :steps].transpose(0, 1)
        sr, sz, sn = r - r * r, u - u * u, 1 - n * n
        k_r, k_z, k_n = g_K.split(N, dim=-1)
        c_z = g_z - sn * (k_r * hn * sr + k_n * r) + k_z * (h - n) * (1 - 2 * u)
        c_n = -2 * n * (1 - u) * (k_r * hn * sr + k_n * r) - k_z * sz
        g_an_K = c_n * sn  # w.r.t. the pre-activation of n
        g_pre_K = torch.cat(
            [(k_r * kn * hn * (1 - 2 * r) + k_n * kn + g_an_K * hn) * sr, c_z * sz, k_r * kn * sr + g_an_K * r], dim=-1
        )
        g_h_K = k_z * sz
        # the state loop
        g_pre = W_hh.new_empty(R, steps, Bs, 3 * N)  # w.r.t. b_hh + W_hh h of each step (r, z, hn)
        g_an = W_hh.new_empty(R, steps, Bs, N)  # w.r.t. the pre-activation of n (its input side)
        g_h = None  # w.r.t. h_{t+1}
        for t in range(steps - 1, -1, -1):
            gp = g_pre[:, t]
            if g_h is None:
                gp.copy_(g_pre_K[t])
                g_an[:, t] = g_an_K[t]
                g_h = torch.baddbmm(g_h_K[t], gp, W_hh)
                continue
            torch.addcmul(
                g_pre_K[t].unflatten(-1, (3, N)),
                g_h.unsqueeze(-2),
                K[t].unflatten(-1, (3, N)),
                out=gp.unflatten(-1, (3, N)),
            )
            torch.addcmul(g_an_K[t], g_h, kn[t], out=g_an[:, t])
            g_h = torch.baddbmm(torch.addcmul(g_h_K[t], g_h, u[t]), gp, W_hh)
        needs = ctx.needs_input_grad
        g_W_hh = g_Wm if Bs == 1 else g_Wm.view(R, Bs, 3 * N, N).sum(1)
        rows = _rows(g_pre)
        g_W_hh = g_W_hh.baddbmm(rows.transpose(1, 2), _rows(H[:, :steps]))
        g_Wb = torch.bmm(_with_ones(inputs).transpose(1, 2), torch.cat([rows[..., : 2 * N], _rows(g_an)], dim=-1))
        return (
            g_h if needs[0] else None,
            None,
            g_Wb[:, :I].transpose(1, 2) if needs[2] else None,
            g_W_hh if needs[3] else None,
            g_Wb[:, I] if needs[4] else None,
            rows.sum(1) if needs[5] else None,
            None,
            None,
            None,
            None,
        )


def lstm_spectrum(
    p: dict, z: Tensor, inputs: Tensor, k: int, q0: Tensor, flags, counted: int, min_diag: float
) -> Tensor:
    """Exponents (R, B, k) of the LSTM from the state z = [h, c] (R, B, 2N); arguments checked and
    the schedule made by the caller (`GatedCell.spectrum`)."""
    N = p["W_hh"].shape[-1]
    return _LSTMSpectrum.apply(
        z[..., :N], z[..., N:], inputs, p["W_ih"], p["W_hh"], p["b_ih"] + p["b_hh"], q0, flags, counted, min_diag
    )


def gru_spectrum(
    p: dict, z: Tensor, inputs: Tensor, k: int, q0: Tensor, flags, counted: int, min_diag: float
) -> Tensor:
    """Exponents (R, B, k) of the GRU from the state z (R, B, N), as `lstm_spectrum`."""
    return _GRUSpectrum.apply(z, inputs, p["W_ih"], p["W_hh"], p["b_ih"], p["b_hh"], q0, flags, counted, min_diag)
