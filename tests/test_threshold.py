"""The threshold posterior against answers known without it: a known curve measured with many realizations,
the flat prior's quantiles, bracketing data, plateaus, and the placement rule's promises."""

import numpy as np
import pytest

from flosssweep.threshold import CURVE_TOLERANCE, GUESSES, LAPSES, T50_BINS, Observation, ThresholdPosterior, _Grid

XS = np.arange(10.0, 122.0, 2.0)


def logistic_t50(core: float, slope: float, lapse: float, guess: float, target: float) -> float:
    """Where guess + (1 - guess - lapse) / (1 + exp((x - core) / slope)) equals target, by hand."""
    fall = (target - guess) / (1 - guess - lapse)
    return core + slope * np.log(1 / fall - 1)


def measured(rate, xs, n: int, seed: int = 0) -> list[Observation]:
    rng = np.random.default_rng(seed)
    return [Observation(float(x), int(rng.binomial(n, rate(x))), n) for x in xs]


def test_flat_prior_quantiles_are_those_of_a_uniform():
    median, low, high = ThresholdPosterior.prior(10, 120).interval()
    assert median == pytest.approx(65.0)
    assert low == pytest.approx(10 + 0.025 * 110)
    assert high == pytest.approx(120 - 0.025 * 110)


def test_every_grid_curve_crosses_the_target_at_its_t50():
    grid = _Grid(10.0, 120.0, 0.3)
    for i in (0, 57, T50_BINS - 1):
        rate = grid.success_rate(float(grid.t50[i, 0, 0, 0]))[i]  # (slope, lapse, guess)
        assert np.allclose(rate[:, grid.crosses[0, 0]], 0.3, atol=1e-9)


@pytest.mark.parametrize(
    "core, slope, lapse, guess, target",
    [(42.0, 3.0, 0.0, 0.0, 0.5), (80.0, 8.0, 0.1, 0.15, 0.5), (30.0, 1.0, 0.05, 0.0, 0.7), (75.0, 12.0, 0.2, 0.2, 0.5)],
)
def test_a_known_logistic_measured_many_times_gives_back_its_t50(core, slope, lapse, guess, target):
    # Not `low <= truth <= high`: with this much data the posterior settles on one grid point in
    # (slope, lapse, guess) and the interval becomes narrower than the grid's own spacing can justify
    # (docs/DESIGN.md, "Adaptive delay placement"); the coverage at realistic n is tested by simulation.
    truth = logistic_t50(core, slope, lapse, guess, target)
    rate = lambda x: guess + (1 - guess - lapse) / (1 + np.exp((x - core) / slope))
    post = ThresholdPosterior.prior(10, 120, target).updated(measured(rate, XS, 400))
    median, low, high = post.interval()
    assert abs(median - truth) < 1.5
    assert low < median < high and high - low < 2.5
    assert post.realizations == 400 * XS.size


def test_a_step_bracketed_by_two_delays_puts_t50_between_them():
    # certain success up to 30, certain failure from 32: a step anywhere in (30, 32) explains the data
    obs = [Observation(x, 1000, 1000) for x in (20.0, 26.0, 30.0)] + [Observation(x, 0, 1000) for x in (32.0, 40.0)]
    median, low, high = ThresholdPosterior.prior(10, 120).updated(obs).interval()
    assert 30 - 0.5 < low < median < high < 32 + 0.5


@pytest.mark.parametrize("k, end", [(0, "lo"), (16, "hi")])
def test_a_plateau_everywhere_leaves_a_proper_posterior_against_one_end(k, end):
    post = ThresholdPosterior.prior(10, 120).updated([Observation(x, k, 16) for x in XS[::5]])
    mass = post.t50_mass()
    assert np.isfinite(mass).all() and mass.sum() == pytest.approx(1.0)
    median, low, high = post.interval()
    if end == "lo":  # every delay failed: T50 is below the first one, the interval touches lo
        assert low == pytest.approx(10, abs=0.5) and high <= 20
    else:
        assert high == pytest.approx(120, abs=0.5) and low >= 110


def test_non_monotone_cells_give_a_wide_but_finite_interval():
    obs = [Observation(20, 0, 8), Observation(40, 8, 8), Observation(60, 0, 8), Observation(80, 8, 8)]
    median, low, high = ThresholdPosterior.prior(10, 120).updated(obs).interval()
    assert np.isfinite([median, low, high]).all()
    assert high - low > 50


def test_updated_is_pure_and_evidence_adds_up_in_any_batches():
    rate = lambda x: 0.05 + 0.9 / (1 + np.exp((x - 55) / 4))
    obs = measured(rate, XS[::4], 8, seed=3)
    prior = ThresholdPosterior.prior(10, 120)
    once = prior.updated(obs)
    twice = prior.updated(obs[:5]).updated(obs[5:])
    assert prior.interval() == ThresholdPosterior.prior(10, 120).interval()
    assert np.allclose(once.t50_mass(), twice.t50_mass(), atol=1e-6)
    assert once.realizations == twice.realizations == 8 * len(obs)


