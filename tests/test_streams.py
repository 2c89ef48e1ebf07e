"""The per-member Philox streams: the generator against its authors' known answers, member identity
whatever the ensemble size, and the statistics the tasks rely on."""

import math

import numpy as np
import pytest
import torch

from flosssweep.streams import MemberStreams, member_keys, philox

torch.set_num_threads(1)

# Random123 (github.com/DEShawResearch/random123), tests/kat_vectors, the three "philox4x32 10" lines:
# counter (4 words), key (2 words), expected output (4 words).
KNOWN_ANSWERS = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    (
        [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
        [0xA4093822, 0x299F31D0],
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
    ),
]


@pytest.mark.parametrize("counter,key,expected", KNOWN_ANSWERS)
def test_philox_gives_the_known_answers_on_tensors_and_on_numpy_arrays(counter, key, expected):
    words = philox(tuple(torch.tensor(c) for c in counter), tuple(torch.tensor(k) for k in key))
    assert words.tolist() == expected
    words = philox(tuple(np.array(c, np.uint64) for c in counter), tuple(np.array(k, np.uint64) for k in key))
    assert words.tolist() == expected


def test_the_device_path_draws_what_the_cpu_path_draws():
    # the tensor ops a GPU runs, here on CPU tensors, against the NumPy path of the CPU
    numpy_streams, tensor_streams = MemberStreams(7, 3), MemberStreams(7, 3)
    tensor_streams.keys = torch.from_numpy(tensor_streams.keys.astype(np.int64))
    # the CPU computes several draws ahead in one call (16 of the small ones, 2 of the large one)
    for _ in range(3):
        assert torch.equal(tensor_streams.bits((5, 70)), numpy_streams.bits((5, 70)))
        assert torch.equal(tensor_streams.integers(123457, (9,)), numpy_streams.integers(123457, (9,)))
        assert torch.equal(tensor_streams.bits((2, 40000)), numpy_streams.bits((2, 40000)))
    # going back (a restored checkpoint) redraws the same words
    saved = {"draws": torch.tensor(1)}
    numpy_streams.load_state_dict(saved)
    tensor_streams.load_state_dict(saved)
    assert torch.equal(tensor_streams.integers(99, (4,)), numpy_streams.integers(99, (4,)))
    counters = np.random.default_rng(0).integers(0, 2**32, size=(4, 50), dtype=np.uint64)
    keys = np.random.default_rng(1).integers(0, 2**32, size=(2, 50), dtype=np.uint64)
    on_tensors = philox(
        tuple(torch.from_numpy(c.astype(np.int64)) for c in counters),
        tuple(torch.from_numpy(k.astype(np.int64)) for k in keys),
    )
    assert on_tensors.numpy().astype(np.uint64).tolist() == philox(tuple(counters), tuple(keys)).tolist()


def test_philox_of_a_batch_is_philox_of_each_element():
    counters = torch.tensor([[0, 0, 0, 0], [0xFFFFFFFF] * 4, [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344]])
    keys = torch.tensor([[0, 0], [0xFFFFFFFF] * 2, [0xA4093822, 0x299F31D0]])
    words = philox(tuple(counters.T), tuple(keys.T))
    assert words.tolist() == [expected for _, _, expected in KNOWN_ANSWERS]


def test_member_j_draws_the_same_bits_whatever_the_ensemble_size():
    one, three, five = (MemberStreams(7, R) for R in (1, 3, 5))
    for _ in range(3):  # successive draws, of different shapes, stay aligned
        for shape in [(4, 30), (55,)]:
            a, b, c = one.bits(shape), three.bits(shape), five.bits(shape)
            assert torch.equal(a[0], b[0]) and torch.equal(b, c[:3])
    assert torch.equal(one.integers(1000, (6,))[0], five.integers(1000, (6,))[0])


def test_draws_differ_between_members_draws_seeds_and_streams():
    streams = MemberStreams(0, 2)
    first, second = streams.bits((64,)), streams.bits((64,))
    assert not torch.equal(first[0], first[1]) and not torch.equal(first, second)
    assert not torch.equal(MemberStreams(1, 1).bits((64,)), MemberStreams(0, 1).bits((64,)))
    assert not torch.equal(MemberStreams(0, 1, stream=1).bits((64,)), MemberStreams(0, 1).bits((64,)))
    assert member_keys(0, 3, 0).shape == (3, 2) and bool((member_keys(0, 3, 0) < 2**32).all())


def test_a_restored_stream_continues_where_it_was_saved():
    streams = MemberStreams(3, 2)
    streams.bits((10,))
    saved = streams.state_dict()
    after = streams.bits((10,))
    other = MemberStreams(3, 2)
    other.load_state_dict(saved)
    assert torch.equal(other.bits((10,)), after)


def test_bits_are_fair_and_uncorrelated():
    # 2^20 bits per member: each check is a z-score against the i.i.d. fair-coin model, |z| < 5.
    n = 1 << 20
    bits = MemberStreams(11, 2).bits((n,)).double()
    for member in bits:
        assert abs(member.mean().item() - 0.5) * 2 * math.sqrt(n) < 5
        s = 2 * member - 1  # lag-1 and lag-32 (one 32-bit word apart) autocorrelation
        for lag in (1, 32, 128):
            assert abs((s[:-lag] * s[lag:]).mean().item()) * math.sqrt(n - lag) < 5
    cross = ((2 * bits[0] - 1) * (2 * bits[1] - 1)).mean().item()
    assert abs(cross) * math.sqrt(n) < 5


def test_integers_are_uniform_on_their_range():
    high, n = 37, 1 << 18
    values = MemberStreams(5, 1).integers(high, (n,))[0]
    assert int(values.min()) == 0 and int(values.max()) == high - 1
    counts = torch.bincount(values, minlength=high).double()
    chi2 = (((counts - n / high) ** 2) / (n / high)).sum().item()
    # chi-square with 36 degrees of freedom: mean 36, standard deviation 8.5; 36 + 6 sd = 87
    assert chi2 < 87
