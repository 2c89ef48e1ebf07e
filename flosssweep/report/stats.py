"""Statistics behind the report (docs/DESIGN.md, "Statistics"), vectorized with numpy.

Everything here works on *cells* (one configuration group at one x value, usually a delay) laid out
ragged: the cells of a group are contiguous and sorted by x, and ``starts`` gives the index of each
group's first cell. Nothing loops over rows, groups or resamples in Python; the bootstrap loops only
over chunks of resamples, to bound memory.

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

Bootstrap interval for T50
    Realizations are resampled with replacement within each cell, which is the same as drawing the
    cell's success count from Binomial(n, k/n). The draw uses inverse-transform sampling: one uniform
    U per cell and resample decides whether the resampled rate is below the threshold (a single
    comparison against the binomial CDF), and the exact resampled counts are then recovered, from the
    same U, only at the two cells around each resample's crossing. This is the binomial bootstrap
    exactly, at a fraction of the cost of drawing every count.

    Censored resamples are kept, ordered as -inf (``< x_min``) and +inf (``>= x_max``), so they
    weigh on the percentiles like any other resample instead of being dropped (which would pull the
    interval toward the middle of the tested range). An interval end that lands on a censored
    resample is reported censored. A cell with k = 0 or k = n resamples to itself; that is the
    ordinary behaviour of the percentile bootstrap and is why the interval can collapse on a point
    when every realization agrees.
"""

from __future__ import annotations

import numpy as np

Z95 = 1.959963985

