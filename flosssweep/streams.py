"""Per-member random streams drawn on the trial's device: Philox4x32-10, one key per member.

Member j of seed s draws from its own key, derived from (s, j, stream) alone, and every draw of a
trial is numbered: the bits of draw d of member j are Philox(key_j, counter = (block, d, 0, 0)), so
they depend on neither the ensemble size nor the device. All members are drawn by one batch of
integer tensor ops (no host loop, no host sync), and the draw number is a device tensor advanced in
place, so a CUDA graph that captures a draw replays the next draw, not the same one.

Philox4x32-10 is the counter-based generator of Salmon, Moraes, Dror & Shaw (SC 2011), written here
with int64 tensor ops: the 32 x 32 -> 64-bit products are split in 16-bit halves so that no
intermediate leaves the signed 64-bit range. tests/test_streams.py checks it against the known
answers of the authors' Random123 library (tests/kat_vectors).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

MASK32 = 0xFFFFFFFF
MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
WEYL = (0x9E3779B9, 0xBB67AE85)  # key schedule increments
ROUNDS = 10
BITS_PER_BLOCK = 128


def _mulhilo(a: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """(high, low) 32-bit halves of a * m for 32-bit a (int64 tensor) and a 32-bit constant m."""
    high_half, low_half = a >> 16, a & 0xFFFF
    upper, lower = high_half * m, low_half * m  # each < 2^48
    low = (((upper & 0xFFFF) << 16) + lower) & MASK32
    high = (upper + (lower >> 16)) >> 16
    return high, low


def philox(counter: tuple[Tensor, Tensor, Tensor, Tensor], key: tuple[Tensor, Tensor]) -> Tensor:
    """Philox4x32-10 of broadcastable 32-bit words (int64 tensors): the 4 output words stacked on a
    new last axis."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(ROUNDS):
        if r:
            k0, k1 = (k0 + WEYL[0]) & MASK32, (k1 + WEYL[1]) & MASK32
        high0, low0 = _mulhilo(c0, MULTIPLIERS[0])
        high1, low1 = _mulhilo(c2, MULTIPLIERS[1])
        c0, c1, c2, c3 = high1 ^ c1 ^ k0, low1, high0 ^ c3 ^ k1, low0
    return torch.stack(torch.broadcast_tensors(c0, c1, c2, c3), dim=-1)


def member_keys(seed: int, members: int, stream: int) -> Tensor:
    """(R, 2) int64: the Philox key of each member, from (seed, member, stream) alone."""
    words = [np.random.SeedSequence([seed, j, stream]).generate_state(2, dtype=np.uint32) for j in range(members)]
    return torch.tensor(np.array(words, dtype=np.int64).reshape(members, 2))


class MemberStreams:
    """The random streams of an ensemble: one Philox key per member, one shared draw counter."""

    def __init__(self, seed: int, members: int, stream: int = 0, device="cpu"):
        self.keys = member_keys(seed, members, stream).to(device)
        self.draws = torch.zeros((), dtype=torch.long, device=device)  # draws so far, same for every member
        self.device = self.keys.device

    def __len__(self) -> int:
        return self.keys.shape[0]

    def words(self, blocks: int) -> Tensor:
        """(R, blocks, 4) uniform 32-bit words (int64) of the next draw; advances the counter."""
        if blocks >= 1 << 32:
            raise ValueError(f"a draw of {blocks} Philox blocks exceeds the 2^32 blocks a draw may have")
        block = torch.arange(blocks, dtype=torch.long, device=self.device)
        draw = self.draws & MASK32
        draw_high = (self.draws >> 32) & MASK32
        zero = torch.zeros((), dtype=torch.long, device=self.device)
        key = (self.keys[:, 0, None], self.keys[:, 1, None])
        out = philox((block, draw, draw_high, zero), key)
        self.draws += 1
        return out

    def bits(self, shape: tuple[int, ...]) -> Tensor:
        """I.i.d. Bernoulli(0.5) bits (R, *shape), float32, on the streams' device."""
        n = int(np.prod(shape))
        words = self.words(-(-n // BITS_PER_BLOCK))
        shifts = torch.arange(32, dtype=torch.long, device=self.device)
        bits = (words.unsqueeze(-1) >> shifts) & 1
        return bits.reshape(len(self), -1)[:, :n].reshape(len(self), *shape).float()

    def integers(self, high: int, shape: tuple[int, ...]) -> Tensor:
        """Integers uniform on [0, high) (R, *shape), int64: floor(u * high / 2^32) of a 32-bit
        word u, whose bias (at most high / 2^32 in probability) is below 1e-4 for high < 4e5."""
        if not 0 < high < 1 << 31:
            raise ValueError(f"high must be in [1, 2^31), got {high}")
        n = int(np.prod(shape))
        words = self.words(-(-n // 4)).reshape(len(self), -1)[:, :n]
        return ((words * high) >> 32).reshape(len(self), *shape)

    def state_dict(self) -> dict:
        return {"draws": self.draws.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.draws.copy_(state["draws"])
