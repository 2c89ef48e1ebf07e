"""D_stsp and D_H against cases whose answer is known."""

import numpy as np
import pytest

from flosssweep import chaos

LORENZ = chaos.SYSTEMS["lorenz63"]
ROESSLER = chaos.SYSTEMS["roessler"]


@pytest.fixture(scope="module")
def lorenz():
    return chaos.make_data("lorenz63", 0.01, 100000, 20000)


def test_state_space_divergence_is_zero_for_identical_data_and_large_for_a_wrong_attractor(lorenz):
    assert chaos.state_space_divergence(lorenz.test, lorenz.test) == 0.0
    roessler = chaos.make_data("roessler", 0.05, 20000, 20000)
    assert chaos.state_space_divergence(lorenz.test, roessler.test) > 5.0
    # the same attractor sampled independently: only the finite-sample floor remains
    same = lorenz.train.reshape(20, 5000, 3)
    assert chaos.state_space_divergence(lorenz.test, same) < 0.3
    # one wing only, or a fixed point, is clearly wrong
    assert chaos.state_space_divergence(lorenz.test, lorenz.train[lorenz.train[:, 0] > 0]) > 3.0
    assert chaos.state_space_divergence(lorenz.test, np.zeros((1000, 3))) > 10.0


def test_state_space_divergence_counts_escaping_and_non_finite_points(lorenz):
    inside = lorenz.train[:40000]
    far = inside.copy()
    far[::2] = 1e6  # half the points leave the attractor: they land in an edge bin, not nowhere
    nan = inside.copy()
    nan[::2] = np.nan
    base = chaos.state_space_divergence(lorenz.test, inside)
    assert chaos.state_space_divergence(lorenz.test, far) > base + 0.5
    assert chaos.state_space_divergence(lorenz.test, nan) == pytest.approx(
        chaos.state_space_divergence(lorenz.test, far)
    )


def test_power_spectrum_distance(lorenz):
    assert chaos.power_spectrum_distance(lorenz.test, lorenz.test) == pytest.approx(0.0, abs=1e-7)
    same = lorenz.train.reshape(20, 5000, 3)
    assert chaos.power_spectrum_distance(lorenz.test, same) < 0.05
    roessler = chaos.make_data("roessler", 0.05, 20000, 20000)
    assert chaos.power_spectrum_distance(lorenz.test, roessler.test) > 0.2
    # the same geometry run at another speed: D_stsp barely notices, D_H does
    fast = chaos.make_data("lorenz63", 0.02, 20000, 20000)
    assert chaos.power_spectrum_distance(lorenz.test, fast.test) > 0.2
    assert chaos.state_space_divergence(lorenz.test, fast.test) < 1.0
    assert chaos.power_spectrum_distance(lorenz.test, np.full((5000, 3), np.inf)) == 1.0
