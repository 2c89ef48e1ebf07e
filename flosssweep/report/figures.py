"""The report's figures: success rate against x with Wilson bands, and T50 per group; their captions."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flosssweep.report import style
from flosssweep.report.common import FIGURE_GROUP_LIMIT, ReportError, level_key
from flosssweep.report.curves import Aggregate, is_numeric, pool, split_by_sweep
from flosssweep.report.text import cell_text, format_report, num_text

# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _normalize_markers(marker, marker_label, x):
    if marker is None:
        return []
    if isinstance(marker, (int, float, np.integer, np.floating)):
        return [(float(marker), marker_label or f"{x} = {num_text(marker)}")]
    out = []
    for item in marker:
        if isinstance(item, (tuple, list)):
            out.append((float(item[0]), str(item[1])))
        else:
            out.append((float(item), f"{x} = {num_text(item)}"))
    return out


def _sorted_levels(axis: str | None, values) -> list:
    """Distinct values of a grouping axis in reading order (known orders first, else sorted)."""
    return sorted(dict.fromkeys(values), key=lambda v: level_key(axis, v))


def _facet_axis(groups: list[dict], by: Sequence[str], limit: int = 8) -> str | None:
    """An axis to split a crowded curve figure into panels: at most 6 panels, as few curves per
    panel as possible. ``None`` when the figure has at most ``limit`` curves."""
    if len(groups) <= limit or len(by) < 2:
        return None
    best, best_key = None, None
    for c in by:
        counts: dict = {}
        for g in groups:
            counts[g[c]] = counts.get(g[c], 0) + 1
        if not 2 <= len(counts) <= 6:
            continue
        key = (max(counts.values()), len(counts))
        if best_key is None or key < best_key:
            best, best_key = c, key
    return best


def series_looks(aggregated: Aggregate) -> tuple[dict, dict]:
    """How every figure of a report tells its groups apart: per sweep, the axis its curves are split
    into panels by (None: one panel) and the axes that name a series (the others); and per series,
    keyed by its ((axis, value), ...) pairs, its look, assigned in the report's group order. Both
    figures, and the outcome figure, take a group's look from here, so it is the same in all."""
    rows = aggregated.horizon.to_pylist()
    by = aggregated.settings.by
    facets = {sweep: _facet_axis(groups, by) for sweep, groups in split_by_sweep(rows, aggregated.settings).items()}
    keys = [series_key(r, [c for c in by if c != facets[_sweep_of(r, aggregated)]]) for r in rows]
    return facets, style.group_looks(keys)


def series_key(row: dict, axes: Sequence[str]) -> tuple:
    return tuple((c, row[c]) for c in axes)


def _sweep_of(row: dict, aggregated: Aggregate):
    return row["sweep"] if "sweep" in aggregated.settings.keys else None


def _series_name(key: tuple) -> str:
    return ", ".join(cell_text(v) for _, v in key)


