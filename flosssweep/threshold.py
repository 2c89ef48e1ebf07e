"""A grid posterior over a falling psychometric curve, and where to measure next: the fitted T50 of the
report and the placement rule of the adaptive sweep both come from here (docs/DESIGN.md, "Adaptive delay
placement").

The model of the success rate at x (a delay; success falls as x grows):

    P(x) = guess + (1 - guess - lapse) * (1 - F((x - core) / slope)),   F(z) = 1 / (1 + exp(-z))

``guess`` is the floor the curve falls to (chance-level successes at long x), ``lapse`` the failures that
happen even at short x. T50 is the x where the whole curve P crosses ``target``, lapse and guess included,
so it means the same thing as the report's interpolated T50. The grid is laid over (T50, slope, lapse,
guess) rather than over ``core``: solving P(T50) = target for ``core`` gives each grid point its curve, and
T50's marginal is a plain sum.

Pure numpy: the sweep (Ray side) and the report both import it, so it imports neither.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

__all__ = ["Observation", "ThresholdPosterior"]

# Grid resolution. T50 is binned finely enough that a step-like curve bracketed by two delays two units
# apart still has a handful of bins between them; slope spans steps far narrower than any delay spacing
# to curves as wide as the whole range. Lapse and guess up to 0.2 cover the plateaus seen in sweeps
# (gated networks near chance at every delay) without letting the floor and ceiling swallow the curve.
T50_BINS = 200
SLOPE_POINTS = 14
SLOPE_RANGE = (1 / 400, 1 / 2)  # as fractions of hi - lo
LAPSES = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
GUESSES = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)
# Each realization counts as this fraction of one (a tempered, or power, likelihood). Real success curves
# are not logistic: on simulated asymmetric cumulative-normal curves (left tail twice the right) the 95%
# interval covered the true T50 in 92.8% of experiments at 8 realizations per delay with 0.8 and 94.8% with
# 0.7, for intervals about 7% wider; more realizations shrink the interval faster than the model's bias, so
# the coverage on such curves falls with n (docs/DESIGN.md, "Adaptive delay placement"; the simulation is
# in tests/report/test_fit.py).
TEMPER = 0.7
# P is kept this far from 0 and 1 so a cell that contradicts every grid point (a success far past a
# step-like curve) lowers the likelihood instead of zeroing the whole posterior.
P_FLOOR = 1e-9
# Placement's lookahead (`ThresholdPosterior.place`): the grid points that stand for the posterior, the
# outcome combinations followed within a round, and the interval it narrows (the one `interval` reports).
PLACE_POINTS = 4096
PLACE_BRANCHES = 16
PLACE_LEVEL = 0.95
CURVE_TOLERANCE = 2e-3  # of a drawn curve's rate: far below a line's width on a figure


@dataclass(frozen=True)
class Observation:
    """``k`` successes out of ``n`` realizations at ``x``."""

    x: float
    k: int
    n: int


class _Grid:
    """The grid points' parameters, broadcast along axes (T50, slope, lapse, guess); shared by a prior and
    every posterior updated from it."""

    def __init__(self, lo: float, hi: float, target: float) -> None:
        self.lo, self.hi, self.target = lo, hi, target
        self.edges = np.linspace(lo, hi, T50_BINS + 1)
        self.t50 = ((self.edges[:-1] + self.edges[1:]) / 2)[:, None, None, None]
        self.slope = ((hi - lo) * np.geomspace(*SLOPE_RANGE, SLOPE_POINTS))[None, :, None, None]
        self.floor = np.asarray(GUESSES)[None, None, None, :]
        self.span = 1.0 - np.asarray(LAPSES)[None, None, :, None] - self.floor
        # 1 - F(z) equals `fall` at T50, so the logistic's argument there is logit(1 - fall)
        fall = (target - self.floor) / self.span
        with np.errstate(divide="ignore", invalid="ignore"):
            self.offset = np.log((1.0 - fall) / fall)
        # (lapse, guess) pairs whose curve never reaches the target have no T50
        self.crosses = (fall > 0) & (fall < 1)

    @staticmethod
    @lru_cache(maxsize=8)
    def shared(lo: float, hi: float, target: float) -> _Grid:
        """One grid per range: the report's groups and a sweep's tracks usually share theirs, and with it
        the cache of log-likelihood terms below."""
        return _Grid(lo, hi, target)

    @lru_cache(maxsize=64)  # noqa: B019 - grids live as long as `shared` keeps them; 64 x values ~ 50 MB
    def log_rates(self, x: float) -> tuple[np.ndarray, np.ndarray]:
        """log P(x) and log(1 - P(x)) at every grid point, in float32 to halve the cache."""
        p = self.success_rate(x)
        return np.log(p).astype(np.float32), np.log1p(-p).astype(np.float32)

    def success_rate(self, x: float) -> np.ndarray:
        """P(x) at every grid point, kept inside [P_FLOOR, 1 - P_FLOOR]."""
        with np.errstate(over="ignore"):
            z = (x - self.t50) / self.slope + np.where(self.crosses, self.offset, 0.0)
            p = self.floor + self.span / (1.0 + np.exp(z))  # 1 - F(z) = 1 / (1 + exp(z))
        return np.clip(p, P_FLOOR, 1.0 - P_FLOOR)


class ThresholdPosterior:
    """Posterior over (T50, slope, lapse, guess) on a fixed grid; immutable, each update returns a new one.

    Priors: T50 uniform on [lo, hi] (binned, each bin's mass spread evenly over it, so quantiles are
    continuous), slope log-uniform, lapse and guess uniform on their grids. Because T50 never leaves
    [lo, hi], data that put the crossing outside the range pile the mass against that end: the interval
    then touches ``lo`` or ``hi``, which is how a censored result looks here.
    """

    def __init__(self, grid: _Grid, log_post: np.ndarray, realizations: int) -> None:
        # Use `prior` to build one; this constructor only carries state between updates.
        self._grid = grid
        self._log_post = log_post
        self.realizations = realizations  # how many realizations the posterior has seen

    @property
    def lo(self) -> float:
        return self._grid.lo

    @property
    def hi(self) -> float:
        return self._grid.hi

    @property
    def target(self) -> float:
        return self._grid.target

    @classmethod
    def prior(cls, lo: float, hi: float, target: float = 0.5) -> ThresholdPosterior:
        """The prior over T50 in [lo, hi] for a curve that crosses ``target``."""
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"threshold range: expected finite lo < hi, got lo={lo}, hi={hi}")
        if not 0.0 < target < 1.0:
            raise ValueError(f"threshold target: expected a rate strictly between 0 and 1, got {target}")
        # lapse = guess = 0 is on the grid, so some curve crosses every target in (0, 1)
        grid = _Grid.shared(float(lo), float(hi), float(target))
        shape = (T50_BINS, SLOPE_POINTS, len(LAPSES), len(GUESSES))
        return cls(grid, np.broadcast_to(np.where(grid.crosses, 0.0, -np.inf), shape).copy(), 0)

    def updated(self, observations: Iterable[Observation]) -> ThresholdPosterior:
        """This posterior with ``observations`` added as new evidence (an observation given twice counts
        twice). Cells at the same x are pooled first, so each distinct x costs one pass over the grid."""
        pooled: dict[float, list[int]] = {}
        for obs in observations:
            if obs.n < 0 or not 0 <= obs.k <= obs.n or not np.isfinite(obs.x):
                raise ValueError(f"observation {obs}: expected finite x and 0 <= k <= n")
            kn = pooled.setdefault(float(obs.x), [0, 0])
            kn[0] += obs.k
            kn[1] += obs.n
        log_post = self._log_post.copy()
        for x, (k, n) in pooled.items():
            log_p, log_q = self._grid.log_rates(x)
            log_post += TEMPER * (k * log_p + (n - k) * log_q)
        # renormalize in log space so long runs of updates cannot underflow
        log_post -= log_post.max()
        return ThresholdPosterior(self._grid, log_post, self.realizations + sum(n for _, n in pooled.values()))

    def _weights(self) -> np.ndarray:
        w = np.exp(self._log_post - self._log_post.max())
        return w / w.sum()

    @cached_property
    def _t50_mass(self) -> np.ndarray:
        # interval and place both read it, often on the same posterior: one pass over the grid for both
        return self._weights().sum(axis=(1, 2, 3))

    def t50_mass(self) -> np.ndarray:
        """Posterior mass of each T50 bin (bins between ``np.linspace(lo, hi, T50_BINS + 1)``)."""
        return self._t50_mass.copy()

    def quantiles(self, levels: Sequence[float]) -> np.ndarray:
        """T50 at the given posterior quantile levels (each bin's mass spread evenly over the bin)."""
        cdf = np.concatenate([[0.0], np.cumsum(self._t50_mass)])
        cdf /= cdf[-1]
        return np.interp(np.asarray(levels, dtype=np.float64), cdf, self._grid.edges)

    def interval(self, level: float = 0.95) -> tuple[float, float, float]:
        """(median, low, high) of T50: the posterior median and the equal-tailed ``level`` interval."""
        median, low, high = self.quantiles([0.5, (1 - level) / 2, (1 + level) / 2])
        return float(median), float(low), float(high)

    def curve(self, xs: Sequence[float]) -> np.ndarray:
        """The posterior mean success rate at each x (what the report draws over the data), within
        CURVE_TOLERANCE of the exact mean."""
        w = self._weights().ravel()
        # The heaviest grid points that hold all but CURVE_TOLERANCE / 2 of the mass: a rate lies in [0, 1],
        # so leaving the rest out and renormalizing moves the mean by less than CURVE_TOLERANCE, and a
        # broad posterior costs a fraction of the grid instead of all of it.
        order = np.argsort(w)[::-1]
        kept = order[: int(np.searchsorted(np.cumsum(w[order]), 1.0 - CURVE_TOLERANCE / 2)) + 1]
        weight = w[kept] / w[kept].sum()
        grid = self._grid
        t50, slope, floor, span, offset = (
            np.broadcast_to(a, self._log_post.shape).ravel()[kept]
            for a in (grid.t50, grid.slope, grid.floor, grid.span, grid.offset)
        )
        # one x at a time: a (len(xs), kept) matrix would be tens of MB of temporaries, slower than the loop
        with np.errstate(over="ignore"):
            return np.array([weight @ (floor + span / (1.0 + np.exp((x - t50) / slope + offset))) for x in xs])

    def place(self, candidates: Sequence[float], m: int) -> list[float]:
        """The next ``m`` x values, among ``candidates``, in ascending order: chosen one at a time, each the
        candidate that most narrows T50's expected 95% interval once one realization at it and one at every
        x chosen before it in the round have come out (each combination of outcomes weighed by the
        posterior predictive). Distinct, repeating only once every candidate is taken. Why this rule:
        docs/DESIGN.md, "Adaptive delay placement"."""
        pool = np.unique(np.asarray(candidates, dtype=np.float64))
        if pool.size == 0 or m <= 0:
            return []
        # PLACE_POINTS grid points drawn by systematic resampling (evenly spaced levels of the posterior's
        # cumulative mass, so the draw is a pure function of the posterior) stand for the whole grid: the
        # lookahead then costs the same on a broad posterior as on a narrow one. Sorted by T50, so a
        # cumulative sum along them is T50's distribution function.
        cdf = np.cumsum(self._weights().ravel())
        levels = (np.arange(PLACE_POINTS) + 0.5) / PLACE_POINTS * cdf[-1]
        kept, counts = np.unique(np.minimum(np.searchsorted(cdf, levels), cdf.size - 1), return_counts=True)
        t50 = np.broadcast_to(self._grid.t50, self._log_post.shape).ravel()[kept]
        by_t50 = np.argsort(t50, kind="stable")
        kept, weight, t50 = kept[by_t50], (counts / PLACE_POINTS)[by_t50], t50[by_t50]
        # P(x) at the kept points only, not through the per-x cache: a hundred candidates would evict the x
        # values the updates need, and the kept points are a few percent of the grid
        grid = self._grid
        slope, floor, span, offset = (
            np.broadcast_to(a, self._log_post.shape).ravel()[kept]
            for a in (grid.slope, grid.floor, grid.span, np.where(grid.crosses, grid.offset, 0.0))
        )
        with np.errstate(over="ignore"):
            z = (pool[:, None] - t50) / slope + offset
            success = np.clip(floor + span / (1.0 + np.exp(z)), P_FLOOR, 1.0 - P_FLOOR)  # (candidates, kept)
        # per outcome (success, failure): its predictive probability (the model's rate) and the tempered
        # factor the posterior's update multiplies in
        outcomes = ((success, success**TEMPER), (1.0 - success, (1.0 - success) ** TEMPER))
        # branches: one per combination of outcomes at the x chosen so far, each a predictive weight (summing
        # to the branch's probability) and the posterior weight that combination leaves
        branches = [(weight, weight)]
        free = np.ones(pool.size, dtype=bool)
        chosen: list[float] = []
        tails = np.array([(1 - PLACE_LEVEL) / 2, (1 + PLACE_LEVEL) / 2])
        median = float(self.quantiles([0.5])[0])
        for _ in range(m):
            if not free.any():
                free[:] = True
            predictive = np.stack([b[0] for b in branches])  # (branches, kept)
            posterior = np.stack([b[1] for b in branches])
            expected = np.zeros(pool.size)
            for rate, update in outcomes:
                chance = rate @ predictive.T  # (candidates, branches): P(branch, then this outcome at x)
                cdf = np.cumsum(update[:, None, :] * posterior[None, :, :], axis=-1)
                # the first points past each tail's mass: the interval's ends
                ends = [np.minimum((cdf < tail * cdf[..., -1:]).sum(axis=-1), t50.size - 1) for tail in tails]
                expected += (chance * (t50[ends[1]] - t50[ends[0]])).sum(axis=1)
            expected = np.where(free, expected, np.inf)
            # where no candidate changes the expected width (a posterior far narrower than the candidates'
            # spacing), measure at the candidate nearest T50's median rather than at the first one
            tied = expected <= expected.min() + 1e-9 * max(float(expected.min()), 1.0)
            i = int(np.argmin(np.where(tied, np.abs(pool - median), np.inf)))
            free[i] = False
            chosen.append(float(pool[i]))
            grown = [
                (predictive[b] * rate[i], posterior[b] * update[i])
                for b in range(len(branches))
                for rate, update in outcomes
            ]
            # the likeliest PLACE_BRANCHES combinations stand for the rest (2^m grows too fast for large m);
            # the predictive weights keep each branch's probability, the posterior ones are renormalized
            grown.sort(key=lambda b: -float(b[0].sum()))
            grown = grown[:PLACE_BRANCHES]
            total = sum(float(p.sum()) for p, _ in grown)
            branches = [(p / total, q / q.sum()) for p, q in grown]
        return sorted(chosen)
