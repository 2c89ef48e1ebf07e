"""A continuous outcome (D_stsp, ...) against x: median, quartiles, and success rates at several thresholds.

A success rate at one threshold turns a smooth curve into a cliff whose place depends on the
threshold; the quartiles show the curve itself, and rates at a few thresholds show how much the
cliff moves. Rows are grouped exactly as for the success curves (`curves.default_by`), per sweep;
realizations with status `error` are left out, `diverged` ones count as failures at every threshold
(and as +inf in the quantiles, so a diverged majority shows as an infinite median).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from flosssweep.report import stats, style
from flosssweep.report.common import DEFAULT_X, ReportError
from flosssweep.report.curves import default_by
from flosssweep.report.text import estimate_text


def outcome_summary(
    table: pa.Table, column: str, x: str = DEFAULT_X, by: Sequence[str] | None = None, thresholds: Sequence[float] = ()
) -> pa.Table:
    """One row per (sweep, group, x): n, the median and quartiles of `column`, and for each threshold t
    the count `below_<t>` of realizations with `column < t`, with its Wilson 95% interval."""
    for name in [column, x, *(by or [])]:
        if name not in table.column_names:
            raise ReportError(f"--outcome: the records have no column {name!r}")
    if not pa.types.is_floating(table[column].type) and not pa.types.is_integer(table[column].type):
        raise ReportError(f"--outcome: column {column!r} is not numeric ({table[column].type})")
    by = list(default_by(table, x) if by is None else by)
    rows = table.to_pylist()
    status = [r.get("status", "ok") for r in rows]
    keys = [(r.get("sweep"), *(r[c] for c in by), r[x]) for r in rows]
    cells: dict[tuple, list[float]] = {}
    for key, r, s in zip(keys, rows, status):
        if s == "error":
            continue
        value = r[column]
        value = float("inf") if s == "diverged" or value is None or not np.isfinite(value) else float(value)
        cells.setdefault(key, []).append(value)

    def order(key):
        return tuple((0, v) if isinstance(v, (int, float)) else (1, str(v)) for v in key)

    out: dict[str, list] = {"sweep": [], **{c: [] for c in by}, x: [], "n": [], "median": [], "q25": [], "q75": []}
    for t in thresholds:
        out.update({f"below_{t:g}": [], f"below_{t:g}_lo": [], f"below_{t:g}_hi": []})
    for key in sorted(cells, key=order):
        values = np.array(cells[key])
        # numpy gives NaN when it interpolates toward +inf: interpolate toward a huge stand-in instead, and
        # call inf whatever lands above the largest finite value (only an infinite neighbour puts it there)
        finite = values[np.isfinite(values)]
        top = finite.max() if finite.size else -np.inf
        quartiles = (
            np.quantile(np.minimum(values, np.finfo(np.float64).max / 4), [0.25, 0.5, 0.75])
            if values.size
            else np.full(3, np.nan)
        )
        q25, median, q75 = np.where(quartiles > top, np.inf, quartiles)
        out["sweep"].append(key[0])
        for c, v in zip(by, key[1:-1]):
            out[c].append(v)
        out[x].append(key[-1])
        out["n"].append(len(values))
        out["median"].append(float(median))
        out["q25"].append(float(q25))
        out["q75"].append(float(q75))
        for t in thresholds:
            k = int((values < t).sum())
            lo, hi = stats.wilson_interval(k, len(values))
            out[f"below_{t:g}"].append(k)
            out[f"below_{t:g}_lo"].append(float(lo))
            out[f"below_{t:g}_hi"].append(float(hi))
    return pa.table(out)


def format_outcomes(summary: pa.Table, column: str, x: str, thresholds: Sequence[float]) -> str:
    """The summary as an aligned text table: group, x, n, median [quartiles], k/n below each threshold."""
    skip = {"sweep", x, "n", "median", "q25", "q75"} | {c for c in summary.column_names if c.startswith("below_")}
    by = [c for c in summary.column_names if c not in skip]
    name = style.label(column)
    header = [*(style.label(c) for c in by), style.symbol(x), "n", f"{name} median [q25, q75]"]
    header += [f"{name} < {t:g}" for t in thresholds]
    body = []
    for r in summary.to_pylist():
        body.append(
            [
                *(str(r[c]) for c in by),
                str(r[x]),
                str(r["n"]),
                f"{estimate_text(r['median'])} [{estimate_text(r['q25'])}, {estimate_text(r['q75'])}]",
                *(f"{r[f'below_{t:g}']}/{r['n']}" for t in thresholds),
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in body]
    return "\n".join(lines)


def plot_outcome(
    summary: pa.Table,
    column: str,
    x: str,
    path,
    marker: list[tuple[float, str]] | None = None,
    looks: dict | None = None,
    thresholds: Sequence[float] = (),
) -> None:
    """Median and quartiles of `column` against x, one series per group, in the look `looks` gives
    it (keyed as `figures.series_looks` keys them, so a group looks as in the report's other
    figures). A numeric x: a line and a band, log x when x spans decades, log y when the medians span
    more than a decade. A categorical x (arch: lstm, gru): points with quartile bars, never joined.
    A fraction (final accuracy) on the full 0-1 axis with the chance level and `thresholds` marked.
    One journal column wide, the legend below the axes."""
    skip = {"sweep", x, "n", "median", "q25", "q75"} | {c for c in summary.column_names if c.startswith("below_")}
    by = [c for c in summary.column_names if c not in skip]
    groups: dict[tuple, list[dict]] = {}
    for r in summary.to_pylist():
        groups.setdefault((r["sweep"], *(r[c] for c in by)), []).append(r)
    levels = list(dict.fromkeys(summary[x].to_pylist()))
    categorical = any(isinstance(v, str) for v in levels)
    chance = style.FRACTIONS.get(column)
    key_axes = [c for c, _ in next(iter(looks))] if looks else by
    with style.paper_style() as plt:
        fig, ax = plt.subplots(figsize=(style.WIDTHS["single"], 2.4), layout="constrained")
        bands, handles = [], {}
        for i, (key, rows) in enumerate(groups.items()):
            row = dict(zip(by, key[1:]))
            look = (looks or {}).get(tuple((c, row.get(c)) for c in key_axes)) or style.series_style(i)
            med, lo, hi = (np.array([r[q] for r in rows], dtype=float) for q in ("median", "q25", "q75"))
            if categorical:
                shift = (i / (len(groups) - 1) - 0.5) * min(0.5, 0.15 * (len(groups) - 1)) if len(groups) > 1 else 0.0
                xs = np.array([levels.index(r[x]) for r in rows], dtype=float) + shift
                top = np.where(np.isfinite(hi), hi, med)
                handle = ax.errorbar(
                    xs, med, yerr=[med - lo, top - med], fmt=look["marker"], color=look["color"], capsize=2.5
                )
            else:
                xs = np.array([r[x] for r in rows], dtype=float)
                (handle,) = ax.plot(xs, med, **look)
                bands.append((xs, lo, hi, look["color"]))
            if len(groups) > 1:
                handles[", ".join(str(v) for v in key[1:])] = handle
        medians = summary["median"].to_numpy()
        medians = medians[np.isfinite(medians) & (medians > 0)]
        if chance is None and medians.size and medians.max() / medians.min() > 10:
            style.set_log(ax, "y", medians)
        if not categorical and style.log_scale(levels):
            style.set_log(ax, "x", levels)
        # An infinite upper quartile (over a quarter never got below the threshold, or never
        # succeeded) leaves the band open to the top of the axes rather than closing it at some value.
        for xs, lo, hi, _ in bands:
            ends = np.column_stack([np.concatenate([xs, xs]), np.concatenate([lo, hi])])
            ax.update_datalim(ends[np.isfinite(ends).all(axis=1)])
        ax.autoscale_view()
        bottom, top = (-0.03, 1.03) if chance is not None else ax.get_ylim()
        for xs, lo, hi, color in bands:
            ax.fill_between(xs, lo, np.where(np.isfinite(hi), hi, top), alpha=0.18, color=color, linewidth=0)
        ax.set_ylim(bottom, top)
        if chance is not None:
            handles[f"chance ({chance:g})"] = ax.axhline(chance, color="0.35", linestyle="--", linewidth=0.9, zorder=0)
            for j, t in enumerate(thresholds):
                line = ax.axhline(t, color="0.35", linestyle=":", linewidth=0.9, zorder=0)
                if j == 0:
                    handles["thresholds" if len(thresholds) > 1 else "threshold"] = line
        for j, (value, text) in enumerate(marker or []):  # drawn as in the success-curve figure
            handles[text] = ax.axvline(value, color="0.15", linestyle=("--", "-.", ":")[j % 3], linewidth=1.0)
        if categorical:
            ax.set_xticks(range(len(levels)), [str(v) for v in levels])
            ax.set_xlim(-0.6, len(levels) - 0.4)
        ax.set_xlabel(style.label(x, True))
        ax.set_ylabel(f"{style.label(column, True)}\n(median, quartiles)")
        ax.grid(True, alpha=0.3)
        title = ", ".join(style.label(c, True) for c in by) if len(groups) > 1 else None
        style.legend_below(fig, handles, title, style.WIDTHS["single"])
        style.save(fig, path)
        plt.close(fig)
