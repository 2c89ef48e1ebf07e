"""The delayed parity targets, by hand."""

import torch

from flosssweep.tasks import parity_targets

torch.set_num_threads(1)


def test_parity_targets_by_hand():
    s = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0], dtype=torch.float32)
    # copy with d = 3: y_t = s_{t-3}
    assert parity_targets(s, 1, 3)[3:].tolist() == [1, 0, 1, 1, 0]
    # XOR with d = 4: y_t = s_{t-2} xor s_{t-4}, for t = 4..7
    #   t=4: s2^s0 = 1^1, t=5: s3^s1 = 1^0, t=6: s4^s2 = 0^1, t=7: s5^s3 = 0^1
    assert parity_targets(s, 2, 4)[4:].tolist() == [0, 1, 1, 1]
    # 3-bit parity with d = 6: y_t = s_{t-2} xor s_{t-4} xor s_{t-6}, for t = 6, 7
    #   t=6: s4^s2^s0 = 0^1^1, t=7: s5^s3^s1 = 0^1^0
    assert parity_targets(s, 3, 6)[6:].tolist() == [0, 1]
