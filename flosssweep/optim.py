"""Per-member optimisation for stacked ensembles: Adam, gradient clipping and non-finite guards.

Every tensor has the member index on its first axis. Adam is elementwise, so one Adam over stacked
parameters is R independent Adams, provided each member keeps its own step count (bias correction)
and a member whose step is skipped is left exactly as it was: `torch.optim.Adam` would still move it
with its old moments, hence this small implementation with an `active` mask.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _per_member(mask: Tensor, like: Tensor) -> Tensor:
    return mask.view(-1, *[1] * (like.dim() - 1))


class MemberAdam:
    def __init__(self, params: list[Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps = list(params), lr, betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.steps = torch.zeros(self.params[0].shape[0], device=self.params[0].device)
        # Looking whether every member is active costs nothing on the CPU but is a host sync on a
        # GPU (and impossible inside a CUDA graph), where the masked step is launch-bound anyway.
        self.always_masked = self.steps.device.type != "cpu"

    @torch.no_grad()
    def step(self, grads: list[Tensor], active: Tensor) -> None:
        """Adam step for the members where `active` (bool, shape (R,)) holds; the rest untouched."""
        beta1, beta2 = self.betas
        self.steps += active
        steps = self.steps.clamp_min(1)
        correction1, correction2 = 1 - beta1**steps, 1 - beta2**steps
        if not self.always_masked and bool(active.all()):  # the usual case on a CPU: no masks (half the ops)
            for p, g, m, v in zip(self.params, grads, self.m, self.v):
                m.mul_(beta1).add_(g, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denominator = (v / _per_member(correction2, p)).sqrt_().add_(self.eps)
                p.addcdiv_(m / _per_member(correction1, p), denominator, value=-self.lr)
            return
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            on = _per_member(active, p)
            g = torch.where(on, g, 0.0)
            m.copy_(torch.where(on, beta1 * m + (1 - beta1) * g, m))
            v.copy_(torch.where(on, beta2 * v + (1 - beta2) * g * g, v))
            m_hat = m / _per_member(correction1, p)
            v_hat = v / _per_member(correction2, p)
            p.sub_(torch.where(on, self.lr * m_hat / (v_hat.sqrt() + self.eps), 0.0))

    def state_dict(self) -> dict:
        return {"m": self.m, "v": self.v, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        for mine, saved in zip(self.m + self.v, state["m"] + state["v"]):
            mine.copy_(saved)
        self.steps.copy_(state["steps"])


def member_norms(grads: list[Tensor]) -> Tensor:
    """Norm of each tensor for each member: shape (len(grads), R)."""
    return torch.stack([g.flatten(1).norm(dim=1) for g in grads])


def clip(grads: list[Tensor], max_norm: float, mode: str = "tensor", norms: Tensor | None = None) -> list[Tensor]:
    """Clip by norm per member: each tensor separately (`tensor`, the reference code's choice) or
    all tensors of a member together (`global`). max_norm 0 disables clipping. `norms`: the
    caller's `member_norms(grads)`, if it has them already."""
    if max_norm <= 0:
        return grads
    if norms is None:
        norms = member_norms(grads)
    if mode == "global":
        norms = norms.norm(dim=0).expand_as(norms)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    return [g * _per_member(s, g) for g, s in zip(grads, scale)]


def finite_members(loss: Tensor, grads: list[Tensor]) -> Tensor:
    """Bool (R,): the members whose loss and every gradient entry are finite."""
    ok = torch.isfinite(loss)
    for g in grads:
        ok &= torch.isfinite(g).flatten(1).all(dim=1)
    return ok
