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


# -- D_stsp in the STF authors' convention (10 bins over +-2 sd, points outside dropped) -------------
def quantiles(n: int, shift: float = 0.0) -> np.ndarray:
    """n points of N(shift, 1) at evenly spaced quantiles: a histogram of them is the Gaussian's own."""
    from scipy.stats import norm

    return norm.ppf((np.arange(n) + 0.5) / n)[:, None] + shift


def test_authors_divergence_is_zero_for_identical_data_and_ignores_points_outside():
    data = quantiles(100_000)
    assert chaos.authors_state_space_divergence(data, data) == 0.0
    # points far outside +-2 sd are dropped, not counted in an edge bin as flosssweep's convention does
    escaped = np.concatenate([data, np.full((50_000, 1), 1e6), np.full((10, 1), np.nan)])
    assert chaos.authors_state_space_divergence(data, escaped) == pytest.approx(0.0, abs=1e-12)
    assert chaos.state_space_divergence(data, escaped) > 0.3
    # nothing inside the box: no occupancy to compare
    assert np.isnan(chaos.authors_state_space_divergence(data, np.full((100, 1), 5.0)))


def test_authors_divergence_of_a_shifted_gaussian_matches_the_hand_computed_kl():
    from scipy.stats import norm

    data, shift = quantiles(200_000), 0.5
    generated = quantiles(200_000, shift)
    # By hand: edges at -2s + 0.4 s j (j = 0..10, s the data's sd); the authors' histogram keeps bins
    # 1..9, so p and q are the Gaussians' masses in those 9 bins, each renormalised to sum 1.
    s = data.std(ddof=1)
    edges = -2 * s + 0.4 * s * np.arange(11)
    p = np.diff(norm.cdf(edges))[1:]
    q = np.diff(norm.cdf(edges - shift))[1:]
    p, q = p / p.sum(), q / q.sum()
    expected = float(np.sum(p * np.log(p / q)))
    assert chaos.authors_state_space_divergence(data, generated) == pytest.approx(expected, rel=2e-3)
