"""The report's figures: success rate against x with Wilson bands, and T50 per group.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from flosssweep.report.common import DEFAULT_X, FIGURE_GROUP_LIMIT, LEVEL_ORDER, ReportError
from flosssweep.report.text import cell_text, num_text, format_report
from flosssweep.report.curves import is_numeric, plot_settings, split_by_sweep, pool, table_meta


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(count: int):
    plt = _pyplot()
    if count <= 10:
        cmap = plt.get_cmap("tab10")
        return [cmap(i) for i in range(count)]
    if count <= 20:
        cmap = plt.get_cmap("tab20")
        return [cmap(i) for i in range(count)]
    cmap = plt.get_cmap("viridis")
    return [cmap(i / max(count - 1, 1)) for i in range(count)]


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


def _xlabel(x: str) -> str:
    return {"delay": "longest lag d (steps)", "spacing": "input spacing d / bits (steps)",
            "tau": "teacher-forcing interval tau"}.get(x, x)


def _sorted_levels(axis: str | None, values) -> list:
    """Distinct values of a grouping axis in reading order (known orders first, else sorted)."""
    uniq = list(dict.fromkeys(values))
    known = LEVEL_ORDER.get(axis or "", [])

    def key(v):
        if v in known:
            return (0, known.index(v), 0, "")
        if v is None:
            return (3, 0, 0, "")
        if isinstance(v, (int, float)):
            return (1, 0, v, "")
        return (2, 0, 0, str(v))

    return sorted(uniq, key=key)


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


def plot_success_curves(
    curves: pa.Table,
    path: str | os.PathLike,
    *,
    x: str | None = None,
    threshold: float | None = None,
    marker=None,
    marker_label: str | None = None,
    title: str | None = None,
    note: str | None = None,
) -> Path:
    """Success rate against ``x``, one line per group with its Wilson 95% band.

    One panel per sweep; a sweep with more than 8 groups is split into panels by one grouping
    axis (at most 6 panels), with the colour of a line fixed by the remaining axes. ``marker``:
    optional vertical line(s), e.g. a predicted value: a number (labelled ``marker_label``), or a
    sequence of numbers or ``(value, label)`` pairs. ``x`` and ``threshold`` default to the values
    that :func:`aggregate` stored in the table; ``note`` is added under the title.
    """
    plt = _pyplot()
    meta, x, threshold, by = plot_settings(curves, x, threshold)
    categorical = bool(meta.get("x_categorical")) or not is_numeric(curves.schema.field(x).type)
    markers = _normalize_markers(marker, marker_label, x) if not categorical else []

    points: dict = {}
    for r in curves.to_pylist():
        points.setdefault(r["group_id"], []).append(r)
    sweeps = split_by_sweep(points.values(), meta, row_of=lambda pts: pts[0])

    # Panels: (title, list of groups); lines coloured by the axes that are not the facet.
    panels = []
    series_axes_of: dict = {}
    for sweep, groups in sweeps.items():
        facet = _facet_axis([g[0] for g in groups], by)
        rest = [c for c in by if c != facet]
        series_axes_of[sweep] = rest
        if facet is None:
            panels.append((sweep, None, groups))
            continue
        for level in _sorted_levels(facet, [g[0][facet] for g in groups]):
            panels.append((sweep, f"{facet} = {cell_text(level)}", [g for g in groups if g[0][facet] == level]))
    series_keys: list = []
    for sweep, _, groups in panels:
        for g in groups:
            key = tuple(g[0][c] for c in series_axes_of[sweep])
            if key not in series_keys:
                series_keys.append(key)
    colors = dict(zip(series_keys, _colors(len(series_keys))))
    styles = ["-", "--", "-.", ":"]

    ncols = min(3, len(panels)) or 1
    nrows = -(-len(panels) // ncols) or 1
    panel_w, panel_h = (7.0, 4.3) if len(panels) == 1 else (4.6, 3.6)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(panel_w * ncols, panel_h * nrows), squeeze=False, sharey=True
    )
    legend: dict = {}
    for i, ax in enumerate(axes.flat):
        if i >= len(panels):
            ax.set_visible(False)
            continue
        sweep, facet_title, groups = panels[i]
        rest = series_axes_of[sweep]
        levels = []
        if categorical:
            levels = list(dict.fromkeys(p[x] for g in groups for p in g if p[x] is not None))
        tested = set()
        for g in groups:
            pts = [p for p in g if p["n"] > 0 and p[x] is not None]
            if not pts:
                continue
            key = tuple(g[0][c] for c in rest)
            xs = np.array([levels.index(p[x]) if categorical else p[x] for p in pts], dtype=float)
            tested.update(xs.tolist())
            rate = np.array([p["rate"] for p in pts])
            lo = np.array([p["wilson_lo"] for p in pts])
            hi = np.array([p["wilson_hi"] for p in pts])
            color = colors[key]
            style = styles[(series_keys.index(key) // 10) % len(styles)] if len(series_keys) > 10 else "-"
            ax.fill_between(xs, lo, hi, color=color, alpha=0.12, linewidth=0)
            (line,) = ax.plot(xs, rate, style, marker="o", markersize=4, color=color, linewidth=1.6)
            legend.setdefault(", ".join(cell_text(v) for v in key) if rest else "all", line)
        th = ax.axhline(threshold, color="0.3", linestyle=":", linewidth=1.2)
        legend.setdefault(f"threshold {threshold:g}", th)
        for j, (value, label) in enumerate(markers):
            ml = ax.axvline(value, color="black", linestyle=["--", "-.", ":"][j % 3], linewidth=1.3)
            legend.setdefault(label, ml)
        if categorical:
            ax.set_xticks(range(len(levels)))
            ax.set_xticklabels([cell_text(v) for v in levels])
        elif 0 < len(tested) <= 12:
            ax.set_xticks(sorted(tested))
            ax.set_xticklabels([num_text(v) for v in sorted(tested)])
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel(_xlabel(x))
        if i % ncols == 0:
            ax.set_ylabel("success rate")
        ax.grid(True, alpha=0.3)
        parts = [f"sweep {sweep}" if sweep is not None and len(sweeps) > 1 else None, facet_title]
        sub = " | ".join(p for p in parts if p)
        if sub:
            ax.set_title(sub, fontsize=10)

    heading = title or "Success rate against " + x + " (bands: Wilson 95% intervals)"
    sub = [f"sweep {next(iter(sweeps))}"] if len(sweeps) == 1 and next(iter(sweeps)) is not None else []
    if note:
        sub.append(note)
    if sub:
        heading += "\n" + "; ".join(sub)
    fig.suptitle(heading, fontsize=11)
    legend_title = ", ".join(series_axes_of[next(iter(sweeps))]) if sweeps else None
    fig.tight_layout()
    # Outside the axes, so that it never hides a curve.
    fig.legend(legend.values(), legend.keys(), title=legend_title, fontsize=8, title_fontsize=8,
               loc="upper left", bbox_to_anchor=(1.0, 0.9), frameon=False,
               ncol=1 if len(legend) <= 24 else 2)
    path = Path(path)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path


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


def most_important_axis(horizon: pa.Table, by: Sequence[str] | None = None) -> str | None:
    """The grouping axis whose levels explain the largest share of the variance of T50.

    Censored values count at their bound. Ties (and the case of no variance at all) go to the axis
    with more levels, then to the earlier one in ``by``. ``None`` when there is no varied axis.
    """
    meta = table_meta(horizon)
    by = list(by if by is not None else meta.get("by", []))
    shares = _axis_shares(horizon, by)
    ranked = [(shares[c][0], shares[c][1], -i, c) for i, c in enumerate(by) if shares[c][1] > 1]
    return max(ranked)[3] if ranked else None


def figure_axes(horizon: pa.Table, limit: int = FIGURE_GROUP_LIMIT) -> list[str]:
    """The grouping axes a figure can show readably: all of them when no sweep has more than
    ``limit`` groups; otherwise the most important axes (see :func:`most_important_axis`; on a
    tie the one with fewer levels) whose level combinations stay within ``limit`` per sweep."""
    meta = table_meta(horizon)
    by = list(meta.get("by", []))
    has_sweep = "sweep" in meta.get("keys", [])
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
    horizon: pa.Table,
    path: str | os.PathLike,
    *,
    axis: str | None = None,
    x: str | None = None,
    threshold: float | None = None,
    title: str | None = None,
    note: str | None = None,
) -> Path | None:
    """T50 with its bootstrap interval against one grouping axis (default:
    :func:`most_important_axis`); one series per combination of the other axes, one panel per
    sweep. Censored values are drawn at their bound as triangles (up: at least the largest x
    tested; down: below the smallest). ``note`` is added under the title. Returns ``None`` and
    draws nothing when no group has a T50 (e.g. a categorical x column)."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    meta, x, threshold, by = plot_settings(horizon, x, threshold)
    rows = [r for r in horizon.to_pylist() if r["t50_relation"] != "n/a" and r["t50"] is not None]
    if not rows:
        return None
    axis = axis or most_important_axis(horizon, by)
    if axis is not None and axis not in by:
        raise ReportError(f"--horizon-axis {axis!r} is not a grouping column ({', '.join(by) or 'none'})")
    rest = [c for c in by if c != axis]
    sweeps = split_by_sweep(rows, meta)

    series_keys = list(dict.fromkeys(tuple(r[c] for c in rest) for r in rows))
    colors = dict(zip(series_keys, _colors(len(series_keys))))
    fig, axes = plt.subplots(len(sweeps), 1, figsize=(7.0, 4.3 * len(sweeps)), squeeze=False)
    legend: dict = {}
    shapes = {"=": "o", ">=": "^", "<": "v"}
    any_nonmono = False
    for ax, (sweep, rs) in zip(axes[:, 0], sweeps.items()):
        levels = _sorted_levels(axis, [r[axis] for r in rs]) if axis else [None]
        numeric_axis = axis is not None and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in levels
        )
        use_numeric = numeric_axis and len(levels) > 12
        present = [k for k in series_keys if any(tuple(r[c] for c in rest) == k for r in rs)]
        tested_lo = min(r["x_min"] for r in rs)
        tested_hi = max(r["x_max"] for r in rs)
        pad = 0.08 * max(tested_hi - tested_lo, 1.0)
        spread = min(0.7, 0.25 * (len(present) - 1))
        for si, key in enumerate(present):
            offset = 0.0 if use_numeric or len(present) == 1 else (si / (len(present) - 1) - 0.5) * spread
            for p in (r for r in rs if tuple(r[c] for c in rest) == key):
                pos = float(p[axis]) if use_numeric else (levels.index(p[axis]) if axis else 0) + offset
                y = p["t50"]
                lo = p["t50_lo"] if p["t50_lo_relation"] not in ("n/a", None) else y
                hi = p["t50_hi"] if p["t50_hi_relation"] not in ("n/a", None) else y
                # An interval end that is censored runs on past the tested range, arrow-tipped.
                if p["t50_lo_relation"] == "<":
                    lo = tested_lo - 0.7 * pad
                    ax.plot([pos], [lo], marker="v", markersize=4, color=colors[key])
                if p["t50_hi_relation"] == ">=":
                    hi = tested_hi + 0.7 * pad
                    ax.plot([pos], [hi], marker="^", markersize=4, color=colors[key])
                ax.errorbar(
                    [pos], [y], yerr=[[max(y - lo, 0.0)], [max(hi - y, 0.0)]],
                    fmt=shapes[p["t50_relation"]], color=colors[key],
                    markersize=7 if p["t50_relation"] != "=" else 6, capsize=3, linewidth=1.4,
                    markerfacecolor="white" if p["nonmonotone"] else colors[key],
                )
                any_nonmono = any_nonmono or bool(p["nonmonotone"])
                legend.setdefault(
                    ", ".join(cell_text(v) for v in key) if rest else "T50",
                    Line2D([], [], marker="o", color=colors[key], linewidth=1.4),
                )
        if axis and not use_numeric:
            ax.set_xticks(range(len(levels)))
            ax.set_xticklabels([cell_text(v) for v in levels])
            ax.set_xlim(-0.6, len(levels) - 0.4)
        elif not axis:
            ax.set_xticks([0])
            ax.set_xticklabels(["all groups"])
            ax.set_xlim(-0.6, 0.6)
        elif numeric_axis and min(levels) > 0 and max(levels) / min(levels) > 20:
            ax.set_xscale("log")
        for bound in (tested_lo, tested_hi):
            ax.axhline(bound, color="0.45", linestyle="--", linewidth=1.0, zorder=0)
        ax.set_ylim(tested_lo - pad, tested_hi + pad)
        ax.set_xlabel(axis or "")
        ax.set_ylabel(f"T50 ({x} at success rate {threshold:g})")
        ax.grid(True, axis="y", alpha=0.3)
        heading = title or f"Largest bridgeable {x}, T50 (bars: 95% bootstrap intervals)"
        sub = ([f"sweep {sweep}"] if sweep is not None else []) + ([note] if note else [])
        ax.set_title("\n".join([heading, "; ".join(sub)]) if sub else heading, fontsize=11)
    extra = [
        Line2D([], [], marker="^", color="0.3", linestyle="none", label=f"censored: T50 >= largest {x} tested"),
        Line2D([], [], marker="v", color="0.3", linestyle="none", label=f"censored: T50 < smallest {x} tested"),
        Line2D([], [], color="0.45", linestyle="--", label=f"smallest and largest {x} tested"),
        Line2D([], [], color="0.3", marker="^", markersize=4, label="interval open beyond the tested range"),
    ]
    if any_nonmono:
        extra.append(Line2D([], [], marker="o", color="0.3", markerfacecolor="white", linestyle="none",
                            label="open: success rate recovers after the first crossing"))
    handles = list(legend.values()) + extra
    labels = list(legend.keys()) + [h.get_label() for h in extra]
    legend_title = ", ".join(rest) if rest else None
    fig.tight_layout()
    # Outside the axes, so that it never hides a point.
    fig.legend(handles, labels, title=legend_title, fontsize=8, title_fontsize=8,
               loc="upper left", bbox_to_anchor=(1.0, 0.93), frameon=False)
    path = Path(path)
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return path


