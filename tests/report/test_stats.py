"""Statistics of the report against answers worked out by hand, and the T50 interval's coverage."""

import numpy as np
import pytest

from flosssweep.report import stats

Z2 = 1.959963985**2  # 3.8414588...


# --- Wilson interval -------------------------------------------------------------------------
# With p = k/n the interval is (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n).


def test_wilson_zero_successes():
    # k = 0: centre and half width are both z^2 / (2 (n + z^2)), so lo = 0, hi = z^2 / (n + z^2).
    lo, hi = stats.wilson_interval(0, 10)
    assert lo == 0.0
    assert hi == pytest.approx(3.8414588 / 13.8414588, abs=1e-6)  # 0.277533
    assert hi == pytest.approx(0.277533, abs=1e-6)


def test_wilson_all_successes():
    # k = n mirrors k = 0: lo = n / (n + z^2), hi = 1.
    lo, hi = stats.wilson_interval(10, 10)
    assert lo == pytest.approx(10 / 13.8414588, abs=1e-6)  # 0.722467
    assert hi == 1.0


def test_wilson_middle_values():
    # 5/10: centre 0.5, half = z sqrt(0.025 + z^2/400) / (1 + z^2/10) = 0.263407.
    lo, hi = stats.wilson_interval(5, 10)
    assert lo == pytest.approx(0.236593, abs=1e-5)
    assert hi == pytest.approx(0.763407, abs=1e-5)
    # 3/10: centre 0.49207294 / 1.38414588 = 0.355505, half 0.342874 / 1.384146 = 0.247715.
    lo, hi = stats.wilson_interval(3, 10)
    assert lo == pytest.approx(0.10779, abs=1e-5)
    assert hi == pytest.approx(0.60322, abs=1e-5)


def test_wilson_vectorized_and_empty_cell():
    lo, hi = stats.wilson_interval(np.array([0, 5, 10, 0]), np.array([10, 10, 10, 0]))
    assert lo.shape == (4,)
    assert np.isnan(lo[3]) and np.isnan(hi[3])
    assert np.all(lo[:3] <= np.array([0.0, 0.5, 1.0])) and np.all(hi[:3] >= np.array([0.0, 0.5, 1.0]))


# --- T50 point estimate ----------------------------------------------------------------------

X = np.array([10.0, 20.0, 30.0, 40.0])


def t50_one(rates, x=X, threshold=0.5):
    t, nonmono = stats.t50_point(x, np.asarray(rates, float), np.array([0]), threshold)
    return t[0], bool(nonmono[0])


def test_t50_interpolates_between_the_two_delays_around_the_crossing():
    # 0.8 at 20, 0.4 at 30: 20 + (0.8 - 0.5) / (0.8 - 0.4) * 10 = 27.5
    assert t50_one([1.0, 0.8, 0.4, 0.0]) == (pytest.approx(27.5), False)


def test_t50_rate_exactly_at_threshold_counts_as_bridged():
    # 0.5 at 20 is >= 0.5; the next delay is below, so T50 is 20 itself.
    assert t50_one([1.0, 0.5, 0.2, 0.0])[0] == pytest.approx(20.0)


def test_t50_other_threshold():
    # threshold 0.8: 0.9 at 20, 0.6 at 30: 20 + 0.1 / 0.3 * 10
    assert t50_one([1.0, 0.9, 0.6, 0.1], threshold=0.8)[0] == pytest.approx(20 + 10 / 3)


def test_t50_censored_above_when_every_delay_succeeds():
    assert t50_one([1.0, 0.9, 0.7, 0.6])[0] == np.inf


def test_t50_censored_below_when_no_delay_succeeds():
    assert t50_one([0.4, 0.2, 0.1, 0.0])[0] == -np.inf


