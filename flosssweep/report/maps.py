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


def plot_success_map(cells: pa.Table, x: str, y: str, stem: Path, formats: Sequence[str]) -> list[Path]:
    """Markers at the tested (x, y) pairs coloured by success rate, each labelled k/n where the label
    has room: beside its marker on the first side that overlaps no other label or marker."""
    xs = np.asarray(cells[x].to_numpy(zero_copy_only=False), dtype=float)
    ys = np.asarray(cells[y].to_numpy(zero_copy_only=False), dtype=float)
    k, n = cells["k"].to_numpy(), cells["n"].to_numpy()
    with style.paper_style() as plt:
        fig, ax = plt.subplots(figsize=(style.WIDTHS["single"], 2.6), layout="constrained")
        dots = ax.scatter(xs, ys, c=k / n, cmap="viridis", vmin=0.0, vmax=1.0, s=36, edgecolors="0.2", linewidths=0.5)
        if style.log_scale(xs):
            style.set_log(ax, "x")
        if style.log_scale(ys):
            style.set_log(ax, "y")
        ax.set_xlabel(style.label(x, True))
        ax.set_ylabel(style.label(y, True))
        fig.colorbar(dots, ax=ax, label="success rate")
        _place_labels(fig, ax, xs, ys, [f"{ki}/{ni}" for ki, ni in zip(k, n)])
        paths = style.save(fig, stem, formats)
        plt.close(fig)
    return paths


# Where a label may go, in points from its marker: right, left, above, below, and the diagonals.
_SIDES = ((5, -3, "left"), (-5, -3, "right"), (-6, 5, "left"), (-6, -11, "left"), (5, 4, "left"), (5, -10, "left"))


def _place_labels(fig, ax, xs, ys, texts: list[str]) -> None:
    """Greedy placement in display space, after the layout is final: each label takes the first side
    whose box overlaps no placed label and no marker; one with no free side is left out (the marker's
    colour still gives its rate)."""
    fig.canvas.draw()  # the constrained layout fixes the axes, so display coordinates hold
    renderer = fig.canvas.get_renderer()
    centres = ax.transData.transform(np.column_stack([xs, ys]))
    radius = 3.5 * fig.dpi / 72  # the marker (s=36: 6 pt across), in pixels
    markers = [(cx - radius, cy - radius, cx + radius, cy + radius) for cx, cy in centres]
    placed: list[tuple] = []
    for (xi, yi), text in zip(zip(xs, ys), texts):
        for dx, dy, align in _SIDES:
            label = ax.annotate(
                text, (xi, yi), xytext=(dx, dy), textcoords="offset points", fontsize=6, color="0.25", ha=align
            )
            box = label.get_window_extent(renderer)
            extent = (box.x0, box.y0, box.x1, box.y1)
            clear = not any(_overlap(extent, other) for other in placed + markers)
            if clear and ax.bbox.contains(box.x0, box.y0) and ax.bbox.contains(box.x1, box.y1):
                placed.append(extent)
                break
            label.remove()


def _overlap(a: tuple, b: tuple) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def map_caption(cells: pa.Table, x: str, y: str) -> str:
    return (
        f"Success rate of each tested pair of {style.label(x)} and {style.label(y)} (colour; label: "
        f"successes / realizations, left out where it would cover another), pooled over every other axis; "
        f"{cells.num_rows} pairs."
    )
