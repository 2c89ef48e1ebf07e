"""The report as text: aligned table, markdown, csv or json.

Tables for people (aligned, markdown) name their columns as the figures do (`style.label`: 'flossing
schedule', 'd = 16'); csv and json keep the record columns' names, for programs. Every estimated T50
and interval end has three significant figures (whole numbers from 100 up); a censored one is the
tested x it is censored at, written as that x is.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np

from flosssweep.report import style
from flosssweep.report.common import ReportError
from flosssweep.report.curves import Aggregate, Settings, split_by_sweep

# --------------------------------------------------------------------------------------------
# Text output
# --------------------------------------------------------------------------------------------


def num_text(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    v = float(v)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    if abs(v) >= 1000:
        return f"{v:.0f}"
    return f"{v:.4g}"


def estimate_text(v) -> str:
    """An estimate (T50, an interval end, a quantile) to three significant figures, trailing zeros
    kept so that a column reads alike (20.0 next to 12.6); whole numbers from 100 up."""
    if v is None or not np.isfinite(v):
        return "n/a" if v is None or np.isnan(v) else str(v)
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:#.3g}".rstrip(".")


def bound_text(value, relation) -> str:
    """A T50 or interval end: the estimate, or '>= x' / '< x' at the tested x it is censored at."""
    if relation == "=":
        return estimate_text(value)
    if relation == ">=":
        return f">= {num_text(value)}"
    if relation == "<":
        return f"< {num_text(value)}"
    return "n/a"


def t50_text(row: dict, with_ci: bool, name: str = "t50") -> str:
    """T50 as text with its interval: ``name`` 't50' (interpolated) or 'fit_t50' (fitted)."""
    text = bound_text(row[name], row[f"{name}_relation"])
    if name == "t50" and row["nonmonotone"]:
        text += "*"
    if with_ci and row[f"{name}_relation"] != "n/a" and row[f"{name}_lo_relation"] != "n/a":
        lo = bound_text(row[f"{name}_lo"], row[f"{name}_lo_relation"])
        hi = bound_text(row[f"{name}_hi"], row[f"{name}_hi_relation"])
        text += f" [{lo}, {hi}]"
    return text


FIT_COLUMNS = ["fit_t50", "fit_t50_relation", "fit_t50_lo", "fit_t50_lo_relation", "fit_t50_hi", "fit_t50_hi_relation"]


def cell_text(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, float):
        return num_text(v)
    return str(v)


def _sweep_views(aggregated: Aggregate):
    """Per sweep: (name, horizon rows, x values, k/n matrix as {group_id: {x: text}})."""
    curves, horizon, settings = aggregated.curves, aggregated.horizon, aggregated.settings
    x = settings.x
    hrows = horizon.to_pylist()
    k = curves["k"].to_numpy()
    n = curves["n"].to_numpy()
    gid = curves["group_id"].to_numpy()
    xs = curves[x].to_pylist()
    kn: dict[int, dict] = {}
    for g, xv, kk, nn in zip(gid.tolist(), xs, k.tolist(), n.tolist()):
        kn.setdefault(g, {})[xv] = f"{kk}/{nn}"
    sweeps = split_by_sweep(hrows, settings)
    views = []
    for name, rows in sweeps.items():
        ids = {r["group_id"] for r in rows}
        xorder = {}
        for g, xv in zip(gid.tolist(), xs):
            if g in ids and xv not in xorder:
                xorder[xv] = None
        xvals = list(xorder)
        if not settings.x_categorical:
            xvals.sort(key=lambda v: (v is None, v if v is not None else 0))
        views.append((name, rows, xvals, kn))
    return views


def _summary_line(name, rows, settings: Settings) -> str:
    n = sum(r["n"] for r in rows)
    err = sum(r["n_error"] for r in rows)
    parts = [f"{len(rows)} group(s)", f"{n} realization(s)"]
    if err:
        parts.append(f"{err} row(s) with status 'error' excluded from n (column 'errors')")
    parts.append(f"threshold {settings.threshold:g}")
    if settings.n_draws > 0:
        parts.append(f"{settings.n_draws} posterior draws, seed {settings.seed}")
    if settings.fit:
        parts.append(f"fitted T50: {settings.fit} with lapse and guess rates")
    title = f"sweep {name}" if name is not None else "records"
    return f"{title}: " + ", ".join(parts)


def _wide_rows(rows, xvals, kn, settings: Settings, *, for_csv: bool):
    by, x, fit = settings.by, settings.x, settings.fit
    with_ci = settings.n_draws > 0
    any_err = any(r["n_error"] for r in rows)
    if for_csv:
        header = list(by) + [f"{x} {cell_text(v)}" for v in xvals]
        header += [
            "t50",
            "t50_relation",
            "t50_lo",
            "t50_lo_relation",
            "t50_hi",
            "t50_hi_relation",
            "nonmonotone",
            "errors",
        ] + (FIT_COLUMNS if fit else [])
    else:
        header = [style.label(c) for c in by] + [f"{style.symbol(x)} = {cell_text(v)}" for v in xvals]
        header += ["T50 [95% CI]" if with_ci else "T50"] + (["fitted T50 [95% CI]"] if fit else [])
        header += ["errors"] if any_err else []
    body = []
    for r in rows:
        line = [cell_text(r[c]) for c in by]
        line += [kn.get(r["group_id"], {}).get(v, "-") for v in xvals]
        if for_csv:
            line += [
                r["t50"],
                r["t50_relation"],
                r["t50_lo"],
                r["t50_lo_relation"],
                r["t50_hi"],
                r["t50_hi_relation"],
                r["nonmonotone"],
                r["n_error"],
            ] + ([r[c] for c in FIT_COLUMNS] if fit else [])
        else:
            line.append(t50_text(r, with_ci))
            if fit:
                line.append(t50_text(r, True, "fit_t50"))
            if any_err:
                line.append(str(r["n_error"]))
        body.append(line)
    return header, body


def align(header, body, markdown: bool, labels: int = 0) -> str:
    """Rows of cells as an aligned text table or a markdown table: numbers right, words and the first
    `labels` columns (group labels such as 'lr=0.01', which hold digits) left."""
    cols = list(zip(*([header] + body))) if body else [[h] for h in header]
    widths = [max(len(str(c)) for c in col) for col in cols]
    numeric = [
        n >= labels
        and len(col) > 1
        and all(any(ch.isdigit() for ch in str(c)) or str(c) in ("-", "n/a") for c in col[1:])
        for n, col in enumerate(cols)
    ]

    def fmt(line):
        cells = [str(c).rjust(w) if num else str(c).ljust(w) for c, w, num in zip(line, widths, numeric)]
        return ("| " + " | ".join(cells) + " |") if markdown else "  ".join(cells).rstrip()

    out = [fmt(header)]
    if markdown:
        out.append(
            "| " + " | ".join(("-" * (w - 1) + ":") if num else "-" * w for w, num in zip(widths, numeric)) + " |"
        )
    else:
        out.append("  ".join("-" * w for w in widths))
    out += [fmt(b) for b in body]
    return "\n".join(out)


def titled_table(title: str, header, body, markdown: bool) -> str:
    """A small table under its title (bold in markdown), its first column the group label."""
    return (f"**{title}**\n\n" if markdown else f"{title}\n") + align(header, body, markdown, labels=1)


def _footnotes(rows, settings: Settings) -> list[str]:
    notes = []
    x = settings.x
    if any(r["nonmonotone"] for r in rows):
        notes.append(
            f"* success rate is back at or above {settings.threshold:g} after "
            f"the first crossing; T50 uses the first crossing (see --help)"
        )
    if settings.x_categorical:
        notes.append(f"T50 is n/a: the x column {x!r} is not numeric")
    return notes


def format_report(aggregated: Aggregate, fmt: str = "table") -> str:
    """The report as text: 'table' (aligned, for a terminal), 'markdown', 'csv' or 'json'."""
    settings = aggregated.settings
    views = _sweep_views(aggregated)
    if fmt == "json":
        return _format_json(aggregated)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        has_sweep = "sweep" in settings.keys
        for i, (name, rows, xvals, kn) in enumerate(views):
            header, body = _wide_rows(rows, xvals, kn, settings, for_csv=True)
            if has_sweep:
                header = ["sweep"] + header
                body = [[name] + b for b in body]
            if i:
                writer.writerow([])
            writer.writerow(header)
            writer.writerows(["" if v is None else v for v in b] for b in body)
        return buf.getvalue().rstrip("\n")
    if fmt not in ("table", "markdown"):
        raise ReportError(f"unknown format {fmt!r} (table, markdown, csv, json)")
    md = fmt == "markdown"
    blocks = []
    for name, rows, xvals, kn in views:
        header, body = _wide_rows(rows, xvals, kn, settings, for_csv=False)
        title = _summary_line(name, rows, settings)
        lines = [f"### {title}" if md else title, ""]
        lines.append(align(header, body, md))
        notes = _footnotes(rows, settings)
        if notes:
            lines.append("")
            lines += notes
        blocks.append("\n".join(lines))
    if not blocks:
        return "no groups"
    return "\n\n".join(blocks)


def _t50_json(row: dict, name: str) -> dict:
    return {
        "value": row[name],
        "relation": row[f"{name}_relation"],
        **{f"{end}{part}": row[f"{name}_{end}{part}"] for end in ("lo", "hi") for part in ("", "_relation")},
    }


def _format_json(aggregated: Aggregate) -> str:
    curves, horizon, settings = aggregated.curves, aggregated.horizon, aggregated.settings
    x, by = settings.x, settings.by
    points: dict[int, list] = {}
    for r in curves.to_pylist():
        points.setdefault(r["group_id"], []).append(
            {
                x: r[x],
                "n": r["n"],
                "k": r["k"],
                "n_error": r["n_error"],
                "rate": r["rate"],
                "wilson_lo": r["wilson_lo"],
                "wilson_hi": r["wilson_hi"],
            }
        )

    def group(r: dict) -> dict:
        return {
            "axes": {c: r[c] for c in by},
            "n": r["n"],
            "n_error": r["n_error"],
            "t50": _t50_json(r, "t50"),
            "nonmonotone": r["nonmonotone"],
            "curve": points.get(r["group_id"], []),
        } | ({"fit_t50": _t50_json(r, "fit_t50")} if settings.fit else {})

    sweeps = split_by_sweep(horizon.to_pylist(), settings)
    doc = {
        "x": x,
        "by": by,
        "threshold": settings.threshold,
        "confidence": settings.confidence,
        "n_draws": settings.n_draws,
        "seed": settings.seed,
        "fit": settings.fit,
        "sweeps": [{"sweep": k, "groups": [group(r) for r in v]} for k, v in sweeps.items()],
    }
    return json.dumps(doc, indent=2, default=str)
