"""The Lyapunov spectrum over training, per group: median and quartiles of lambda_i against the epoch.

Reads the diagnostics over training of child runs (`names.DIAGNOSTICS_ARTIFACT`, one long table per
trial: flosssweep.train.diagnostics), labels every trial by its records' grouping columns (joined on
config_key), and pools the members (and seeds) of each group. Three exponents are drawn: the first,
the middle and the last of the k kept, so a figure shows how the top of the spectrum, its bulk and
its tail move under each schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flosssweep.report import style
from flosssweep.report.common import group_labels

LYAPUNOV = "lyapunov"


def spectrum_evolution(diagnostics: pa.Table, records: pa.Table, by: Sequence[str]) -> pa.Table:
    """One row per (group, exponent index i, epoch): group label, i, k, epoch, q25, median, q75 of
    lambda_i over the group's members, for i = 1, the middle and the last index k, the groups in
    reading order (schedules from none up, numbers by value). Stages at one epoch (before training and
    after pre-flossing, both at epoch 0) keep the later one. Diagnostics of trials that `records` does
    not hold (still running, or left out by the caller) are left out."""
    spectra = diagnostics.filter(pc.equal(diagnostics["quantity"], LYAPUNOV))
    label_of, order_of = group_labels(records, by)
    rows = spectra.select(["config_key", "seed", "epoch", "stage", "member", "index", "value"]).to_pylist()
    latest: dict[tuple, dict[int, float]] = {}
    for r in rows:
        if r["config_key"] not in label_of:
            continue
        key = (label_of[r["config_key"]], r["config_key"], r["seed"], r["member"], r["index"])
        slot = latest.setdefault(key, {})
        if r["epoch"] not in slot or r["stage"] != "initial":  # "pre" after "initial" at epoch 0
            slot[r["epoch"]] = r["value"]
    by_group: dict[tuple, list[float]] = {}
    k_of: dict[str, int] = {}
    for (label, _, _, _, index), epochs in latest.items():
        k_of[label] = max(k_of.get(label, 0), index)
        for epoch, value in epochs.items():
            by_group.setdefault((label, index, epoch), []).append(value)
    out = []
    for label, index, epoch in sorted(by_group, key=lambda g: (order_of.get(g[0], ()), g[0], g[1], g[2])):
        k = k_of[label]
        if index not in {1, (k + 1) // 2, k}:
            continue
        q25, median, q75 = np.nanpercentile(by_group[label, index, epoch], [25, 50, 75])
        out.append({"group": label, "i": index, "k": k, "epoch": epoch, "q25": q25, "median": median, "q75": q75})
    return pa.Table.from_pylist(out)


# Which exponent of the k kept a line is: the same colour and dash in every panel, whatever k is.
ROLES = (r"$\lambda_1$, the largest", r"$\lambda_{k/2}$, the middle", r"$\lambda_k$, the smallest kept")
MAX_COLUMNS = 4  # panels per row that leave room for each panel's epoch ticks in a double column
WRAP_COLUMNS = 3  # panels per row where the groups have no row structure of their own


def panel_grid(groups: Sequence[str]) -> list[list[str | None]]:
    """Rows of panels: one row per level of the first grouping columns (the group label without its
    last 'column=value'), each row's groups in order, None for an empty place; groups of one grouping
    column, or rows wider than MAX_COLUMNS, are wrapped WRAP_COLUMNS to a row instead."""
    rows: dict[str, list[str]] = {}
    for group in groups:
        rows.setdefault(group.rpartition(", ")[0], []).append(group)
    width = max(len(row) for row in rows.values())
    if len(rows) == 1 or width > MAX_COLUMNS:
        width = min(WRAP_COLUMNS, len(groups))
        flat = list(groups)
        rows = {str(n): flat[n : n + width] for n in range(0, len(flat), width)}
    return [row + [None] * (width - len(row)) for row in rows.values()]


def plot_spectrum_evolution(evolution: pa.Table, stem: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """One panel per group, laid out by panel_grid: lambda_i (median line, quartile band) against the
    epoch for the first, middle and last i, one legend for all below. Returns the files written."""
    from matplotlib.ticker import MaxNLocator

    rows = evolution.to_pylist()
    if not rows:
        return []
    grid = panel_grid(list(dict.fromkeys(r["group"] for r in rows)))
    columns = len(grid[0])
    inches = style.width("auto", columns)
    with style.paper_style() as plt:
        fig, axes = plt.subplots(
            len(grid),
            columns,
            figsize=(inches, 0.4 + 1.8 * len(grid)),
            sharex=True,
            sharey=True,
            squeeze=False,
        )
        handles = {}
        titles = _titles([group for row in grid for group in row if group is not None])
        places = [(n, c, group) for n, row in enumerate(grid) for c, group in enumerate(row)]
        for line_number, column, group in places:
            ax = axes[line_number][column]
            if group is None:
                ax.set_axis_off()
                continue
            mine = [r for r in rows if r["group"] == group]
            for index in sorted({r["i"] for r in mine}):
                line = sorted((r for r in mine if r["i"] == index), key=lambda r: r["epoch"])
                role = 0 if index == 1 else 2 if index == line[0]["k"] else 1
                look = style.series_style(role)
                epochs = [r["epoch"] for r in line]
                ax.fill_between(
                    epochs, [r["q25"] for r in line], [r["q75"] for r in line], color=look["color"], alpha=0.25, lw=0
                )
                (handles[ROLES[role]],) = ax.plot(
                    epochs, [r["median"] for r in line], color=look["color"], ls=look["linestyle"], lw=1.4
                )
            ax.axhline(0.0, color="0.5", lw=0.8, ls=":")
            ax.set_title(titles[group], fontsize="medium")
            ax.xaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
            if column == 0:
                ax.set_ylabel(r"$\lambda_i$ per step")
            if line_number + 1 == len(grid) or grid[line_number + 1][column] is None:  # nothing below it
                ax.set_xlabel("epoch")
                ax.xaxis.set_tick_params(labelbottom=True)
        fig.tight_layout()  # the panels' labels inside the figure, so the legend hangs below all of them
        style.legend_below(fig, {name: handles[name] for name in ROLES if name in handles}, None, inches)
        written = style.save(fig, stem, formats)
        plt.close(fig)
    return written


def spectrum_caption(evolution: pa.Table, which: str) -> str:
    """`which`: the realizations drawn, e.g. 'at delay = 30' or 'pooled over every delay tested'."""
    groups = list(dict.fromkeys(evolution["group"].to_pylist()))
    return (
        "Lyapunov spectrum over training: median (line) and quartiles (band) over the realizations of each "
        f"group ({'; '.join(groups)}), {which}, of the largest, the middle and the smallest of the k exponents "
        "kept at every report (one line where k = 1); epoch 0 is after pre-flossing."
    )


TITLE_CHARACTERS = 30  # wider panel titles break at their commas, all of a figure's alike


def _titles(groups: Sequence[str]) -> dict[str, str]:
    """Each group ('floss_mode=pre, floss_k=16') as a panel title: the columns' short names ('flossing
    schedule = pre, k = 16'), one per line in every title when any would not fit over its panel."""
    names = {}
    for group in groups:
        parts = [part.partition("=") for part in group.split(", ")]
        names[group] = [f"{style.symbol(c)} = {v}" if sep else c for c, sep, v in parts]
    wide = any(len(", ".join(n)) > TITLE_CHARACTERS for n in names.values())
    return {group: ("\n" if wide else ", ").join(n) for group, n in names.items()}
