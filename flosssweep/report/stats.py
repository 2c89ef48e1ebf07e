"""Statistics behind the report, vectorized with numpy: Wilson intervals, T50 and its interval
(docs/DESIGN.md, "Statistics").

Everything here works on *cells* (one configuration group at one x value, usually a delay) laid out
ragged: the cells of a group are contiguous and sorted by x, and ``starts`` gives the index of each
group's first cell. Nothing loops over rows, groups or draws in Python; the posterior draw loops only
over chunks of draws, to bound memory.

Definitions
-----------
Wilson interval
    The 95% score interval for k successes in n trials, z = 1.959963985. Unlike the normal
    approximation it stays inside [0, 1] and is not degenerate at k = 0 or k = n.

T50 (largest bridgeable horizon)
    Scan a group's x values in increasing order. The first x whose success rate is below the
    threshold ends the bridgeable range; T50 is interpolated linearly between that x and the x
    before it (whose rate is >= threshold by construction). If the very first x is already below the
    threshold, T50 is left-censored, ``< x_min``; if no x falls below it, right-censored,
    ``>= x_max``.

    Non-monotone curves: the *first* crossing from above wins. A rate that climbs back to
    >= threshold at a larger x does not extend T50, because T50 is meant as the horizon the method
    reliably reaches: every x up to it was bridged. With the small n of a typical sweep such a
    recovery is usually noise, and taking the last crossing instead would report a horizon across a
    delay that mostly failed. Such groups are flagged ``nonmonotone`` so a reader can look at them.

Interval for T50 (posterior draws; not a bootstrap)
    Each draw takes every cell's success rate from its Jeffreys posterior,
    Beta(k + 1/2, n - k + 1/2), and recomputes T50 from the drawn rates; the 2.5th and 97.5th
    percentiles of those T50s form the interval. Resampling the realizations instead (a count from
    Binomial(n, k/n)) cannot move a cell with k = 0 or k = n, so when every realization agrees at
    the delays around the crossing the interval shrinks to a point: simulated sweeps from known
    success curves, 4 or 8 realizations per delay, put the true T50 inside that 95% interval in
    86-92% of sweeps on gentle curves and in 22-79% on steep ones. The posterior keeps an 8/8 cell
    uncertain (its mean rate is (n + 1/2) / (n + 1)), which brings the coverage to 92-100% per
    curve, 97-98% over all. Drawing a count from Binomial(n, rate) on top of the posterior rate
    counts the sampling noise twice and over-covers (99-100%, intervals up to twice as wide), so
    the drawn rate is used as it is. ``tests/report/test_stats.py`` holds the simulation.

    Censored draws are kept, ordered as -inf (``< x_min``) and +inf (``>= x_max``), so they
    weigh on the percentiles like any other draw instead of being dropped (which would pull the
    interval toward the middle of the tested range). An interval end that lands on a censored
    draw is reported censored.
"""

from __future__ import annotations

import numpy as np

Z95 = 1.959963985

__all__ = [
    "Z95",
    "wilson_interval",
    "t50_point",
    "t50_posterior_draws",
    "t50_posterior_samples",
]


