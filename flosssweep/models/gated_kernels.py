"""Fused forward and backward passes of the LSTM and GRU ensembles over T steps, and their tangent maps.

Each recurrence is one autograd node with a hand-written backward, for all R members at once, in the
spirit of the tanh RNN's kernel: the few ops that must run step by step (one batched matmul against
the recurrent weights and a handful of element-wise ops) run on per-step slices; everything else
(the input drive, the gate derivatives the backward needs, the weight gradients) runs chunk by chunk
on slices of C steps, so each weight gradient is one (gates x CB) @ (CB x N) product per member and
chunk instead of T small ones. Autograd through `step` records ten to fifteen nodes per step.

Hidden states are kept member-major, (R, T + 1, B, N) with h_0 first: the weight gradients read
them as (R, T B, N) rows, and the readout is one matmul over all steps outside the kernel.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from flosssweep.models.kernels import _chunks

Params = dict[str, Tensor]
# (state, input, frame Q) -> (next state, D Q): a step and its tangent sharing the gates
Advance = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def _rows(t: Tensor) -> Tensor:
    """(R, C, B, X) -> (R, C B, X) without a copy where the strides allow it."""
    return t.reshape(t.shape[0], -1, t.shape[-1])


def _drive(inputs: Tensor, W: Tensor, b: Tensor, out: Tensor) -> Tensor:
    """b + W s for a chunk of steps: inputs (C, R, B, I), W (R, G, I), b (R, G) -> out (C, R, B, G).
    I is small (often 1), so I multiply-adds beat a batched matmul with a reshape."""
    torch.addcmul(b.unsqueeze(1), inputs[..., :1], W[:, :, 0].unsqueeze(1), out=out)
    for i in range(1, inputs.shape[-1]):
        out.addcmul_(inputs[..., i : i + 1], W[:, :, i].unsqueeze(1))
    return out


def _with_ones(inputs: Tensor) -> Tensor:
    """Rows [s_t, 1] per member, (R, T B, I + 1): [dW_ih | db] = sum_t [s_t, 1]^T (gate gradient)."""
    T, R, B, I = inputs.shape
    return torch.cat([inputs.transpose(0, 1).reshape(R, T * B, I), inputs.new_ones(R, T * B, 1)], dim=2)


class _LSTMRecurrence(torch.autograd.Function):
    """torch.nn.LSTMCell over T steps for R members; gates here in the order (o, i, f, g), so that
    dG_o and dG_{i,f,g} are contiguous, and the g rows of the weights and bias doubled, so that one
    sigmoid over all 4N pre-activations of a step gives g as 2 sigmoid - 1 (a sigmoid on a strided
    part of a row takes three times as long). The caller rolls and scales torch's (i, f, g, o)
    rows, and autograd maps the gradients back.

    Forward, per step t: G_t = b + W_ih s_t + W_hh h_t (the drive precomputed per chunk), then
    c_{t+1} = f c_t + i g, h_{t+1} = o tanh(c_{t+1}).
    Backward, per step in reverse, with dh, dc the total gradients w.r.t. h_{t+1}, c_{t+1}:
    dh += dG_{t+1} W_hh; dc = dc_{t+1} f_{t+1} + dh o (1 - tanh^2 c_{t+1}) (+ the gradient of c_{t+1}
    if it is an output); dG_o = dh tanh(c_{t+1}) o (1 - o); dG_{i,f,g} = dc [g i(1-i), c_t f(1-f),
    i (1 - g^2)]. The bracketed factors and o (1 - tanh^2) are computed chunk-wide before the steps.
    """

    @staticmethod
    def forward(ctx, h0, c0, inputs, W_ih, W_hh, b, workspace):
        T, R, B, _ = inputs.shape
        N = W_hh.shape[-1]
        chunks = _chunks(T, R, B, 4 * N, W_hh.element_size())
        G = workspace.get("G", (T, R, B, 4 * N), W_hh)  # activated gates (o, i, f, g) of each step
        H = workspace.get("H", (R, T + 1, B, N), W_hh)  # h_0 .. h_T
        Cs = workspace.get("C", (T + 1, R, B, N), W_hh)  # c_0 .. c_T
        TC = workspace.get("TC", (T, R, B, N), W_hh)  # tanh(c_1) .. tanh(c_T)
        H[:, 0], Cs[0] = h0, c0
        W_hhT = W_hh.transpose(1, 2).contiguous()
        ig = W_hh.new_empty(R, B, N)
        for t0, t1 in chunks:
            _drive(inputs[t0:t1], W_ih, b, G[t0:t1])
            for t in range(t0, t1):
                o, i, f, gg = G[t].baddbmm_(H[:, t], W_hhT).sigmoid_().split(N, dim=-1)
                gg.mul_(2).sub_(1)  # tanh(a) = 2 sigmoid(2 a) - 1: one contiguous sigmoid for all gates
                torch.mul(i, gg, out=ig)
                torch.addcmul(ig, f, Cs[t], out=Cs[t + 1])
                torch.mul(o, torch.tanh(Cs[t + 1], out=TC[t]), out=H[:, t + 1])
        ctx.save_for_backward(inputs, W_hh, G, H, Cs, TC)
        ctx.chunks, ctx.workspace = chunks, workspace
        ctx.set_materialize_grads(False)
        return H[:, 1:], Cs[1:]

    @staticmethod
    def backward(ctx, grad_h, grad_c):
        inputs, W_hh, G, H, Cs, TC = ctx.saved_tensors
        chunks, workspace = ctx.chunks, ctx.workspace
        T, R, B, I = inputs.shape
        N = W_hh.shape[-1]
        steps = max(t1 - t0 for t0, t1 in chunks)
        # dG alternates between two chunk buffers: a chunk's last step needs dG_{t+1} from the chunk after
        dG = [workspace.get(f"dG{i}", (R, steps, B, 4 * N), W_hh) for i in (0, 1)]
        A = workspace.get("dH", (R, steps, B, N), W_hh)  # dh of each step of the chunk
        K1 = workspace.get("K1", (steps, R, B, N), W_hh)  # o (1 - tanh^2 c): dh -> dc
        K2 = workspace.get("K2", (steps, R, B, N), W_hh)  # tanh(c) o (1 - o): dh -> dG_o
        K3 = workspace.get("K3", (steps, R, B, 3, N), W_hh)  # dc -> dG_{i,f,g}
        drives = _with_ones(inputs)
        g_W_hh, g_Wb = torch.zeros_like(W_hh), W_hh.new_zeros(R, I + 1, 4 * N)
        one = W_hh.new_ones(())
        dcs = W_hh.new_empty(2, R, B, N)  # dc of this step and the one after
        dG_next = dc = None
        for k, (t0, t1) in enumerate(reversed(chunks)):
            C = t1 - t0
            dG_c, A_c = dG[k % 2][:, :C], A[:, :C]
            o, i, f, g = G[t0:t1].split(N, dim=-1)
            tc = TC[t0:t1]
            k1, k2, k3 = K1[:C], K2[:C], K3[:C]
            # in place on scratch: chunk-sized temporaries would be fresh pages every chunk
            torch.addcmul(one, tc, tc, value=-1, out=k1).mul_(o)
            torch.addcmul(o, o, o, value=-1, out=k2).mul_(tc)
            torch.addcmul(i, i, i, value=-1, out=k3[..., 0, :]).mul_(g)
            torch.addcmul(f, f, f, value=-1, out=k3[..., 1, :]).mul_(Cs[t0:t1])
            torch.addcmul(one, g, g, value=-1, out=k3[..., 2, :]).mul_(i).mul_(0.5)  # d tanh(a'/2) / da'
            if grad_h is None:
                A_c.zero_()
            else:
                A_c.copy_(grad_h[:, t0:t1])
            for s in range(C - 1, -1, -1):
                t = t0 + s
                dh, dG_t = A_c[:, s], dG_c[:, s]
                if dG_next is not None:
                    dh.baddbmm_(dG_next, W_hh)
                new_dc = torch.mul(dh, k1[s], out=dcs[s % 2])
                if dc is not None:
                    new_dc.addcmul_(dc, G[t + 1][..., 2 * N : 3 * N])
                if grad_c is not None:
                    new_dc.add_(grad_c[t])
                dc = new_dc
                torch.mul(dh, k2[s], out=dG_t[..., :N])
                torch.mul(dc.unsqueeze(-2), k3[s], out=dG_t[..., N:].unflatten(-1, (3, N)))
                dG_next = dG_t
            dG_rows = _rows(dG_c)
            g_W_hh.baddbmm_(dG_rows.transpose(1, 2), _rows(H[:, t0:t1]))
            g_Wb.baddbmm_(drives[:, t0 * B : t1 * B].transpose(1, 2), dG_rows)
        needs = ctx.needs_input_grad
        g_h0 = torch.bmm(dG_next, W_hh) if needs[0] else None
        g_c0 = dc * G[0][..., 2 * N : 3 * N] if needs[1] else None
        return (
            g_h0,
            g_c0,
            None,
            g_Wb[:, :I].transpose(1, 2) if needs[3] else None,
            g_W_hh if needs[4] else None,
            g_Wb[:, I] if needs[5] else None,
            None,
        )


class _GRURecurrence(torch.autograd.Function):
    """torch.nn.GRUCell over T steps for R members (gates in torch's order r, z, n; the update gate z is
    `u` in the code, z being the state).

    Forward, per step t: [r, z] = sigmoid(b_ih + W_ih s + b_hh + W_hh h)_{r,z} (the input part
    precomputed per chunk), hn = b_hn + W_hn h, n = tanh((b_in + W_in s) + r hn),
    h_{t+1} = n + z (h_t - n).
    Backward, with dh the total gradient w.r.t. h_{t+1}: dh += dGh_{t+1} W_hh + dh_{t+1} z_{t+1};
    the gradient of the hidden-side pre-activations is dGh = dh [hn r(1-r) K, (h - n) z(1-z), r K]
    with K = (1 - z)(1 - n^2), that of the input side [dGh_r, dGh_z, dh K]; the three factors and K
    are computed chunk-wide, so each step is one matmul and two element-wise ops.
    """

    @staticmethod
    def forward(ctx, h0, inputs, W_ih, W_hh, b_ih, b_hh, workspace):
        T, R, B, _ = inputs.shape
        N = W_hh.shape[-1]
        chunks = _chunks(T, R, B, 3 * N, W_hh.element_size())
        # r, z and n of each step in two buffers: a sigmoid on a strided part of a row is 3x slower
        RZ = workspace.get("RZ", (T, R, B, 2 * N), W_hh)
        NS = workspace.get("N", (T, R, B, N), W_hh)
        HN = workspace.get("HN", (T, R, B, N), W_hh)  # b_hn + W_hn h_t
        H = workspace.get("H", (R, T + 1, B, N), W_hh)
        H[:, 0] = h0
        W_rzT = W_hh[:, : 2 * N].transpose(1, 2).contiguous()
        W_nT = W_hh[:, 2 * N :].transpose(1, 2).contiguous()
        b_rz, b_hn = b_ih[:, : 2 * N] + b_hh[:, : 2 * N], b_hh[:, 2 * N :].unsqueeze(1)
        diff = W_hh.new_empty(R, B, N)
        for t0, t1 in chunks:
            _drive(inputs[t0:t1], W_ih[:, : 2 * N], b_rz, RZ[t0:t1])
            _drive(inputs[t0:t1], W_ih[:, 2 * N :], b_ih[:, 2 * N :], NS[t0:t1])
            for t in range(t0, t1):
                h, rz, n = H[:, t], RZ[t], NS[t]
                rz.baddbmm_(h, W_rzT).sigmoid_()
                torch.baddbmm(b_hn, h, W_nT, out=HN[t])
                n.addcmul_(rz[..., :N], HN[t]).tanh_()
                torch.sub(h, n, out=diff)
                torch.addcmul(n, rz[..., N:], diff, out=H[:, t + 1])
        ctx.save_for_backward(inputs, W_hh, RZ, NS, HN, H)
        ctx.chunks, ctx.workspace = chunks, workspace
        ctx.set_materialize_grads(False)
        return H[:, 1:]

    @staticmethod
    def backward(ctx, grad_h):
        inputs, W_hh, RZ, NS, HN, H = ctx.saved_tensors
        chunks, workspace = ctx.chunks, ctx.workspace
        T, R, B, I = inputs.shape
        N = W_hh.shape[-1]
        steps = max(t1 - t0 for t0, t1 in chunks)
        dGh = [workspace.get(f"dG{i}", (R, steps, B, 3 * N), W_hh) for i in (0, 1)]
        A = [workspace.get(f"dH{i}", (R, steps, B, N), W_hh) for i in (0, 1)]
        KH = workspace.get("KH", (steps, R, B, 3, N), W_hh)  # dh -> dGh
        KN = workspace.get("KN", (steps, R, B, N), W_hh)  # dh -> dGi_n
        dn = workspace.get("dn", (R, steps, B, N), W_hh)
        drives = _with_ones(inputs)
        g_W_hh = torch.zeros_like(W_hh)
        g_Wbh = W_hh.new_zeros(R, I + 1, 3 * N)  # [s, 1]^T dGh: dW_ih, db_ih of r, z and db_hh
        g_Wbn = W_hh.new_zeros(R, I + 1, N)  # [s, 1]^T dGi_n: dW_ih, db_ih of n
        one = W_hh.new_ones(())
        dG_next = dh_next = None
        for k, (t0, t1) in enumerate(reversed(chunks)):
            C = t1 - t0
            dG_c, A_c, kh, kn, dn_c = dGh[k % 2][:, :C], A[k % 2][:, :C], KH[:C], KN[:C], dn[:, :C]
            (r, u), n = RZ[t0:t1].split(N, dim=-1), NS[t0:t1]
            # in place on scratch: chunk-sized temporaries would be fresh pages every chunk
            kr, kz, khn = kh.unbind(-2)
            torch.addcmul(one, n, n, value=-1, out=kn).addcmul_(kn, u, value=-1)
            torch.addcmul(r, r, r, value=-1, out=kr).mul_(HN[t0:t1]).mul_(kn)
            torch.sub(H[:, t0:t1].transpose(0, 1), n, out=kz).mul_(u).addcmul_(kz, u, value=-1)
            torch.mul(kn, r, out=khn)
            if grad_h is None:
                A_c.zero_()
            else:
                A_c.copy_(grad_h[:, t0:t1])
            for s in range(C - 1, -1, -1):
                t = t0 + s
                dh = A_c[:, s]
                if dG_next is not None:
                    dh.baddbmm_(dG_next, W_hh).addcmul_(dh_next, RZ[t + 1][..., N:])
                dG_next = torch.mul(dh.unsqueeze(-2), kh[s], out=dG_c[:, s].unflatten(-1, (3, N))).flatten(-2)
                dh_next = dh
            torch.mul(A_c, kn.transpose(0, 1), out=dn_c)
            dG_rows, rows = _rows(dG_c), drives[:, t0 * B : t1 * B].transpose(1, 2)
            g_W_hh.baddbmm_(dG_rows.transpose(1, 2), _rows(H[:, t0:t1]))
            g_Wbh.baddbmm_(rows, dG_rows)
            g_Wbn.baddbmm_(rows, _rows(dn_c))
        needs = ctx.needs_input_grad
        g_h0 = torch.bmm(dG_next, W_hh).addcmul_(dh_next, RZ[0][..., N:]) if needs[0] else None
        g_W_ih = torch.cat([g_Wbh[:, :I, : 2 * N], g_Wbn[:, :I]], dim=2).transpose(1, 2) if needs[2] else None
        g_b_ih = torch.cat([g_Wbh[:, I, : 2 * N], g_Wbn[:, I]], dim=1) if needs[4] else None
        return (g_h0, None, g_W_ih, g_W_hh if needs[3] else None, g_b_ih, g_Wbh[:, I] if needs[5] else None, None)


def lstm_states(p: Params, z: Tensor, inputs: Tensor, workspace) -> tuple[Tensor, Tensor]:
    """Hidden states (R, T, B, N) and cell states (T, R, B, N) after each input, from the state
    z = [h, c] (R, B, 2N); parameters in torch's gate order."""
    N = p["W_hh"].shape[-1]
    scale = torch.ones(4 * N, 1, dtype=z.dtype, device=z.device)
    scale[3 * N :] = 2

    def roll(w: Tensor) -> Tensor:  # (i, f, g, o) -> (o, i, f, 2 g)
        rolled = torch.roll(w, N, dims=1)
        return rolled * (scale if rolled.dim() == 3 else scale[:, 0])

    return _LSTMRecurrence.apply(
        z[..., :N], z[..., N:], inputs, roll(p["W_ih"]), roll(p["W_hh"]), roll(p["b_ih"] + p["b_hh"]), workspace
    )


