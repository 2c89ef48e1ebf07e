"""Trial records (one row per realization; columns in docs/DESIGN.md) as Arrow tables and Parquet files,
and which realization a row is."""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flosssweep.checks import os_problem
from flosssweep.names import OUTCOME_COLUMNS, OUTCOME_PREFIXES, REALIZATION_KEY

# Types of the main columns; every other column takes the type of its values. A record holds only
# the config columns of its task (a chaotic trial has no bits or delay), so a column may be absent.
RECORD_SCHEMA = pa.schema(
    [
        ("sweep", pa.string()),
        ("trial_id", pa.string()),
        ("member", pa.int64()),
        ("seed", pa.int64()),
        ("config_key", pa.string()),
        ("arch", pa.string()),
        ("hidden", pa.int64()),
        ("task", pa.string()),
        ("bits", pa.int64()),
        ("delay", pa.int64()),
        ("floss_mode", pa.string()),
        ("floss_k", pa.int64()),
        ("floss_strength", pa.float64()),
        ("success", pa.bool_()),
        ("final_accuracy", pa.float64()),
        ("final_loss", pa.float64()),
        ("epochs_to_success", pa.int64()),
        ("lambda_1", pa.float64()),
        ("lambda_k", pa.float64()),
        ("status", pa.string()),
    ]
)


def to_table(records: list[dict]) -> pa.Table:
    """Rows to a table: the main columns that some row has first, with fixed types (so tables of
    many trials concatenate), then every other column in the order it first appears; a row without
    a column holds null there."""
    names = [f.name for f in RECORD_SCHEMA if any(f.name in row for row in records)]
    for row in records:
        names += [name for name in row if name not in names]
    columns = {}
    for name in names:
        values = [row.get(name) for row in records]
        typ = RECORD_SCHEMA.field(name).type if name in RECORD_SCHEMA.names else None
        columns[name] = pa.array(values, type=typ)
    return pa.table(columns)


def write(records: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table(records), path)
    return path


class NotWritten(OSError):
    """Records that could not go where they were asked to; the message names where they went instead."""


def write_or_keep(records: list[dict], path: str | Path) -> Path:
    """`write`, or when that fails (a disk that filled during training), the records in a fallback
    file in the working directory, the temporary directory or the home directory, and NotWritten
    naming both paths: work done is never lost to a failed write."""
    path = Path(path)
    try:
        return write(records, path)
    except (OSError, pa.ArrowException) as err:
        reason = os_problem(err, path)
        path.unlink(missing_ok=True)  # a truncated Parquet file would be read as a broken one
    name = f"flosssweep-records-{os.getpid()}-{time.strftime('%Y%m%d-%H%M%S')}.parquet"
    for directory in (Path.cwd(), Path(tempfile.gettempdir()), Path.home()):
        try:
            kept = write(records, directory / name)
        except (OSError, pa.ArrowException):
            (directory / name).unlink(missing_ok=True)
            continue
        raise NotWritten(f"cannot write the records to {path} ({reason}); they are kept in {kept}")
    raise NotWritten(f"cannot write the records to {path} ({reason}), nor to a fallback file {name}")


# -- identity: which realization a row is (names.REALIZATION_KEY) ----------------------------------
UNCOMPARED = ("train_seconds",)  # outcomes that differ between two runs of the same computation


class RecordConflict(ValueError):
    """Two rows of the same realization with different outcomes; the message names them."""


def identity_columns(table: pa.Table) -> list[str] | None:
    """The identity columns present in `table` (trial_id standing in for a missing config_key),
    or None when rows cannot be told apart (no member column, or neither key)."""
    have = set(table.column_names)
    key = [c for c in REALIZATION_KEY if c in have]
    if "config_key" not in have and "trial_id" in have:
        key.append("trial_id")
    if "member" not in have or not {"config_key", "trial_id"} & have:
        return None
    return key


def outcome_columns(table: pa.Table) -> list[str]:
    return [
        c
        for c in table.column_names
        if c not in UNCOMPARED and (c in OUTCOME_COLUMNS or c.startswith(OUTCOME_PREFIXES))
    ]


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def deduplicate(table: pa.Table, origin: Callable[[int], str] | None = None) -> tuple[pa.Table, int]:
    """`table` with every realization once, and how many rows were dropped. A second row of a
    realization with the same outcomes is dropped; one with another outcome raises RecordConflict
    naming the realization, the column and, given `origin` (row index -> where it came from), the sources."""
    key = identity_columns(table)
    if key is None or table.num_rows < 2:
        return table, 0
    keys = table.select(key)
    if keys.group_by(key, use_threads=False).aggregate([]).num_rows == table.num_rows:
        return table, 0
    rows = keys.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
    groups = rows.group_by(key, use_threads=False).aggregate([("_row", "list")])
    groups = groups.filter(pc.greater(pc.list_value_length(groups["_row_list"]), 1))
    outcomes = table.select(outcome_columns(table))
    drop = []
    for group in groups.to_pylist():
        first, *others = group["_row_list"]
        reference = outcomes.slice(first, 1).to_pylist()[0]
        for row in others:
            values = outcomes.slice(row, 1).to_pylist()[0]
            differ = [c for c in reference if not _same(reference[c], values[c])]
            if differ:
                who = " ".join(f"{c}={group[c]}" for c in key)
                where = f" (in {origin(first)} and {origin(row)})" if origin else ""
                c = differ[0]
                raise RecordConflict(
                    f"conflicting records of one realization ({who}): {c} is "
                    f"{reference[c]!r} in one and {values[c]!r} in another{where}"
                )
            drop.append(row)
    keep = np.ones(table.num_rows, dtype=bool)
    keep[drop] = False
    return table.filter(pa.array(keep)), len(drop)