def wilson_interval(k, n, z: float = Z95):
    """Wilson score interval for ``k`` successes out of ``n``; arrays broadcast.

    Returns ``(lo, hi)`` as float arrays; cells with n = 0 give NaN.
    """
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        z2 = z * z
        denom = 1.0 + z2 / n
        centre = (p + z2 / (2.0 * n)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
        lo = np.clip(centre - half, 0.0, 1.0)
        hi = np.clip(centre + half, 0.0, 1.0)
    # At k = 0 and k = n the exact bounds are 0 and 1; remove round-off.
    lo = np.where(k == 0, 0.0, lo)
    hi = np.where(k == n, 1.0, hi)
    bad = ~(n > 0)
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def _segment_ends(starts: np.ndarray, size: int) -> np.ndarray:
    return np.append(starts[1:], size).astype(np.int64)


def _first_below(below: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index (global) of the first True per segment along the last axis, or C when there is none."""
    size = below.shape[-1]
    # max of (size - position) over the True entries, 0 where there are none
    dist = np.arange(size, 0, -1, dtype=np.int32 if size < 2**31 else np.int64)
    return size - np.maximum.reduceat(below * dist, starts, axis=-1).astype(np.int64)


def _interpolate(x0, x1, r0, r1, threshold):
    # censored cells (no crossing) give NaN or inf here; `_classify` replaces them, so no warning
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = (r0 - threshold) / (r0 - r1)
        return x0 + frac * (x1 - x0)


def _classify(first, starts, ends):
    right = first >= ends  # nothing below the threshold in the segment
    left = first == starts  # already below at the smallest x
    interior = ~(right | left)
    return left, right, interior


def t50_point(x, rate, starts, threshold: float = 0.5):
    """T50 of each group from its rates.

    ``x`` (C,) floats, ascending within each group; ``rate`` (C,); ``starts`` (G,) first cell of each
    group (every group non-empty). Returns ``(t50, nonmonotone)``: ``t50`` is float with ``+inf`` for
    right-censored (``>= x_max``) and ``-inf`` for left-censored (``< x_min``) groups;
    ``nonmonotone`` is True where a rate at or above the threshold follows the first crossing.
    """
    x = np.asarray(x, dtype=np.float64)
    rate = np.asarray(rate, dtype=np.float64)
    starts = np.asarray(starts, dtype=np.int64)
    size = rate.shape[-1]
    if starts.size == 0:
        return np.empty(0), np.empty(0, dtype=bool)
    ends = _segment_ends(starts, size)
    below = rate < threshold
    first = _first_below(below, starts)
    left, right, interior = _classify(first, starts, ends)
    i1 = np.clip(first, 1, size - 1) if size > 1 else np.zeros_like(first)
    i0 = np.maximum(i1 - 1, 0)
    t = _interpolate(x[i0], x[i1], rate[i0], rate[i1], threshold)
    t50 = np.where(right, np.inf, np.where(left, -np.inf, t))

    # A cell past the first crossing that is back at or above the threshold.
    seg = np.repeat(np.arange(starts.size), np.diff(np.append(starts, size)))
    after = np.arange(size) > first[seg]
    recovered = after & ~below
    nonmonotone = np.maximum.reduceat(recovered.astype(np.int8), starts) > 0
    return t50, nonmonotone


def t50_posterior_samples(
    x,
    k,
    n,
    starts,
    threshold: float = 0.5,
    n_draws: int = 1000,
    seed: int = 0,
    max_chunk_cells: int = 4_000_000,
):
    """T50 of every posterior draw, shape (G, n_draws), censored ones as -inf/+inf.

    ``x``, ``k``, ``n`` (C,) with n > 0 and groups laid out as for :func:`t50_point`. The result
    depends only on the input and ``seed``: chunking draws the same stream one large draw would.
    """
    x = np.asarray(x, dtype=np.float64)
    k = np.asarray(k, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    groups = starts.size
    if groups == 0 or n_draws <= 0:
        return np.empty((groups, 0))
    size = n.size
    ends = _segment_ends(starts, size)
    prior = 0.5  # Jeffreys: a cell that always succeeded still has posterior mass below 1
    post_a, post_b = k + prior, n - k + prior

    rng = np.random.default_rng(seed)
    chunk = int(max(1, min(n_draws, max_chunk_cells // max(size, 1))))
    out = np.empty((n_draws, groups), dtype=np.float64)
    for s in range(0, n_draws, chunk):
        rate = rng.beta(post_a, post_b, size=(min(chunk, n_draws - s), size))
        first = _first_below(rate < threshold, starts)  # (b, G)
        left, right, interior = _classify(first, starts[None, :], ends[None, :])
        t = out[s : s + rate.shape[0]]
        t[right] = np.inf
        t[left] = -np.inf
        flat = np.flatnonzero(interior)
        if flat.size:
            rows = flat // groups
            c1 = first.ravel()[flat]
            c0 = c1 - 1
            r = rate.ravel()
            t.ravel()[flat] = _interpolate(x[c0], x[c1], r[rows * size + c0], r[rows * size + c1], threshold)
    return np.ascontiguousarray(out.T)


def t50_posterior_draws(
    x,
    k,
    n,
    starts,
    threshold: float = 0.5,
    n_draws: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    max_chunk_cells: int = 4_000_000,
):
    """Percentile interval of T50 per group from its posterior draws (module docstring).

    Arguments as for :func:`t50_posterior_samples`. Returns ``(lo, hi)`` floats, ``-inf``/``+inf``
    meaning censored ``< x_min``/``>= x_max``; NaN for every group when ``n_draws`` is 0. The
    percentiles are order statistics (no interpolation, which is undefined next to an infinite
    value), rounded outward.
    """
    out = t50_posterior_samples(x, k, n, starts, threshold, n_draws, seed, max_chunk_cells)
    if out.shape[1] == 0:
        nan = np.full(out.shape[0], np.nan)
        return nan, nan.copy()
    alpha = 1.0 - confidence
    i_lo = int(np.floor(alpha / 2 * (n_draws - 1)))
    i_hi = int(np.ceil((1 - alpha / 2) * (n_draws - 1)))
    part = np.partition(out, [i_lo, i_hi], axis=1)
    return part[:, i_lo], part[:, i_hi]