def gru_states(p: Params, z: Tensor, inputs: Tensor, workspace) -> Tensor:
    """Hidden states (R, T, B, N) after each input, from the state z (R, B, N)."""
    return _GRURecurrence.apply(z, inputs, p["W_ih"], p["W_hh"], p["b_ih"], p["b_hh"], workspace)


def readout_rows(p: Params, hidden: Tensor) -> Tensor:
    """Logits (T, R, B, O) from hidden states (R, T, B, N): one matmul per member over all steps."""
    R, T, B, _ = hidden.shape
    logits = torch.baddbmm(p["c"].unsqueeze(1), _rows(hidden), p["w_out"].transpose(1, 2))
    return logits.view(R, T, B, -1).transpose(0, 1)


def _col(v: Tensor) -> Tensor:
    return v.unsqueeze(-1)


def _gate_sum(K: Tensor, dG: Tensor, N: int) -> Tensor:
    """sum over gates j of K_j * dG_j: K (R, B, J N), dG (R, B, J N, k) -> (R, B, N, k)."""
    return (_col(K) * dG).unflatten(-2, (-1, N)).sum(-3)


def lstm_advance(p: Params) -> Advance:
    """The LSTM step and its tangent from one evaluation of the gates, at state z = [h, c]:
    dc' = f dc + g i(1-i) dG_i + c f(1-f) dG_f + i (1-g^2) dG_g with dG = W_hh dh,
    dh' = tanh(c') o(1-o) dG_o + o (1 - tanh^2 c') dc'."""
    W_hh = p["W_hh"]
    N = W_hh.shape[-1]
    W_ihT, W_hhT, W_q = p["W_ih"].transpose(1, 2), W_hh.transpose(1, 2), W_hh.unsqueeze(1)
    b = (p["b_ih"] + p["b_hh"]).unsqueeze(1)

    def advance(z: Tensor, s: Tensor, Q: Tensor) -> tuple[Tensor, Tensor]:
        h, c = z[..., :N], z[..., N:]
        pre = torch.baddbmm(torch.baddbmm(b, s, W_ihT), h, W_hhT)
        a = torch.sigmoid(pre)  # the g part is unused: g = tanh
        g = torch.tanh(pre[..., 2 * N : 3 * N])
        i, f, o = a[..., :N], a[..., N : 2 * N], a[..., 3 * N :]
        c_next = torch.addcmul(f * c, i, g)
        tc = torch.tanh(c_next)
        slope = torch.addcmul(a, a, a, value=-1)  # sigmoid' of each gate
        dG = W_q @ Q[..., :N, :]
        K = torch.cat([g * slope[..., :N], c * slope[..., N : 2 * N], i * (1 - g * g)], dim=-1)
        dc = torch.addcmul(_gate_sum(K, dG[..., : 3 * N, :], N), _col(f), Q[..., N:, :])
        dh = torch.addcmul(_col(tc * slope[..., 3 * N :]) * dG[..., 3 * N :, :], _col(o * (1 - tc * tc)), dc)
        return torch.cat([o * tc, c_next], dim=-1), torch.cat([dh, dc], dim=-2)

    return advance