def plot_success_curves(
    aggregated: Aggregate,
    path: str | os.PathLike,
    *,
    marker=None,
    marker_label: str | None = None,
    size: str = "auto",
    formats: Sequence[str] | None = None,
) -> Path:
    """Success rate against ``x``, one line per group with its Wilson 95% band; no title (the
    caption, :func:`success_caption`, goes with the text).

    One panel per sweep; a sweep with more than 8 groups is split into panels by one grouping
    axis (at most 6 panels), with the look of a line fixed by the remaining axes (see
    :func:`series_looks`). A categorical x (network: lstm, gru) is drawn as points with their
    Wilson intervals and no line between categories; a numeric x spanning decades on a log axis.
    ``marker``: optional vertical line(s), e.g. a predicted value: a number (labelled
    ``marker_label``), or a sequence of numbers or ``(value, label)`` pairs. ``size``: single
    (3.4 in) or double (7 in) column wide, auto = single for one panel. Saved to ``path`` (its
    suffix is the format), or once per entry of ``formats`` next to it; returns the first file.
    """
    curves, settings = aggregated.curves, aggregated.settings
    x, threshold, by = settings.x, settings.threshold, settings.by
    categorical = settings.x_categorical or not is_numeric(curves.schema.field(x).type)
    markers = _normalize_markers(marker, marker_label, x) if not categorical else []
    facets, looks = series_looks(aggregated)

    points: dict = {}
    for r in curves.to_pylist():
        points.setdefault(r["group_id"], []).append(r)
    sweeps = split_by_sweep(points.values(), settings, row_of=lambda pts: pts[0])
    fitted = _fitted_curves(aggregated)

    panels = []  # (sweep, facet title, groups)
    for sweep, groups in sweeps.items():
        facet = facets.get(sweep)
        if facet is None:
            panels.append((sweep, None, groups))
            continue
        for level in _sorted_levels(facet, [g[0][facet] for g in groups]):
            panels.append(
                (sweep, f"{style.label(facet, True)} = {cell_text(level)}", [g for g in groups if g[0][facet] == level])
            )
    tested_all = [p[x] for g in points.values() for p in g if p["n"] > 0 and p[x] is not None]
    log_x = not categorical and style.log_scale(tested_all)

    inches = style.width(size, len(panels))
    ncols = 1 if inches < style.WIDTHS["double"] else min(3, len(panels))
    nrows = -(-len(panels) // ncols)
    panel_h = 0.68 * inches / ncols
    with style.paper_style() as plt:
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(inches, panel_h * nrows), squeeze=False, sharey=True, layout="constrained"
        )
        legend: dict = {}
        for i, ax in enumerate(axes.flat):
            if i >= len(panels):
                ax.set_visible(False)
                continue
            sweep, facet_title, groups = panels[i]
            rest = [c for c in by if c != facets.get(sweep)]
            levels = list(dict.fromkeys(p[x] for g in groups for p in g if p[x] is not None)) if categorical else []
            tested = set()
            for si, g in enumerate(groups):
                pts = [p for p in g if p["n"] > 0 and p[x] is not None]
                if not pts:
                    continue
                key = series_key(g[0], rest)
                look = looks[key]
                rate = np.array([p["rate"] for p in pts])
                lo, hi = np.array([p["wilson_lo"] for p in pts]), np.array([p["wilson_hi"] for p in pts])
                if categorical:
                    # points with their intervals, side by side within a category, never joined
                    spread = min(0.5, 0.15 * (len(groups) - 1))
                    shift = (si / (len(groups) - 1) - 0.5) * spread if len(groups) > 1 else 0.0
                    xs = np.array([levels.index(p[x]) for p in pts], dtype=float) + shift
                    handle = ax.errorbar(
                        xs,
                        rate,
                        yerr=[rate - lo, hi - rate],
                        fmt=look["marker"],
                        color=look["color"],
                        capsize=2.5,
                        linewidth=1.0,
                    )
                else:
                    xs = np.array([p[x] for p in pts], dtype=float)
                    tested.update(xs.tolist())
                    ax.fill_between(xs, lo, hi, color=look["color"], alpha=0.13, linewidth=0)
                    curve = fitted.get(g[0]["group_id"])
                    if curve is None:
                        (handle,) = ax.plot(xs, rate, **look)
                    else:  # the data as points, the fitted curve as the group's line through them
                        ax.plot(xs, rate, **(look | {"linestyle": "none"}))
                        (handle,) = ax.plot(*curve, **(look | {"marker": None}))
                if rest:
                    legend.setdefault(_series_name(key), handle)
            ax.axhline(threshold, color="0.35", linestyle=":", linewidth=0.9, zorder=0)
            for j, (value, text) in enumerate(markers):
                line = ax.axvline(value, color="0.15", linestyle=("--", "-.", ":")[j % 3], linewidth=1.0)
                legend.setdefault(text, line)
            if categorical:
                ax.set_xticks(range(len(levels)))
                ax.set_xticklabels([cell_text(v) for v in levels])
                ax.set_xlim(-0.6, len(levels) - 0.4)
            else:
                _tested_ticks(ax, sorted(tested), log_x)
            ax.set_ylim(-0.03, 1.03)
            ax.set_xlabel(style.label(x, True))
            if i % ncols == 0:
                ax.set_ylabel("success rate")
            ax.grid(True, alpha=0.3)
            parts = [f"sweep {sweep}" if sweep is not None and len(sweeps) > 1 else None, facet_title]
            if any(parts):
                ax.set_title(" | ".join(p for p in parts if p))
        rest = [c for c in by if c != facets.get(next(iter(sweeps)))] if sweeps else []
        style.legend_below(fig, legend, ", ".join(style.label(c, True) for c in rest) or None, inches)
        written = style.save(fig, path, formats)
        plt.close(fig)
    return written[0]


