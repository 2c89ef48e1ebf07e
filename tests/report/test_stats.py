"""Statistics of the report (docs/DESIGN.md, "Statistics") against answers worked out by hand."""

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


def test_threshold_count_matches_float_rates():
    # 0.3 * 10 is 3.0000000000000004 in floats, but 3/10 >= 0.3 holds: 3 successes are enough.
    assert stats.success_threshold_counts(np.array([10]), 0.3)[0] == 3
    assert stats.success_threshold_counts(np.array([10, 7, 16]), 0.5).tolist() == [5, 4, 8]


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
    lo, hi = stats.t50_bootstrap(x, np.asarray(k), np.asarray(n), np.array([0]), **kw)
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
    a = stats.t50_bootstrap_samples(X, k, n, np.array([0]), n_boot=500, seed=7)
    b = stats.t50_bootstrap_samples(X, k, n, np.array([0]), n_boot=500, seed=7, max_chunk_cells=8)
    assert np.array_equal(a, b)
    c = stats.t50_bootstrap_samples(X, k, n, np.array([0]), n_boot=500, seed=8)
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
    lo, hi = boot(np.array([10, 8, 4, 0]), np.full(4, 10), n_boot=0)
    assert np.isnan(lo) and np.isnan(hi)


def test_bootstrap_matches_plain_binomial_resampling():
    # The inverse-CDF shortcut (and the pruning of cells with k = 0 or k = n that cannot matter)
    # must give the distribution that drawing every count gives.
    x = np.array([10.0, 20, 30, 40, 10, 20, 30, 10, 20, 30, 40, 50, 60, 70])
    k = np.array([9, 7, 4, 1, 5, 6, 3, 10, 10, 10, 7, 3, 0, 9])
    n = np.array([10, 10, 10, 10, 8, 12, 5, 10, 10, 10, 10, 10, 10, 10])
    starts = np.array([0, 4, 7])
    B = 20000
    ours = stats.t50_bootstrap_samples(x, k, n, starts, n_boot=B, seed=1)
    draws = np.random.default_rng(2).binomial(n, k / n, size=(B, n.size))
    for g, (a, b) in enumerate([(0, 4), (4, 7), (7, 14)]):
        m = b - a
        ref, _ = stats.t50_point(
            np.tile(x[a:b], B), (draws[:, a:b] / n[a:b]).ravel(), np.arange(0, B * m, m)
        )
        for v in (np.inf, -np.inf):
            assert np.mean(ours[g] == v) == pytest.approx(np.mean(ref == v), abs=0.01)
        fin_o, fin_r = ours[g][np.isfinite(ours[g])], ref[np.isfinite(ref)]
        assert np.quantile(fin_o, [0.1, 0.5, 0.9]) == pytest.approx(
            np.quantile(fin_r, [0.1, 0.5, 0.9]), abs=0.75
        )
        assert fin_o.mean() == pytest.approx(fin_r.mean(), abs=0.3)


def test_binomial_cdf_table_against_direct_sum():
    cdf, offset = stats._binomial_cdf_table(np.array([3, 0, 4]), np.array([4, 2, 4]))
    # Binomial(4, 0.75): pmf 1/256, 12/256, 54/256, 108/256, 81/256.
    assert cdf[0:5] == pytest.approx(np.cumsum([1, 12, 54, 108, 81]) / 256)
    assert cdf[5:8].tolist() == [1.0, 1.0, 1.0]  # p = 0
    assert cdf[8:13].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]  # p = 1
    assert offset.tolist() == [0, 5, 8]


def test_inverse_cdf_sampling_is_exact():
    # Counts from the guide table and forward search equal a plain search of each cell's CDF.
    rng = np.random.default_rng(0)
    n = rng.integers(1, 60, 300)
    k = np.minimum(rng.integers(0, 61, 300), n)
    k[:20], k[20:40] = 0, n[20:40]  # deterministic cells
    cdf, offset = stats._binomial_cdf_table(k, n)
    guide = stats._guide_table(cdf, offset, n)
    cell = rng.integers(0, n.size, 50_000)
    u = rng.random(cell.size)
    u[:300] = 0.0
    got = stats._inverse_cdf(cdf, offset, guide, n, cell, u)
    want = np.array([np.searchsorted(cdf[offset[c]: offset[c] + n[c] + 1], v, side="right")
                     for c, v in zip(cell, u)])
    assert np.array_equal(got, want)


def test_pruned_cells_keep_what_can_change_t50():
    x = np.arange(1.0, 15.0)
    k = np.array([10, 10, 10, 7, 3, 0, 5, 0, 8, 10, 10, 10, 6, 4])
    starts = np.array([0, 7, 9])  # [10 10 10 7 3 0 5] [0 8] [10 10 10 6 4]
    xs, ks, ns, st = stats._relevant_cells(x, k, np.full(14, 10), starts, 0.5)
    # Group 1: the last leading 10/10, then up to the first 0/10. Group 2: the 0/10 ends it at
    # once. Group 3: its last leading 10/10 and everything after.
    assert ks.tolist() == [10, 7, 3, 0, 0, 10, 6, 4]
    assert xs.tolist() == [3, 4, 5, 6, 8, 12, 13, 14]
    assert st.tolist() == [0, 4, 5]