__all__ = [
    "Z95",
    "wilson_interval",
    "success_threshold_counts",
    "t50_point",
    "t50_bootstrap",
    "t50_bootstrap_samples",
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


def success_threshold_counts(n, threshold: float):
    """Smallest success count m with ``m / n >= threshold``, evaluated in float like the rates.

    ``ceil(threshold * n)`` alone is off by one when ``threshold * n`` rounds up (0.3 * 10 is
    3.0000000000000004), so the candidate just below is checked with the same float division that
    the point estimate uses.
    """
    n = np.asarray(n, dtype=np.int64)
    m = np.ceil(threshold * n).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        lower_ok = ((m - 1) / n) >= threshold
    m = np.where((m > 0) & lower_ok, m - 1, m)
    return np.clip(m, 0, None)


def _segment_ends(starts: np.ndarray, size: int) -> np.ndarray:
    return np.append(starts[1:], size).astype(np.int64)


def _first_below(below: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Index (global) of the first True per segment along the last axis, or C when there is none."""
    size = below.shape[-1]
    # max of (size - position) over the True entries, 0 where there are none
    dist = np.arange(size, 0, -1, dtype=np.int32 if size < 2**31 else np.int64)
    return size - np.maximum.reduceat(below * dist, starts, axis=-1).astype(np.int64)


def _interpolate(x0, x1, r0, r1, threshold):
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


def _binomial_cdf_table(k, n):
    """Concatenated CDFs of Binomial(n_c, k_c / n_c) over 0..n_c for every cell c.

    Returns ``(cdf, offset)`` with ``cdf[offset[c] + j] = P(K_c <= j)``.
    """
    k = np.asarray(k, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    lengths = n + 1
    offset = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    cell = np.repeat(np.arange(n.size), lengths)
    j = np.arange(lengths.sum(), dtype=np.int64) - offset[cell]
    nmax = int(n.max()) if n.size else 0
    logfact = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, nmax + 1, dtype=np.float64)))))
    nc = n[cell]
    p = (k / n)[cell]
    with np.errstate(divide="ignore", invalid="ignore"):
        logpmf = (
            logfact[nc]
            - logfact[j]
            - logfact[nc - j]
            + np.where(j > 0, j * np.log(p), 0.0)
            + np.where(nc - j > 0, (nc - j) * np.log1p(-p), 0.0)
        )
    pmf = np.exp(logpmf)
    total = np.cumsum(pmf)
    before = np.concatenate(([0.0], total))[offset]
    cdf = np.clip(total - before[cell], 0.0, 1.0)
    cdf[offset + lengths - 1] = 1.0
    return cdf, offset


def _guide_table(cdf, offset, n):
    """Guide table for inverse-CDF sampling, laid out like the CDF table.

    ``guide[offset[c] + i]`` is a lower bound of ``min{j : u < cdf_c(j)}`` for every uniform u
    with ``floor(u * (n_c + 1)) = i``: the count of CDF values at or below i / (n_c + 1) (from a
    per-row histogram of the bucket each CDF value first falls in), less one, because rounding in
    ``cdf * (n + 1)`` and ``u * (n + 1)`` can put a value one bucket off.
    """
    lengths = n + 1
    cell = np.repeat(np.arange(n.size), lengths)
    bucket = np.ceil(cdf * lengths[cell]).astype(np.int64)  # first i with cdf <= i / (n + 1)
    hit = bucket <= n[cell]
    counts = np.bincount(offset[cell][hit] + bucket[hit], minlength=cdf.size)
    total = np.cumsum(counts)
    before = np.concatenate(([0], total))[offset]
    return np.maximum(total - before[cell] - 1, 0)


def _inverse_cdf(cdf, offset, guide, n, cell, u):
    """Resampled counts ``min{j : u < cdf_cell(j)}`` for uniforms ``u`` in [0, 1).

    Starts where the guide table points and steps forward, about one step per draw on average.
    """
    base = offset[cell]
    kk = guide[base + (u * (n[cell] + 1)).astype(np.int64)]
    for _ in range(2):  # most draws are done after two steps: take them without bookkeeping
        kk += np.take(cdf, base + kk) <= u
    todo = np.flatnonzero(np.take(cdf, base + kk) <= u)
    while todo.size:
        kk[todo] += 1
        todo = todo[np.take(cdf, base[todo] + kk[todo]) <= u[todo]]
    return kk


def _relevant_cells(x, k, n, starts, threshold):
    """Drop the cells of each group that cannot change any resample's T50.

    A cell with k = n resamples to a rate of 1 (never below the threshold) and one with k = 0 to
    a rate of 0 (always below, the threshold being > 0). So the first k = 0 cell of a group ends
    every resample's scan, and the cells after it never matter; of the leading run of k = n cells
    only the last can matter (as the left end of an interpolation). Keeping exactly the rest
    leaves every resample's T50 unchanged, censoring included.
    """
    size = n.size
    pos = np.arange(size)
    seg_len = np.diff(np.append(starts, size))
    seg = np.repeat(np.arange(starts.size), seg_len)
    not_full = (k < n).astype(np.int64)
    before = np.cumsum(not_full) - not_full  # cells with k < n before this one, whole array
    leading_full = (before - before[starts][seg] == 0) & (k == n)
    n_lead = np.add.reduceat(leading_full.astype(np.int64), starts)
    first = starts + np.maximum(n_lead - 1, 0)
    zero_at = np.minimum.reduceat(np.where((k == 0) & (threshold > 0), pos, size), starts)
    last = np.minimum(zero_at, starts + seg_len - 1)
    keep = (pos >= first[seg]) & (pos <= last[seg])
    new_len = last - first + 1
    new_starts = np.concatenate(([0], np.cumsum(new_len)[:-1]))
    return x[keep], k[keep], n[keep], new_starts


def t50_bootstrap_samples(
    x,
    k,
    n,
    starts,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    max_chunk_cells: int = 4_000_000,
):
    """T50 of every bootstrap resample, shape (G, n_boot), censored ones as -inf/+inf.

    ``x``, ``k``, ``n`` (C,) with n > 0 and groups laid out as for :func:`t50_point`. The result
    depends only on the input and ``seed``: chunking draws the same stream one large draw would.
    """
    x = np.asarray(x, dtype=np.float64)
    k = np.asarray(k, dtype=np.int64)
    n = np.asarray(n, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.int64)
    groups = starts.size
    if groups == 0 or n_boot <= 0:
        return np.empty((groups, 0))
    x, k, n, starts = _relevant_cells(x, k, n, starts, threshold)
    size = n.size
    ends = _segment_ends(starts, size)
    cdf, offset = _binomial_cdf_table(k, n)
    guide = _guide_table(cdf, offset, n)
    m = success_threshold_counts(n, threshold)
    # P(K <= m - 1): a uniform below it means the resampled rate is below the threshold.
    q = np.where(m > 0, cdf[offset + np.maximum(m - 1, 0)], 0.0)

    rng = np.random.default_rng(seed)
    chunk = int(max(1, min(n_boot, max_chunk_cells // max(size, 1))))
    out = np.empty((n_boot, groups), dtype=np.float64)
    for s in range(0, n_boot, chunk):
        b = min(chunk, n_boot - s)
        u = rng.random((b, size))  # in [0, 1): u < cdf(n) = 1 always holds
        below = u < q
        first = _first_below(below, starts)  # (b, G)
        left, right, interior = _classify(first, starts[None, :], ends[None, :])
        t = out[s : s + b]
        t[right] = np.inf
        t[left] = -np.inf
        flat = np.flatnonzero(interior)
        if flat.size:
            rows = flat // groups
            c1 = first.ravel()[flat]
            c0 = c1 - 1
            u_flat = u.ravel()
            u0 = u_flat[rows * size + c0]
            u1 = u_flat[rows * size + c1]
            k0 = _inverse_cdf(cdf, offset, guide, n, c0, u0)
            k1 = _inverse_cdf(cdf, offset, guide, n, c1, u1)
            t.ravel()[flat] = _interpolate(x[c0], x[c1], k0 / n[c0], k1 / n[c1], threshold)
    return np.ascontiguousarray(out.T)


def t50_bootstrap(
    x,
    k,
    n,
    starts,
    threshold: float = 0.5,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    max_chunk_cells: int = 4_000_000,
):
    """Percentile bootstrap interval of T50 per group (binomial resampling within each cell).

    Arguments as for :func:`t50_bootstrap_samples`. Returns ``(lo, hi)`` floats, ``-inf``/``+inf``
    meaning censored ``< x_min``/``>= x_max``; NaN for every group when ``n_boot`` is 0. The
    percentiles are order statistics (no interpolation, which is undefined next to an infinite
    value), rounded outward.
    """
    out = t50_bootstrap_samples(x, k, n, starts, threshold, n_boot, seed, max_chunk_cells)
    if out.shape[1] == 0:
        nan = np.full(out.shape[0], np.nan)
        return nan, nan.copy()
    alpha = 1.0 - confidence
    i_lo = int(np.floor(alpha / 2 * (n_boot - 1)))
    i_hi = int(np.ceil((1 - alpha / 2) * (n_boot - 1)))
    part = np.partition(out, [i_lo, i_hi], axis=1)
    return part[:, i_lo], part[:, i_hi]