def _tested_ticks(ax, tested: list[float], log_x: bool) -> None:
    """A log axis where x spans decades; a tick at every tested x when their labels have room."""
    if log_x:
        style.set_log(ax, "x", tested)
    if 0 < len(tested) <= 12 and _spaced_for_labels(np.log(tested) if log_x else np.array(tested)):
        ax.set_xticks(tested)
        ax.set_xticklabels([num_text(v) for v in tested])
        ax.minorticks_off()


def _fitted_curves(aggregated: Aggregate) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per group id: the fitted curve's (x, rate), when the report fits one."""
    if aggregated.fitted is None:
        return {}
    x = aggregated.settings.x
    gid, xs, rate = (aggregated.fitted[c].to_numpy() for c in ("group_id", x, "rate"))
    return {int(g): (xs[gid == g], rate[gid == g]) for g in np.unique(gid)}


def success_caption(aggregated: Aggregate, *, note: str | None = None, marker=None) -> str:
    """What :func:`plot_success_curves` draws, in words (the figure carries no title)."""
    settings = aggregated.settings
    x, threshold, by = settings.x, settings.threshold, settings.by
    sweeps = list(split_by_sweep(aggregated.curves.to_pylist(), settings))
    lines = f"one line per {', '.join(style.label(c) for c in by)}" if by else "all realizations pooled"
    text = (
        f"Success rate (fraction of realizations that succeeded) against {style.label(x)}; {lines}. "
        f"Bands: Wilson 95% intervals. Dotted line: the threshold {threshold:g} at which T50 is read."
    )
    if aggregated.fitted is not None:
        text += (
            f" Markers: the measured rates; lines: the fitted {settings.fit} curve with lapse and guess rates "
            "(posterior mean)."
        )
    if marker:
        text += " Vertical lines: as labelled."
    if len(sweeps) == 1 and sweeps[0] is not None:
        text += f" Sweep {sweeps[0]}."
    return text + (f" Figure {note}." if note else "")


def _axis_shares(horizon: pa.Table, by: Sequence[str]) -> dict[str, tuple[float, int]]:
    """Per grouping axis: (share of the variance of T50 its levels explain, number of levels).

    Censored values count at their bound; groups without a T50 are left out. The share is 0
    when T50 does not vary (or is never defined)."""
    rows = horizon.to_pylist()
    usable = [r for r in rows if r["t50_relation"] != "n/a" and r["t50"] is not None]
    y = np.array([r["t50"] for r in usable], dtype=float)
    out = {}
    for c in by:
        n_levels = len(set(r[c] for r in rows))
        share = 0.0
        if usable and n_levels > 1:
            levels = [r[c] for r in usable]
            uniq = {v: i for i, v in enumerate(dict.fromkeys(levels))}
            idx = np.array([uniq[v] for v in levels])
            total = float(((y - y.mean()) ** 2).sum())
            counts = np.bincount(idx)
            means = np.bincount(idx, weights=y) / counts
            between = float((counts * (means - y.mean()) ** 2).sum())
            share = between / total if total > 0 else 0.0
        out[c] = (round(share, 12), n_levels)
    return out


def most_important_axis(aggregated: Aggregate, by: Sequence[str] | None = None) -> str | None:
    """The grouping axis whose levels explain the largest share of the variance of T50.

    Censored values count at their bound. Ties (and the case of no variance at all) go to the axis
    with more levels, then to the earlier one in ``by``. ``None`` when there is no varied axis.
    """
    by = list(by if by is not None else aggregated.settings.by)
    shares = _axis_shares(aggregated.horizon, by)
    ranked = [(shares[c][0], shares[c][1], -i, c) for i, c in enumerate(by) if shares[c][1] > 1]
    return max(ranked)[3] if ranked else None