def expected_width(posterior: ThresholdPosterior, x: float) -> float:
    """T50's 95% interval width after one more realization at x, averaged over its two outcomes, by the
    posterior's own update and interval on the whole grid (place works on a resampled grid)."""

    def width(post: ThresholdPosterior) -> float:
        _, low, high = post.interval()
        return high - low

    success = float(posterior.curve([x])[0])  # the posterior predictive chance of a success at x
    return success * width(posterior.updated([Observation(x, 1, 1)])) + (1 - success) * width(
        posterior.updated([Observation(x, 0, 1)])
    )


@pytest.mark.parametrize("case", ["prior", "bracketed", "lapse and plateau"])
def test_place_picks_the_candidate_of_least_expected_interval_width(case):
    prior = ThresholdPosterior.prior(10, 120)
    posterior = {
        "prior": prior,
        "bracketed": prior.updated([Observation(30.0, 2, 2), Observation(50.0, 1, 2), Observation(90.0, 0, 2)]),
        "lapse and plateau": prior.updated(measured(lambda x: 0.2 + 0.7 / (1 + np.exp((x - 60) / 6)), XS[::6], 3)),
    }[case]
    candidates = XS[::3]
    by_hand = np.array([expected_width(posterior, float(x)) for x in candidates])
    (chosen,) = posterior.place(candidates, 1)
    picked = by_hand[list(candidates).index(chosen)]
    # the resampled grid may swap near-ties, but the pick is near the best of the candidates and far from
    # the typical one
    assert picked - by_hand.min() <= 0.1 * (np.median(by_hand) - by_hand.min()), (chosen, by_hand)


def test_place_stays_among_distinct_candidates_near_a_narrow_t50():
    prior = ThresholdPosterior.prior(10, 120)
    rate = lambda x: 1 / (1 + np.exp((x - 42) / 2))
    narrow = prior.updated(measured(rate, XS, 200))
    placed = narrow.place(XS, 4)
    assert len(set(placed)) == 4 and set(placed) <= set(XS)  # distinct although the posterior is narrow
    assert placed == sorted(placed) and 34 <= min(placed) and max(placed) <= 50  # all beside T50 = 42
    assert narrow.place([30.0, 50.0], 3) == [30.0, 50.0, 50.0] or narrow.place([30.0, 50.0], 3) == [30.0, 30.0, 50.0]
    assert prior.place([], 3) == [] and prior.place(XS, 0) == []


def test_place_is_a_pure_function_of_the_posterior():
    posterior = ThresholdPosterior.prior(10, 120).updated([Observation(50.0, 1, 2), Observation(70.0, 0, 2)])
    assert posterior.place(XS, 4) == posterior.place(list(reversed(XS)), 4)


@pytest.mark.parametrize(
    "call",
    [
        lambda: ThresholdPosterior.prior(120, 10),
        lambda: ThresholdPosterior.prior(10, float("inf")),
        lambda: ThresholdPosterior.prior(10, 120, target=1.0),
        lambda: ThresholdPosterior.prior(10, 120).updated([Observation(20, 9, 8)]),
    ],
)
def test_bad_input_is_refused(call):
    with pytest.raises(ValueError):
        call()


def test_a_target_above_some_ceilings_keeps_only_the_curves_that_reach_it():
    # 0.9 lies above 1 - lapse for lapse 0.15 and 0.2, and below guess for no guess: those curves get no mass
    post = ThresholdPosterior.prior(10, 120, target=0.9)
    reach = (1 - np.asarray(LAPSES))[:, None] > 0.9
    assert np.isfinite(post._log_post[0, 0]).tolist() == np.broadcast_to(reach, (len(LAPSES), len(GUESSES))).tolist()


def test_the_drawn_curve_is_the_posterior_mean_within_its_tolerance():
    # the prior is symmetric about the middle of its range (T50 uniform, the same grid for lapse and
    # guess), so its mean curve passes through 0.5 there
    prior = ThresholdPosterior.prior(10, 120)
    assert prior.curve([65.0])[0] == pytest.approx(0.5, abs=CURVE_TOLERANCE)
    post = prior.updated([Observation(30, 9, 10), Observation(50, 6, 10), Observation(70, 1, 10)])
    weights = np.exp(post._log_post - post._log_post.max())
    weights /= weights.sum()
    exact = [float((weights * post._grid.success_rate(x)).sum()) for x in (20.0, 50.0, 90.0)]
    assert np.allclose(post.curve([20.0, 50.0, 90.0]), exact, atol=CURVE_TOLERANCE)
