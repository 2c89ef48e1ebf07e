"""The fitted T50 of `--fit logistic`: each group's k/n per x fed to the threshold posterior of
`flosssweep.threshold` (a logistic with lapse and guess rates), its median and interval beside the
interpolated T50, and the posterior mean curve the success figure draws over the data.

It needs only k/n per x, so grid and adaptive sweeps are fitted alike. The prior's T50 range reaches
half the tested range past either end: a curve that never crosses the threshold where it was tested
is then not forced to cross at the last x (the drawn curve would dive to the threshold there), and a
fitted value outside [x_min, x_max] is reported censored at that end ('<' x_min or '>=' x_max), as
the interpolated T50 is when the data never cross the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flosssweep.report.common import ReportError
from flosssweep.threshold import Observation, ThresholdPosterior

FITS = ("logistic",)
CURVE_POINTS = 41  # x values per drawn curve: smooth at a figure's width
PRIOR_MARGIN = 0.5  # of the tested range, added to the prior's T50 range on each side


@dataclass(frozen=True)
class Fitted:
    """Per group (arrays of G): T50 median, low and high, -inf/+inf where censored at x_min/x_max
    (NaN where the group cannot be fitted: fewer than two distinct x); and per group the drawn curve as
    (x values, posterior mean success rate), empty where not fitted."""

    t50: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    curves: list[tuple[np.ndarray, np.ndarray]]


def check_fit(fit: str | None, threshold: float) -> None:
    """ReportError unless ``fit`` is a known model that can be read at ``threshold``."""
    if fit is None:
        return
    if fit not in FITS:
        raise ReportError(f"--fit: expected one of {', '.join(FITS)}, got {fit!r}")
    if not threshold < 1.0:
        raise ReportError(f"--fit {fit} needs a --threshold below 1 (no fitted curve reaches 1), got {threshold}")


def fit_groups(x, k, n, starts, threshold: float, confidence: float, with_curves: bool = True) -> Fitted:
    """Fit every group; ``x``, ``k``, ``n`` (C,) and ``starts`` (G,) laid out as for
    `stats.t50_point` (cells with n > 0 and finite x only). ``with_curves`` False leaves the curves empty
    (they cost most of the time; simulations that only need T50 skip them)."""
    x, k, n = (np.asarray(a) for a in (x, k, n))
    starts = np.asarray(starts, dtype=np.int64)
    ends = np.append(starts[1:], x.size)
    t50, lo, hi = (np.full(starts.size, np.nan) for _ in range(3))
    curves: list[tuple[np.ndarray, np.ndarray]] = []
    for g, (a, b) in enumerate(zip(starts, ends)):
        x_min, x_max = float(x[a:b].min()), float(x[a:b].max())
        if not x_min < x_max:
            curves.append((np.empty(0), np.empty(0)))
            continue
        cells = [Observation(float(xi), int(ki), int(ni)) for xi, ki, ni in zip(x[a:b], k[a:b], n[a:b])]
        margin = PRIOR_MARGIN * (x_max - x_min)
        post = ThresholdPosterior.prior(x_min - margin, x_max + margin, threshold).updated(cells)
        values = np.array(post.interval(confidence))
        values[values < x_min] = -np.inf
        values[values > x_max] = np.inf
        t50[g], lo[g], hi[g] = values
        grid = np.linspace(x_min, x_max, CURVE_POINTS if with_curves else 0)
        curves.append((grid, post.curve(grid)))
    return Fitted(t50, lo, hi, curves)