def figure_axes(aggregated: Aggregate, limit: int = FIGURE_GROUP_LIMIT) -> list[str]:
    """The grouping axes a figure can show readably: all of them when no sweep has more than
    ``limit`` groups; otherwise the most important axes (see :func:`most_important_axis`; on a
    tie the one with fewer levels) whose level combinations stay within ``limit`` per sweep."""
    horizon, by = aggregated.horizon, list(aggregated.settings.by)
    has_sweep = "sweep" in aggregated.settings.keys
    rows = horizon.to_pylist()

    def most_groups(axes):
        combos: dict = {}
        for r in rows:
            combos.setdefault(r["sweep"] if has_sweep else None, set()).add(tuple(r[c] for c in axes))
        return max((len(v) for v in combos.values()), default=0)

    if most_groups(by) <= limit:
        return by
    shares = _axis_shares(horizon, by)
    chosen: list[str] = []
    for c in sorted(by, key=lambda c: (-shares[c][0], shares[c][1], by.index(c))):
        if shares[c][1] > 1 and most_groups(chosen + [c]) <= limit:
            chosen.append(c)
    return [c for c in by if c in chosen]


def plot_horizon(
    aggregated: Aggregate,
    path: str | os.PathLike,
    *,
    axis: str | None = None,
    size: str = "auto",
    formats: Sequence[str] | None = None,
) -> Path | None:
    """T50 with its posterior interval against one grouping axis (default:
    :func:`most_important_axis`); one series per combination of the other axes, one panel per
    sweep; no title (see :func:`horizon_caption`). A censored T50 is drawn hollow at its bound with
    an arrow pointing past the tested range; an interval end beyond that range runs on past the
    dashed lines (the smallest and largest x tested) to a small triangle; '*' marks a group whose
    success rate recovers after the first crossing. Returns ``None`` and draws nothing when no group
    has a T50 (e.g. a categorical x column). ``size`` and ``formats``: as in
    :func:`plot_success_curves`."""
    settings = aggregated.settings
    x, by = settings.x, settings.by
    rows = [r for r in aggregated.horizon.to_pylist() if r["t50_relation"] != "n/a" and r["t50"] is not None]
    if not rows:
        return None
    axis = axis or most_important_axis(aggregated, by)
    if axis is not None and axis not in by:
        raise ReportError(f"--horizon-axis {axis!r} is not a grouping column ({', '.join(by) or 'none'})")
    rest = [c for c in by if c != axis]
    sweeps = split_by_sweep(rows, settings)
    series_keys = list(dict.fromkeys(tuple(r[c] for c in rest) for r in rows))
    facets, looks = series_looks(aggregated)

    def look_of(row: dict) -> tuple[tuple, dict]:
        key = series_key(row, [c for c in by if c != facets.get(_sweep_of(row, aggregated))])
        return key, looks[key]

    # a legend when a look stands for more than the tick label under it says
    named = {c for key in looks for c, _ in key} - {axis}
    inches = style.width(size, len(sweeps))
    with style.paper_style() as plt:
        fig, axes = plt.subplots(
            len(sweeps), 1, figsize=(inches, 0.66 * min(inches, 5.0) * len(sweeps)), squeeze=False, layout="constrained"
        )
        legend: dict = {}
        for ax, (sweep, rs) in zip(axes[:, 0], sweeps.items()):
            _draw_horizon_panel(ax, rs, axis, rest, series_keys, look_of, legend)
            ax.set_xlabel(style.label(axis, True) if axis else "")
            ax.set_ylabel(f"T50, {style.label(x, True)}")
            if sweep is not None and len(sweeps) > 1:
                ax.set_title(f"sweep {sweep}")
        title = ", ".join(style.label(c, True) for c, _ in next(iter(looks), ()))
        style.legend_below(fig, legend if named else {}, title or None, inches)
        written = style.save(fig, path, formats)
        plt.close(fig)
    return written[0]


