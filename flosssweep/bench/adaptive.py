"""The adaptive section: how many realizations adaptive delay placement needs for the T50 interval a fixed
grid reaches, on simulated success curves; and the fitted T50's error against the interpolated one.

    python -m flosssweep.bench --section adaptive            # 15 minutes on a busy core (docs/PERFORMANCE.md)
    python -m flosssweep.bench --section adaptive --quick    # seconds: checks that it runs

Each simulated experiment draws a true curve of one shape with T50 uniform in [25, 95] on delays 10..120
(step 2), then measures it two ways, each read through the same posterior (`flosssweep.threshold`):

* grid: 8 fixed delays spread over the range, one realization per delay at a time;
* adaptive: rounds of `ThresholdPosterior.place` (PER_ROUND delays, REALIZATIONS each per round).

Per shape, the median 95%-interval width over the experiments, as a function of the realizations spent,
gives the realizations each design needs for the width the grid reaches at REFERENCE_BUDGETS; their
ratio adaptive / grid is the figure issue 19 asks for (at most 0.5 as a median over shapes).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from flosssweep.report import stats
from flosssweep.threshold import Observation, ThresholdPosterior

LO, HI, STEP = 10.0, 120.0, 2.0
T50_RANGE = (25.0, 95.0)
CANDIDATES = np.arange(LO, HI + STEP / 2, STEP)
GRID = np.round(np.linspace(LO, HI, 8) / STEP) * STEP  # on the step, so the grid's x are candidates too
# Delays per adaptive round, realizations per delay and round: of 2 x 4, 4 x 2 and 8 x 1 on the same
# experiments, 4 x 2 and 8 x 1 needed the fewest realizations with the earlier quantile placement
# (docs/PERFORMANCE.md, "Adaptive placement").
PER_ROUND, REALIZATIONS = 4, 2
GRID_LAYERS = 32  # the grid runs up to 8 x 32 = 256 realizations
FIT_LAYERS = 8  # the fitted and interpolated T50 are compared on the 8 x 8 grid (the RMSE 3.30 to 2.42)
ROUNDS = 32  # adaptive: up to 32 x 4 x 2 = 256 realizations
REFERENCE_BUDGETS = (64, 128)  # grid realizations whose median width adaptive must reach
EXPERIMENTS = {"full": 100, "quick": 3}


@dataclass(frozen=True)
class Shape:
    """A family of true success curves, falling through 0.5 at t50; ``spread`` (x units) is drawn from
    ``spreads`` per experiment."""

    name: str
    rate: Callable[[np.ndarray, float, float], np.ndarray]
    spreads: tuple[float, float]


def logistic(floor: float = 0.0, lapse: float = 0.0) -> Callable[[np.ndarray, float, float], np.ndarray]:
    """A logistic from 1 - lapse down to floor, crossing 0.5 at t50."""

    def rate(x: np.ndarray, t50: float, spread: float) -> np.ndarray:
        fall = (0.5 - floor) / (1 - floor - lapse)
        core = t50 - spread * np.log(1 / fall - 1)
        return floor + (1 - floor - lapse) / (1 + np.exp((np.asarray(x) - core) / spread))

    return rate


def weibull(x: np.ndarray, t50: float, spread: float) -> np.ndarray:
    """A Weibull survival curve exp(-(x / a)^b): flat at short x, skewed; b from the spread so that a
    larger spread is a gentler fall, a fixed from P(t50) = 0.5."""
    b = 2.0 + 0.3 * spread
    a = t50 / np.log(2) ** (1 / b)
    return np.exp(-((np.maximum(np.asarray(x), 0.0) / a) ** b))


def asymmetric(x: np.ndarray, t50: float, spread: float) -> np.ndarray:
    """A cumulative normal whose tail before t50 is twice as wide as the one after it."""
    d = np.asarray(x) - t50
    return norm.sf(np.where(d < 0, d / (2 * spread), d / spread))


SHAPES = (
    Shape("lapse", logistic(floor=0.05, lapse=0.1), (3.0, 8.0)),
    Shape("shallow", logistic(), (10.0, 16.0)),
    Shape("steep", logistic(), (0.5, 2.0)),
    Shape("plateau", logistic(floor=0.2, lapse=0.1), (3.0, 8.0)),  # falls only to a chance-level plateau of 0.2
    Shape("weibull", weibull, (3.0, 8.0)),
    Shape("asymmetric", asymmetric, (3.0, 8.0)),
)


def width(post: ThresholdPosterior) -> float:
    _, low, high = post.interval()
    return high - low


def grid_run(rate, rng: np.random.Generator, prior: ThresholdPosterior) -> tuple[np.ndarray, np.ndarray]:
    """Widths after each layer of one realization per grid delay, and k per delay after FIT_LAYERS layers."""
    p = rate(GRID)
    post, widths, k = prior, [], np.zeros(GRID.size, dtype=np.int64)
    for layer in range(1, GRID_LAYERS + 1):
        hits = rng.random(GRID.size) < p
        k += hits
        post = post.updated(Observation(float(x), int(h), 1) for x, h in zip(GRID, hits))
        widths.append(width(post))
        if layer == FIT_LAYERS:
            k_fit = k.copy()
    return np.array(widths), k_fit


def adaptive_run(rate, rng: np.random.Generator, prior: ThresholdPosterior, stop: float) -> np.ndarray:
    """Widths after each round; once below ``stop`` (narrower than every width compared) the width is kept
    as it is, which leaves each median at or above the compared widths where it was."""
    post, widths = prior, []
    for _ in range(ROUNDS):
        if widths and widths[-1] < stop:
            widths.append(widths[-1])
            continue
        xs = post.place(CANDIDATES, PER_ROUND)
        ks = rng.binomial(REALIZATIONS, rate(np.asarray(xs)))
        post = post.updated(Observation(x, int(k), REALIZATIONS) for x, k in zip(xs, ks))
        widths.append(width(post))
    return np.array(widths)


def needed(spent: np.ndarray, median_width: np.ndarray, target: float) -> float:
    """Realizations at which the median width first reaches ``target``, interpolated linearly in log
    realizations between the budgets measured; inf when it never does."""
    below = np.flatnonzero(median_width <= target)
    if below.size == 0:
        return float("inf")
    i = below[0]
    if i == 0:
        return float(spent[0])
    w0, w1 = median_width[i - 1], median_width[i]
    frac = (w0 - target) / (w0 - w1) if w0 > w1 else 1.0
    return float(np.exp(np.log(spent[i - 1]) + frac * (np.log(spent[i]) - np.log(spent[i - 1]))))


def bench_shape(shape: Shape, experiments: int, seed: int) -> dict:
    """Both designs on ``experiments`` curves of ``shape``; the realizations each needs for the grid's
    median width at each reference budget, and the T50 errors on the 8 x FIT_LAYERS grid."""
    rng = np.random.default_rng(seed)
    prior = ThresholdPosterior.prior(LO, HI)
    curves = [(rng.uniform(*T50_RANGE), rng.uniform(*shape.spreads)) for _ in range(experiments)]
    grid_widths, adaptive_widths, fit_error, interpolated_error = [], [], [], []
    for t50, spread in curves:
        rate = lambda x, t50=t50, spread=spread: shape.rate(x, t50, spread)
        widths, k = grid_run(rate, rng, prior)
        grid_widths.append(widths)
        fitted = prior.updated(Observation(float(x), int(kk), FIT_LAYERS) for x, kk in zip(GRID, k))
        fit_error.append(fitted.interval()[0] - t50)
        # a censored interpolation counts at the tested end, where a reader would put it
        point, _ = stats.t50_point(GRID, k / FIT_LAYERS, np.array([0]))
        interpolated_error.append(float(np.clip(point[0], LO, HI)) - t50)
    grid_median = np.median(np.array(grid_widths), axis=0)
    grid_spent = GRID.size * np.arange(1, GRID_LAYERS + 1)
    targets = {budget: float(np.interp(budget, grid_spent, grid_median)) for budget in REFERENCE_BUDGETS}
    stop = 0.9 * min(targets.values())
    for t50, spread in curves:
        rate = lambda x, t50=t50, spread=spread: shape.rate(x, t50, spread)
        adaptive_widths.append(adaptive_run(rate, rng, prior, stop))
    adaptive_median = np.median(np.array(adaptive_widths), axis=0)
    adaptive_spent = PER_ROUND * REALIZATIONS * np.arange(1, ROUNDS + 1)
    compared = []
    for budget, target in targets.items():
        grid_n = needed(grid_spent, grid_median, target)
        adaptive_n = needed(adaptive_spent, adaptive_median, target)
        compared.append(
            {
                "grid_budget": budget,
                "width": target,
                "grid": grid_n,
                "adaptive": adaptive_n,
                "ratio": adaptive_n / grid_n,
            }
        )
    rmse = lambda e: float(np.sqrt(np.mean(np.square(e))))
    return {
        "shape": shape.name,
        "experiments": experiments,
        "compared": compared,
        "t50_rmse": {"fit": rmse(fit_error), "interpolated": rmse(interpolated_error)},
    }


def run(quick: bool) -> dict:
    experiments = EXPERIMENTS["quick" if quick else "full"]
    results: dict = {"section": "adaptive", "quick": quick, "shapes": []}
    for i, shape in enumerate(SHAPES):
        start = time.perf_counter()
        row = bench_shape(shape, experiments, seed=i)
        row["seconds"] = time.perf_counter() - start
        print(f"[bench] adaptive: {shape.name} in {row['seconds']:.0f} s", file=sys.stderr, flush=True)
        results["shapes"].append(row)
    for budget in REFERENCE_BUDGETS:
        ratios = [c["ratio"] for row in results["shapes"] for c in row["compared"] if c["grid_budget"] == budget]
        results[f"median_ratio_at_{budget}"] = statistics.median(ratios)
    return results


def markdown(results: dict, machine: dict) -> str:
    """adaptive.md: per shape, the realizations each design needs for the same median interval width."""
    lines = [
        f"# flosssweep adaptive section ({'quick' if results['quick'] else 'full'})",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; commit {machine['commit'] or '?'}; {machine['date']}. "
        f"Delays {LO:g}..{HI:g} step {STEP:g}, T50 uniform in [{T50_RANGE[0]:g}, {T50_RANGE[1]:g}]; grid: "
        f"{', '.join(f'{x:g}' for x in GRID)}; adaptive: {PER_ROUND} delays x {REALIZATIONS} realizations per round.",
        "",
        "| shape | experiments | median width | grid needs | adaptive needs | adaptive / grid |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in results["shapes"]:
        for c in row["compared"]:
            lines.append(
                f"| {row['shape']} | {row['experiments']} | {c['width']:.1f} | {c['grid']:.0f} | "
                f"{c['adaptive']:.0f} | {c['ratio']:.2f} |"
            )
    lines += ["", "| median over shapes | adaptive / grid |", "|---|---:|"]
    lines += [f"| at the grid's {b} realizations | {results[f'median_ratio_at_{b}']:.2f} |" for b in REFERENCE_BUDGETS]
    lines += [
        "",
        f"T50 error on the 8 x {FIT_LAYERS} grid (RMSE, x units; censored interpolations at the tested end):",
        "",
        "| shape | logistic fit (median) | linear interpolation |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {row['shape']} | {row['t50_rmse']['fit']:.2f} | {row['t50_rmse']['interpolated']:.2f} |"
        for row in results["shapes"]
    ]
    return "\n".join(lines) + "\n"