def test_t50_non_monotone_uses_first_crossing_and_flags_it():
    # 1.0, 0.3, 0.8, 0.2: the rate falls below at 20 and comes back at 30. The first crossing wins:
    # 10 + (1 - 0.5) / (1 - 0.3) * 10 = 17.142857..., and the group is flagged.
    t, nonmono = t50_one([1.0, 0.3, 0.8, 0.2])
    assert t == pytest.approx(10 + 50 / 7)
    assert nonmono
    # Below at the smallest delay and above later: censored '< 10', flagged.
    t, nonmono = t50_one([0.4, 0.9, 0.9, 0.9])
    assert t == -np.inf and nonmono
    # A dip that stays below the threshold is not non-monotone in this sense.
    assert t50_one([1.0, 0.4, 0.45, 0.1]) == (pytest.approx(10 + 50 / 6), False)


def test_t50_several_groups_of_different_lengths_at_once():
    x = np.array([10.0, 20, 30, 40, 5, 15, 10, 20, 30])
    r = np.array([1.0, 0.8, 0.4, 0.0, 0.2, 0.1, 1.0, 1.0, 0.9])
    t, nonmono = stats.t50_point(x, r, np.array([0, 4, 6]))
    assert t[0] == pytest.approx(27.5)
    assert t[1] == -np.inf
    assert t[2] == np.inf
    assert not nonmono.any()


def test_t50_single_delay_group():
    t, _ = stats.t50_point(np.array([10.0, 20.0]), np.array([0.9, 0.1]), np.array([0, 1]))
    assert t.tolist() == [np.inf, -np.inf]


# --- bootstrap -------------------------------------------------------------------------------


def boot(k, n, x=X, **kw):
    lo, hi = stats.t50_posterior_draws(x, np.asarray(k), np.asarray(n), np.array([0]), **kw)
    return lo[0], hi[0]


def test_bootstrap_interval_contains_point_estimate():
    k, n = np.array([10, 8, 4, 0]), np.full(4, 10)
    lo, hi = boot(k, n)
    assert lo <= 27.5 <= hi
    assert lo < hi


def test_bootstrap_interval_shrinks_with_more_realizations():
    rates = np.array([1.0, 0.8, 0.4, 0.0])
    widths = []
    for n in (10, 100, 1000):
        lo, hi = boot((rates * n).astype(int), np.full(4, n))
        assert lo <= 27.5 <= hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < widths[0] / 4


def test_bootstrap_is_reproducible_and_independent_of_chunking():
    k, n = np.array([9, 7, 4, 1]), np.full(4, 10)
    a = stats.t50_posterior_samples(X, k, n, np.array([0]), n_draws=500, seed=7)
    b = stats.t50_posterior_samples(X, k, n, np.array([0]), n_draws=500, seed=7, max_chunk_cells=8)
    assert np.array_equal(a, b)
    c = stats.t50_posterior_samples(X, k, n, np.array([0]), n_draws=500, seed=8)
    assert not np.array_equal(a, c)


def test_bootstrap_censored_resamples():
    # Every realization succeeds at every delay: every resample is censored '>= 40'.
    lo, hi = boot(np.full(4, 10), np.full(4, 10))
    assert lo == np.inf and hi == np.inf
    # Nothing ever succeeds: every resample is '< 10'.
    lo, hi = boot(np.zeros(4, int), np.full(4, 10))
    assert lo == -np.inf and hi == -np.inf
    # 6/10 at the last delay: a resample often drops below 0.5 there, sometimes not (censored).
    lo, hi = boot(np.array([10, 10, 10, 6]), np.full(4, 10))
    assert 30 <= lo < 40 and hi == np.inf


def test_bootstrap_disabled():
    lo, hi = boot(np.array([10, 8, 4, 0]), np.full(4, 10), n_draws=0)
    assert np.isnan(lo) and np.isnan(hi)