def write_outputs(
    curves: pa.Table,
    horizon: pa.Table,
    out_dir: str | os.PathLike,
    *,
    marker=None,
    marker_label: str | None = None,
    horizon_axis: str | None = None,
) -> list[Path]:
    """Write success_curves.parquet, horizon.parquet, report.md, success_vs_<x>.png and
    horizon.png (when T50 is defined) into ``out_dir``; return the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x = table_meta(curves).get("x", DEFAULT_X)
    written = []
    pq.write_table(curves, out / "success_curves.parquet")
    written.append(out / "success_curves.parquet")
    pq.write_table(horizon, out / "horizon.parquet")
    written.append(out / "horizon.parquet")
    (out / "report.md").write_text(format_report(curves, horizon, "markdown") + "\n")
    written.append(out / "report.md")
    # Figures with more groups than a reader can tell apart pool over the least important axes.
    by = table_meta(horizon).get("by", [])
    shown = figure_axes(horizon)
    note = None
    fig_curves, fig_horizon = curves, horizon
    if shown != by:
        pooled = [c for c in by if c not in shown]
        note = "pooled over " + ", ".join(pooled)
        print(
            f"note: {horizon.num_rows} groups are too many to draw; the figures pool over "
            f"{', '.join(pooled)} (the tables do not; pick the axes with --by)",
            file=sys.stderr,
        )
        fig_curves, fig_horizon = pool(curves, shown)
    if horizon_axis is not None and horizon_axis not in shown:
        horizon_axis = None
    written.append(
        plot_success_curves(fig_curves, out / f"success_vs_{x}.png", marker=marker,
                            marker_label=marker_label, note=note)
    )
    h = plot_horizon(fig_horizon, out / "horizon.png", axis=horizon_axis, note=note)
    if h is not None:
        written.append(h)
    return written

