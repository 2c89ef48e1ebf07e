"""Report-wide defaults and the one error type that every report function raises on bad input."""

from __future__ import annotations

from flosssweep.config import FLOSS_MODES

DEFAULT_X = "delay"
CHAOTIC_X = "tau"  # records of chaotic data have no delay: their natural axis is the forcing interval
DEFAULT_THRESHOLD = 0.5
DEFAULT_N_DRAWS = 1000
MAX_N_DRAWS = 100_000  # posterior draws: the interval's digits settle long before; more only costs memory and time
MAX_SEED = 2**63 - 1
REQUIRED_COLUMNS = ("success",)
# x columns the report computes from record columns: the input spacing d / bits of a parity task,
# the reference implementation's "delay" (docs/DESIGN.md, "Tasks"). The first column named is the one
# it replaces as an axis: grouping a spacing curve by delay would leave one cell per curve.
DERIVED_X = {"spacing": ("delay", "bits")}
# Axes whose values have a natural reading order (the schedule from none to the strongest); others sort by value.
LEVEL_ORDER = {"floss_mode": list(FLOSS_MODES)}


def level_key(axis: str | None, value) -> tuple:
    """Sort key of a grouping axis's value in reading order: known orders first, then numbers, then text."""
    known = LEVEL_ORDER.get(axis or "", [])
    if value in known:
        return (0, known.index(value), 0, "")
    if value is None:
        return (3, 0, 0, "")
    if isinstance(value, (int, float)):
        return (1, 0, value, "")
    return (2, 0, 0, str(value))


def group_labels(records, by) -> tuple[dict[str, str], dict[str, tuple]]:
    """Each trial's (config_key's) group label ('floss_mode=pre, arch=gru', 'all' without columns), and
    each label's sort key in reading order (level_key per column), for tables built from diagnostics."""
    keys = records.select(["config_key", *by]).to_pylist()
    label_of = {r["config_key"]: ", ".join(f"{c}={r[c]}" for c in by) or "all" for r in keys}
    order_of = {label_of[r["config_key"]]: tuple(level_key(c, r[c]) for c in by) for r in keys}
    return label_of, order_of


FIGURE_GROUP_LIMIT = 30  # groups per sweep that a figure can show one by one

RELATIONS = ["=", ">=", "<", "n/a"]


def default_x(columns) -> str:
    """The x column when none is asked for: delay, or tau for records that have a tau and no delay."""
    return CHAOTIC_X if DEFAULT_X not in columns and CHAOTIC_X in columns else DEFAULT_X


class ReportError(Exception):
    """Bad input. The message is one line that names the offending thing."""


def check_finite_x(table, x: str) -> None:
    """ReportError naming the x column when it holds an infinite or NaN value (no curve has a place for it)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if x not in table.column_names or not pa.types.is_floating(table[x].type):
        return
    bad = pc.sum(pc.invert(pc.is_finite(table[x]))).as_py() or 0
    if bad:
        raise ReportError(f"column {x}: expected finite numbers as x, {bad} row(s) hold inf or nan")


class StoreUnavailable(ReportError):
    """The tracking store does not answer (exit status 3, as for a sweep)."""