def test_bootstrap_draws_each_rate_from_its_jeffreys_posterior():
    # One success out of one at x = 10, none out of one at 20: the rates are Beta(3/2, 1/2) and
    # Beta(1/2, 3/2). With x = sin^2 t, P(Beta(1/2, 3/2) < 1/2) = (2/pi) int_0^{pi/4} 2 cos^2 t dt
    # = 1/2 + 1/pi, and by symmetry P(Beta(3/2, 1/2) < 1/2) = 1/2 - 1/pi. So a resample is
    # '< 10' with probability 1/2 - 1/pi = 0.18169, '>= 20' with (1/2 + 1/pi)(1/2 - 1/pi)
    # = 1/4 - 1/pi^2 = 0.14868, and otherwise interpolated. Swapping the two rates for one minus
    # the other maps the interpolation fraction f to 1 - f, so those T50s have median 15.
    B = 40000
    t = stats.t50_posterior_samples(
        np.array([10.0, 20.0]), np.array([1, 0]), np.array([1, 1]), np.array([0]), n_draws=B, seed=3
    )[0]
    assert np.mean(t == -np.inf) == pytest.approx(0.5 - 1 / np.pi, abs=0.006)
    assert np.mean(t == np.inf) == pytest.approx(0.25 - 1 / np.pi**2, abs=0.006)
    inner = t[np.isfinite(t)]
    assert inner.min() >= 10 and inner.max() <= 20
    assert np.median(inner) == pytest.approx(15.0, abs=0.15)


# --- coverage of the T50 interval ------------------------------------------------------------
# Sweeps simulated from known success curves p(d) = 1 / (1 + exp((d - d50) / s)) on a grid of 7
# delays. The true T50 is what the report estimates with infinitely many realizations: T50 of
# p itself on the same grid (linear interpolation between grid points), which for a steep curve
# is not d50. Resampling the realizations (a count from Binomial(n, k/n)) covered it in 70%
# (n = 4) and 79% (n = 8) of all sweeps, 22% and 35% on the very steep curve; the posterior
# resamples cover it in 98% and 97%, at least 92% on every curve.

GRID = np.array([8.0, 16, 24, 32, 40, 48, 56])
CURVES = {  # name: (d50, s)
    "gentle": (30.0, 8.0),
    "moderate": (28.0, 4.0),
    "early": (18.0, 5.0),
    "late": (44.0, 4.0),
    "steep, T50 between grid points": (27.0, 2.0),
    "steep, T50 off centre": (21.0, 1.5),
    "very steep": (26.0, 0.7),
}
SWEEPS = 400


def coverage_by_curve(n, seed):
    """Fraction of simulated sweeps whose 95% interval holds the true T50, for each curve."""
    rng = np.random.default_rng(seed)
    c = GRID.size
    p = np.array([1 / (1 + np.exp((GRID - d50) / s)) for d50, s in CURVES.values()])
    truth, _ = stats.t50_point(np.tile(GRID, len(CURVES)), p.ravel(), np.arange(0, p.size, c))
    assert np.isfinite(truth).all()  # every curve crosses inside the grid
    k = rng.binomial(n, p[:, None, :], size=(len(CURVES), SWEEPS, c))  # every sweep is one group
    groups = len(CURVES) * SWEEPS
    lo, hi = stats.t50_posterior_draws(
        np.tile(GRID, groups), k.ravel(), np.full(k.size, n), np.arange(0, k.size, c), n_draws=500, seed=seed
    )
    want = np.repeat(truth, SWEEPS)
    return ((lo <= want) & (want <= hi)).reshape(len(CURVES), SWEEPS).mean(axis=1)


@pytest.mark.parametrize("n", [4, 8])
def test_t50_interval_reaches_nominal_coverage(n):
    cover = coverage_by_curve(n, seed=n)
    # 400 sweeps per curve and 2800 in all: a standard error of 1.1% per curve and 0.4% pooled,
    # so 93% pooled is out of reach of an 85-90% method, and 90% per curve catches one shape that
    # fails (binomial resampling had 22-79% on the three steep curves).
    assert cover.mean() >= 0.93, dict(zip(CURVES, cover.round(3)))
    assert cover.min() >= 0.90, dict(zip(CURVES, cover.round(3)))
    # Not bought by padding: on the curves that are not very steep (whose true T50 sits where any
    # interval bridging the grid gap covers it) coverage stays near nominal; counting the sampling
    # noise twice (a binomial count drawn from the posterior rate) gives 99%.
    assert cover[:5].mean() <= 0.985, dict(zip(CURVES, cover.round(3)))
