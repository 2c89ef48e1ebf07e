"""How the report's figures look: paper sizes, fonts, a colour-blind-safe palette, labels, file formats.

Sizes follow two-column journals: a figure one column wide (3.4 in) or across both (7 in), drawn
at its final size, so that 8 pt text is 8 pt on the page. Each group gets its own colour (Okabe and
Ito's palette, told apart by the common colour-vision deficiencies), marker and line style, so the
groups stay distinct in grayscale too; `group_looks` gives a group the same look in every figure of
a report. `label` is the one mapping from record columns to the words that figures and tables use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

from flosssweep import config as cfg
from flosssweep.report.common import ReportError

WIDTHS = {"single": 3.4, "double": 7.0}  # inches
SIZES = ("auto",) + tuple(WIDTHS)
FORMATS = ("png", "pdf", "svg")
DPI = 300  # of the PNG; PDF and SVG are vector
FONT_PT = 8.0
# Okabe-Ito without its yellow, which is too faint on white for lines and markers; black last.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINESTYLES = ("-", "--", "-.", ":")
# Columns whose help text does not say their unit or symbol: (plain text, matplotlib mathtext). Tables
# and captions use the plain text, figures the mathtext.
AXIS_LABELS = {
    "delay": ("longest lag d (steps)", "longest lag $d$ (steps)"),
    "spacing": ("input spacing d / bits (steps)", "input spacing $d$ / bits (steps)"),
    "tau": ("teacher-forcing interval tau (steps)", r"teacher-forcing interval $\tau$ (steps)"),
    "bits": ("parity bits", "parity bits"),
    "dstsp": ("D_stsp", r"$D_\mathrm{stsp}$"),
    "dh": ("D_H", "$D_H$"),
    "train_epochs": ("training epochs", "training epochs"),
    "epochs_to_success": ("epochs to success", "epochs to success"),
    "floss_strength": ("flossing strength beta", r"flossing strength $\beta$"),
    "floss_k": ("flossed exponents k", "flossed exponents $k$"),
    "hidden": ("hidden units N", "hidden units $N$"),
    "final_accuracy": ("final accuracy", "final accuracy"),
}
# The short name of an x column in a table header ("d = 16"); the same letter its axis label uses.
SYMBOLS = {"delay": "d", "spacing": "d/bits", "tau": "tau", "floss_k": "k", "floss_strength": "beta", "hidden": "N"}
# Outcomes that are fractions, drawn on the full 0-1 axis, with the level a guess reaches: every
# parity and copy target is one bit, so guessing gets half of them right.
FRACTIONS = {"final_accuracy": 0.5}
LOG_RATIO = 20.0  # positive values whose largest is this many times the smallest get a log axis

_RC = {
    "font.size": FONT_PT,
    "axes.labelsize": FONT_PT,
    "axes.titlesize": FONT_PT,
    "legend.fontsize": FONT_PT,
    "legend.title_fontsize": FONT_PT,
    "xtick.labelsize": FONT_PT,
    "ytick.labelsize": FONT_PT,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.2,
    "lines.markersize": 4.0,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "grid.linewidth": 0.4,
    "legend.frameon": False,
    "savefig.dpi": DPI,
    "pdf.fonttype": 42,
    "svg.fonttype": "none",  # text stays text (editable, searchable)
}


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def paper_style():
    """matplotlib settings of every report figure, for the duration of one figure."""
    plt = pyplot()
    with plt.rc_context(_RC):
        yield plt


def series_style(index: int) -> dict:
    """Colour, marker and line style of the index-th group: all three change from one group to the
    next, and no two of the first len(PALETTE) * len(MARKERS) groups look the same."""
    colors, markers = len(PALETTE), len(MARKERS)
    return {
        "color": PALETTE[index % colors],
        "marker": MARKERS[(index + index // colors) % markers],
        "linestyle": LINESTYLES[index % len(LINESTYLES)],
    }


def group_looks(keys) -> dict[tuple, dict]:
    """The look of each group key, in the order given (the report's group order): every figure of a
    report calls this with the same keys, so a group has one colour, marker and line style in all."""
    return {key: series_style(i) for i, key in enumerate(dict.fromkeys(keys))}


def log_scale(values) -> bool:
    """Whether an axis of these values is logarithmic: all positive and spanning LOG_RATIO or more
    (k = 1, 4, 16, 80 would crowd three of four values into a fifth of a linear axis)."""
    import numpy as np

    values = np.asarray([v for v in values if v is not None], dtype=float)
    values = values[np.isfinite(values)]
    return values.size > 1 and values.min() > 0 and values.max() / values.min() >= LOG_RATIO


def set_log(ax, axis: str = "x", values=()) -> None:
    """A log axis labelled in plain numbers (0.001, 0.01; 1, 10), its minor ticks unlabelled: the
    default 2x10^-3 labels of every minor tick run into each other at a journal column's width.
    `values` spanning less than 2.5 decades get labels at 1, 2 and 5 of each decade too."""
    import numpy as np
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    positive = np.asarray([v for v in values if v is not None and v > 0], dtype=float)
    if positive.size and positive.max() / positive.min() < 10**2.5:
        target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def symbol(column: str) -> str:
    """The short name of an x column in a table header."""
    return SYMBOLS.get(column, label(column))


def label(column: str, math: bool = False) -> str:
    """A record column as an axis, legend or table header reads it: the first clause of its config
    key's help text ('floss_mode' -> 'flossing schedule'); the column itself when the schema has no
    key. `math`: with matplotlib's mathtext for symbols (figures only)."""
    if column in AXIS_LABELS:
        return AXIS_LABELS[column][1 if math else 0]
    keys = {cfg.column_name(key): key for key in cfg.SCHEMA}
    if column not in keys:
        return column
    text = cfg.SCHEMA[keys[column]].help.removeprefix("chaotic data: ").split(";")[0].split(":")[0]
    return re.sub(r"\s*\([^)]*\)", "", text).strip() or column


def width(size: str, panels: int) -> float:
    if size not in SIZES:
        raise ReportError(f"--figure-size: expected one of {', '.join(SIZES)}, got {size!r}")
    if size == "auto":
        size = "single" if panels == 1 else "double"
    return WIDTHS[size]


def parse_formats(text: str | Sequence[str]) -> list[str]:
    """'png,pdf' (or a list of names) -> ['png', 'pdf']; unknown names are a ReportError."""
    names = [f.strip().lower().lstrip(".") for f in (text.split(",") if isinstance(text, str) else text)]
    names = list(dict.fromkeys(f for f in names if f))
    bad = [f for f in names if f not in FORMATS]
    if bad or not names:
        raise ReportError(
            f"--figure-format: expected a comma-separated list of {', '.join(FORMATS)}, "
            f"got {','.join(bad) or repr(text)}"
        )
    return names


def legend_columns(labels: Sequence[str], inches: float) -> int:
    """Legend columns that fit across the figure (a character of 8 pt text is about 0.065 in)."""
    longest = max((len(t) for t in labels), default=1)
    per_column = 0.45 + 0.065 * longest
    return max(1, min(len(labels), int(inches // per_column)))


def legend_below(fig, handles: dict, title: str | None, inches: float) -> None:
    """Below the axes (never over a curve), in as many columns as fit; none for a lone series.
    `save` keeps it whole (tight bounding box)."""
    if not handles:
        return
    fig.legend(
        list(handles.values()),
        list(handles),
        title=title,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=legend_columns(list(handles), inches),
        handlelength=2.6,
        columnspacing=1.2,
        borderaxespad=0.2,
    )


def save(fig, path: str | Path, formats: Sequence[str] | None = None) -> list[Path]:
    """Write the figure to `path` (its suffix decides the format), or, given `formats`, once per
    format next to it; tight bounding box, so legends below the axes are kept."""
    path = Path(path)
    paths = [path] if not formats else [path.with_suffix("." + f) for f in formats]
    for p in paths:
        fig.savefig(p, bbox_inches="tight", pad_inches=0.02, metadata=_metadata(p.suffix))
    return paths


def _metadata(suffix: str) -> dict:
    # No creation date, so the same report writes the same PDF; matplotlib's name is kept.
    return {"CreationDate": None} if suffix == ".pdf" else ({"Date": None} if suffix == ".svg" else {})