def gru_advance(p: Params) -> Advance:
    """The GRU step and its tangent from one evaluation of the gates:
    dh' = (1-z)(1-n^2)(hn r(1-r) dGh_r + r dGh_n) + (h - n) z(1-z) dGh_z + z dh with dGh = W_hh dh."""
    W_hh = p["W_hh"]
    N = W_hh.shape[-1]
    W_ihT, W_hhT, W_q = p["W_ih"].transpose(1, 2), W_hh.transpose(1, 2), W_hh.unsqueeze(1)
    b_ih, b_hh = p["b_ih"].unsqueeze(1), p["b_hh"].unsqueeze(1)

    def advance(h: Tensor, s: Tensor, Q: Tensor) -> tuple[Tensor, Tensor]:
        gi, gh = torch.baddbmm(b_ih, s, W_ihT), torch.baddbmm(b_hh, h, W_hhT)
        rz = torch.sigmoid(gi[..., : 2 * N] + gh[..., : 2 * N])
        r, u, hn = rz[..., :N], rz[..., N:], gh[..., 2 * N :]
        n = torch.tanh(torch.addcmul(gi[..., 2 * N :], r, hn))
        diff = h - n
        slope = torch.addcmul(rz, rz, rz, value=-1)
        kn = (1 - u) * (1 - n * n)
        K = torch.cat([kn * hn * slope[..., :N], diff * slope[..., N:], kn * r], dim=-1)
        return torch.addcmul(n, u, diff), torch.addcmul(_gate_sum(K, W_q @ Q, N), _col(u), Q)

    return advance