def _draw_horizon_panel(ax, rs: list[dict], axis: str | None, rest: list[str], series_keys: list, look_of, legend):
    levels = _sorted_levels(axis, [r[axis] for r in rs]) if axis else [None]
    numeric_axis = axis is not None and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in levels)
    use_numeric = numeric_axis and len(levels) > 12
    present = [k for k in series_keys if any(tuple(r[c] for c in rest) == k for r in rs)]
    tested_lo = min(r["x_min"] for r in rs)
    tested_hi = max(r["x_max"] for r in rs)
    pad = 0.12 * max(tested_hi - tested_lo, 1.0)
    spread = min(0.6, 0.2 * (len(present) - 1))
    # a fitted T50's box, beside its point, stays within the gap to the next series at one level
    box = 0.012 * (max(levels) - min(levels) or 1.0) if use_numeric else 0.045
    for si, series in enumerate(present):
        offset = 0.0 if use_numeric or len(present) == 1 else (si / (len(present) - 1) - 0.5) * spread
        for p in (r for r in rs if tuple(r[c] for c in rest) == series):
            key, look = look_of(p)
            color = look["color"]
            pos = float(p[axis]) if use_numeric else (levels.index(p[axis]) if axis else 0) + offset
            y = p["t50"]
            lo = p["t50_lo"] if p["t50_lo_relation"] not in ("n/a", None) else y
            hi = p["t50_hi"] if p["t50_hi_relation"] not in ("n/a", None) else y
            censored = p["t50_relation"] != "="
            # An interval end past the tested range: a bar to a small triangle, unless the T50 itself
            # is censored that way, whose arrow already says so.
            if p["t50_lo_relation"] == "<" and p["t50_relation"] != "<":
                lo = tested_lo - 0.7 * pad
                ax.plot([pos], [lo], marker="v", markersize=3, color=color)
            if p["t50_hi_relation"] == ">=" and p["t50_relation"] != ">=":
                hi = tested_hi + 0.7 * pad
                ax.plot([pos], [hi], marker="^", markersize=3, color=color)
            handle = ax.errorbar(
                [pos],
                [y],
                yerr=[[max(y - lo, 0.0)], [max(hi - y, 0.0)]],
                fmt=look["marker"],
                color=color,
                markersize=5,
                capsize=2.5,
                linewidth=1.0,
                markerfacecolor="white" if censored else color,
            )
            if censored:
                direction = 1.0 if p["t50_relation"] == ">=" else -1.0
                ax.annotate(
                    "",
                    xy=(pos, y + direction * 0.8 * pad),
                    xytext=(pos, y),
                    arrowprops={"arrowstyle": "->", "color": color, "linewidth": 1.0},
                )
            if p.get("fit_t50_relation") not in (None, "n/a"):
                _draw_fitted(ax, pos + 1.2 * box, p, color, box)
            if p["nonmonotone"]:
                ax.annotate("*", (pos, y), xytext=(4, 2), textcoords="offset points", color=color)
            legend.setdefault(_series_name(key), handle)
    if axis and not use_numeric:
        ax.set_xticks(range(len(levels)))
        ax.set_xticklabels([cell_text(v) for v in levels])
        ax.set_xlim(-0.6, len(levels) - 0.4)
    elif not axis:
        ax.set_xticks([0])
        ax.set_xticklabels(["all groups"])
        ax.set_xlim(-0.6, 0.6)
    elif style.log_scale(levels):
        style.set_log(ax, "x", levels)
    for bound in (tested_lo, tested_hi):
        ax.axhline(bound, color="0.5", linestyle="--", linewidth=0.7, zorder=0)
    ax.set_ylim(tested_lo - pad, tested_hi + pad)
    ax.grid(True, axis="y", alpha=0.3)


def _draw_fitted(ax, pos: float, row: dict, color, half: float) -> None:
    """The fitted T50 beside the interpolated one: a pale box over its interval, a bar at its median."""
    lo, hi = row["fit_t50_lo"], row["fit_t50_hi"]
    if lo is not None and hi is not None:
        ax.fill_between([pos - half, pos + half], lo, hi, color=color, alpha=0.22, linewidth=0, zorder=1)
    ax.hlines(row["fit_t50"], pos - half, pos + half, color=color, linewidth=1.8, zorder=1)


