"""Tasks: delayed parity of a binary input stream (copy, XOR, and harder)."""

from __future__ import annotations

import torch
from torch import Tensor

from flosssweep.streams import MemberStreams


def parity_targets(bits: Tensor, n: int, delay: int) -> Tensor:
    """y_t = s_{t - d/n} xor s_{t - 2d/n} xor ... xor s_{t - d} along the last axis (time).

    n = 1 is the delayed copy task, n = 2 delayed XOR; d is always the longest lag. Entries with
    t < d depend on inputs before the sequence and are not scored; they are returned as 0.
    """
    if delay % n:
        raise ValueError(f"delay {delay} is not divisible by bits {n}")
    lag = delay // n
    target = torch.zeros_like(bits)
    for i in range(1, n + 1):
        shifted = torch.zeros_like(bits)
        shifted[..., i * lag :] = bits[..., : bits.shape[-1] - i * lag]
        target = (target + shifted) % 2
    return target


class Parity:
    """A fresh batch per call: inputs (T, R, B, 1) time first, targets (T, R, B), scored from t = d."""

    def __init__(self, bits: int, delay: int, batch: int, length: int):
        self.bits, self.delay, self.batch, self.length = bits, delay, batch, length
        self.scored = slice(delay, length)

    def sample(self, streams: MemberStreams) -> tuple[Tensor, Tensor]:
        """One draw of every member's stream, on the streams' device."""
        stream = streams.bits((self.batch, self.length))
        targets = parity_targets(stream, self.bits, self.delay)
        return stream.permute(2, 0, 1).unsqueeze(-1), targets.permute(2, 0, 1)
