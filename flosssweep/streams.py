"""Per-member random streams drawn on the trial's device: Philox4x32-10, one key per member.

Member j of seed s draws from its own key, derived from (s, j, stream) alone, and every draw of a
trial is numbered: the bits of draw d of member j are Philox(key_j, counter = (block, d, 0, 0)), so
they depend on neither the ensemble size nor the device. All members are drawn by one batch of
array ops (no loop over members, no host sync on a GPU), and the draw number is a device tensor
advanced in place, so a CUDA graph that captures a draw replays the next draw, not the same one.

Philox4x32-10 is the counter-based generator of Salmon, Moraes, Dror & Shaw (SC 2011). One function
computes it on NumPy uint64 arrays (the CPU: a NumPy op on a small array costs a fraction of a
torch op, and the 32 x 32 -> 64-bit products are exact in uint64) or on int64 tensors of any device
(there the products are split in 16-bit halves, so that no intermediate leaves the signed 64-bit
range). tests/test_streams.py checks both against the known answers of the authors' Random123
library (tests/kat_vectors) and against each other.
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
AHEAD_DRAWS, AHEAD_BLOCKS = 16, 4096  # CPU: draws computed together, up to about this many blocks in all
# the multipliers, then the key schedule's offsets r (W0, W1) of rounds r = 0 .. ROUNDS - 1
CONSTANTS = [MULTIPLIERS, *[[r * w for w in WEYL] for r in range(ROUNDS)]]
NUMPY_CONSTANTS = np.array(CONSTANTS, np.uint64)


def _mulhilo(a, m):
    """(high, low) 32-bit halves of a * m: 32-bit a and m both uint64 arrays or both int64 tensors."""
    if isinstance(a, np.ndarray):
        product = a * m
        return product >> np.uint64(32), product & np.uint64(MASK32)
    high_half, low_half = a >> 16, a & 0xFFFF
    upper, lower = high_half * m, low_half * m  # each < 2^48
    low = (((upper & 0xFFFF) << 16) + lower) & MASK32
    high = (upper + (lower >> 16)) >> 16
    return high, low


def philox(counter: tuple, key: tuple, constants: Tensor | None = None):
    """Philox4x32-10 of broadcastable 32-bit words, all uint64 NumPy arrays or all int64 tensors: the
    4 output words stacked on a new last axis. `constants`: CONSTANTS as a tensor on the words'
    device, made ahead (inside a CUDA graph capture, copying them there is not allowed).

    The words the multipliers act on, (c0, c2), and the others, (c1, c3), are kept as two stacked
    pairs and the round keys are computed at once, so that a round is a handful of array ops."""
    if isinstance(counter[0], np.ndarray):
        constants = NUMPY_CONSTANTS
        shape = np.broadcast_shapes(*(np.shape(w) for w in (*counter, *key)))

        def pair(a, b):  # (2, *shape of a and b, with leading axes of 1 up to len(shape))
            both = np.broadcast_shapes(np.shape(a), np.shape(b))
            out = np.empty((2, *(1,) * (len(shape) - len(both)), *both), np.uint64)
            out[0], out[1] = a, b
            return out

        def flip(x):
            return x[::-1]
    else:
        if constants is None:
            constants = torch.tensor(CONSTANTS, device=counter[0].device)
        shape = torch.broadcast_shapes(*(w.shape for w in (*counter, *key)))

        def pair(a, b):
            both = torch.stack(torch.broadcast_tensors(a, b))
            return both.reshape(2, *(1,) * (len(shape) + 1 - both.dim()), *both.shape[1:])

        def flip(x):
            return x.flip(0)

    c0, c1, c2, c3 = counter
    constants = constants.reshape(ROUNDS + 1, 2, *[1] * len(shape))
    multipliers, round_keys = constants[0], (pair(*key) + constants[1:]) & MASK32
    multiplied, passed = pair(c0, c2), pair(c1, c3)
    for r in range(ROUNDS):
        high, low = _mulhilo(multiplied, multipliers)
        multiplied, passed = flip(high) ^ passed ^ round_keys[r], flip(low)
    # after two rounds every word has the full broadcast shape
    stack = np.stack if isinstance(multiplied, np.ndarray) else torch.stack
    return stack([multiplied[0], passed[0], multiplied[1], passed[1]], -1)


def member_keys(seed: int, members: int, stream: int) -> np.ndarray:
    """(R, 2) uint64: the Philox key of each member, from (seed, member, stream) alone."""
    words = [np.random.SeedSequence([seed, j, stream]).generate_state(2, dtype=np.uint32) for j in range(members)]
    return np.array(words, dtype=np.uint64).reshape(members, 2)


class MemberStreams:
    """The random streams of an ensemble: one Philox key per member, one shared draw counter."""

    def __init__(self, seed: int, members: int, stream: int = 0, device="cpu"):
        self.device = torch.device(device)
        keys = member_keys(seed, members, stream)
        # on the CPU the words are computed in NumPy, elsewhere by tensor ops on the device
        self.keys = keys if self.device.type == "cpu" else torch.from_numpy(keys.astype(np.int64)).to(self.device)
        self.constants = torch.tensor(CONSTANTS, device=self.device)
        self.draws = torch.zeros((), dtype=torch.long, device=self.device)  # draws so far, same for every member
        self._ahead: dict[int, tuple[int, np.ndarray]] = {}  # CPU: blocks per draw -> (first draw, words)

    def __len__(self) -> int:
        return self.keys.shape[0]

    def _words(self, blocks: int):
        """(R, blocks, 4) uniform 32-bit words of the next draw (uint64 array on the CPU, int64 tensor
        elsewhere); advances the counter."""
        if blocks >= 1 << 32:
            raise ValueError(f"a draw of {blocks} Philox blocks exceeds the 2^32 blocks a draw may have")
        if isinstance(self.keys, np.ndarray):
            words = self._words_ahead(blocks)
        else:
            block = torch.arange(blocks, dtype=torch.long, device=self.device)
            zero = torch.zeros((), dtype=torch.long, device=self.device)
            counter = (block, self.draws & MASK32, (self.draws >> 32) & MASK32, zero)
            words = philox(counter, (self.keys[:, 0, None], self.keys[:, 1, None]), self.constants)
        self.draws += 1
        return words

    def _words_ahead(self, blocks: int) -> np.ndarray:
        """The CPU's words of the current draw, taken from consecutive draws computed in one Philox
        call: a NumPy call costs about the same for 40 words as for 4000, and a draw's words depend
        only on its number, so they are the words computed alone."""
        draw = int(self.draws)  # no sync: the counter is on the CPU
        first, words = self._ahead.get(blocks, (-1, None))
        if words is None or not first <= draw < first + words.shape[1]:
            count = max(1, min(AHEAD_DRAWS, AHEAD_BLOCKS // (len(self) * blocks)))
            draws = np.arange(draw, draw + count, dtype=np.uint64)[:, None]
            counter = (np.arange(blocks, dtype=np.uint64), draws & MASK32, draws >> np.uint64(32), np.uint64(0))
            first, words = draw, philox(counter, (self.keys[:, 0, None, None], self.keys[:, 1, None, None]))
            self._ahead[blocks] = (first, words)  # (R, count, blocks, 4)
        return words[:, draw - first]

    def bits(self, shape: tuple[int, ...]) -> Tensor:
        """I.i.d. Bernoulli(0.5) bits (R, *shape), float32, on the streams' device: bit i of word w
        is (w >> i) & 1, words in order."""
        n, R = int(np.prod(shape)), len(self)
        words = self._words(-(-n // BITS_PER_BLOCK))
        if isinstance(words, np.ndarray):  # little-endian bytes of the words, least significant bit first
            raw = np.unpackbits(words.astype("<u4").view(np.uint8), bitorder="little")
            bits = torch.from_numpy(raw.reshape(R, -1))
        else:
            bits = ((words.unsqueeze(-1) >> torch.arange(32, device=self.device)) & 1).reshape(R, -1)
        return bits[:, :n].reshape(R, *shape).float()

    def integers(self, high: int, shape: tuple[int, ...]) -> Tensor:
        """Integers uniform on [0, high) (R, *shape), int64, on the streams' device: floor(u * high
        / 2^32) of a 32-bit word u, whose bias (at most high / 2^32 in probability) is below 1e-4
        for high < 4e5."""
        if not 0 < high < 1 << 31:
            raise ValueError(f"high must be in [1, 2^31), got {high}")
        n, R = int(np.prod(shape)), len(self)
        words = self._words(-(-n // 4)).reshape(R, -1)[:, :n]
        values = (words * high) >> 32
        if isinstance(values, np.ndarray):
            values = torch.from_numpy(values.astype(np.int64))
        return values.reshape(R, *shape)

    def state_dict(self) -> dict:
        return {"draws": self.draws.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.draws.copy_(state["draws"])
