"""Trial records (one row per realization; columns in docs/DESIGN.md) as Arrow tables and Parquet files."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

# Types of the columns every record has; the config columns take the types of their values.
SCHEMA = pa.schema([
    ("sweep", pa.string()), ("trial_id", pa.string()), ("member", pa.int64()), ("seed", pa.int64()),
    ("config_key", pa.string()), ("arch", pa.string()), ("hidden", pa.int64()), ("task", pa.string()),
    ("bits", pa.int64()), ("delay", pa.int64()), ("floss_mode", pa.string()), ("floss_k", pa.int64()),
    ("floss_strength", pa.float64()), ("success", pa.bool_()), ("final_accuracy", pa.float64()),
    ("final_loss", pa.float64()), ("epochs_to_success", pa.int64()), ("lambda_1", pa.float64()),
    ("lambda_k", pa.float64()), ("status", pa.string()),
])


def to_table(records: list[dict]) -> pa.Table:
    """Rows to a table: the columns every record has first, with fixed types (so tables of many trials
    concatenate), then every other column in the order it first appears."""
    names = [f.name for f in SCHEMA]
    for row in records:
        names += [name for name in row if name not in names]
    columns = {}
    for name in names:
        values = [row.get(name) for row in records]
        typ = SCHEMA.field(name).type if name in SCHEMA.names else None
        columns[name] = pa.array(values, type=typ)
    return pa.table(columns)


def write(records: list[dict], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_table(records), path)
    return path
