"""Success rate over two swept axes as a map, one marker per tested pair: the figure for searches
(Optuna over flossing strength and k, random search) whose trials share no axis to draw a curve on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from flosssweep.report import style
from flosssweep.report.common import ReportError
from flosssweep.report.curves import aggregate


def success_map(table: pa.Table, x: str, y: str, threshold: float) -> pa.Table:
    """k of n successes per tested (x, y) pair, pooled over every other axis, as `aggregate` counts
    them (rows with status error left out)."""
    for column in (x, y):
        if column not in table.column_names:
            raise ReportError(f"--map: unknown column {column!r} (columns: {', '.join(table.column_names)})")
    if x == y:
        raise ReportError(f"--map: expected two different columns, got {x!r} twice")
    cells = aggregate(table, x=x, by=[y], threshold=threshold, n_draws=0).curves
    return cells


def _log_scale(values: np.ndarray) -> bool:
    """A logarithmic axis for positive values spread over more than two decades (a loguniform axis)."""
    values = values[np.isfinite(values)]
    return values.size > 1 and values.min() > 0 and values.max() / values.min() > 100


def plot_success_map(cells: pa.Table, x: str, y: str, stem: Path, formats: Sequence[str]) -> list[Path]:
    """Markers at the tested (x, y) pairs coloured by success rate, each labelled k/n."""
    xs = np.asarray(cells[x].to_numpy(zero_copy_only=False), dtype=float)
    ys = np.asarray(cells[y].to_numpy(zero_copy_only=False), dtype=float)
    k, n = cells["k"].to_numpy(), cells["n"].to_numpy()
    with style.paper_style() as plt:
        fig, ax = plt.subplots(figsize=(style.WIDTHS["single"], 2.6), layout="constrained")
        dots = ax.scatter(xs, ys, c=k / n, cmap="viridis", vmin=0.0, vmax=1.0, s=36, edgecolors="0.2", linewidths=0.5)
        for xi, yi, ki, ni in zip(xs, ys, k, n):
            ax.annotate(f"{ki}/{ni}", (xi, yi), xytext=(4, 3), textcoords="offset points", fontsize=6, color="0.25")
        if _log_scale(xs):
            ax.set_xscale("log")
        if _log_scale(ys):
            ax.set_yscale("log")
        ax.set_xlabel(style.label(x))
        ax.set_ylabel(style.label(y))
        fig.colorbar(dots, ax=ax, label="success rate")
        paths = style.save(fig, stem, formats)
        plt.close(fig)
    return paths


def map_caption(cells: pa.Table, x: str, y: str) -> str:
    return (
        f"Success rate of each tested pair of {style.label(x)} and {style.label(y)} (colour; label: "
        f"successes / realizations), pooled over every other axis; {cells.num_rows} pairs."
    )