def horizon_caption(aggregated: Aggregate, *, axis: str | None = None, note: str | None = None) -> str:
    """What :func:`plot_horizon` draws, in words."""
    x, threshold, by = aggregated.settings.x, aggregated.settings.threshold, aggregated.settings.by
    horizon = aggregated.horizon
    axis = axis or most_important_axis(aggregated, by)
    rest = [c for c in by if c != axis]
    text = (
        f"T50, the {style.label(x)} at which the success rate falls below {threshold:g} (linear "
        f"interpolation), against {style.label(axis) if axis else 'all groups pooled'}"
    )
    if rest:
        text += f", one series per {', '.join(style.label(c) for c in rest)}"
    facets = {f for f in series_looks(aggregated)[0].values() if f is not None and f != axis}
    for facet in facets:  # its levels share a look (as in the curve figure's panels): say their order
        levels = ", ".join(cell_text(v) for v in _sorted_levels(facet, horizon[facet].to_pylist()))
        text += f"; series of one look are {style.label(facet)} {levels}, left to right"
    rows = [r for r in horizon.to_pylist() if r["t50_relation"] != "n/a" and r["t50"] is not None]
    text += ". Bars: 95% posterior intervals; dashed lines: the smallest and largest value tested."
    if any(r["t50_relation"] != "=" for r in rows):
        text += (
            " Hollow markers with an arrow: T50 censored at a tested bound (the rate never fell below the "
            "threshold, or was below it from the start)."
        )
    if any(
        (r["t50_lo_relation"] == "<" and r["t50_relation"] != "<")
        or (r["t50_hi_relation"] == ">=" and r["t50_relation"] != ">=")
        for r in rows
    ):
        text += " A bar that ends in a small triangle runs past the tested range."
    if any(r["nonmonotone"] for r in rows):
        text += " *: the rate recovers above the threshold after the first crossing (T50 uses the first)."
    if aggregated.settings.fit:
        text += (
            f" Pale boxes: the fitted T50 ({aggregated.settings.fit} curve with lapse and guess rates), its 95% "
            "posterior interval, with a bar at its median; a box that ends at its group's smallest or largest "
            "tested value is censored there (the tables say '<' or '>=')."
        )
    return text + (f" Figure {note}." if note else "")


def write_outputs(
    aggregated: Aggregate,
    out_dir: str | os.PathLike,
    *,
    marker=None,
    marker_label: str | None = None,
    horizon_axis: str | None = None,
    formats: Sequence[str] = style.FORMATS,
    size: str = "auto",
) -> list[Path]:
    """Write success_curves.parquet, horizon.parquet, fitted_curves.parquet (with a fit), report.md (the
    tables and the figures' captions), success_vs_<x> and horizon (when T50 is defined) in each of
    ``formats`` into ``out_dir``; return the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curves, horizon, x = aggregated.curves, aggregated.horizon, aggregated.settings.x
    pq.write_table(aggregated.settings.attach(curves), out / "success_curves.parquet")
    pq.write_table(aggregated.settings.attach(horizon), out / "horizon.parquet")
    written = [out / "success_curves.parquet", out / "horizon.parquet"]
    if aggregated.fitted is not None:
        pq.write_table(aggregated.settings.attach(aggregated.fitted), out / "fitted_curves.parquet")
        written.append(out / "fitted_curves.parquet")
    # Figures with more groups than a reader can tell apart pool over the least important axes.
    by = aggregated.settings.by
    shown = figure_axes(aggregated)
    note = None
    drawn = aggregated
    if shown != by:
        pooled = [c for c in by if c not in shown]
        note = "pooled over " + ", ".join(pooled)
        print(
            f"note: {horizon.num_rows} groups are too many to draw; the figures pool over "
            f"{', '.join(pooled)} (the tables do not; pick the axes with --by)",
            file=sys.stderr,
        )
        drawn = pool(aggregated, shown)
    if horizon_axis is not None and horizon_axis not in shown:
        horizon_axis = None
    figures = []
    stem = out / f"success_vs_{x}"
    plot_success_curves(drawn, stem, marker=marker, marker_label=marker_label, size=size, formats=formats)
    figures.append((stem, success_caption(drawn, note=note, marker=marker)))
    if plot_horizon(drawn, out / "horizon", axis=horizon_axis, size=size, formats=formats) is not None:
        figures.append((out / "horizon", horizon_caption(drawn, axis=horizon_axis, note=note)))
    text = format_report(aggregated, "markdown")
    shown_as = formats[0]
    for i, (path, caption) in enumerate(figures, 1):
        text += f"\n\n![Figure {i}]({path.name}.{shown_as})\n\n**Figure {i}.** {caption}"
        written += [path.with_suffix("." + f) for f in formats]
    (out / "report.md").write_text(text + "\n")
    tables = 3 if aggregated.fitted is not None else 2
    return written[:tables] + [out / "report.md"] + written[tables:]


def _spaced_for_labels(values) -> bool:
    """Whether a tick at every tested x (sorted, on the axis' own scale) leaves room for its label
    (else matplotlib's own ticks)."""
    span = values[-1] - values[0]
    return len(values) < 2 or span == 0 or min(b - a for a, b in zip(values, values[1:])) >= span / 12
