"""Per-member Adam against torch's Adam, and frozen inactive members."""

import torch

from flosssweep.optim import MemberAdam

torch.set_num_threads(1)


def test_member_adam_matches_torch_adam_and_freezes_inactive_members():
    torch.manual_seed(0)
    start = torch.randn(2, 3, 4)
    grads = [torch.randn(2, 3, 4) for _ in range(5)]
    mine = start.clone()
    ours = MemberAdam([mine], lr=1e-2)
    reference = start[0].clone().requires_grad_()
    theirs = torch.optim.Adam([reference], lr=1e-2)
    for g in grads:
        ours.step([g], torch.tensor([True, False]))
        reference.grad = g[0].clone()
        theirs.step()
    torch.testing.assert_close(mine[0], reference.detach())
    torch.testing.assert_close(mine[1], start[1])  # untouched, not nudged by stale moments


def spectrum_mean_abs(trial):
    return trial.spectrum().abs().mean().item()
