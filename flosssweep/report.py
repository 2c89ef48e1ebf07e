"""Success-rate curves and the largest bridgeable time horizon (T50) of a sweep.

Reads the per-realization trial records (DESIGN 7) from the sweep's MLflow runs or from Parquet
files, and reports, per configuration group and per delay (or another x column), how many
realizations succeeded, with a Wilson 95% interval, and the group's T50 with a bootstrap 95%
interval (DESIGN 8).

Groups. Rows are grouped by the --by columns. The default is every configuration column (a key
of the config schema) that varies across the records and is constant within each config_key,
other than the x column: identity columns (seed, member, trial_id), operational keys (ensemble,
device, threads) and outcomes (success, final_*, lambda_*, status, train_seconds, ...) are never
axes. Columns left out of --by are pooled. Records of different sweeps are never pooled: each
sweep gets its own table.

Counting. Rows with status 'error' are excluded from n and counted separately (column 'errors');
rows with status 'diverged' count as failures whatever their success flag says.

T50. Scanning x in increasing order, the first x whose success rate is below the threshold ends
the bridgeable range; T50 is interpolated linearly between it and the previous x. If the smallest x
is already below the threshold, T50 is reported as '< x_min'; if no x is below it, '>= x_max'.
Non-monotone curves: the first crossing wins, and a rate that climbs back above the threshold at a
larger x does not extend T50, because T50 is meant as the horizon the method reliably bridges
(every x up to it succeeded). Such groups are marked with '*'. T50 needs a numeric x column; for a
categorical one (strings such as 'none') the table still shows the success counts and T50 is 'n/a'.

Bootstrap. Realizations are resampled within each (group, x) cell, i.e. each cell's count is drawn
from Binomial(n, k/n); T50 is recomputed per resample and the 2.5th/97.5th percentiles form the
interval. Resamples with a censored T50 are kept, ordered below every x ('< x_min') or above it
('>= x_max'); an interval end that falls on one is reported censored. A cell where every
realization agrees (k = 0 or k = n) resamples to itself, so an interval can shrink to a point.
The draw is seeded (--seed), so a report is reproducible for the same records.

Functions for other code: :func:`aggregate` (records -> curves and horizon tables),
:func:`synthetic_records` (a realistic table for benchmarks), :func:`plot_success_curves` and
:func:`plot_horizon` (figures; the curve figure takes optional vertical marker lines), and
:func:`format_report`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flosssweep import stats
from flosssweep.layout import PARENT, RECORDS_ARTIFACT, ROLE, resolve_uri

__all__ = [
    "ReportError",
    "aggregate",
    "pool",
    "default_by",
    "synthetic_records",
    "read_parquet_records",
    "format_report",
    "plot_success_curves",
    "plot_horizon",
    "write_outputs",
    "main",
]

DEFAULT_X = "delay"
DEFAULT_THRESHOLD = 0.5
DEFAULT_N_BOOT = 1000
REQUIRED_COLUMNS = ("success",)
IDENTITY_COLUMNS = frozenset({"sweep", "trial_id", "member", "seed", "config_key"})
OUTCOME_COLUMNS = frozenset(
    {
        "success",
        "final_accuracy",
        "final_loss",
        "epochs_to_success",
        "lambda_1",
        "lambda_k",
        "status",
        "dstsp",
        "dh",
        "nonfinite_steps",
        "train_seconds",
    }
)
OUTCOME_PREFIXES = ("final_", "lambda_", "lambda_max_")
# Axes whose values have a natural reading order (DESIGN 4); others sort by value.
LEVEL_ORDER = {"floss_mode": ["none", "pre", "during", "pre+during", "regularizer"]}
FIGURE_GROUP_LIMIT = 30  # groups per sweep that a figure can show one by one
REPORT_ARTIFACT_DIR = "report"

_META_PREFIX = "flosssweep."
_RELATIONS = ["=", ">=", "<", "n/a"]


class ReportError(Exception):
    """Bad input. The message is one line that names the offending thing."""


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------


def _is_outcome(name: str) -> bool:
    return name in OUTCOME_COLUMNS or name.startswith(OUTCOME_PREFIXES)


def _plain(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Dictionary-encoded columns as their value type (group-by and sort keys behave the same)."""
    if pa.types.is_dictionary(col.type):
        return col.cast(col.type.value_type)
    return col


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def _config_column_names() -> tuple[set[str], set[str]] | None:
    """(record columns of configuration values, those of operational keys) per the config schema,
    or ``None`` when the schema is not available."""
    try:
        from flosssweep import config as cfg

        names = {cfg.column_name(k) for k in cfg.SCHEMA}
        operational = {cfg.column_name(k) for k in cfg.OPERATIONAL_KEYS}
    except Exception:  # noqa: BLE001 - without the schema, fall back to the exclusion lists
        return None
    return names, operational


def default_by(table: pa.Table, x: str = DEFAULT_X) -> list[str]:
    """The configuration columns that vary across ``table``, in table order, without ``x``.

    A column is a configuration column when the config schema (:mod:`flosssweep.config`) has a
    key for it and the key is not operational (seed, ensemble, device, threads, reporting);
    columns the trainer adds per trial or member (train_seconds, nonfinite_steps, ...) are
    outcomes. Identity and outcome columns are never axes. When ``config_key`` is present a
    column must also be constant within every config_key (a configuration value, not something
    that differs between realizations of one configuration).
    """
    schema = _config_column_names()
    allowed = None if schema is None else schema[0] - schema[1]
    candidates = [
        c
        for c in table.column_names
        if c != x
        and c not in IDENTITY_COLUMNS
        and not _is_outcome(c)
        and not c.startswith("_")
        and (allowed is None or c in allowed)
    ]
    varied = []
    for c in candidates:
        try:
            if pc.count_distinct(_plain(table[c]), mode="all").as_py() > 1:
                varied.append(c)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
            continue  # nested values (lists, structs) are not grouping axes
    if varied and "config_key" in table.column_names:
        per_key = (
            pa.table({"config_key": _plain(table["config_key"]), **{c: _plain(table[c]) for c in varied}})
            .group_by("config_key")
            .aggregate([(c, "count_distinct", pc.CountOptions(mode="all")) for c in varied])
        )
        varied = [c for c in varied if pc.max(per_key[f"{c}_count_distinct"]).as_py() <= 1]
    return varied


def missing_columns(table: pa.Table, x: str = DEFAULT_X, by: Sequence[str] | None = None) -> list[str]:
    """Required columns (success, the x column and any --by column) that ``table`` lacks."""
    need = list(REQUIRED_COLUMNS) + [x] + list(by or [])
    have = set(table.column_names)
    out = []
    for c in need:
        if c not in have and c not in out:
            out.append(c)
    return out


def _natural_rank(values: pa.Array) -> pa.Array:
    """Rank of each value of a categorical x column: numbers-as-text by value first, then text."""
    uniq = pc.unique(values).to_pylist()

    def key(v):
        if v is None:
            return (2, 0.0, "")
        try:
            return (0, float(v), str(v))
        except (TypeError, ValueError):
            return (1, 0.0, str(v))

    order = sorted(uniq, key=key)
    return pc.index_in(values, value_set=pa.array(order, type=values.type))


def _codes(col: pa.ChunkedArray) -> np.ndarray:
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    enc = pc.dictionary_encode(arr, null_encoding="encode")
    return enc.indices.to_numpy(zero_copy_only=False)


def _relations(values: np.ndarray, lo_bound: np.ndarray, hi_bound: np.ndarray):
    """Split a float array with +-inf censoring into (value column, relation column)."""
    isnan = np.isnan(values)
    code = np.where(isnan, 3, np.where(values == np.inf, 1, np.where(values == -np.inf, 2, 0)))
    val = np.where(values == np.inf, hi_bound, np.where(values == -np.inf, lo_bound, values))
    rel = pa.DictionaryArray.from_arrays(pa.array(code, type=pa.int8()), pa.array(_RELATIONS))
    return pa.array(val, mask=np.isnan(val)), rel.cast(pa.string())


def _group_labels(keys_table: pa.Table, by: Sequence[str]) -> pa.Array:
    if not by or keys_table.num_rows == 0:
        return pa.array(["all"] * keys_table.num_rows, type=pa.string())
    parts = []
    for c in by:
        text = pc.fill_null(pc.cast(_plain(keys_table[c]), pa.string()), "null")
        parts.append(pc.binary_join_element_wise(pa.scalar(f"{c}="), text, ""))
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, ", ")


def _with_meta(table: pa.Table, meta: dict) -> pa.Table:
    md = {f"{_META_PREFIX}{k}".encode(): json.dumps(v).encode() for k, v in meta.items()}
    return table.replace_schema_metadata(md)


def table_meta(table: pa.Table) -> dict:
    """The aggregation settings stored in a curves or horizon table's schema metadata."""
    md = table.schema.metadata or {}
    out = {}
    for k, v in md.items():
        k = k.decode()
        if k.startswith(_META_PREFIX):
            out[k[len(_META_PREFIX) :]] = json.loads(v.decode())
    return out


def _split_by_sweep(items, meta: dict, row_of=lambda item: item) -> dict:
    """Items grouped by their row's sweep, in first-seen order; one group (key None) when the
    records came from a single sweep and carry no sweep key."""
    keyed = "sweep" in meta.get("keys", [])
    sweeps: dict = {}
    for item in items:
        sweeps.setdefault(row_of(item)["sweep"] if keyed else None, []).append(item)
    return sweeps


def _plot_settings(table: pa.Table, x: str | None, threshold: float | None):
    """The metadata of a curves or horizon table, and the x column and threshold a figure uses:
    the given ones, else those :func:`aggregate` stored."""
    meta = table_meta(table)
    x = x or meta.get("x", DEFAULT_X)
    threshold = meta.get("threshold", DEFAULT_THRESHOLD) if threshold is None else threshold
    return meta, x, threshold, list(meta.get("by", []))


def aggregate(
    table: pa.Table,
    x: str = DEFAULT_X,
    by: Sequence[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[pa.Table, pa.Table]:
    """Success-rate curves and T50 per group from a records table.

    ``x`` is the column along which success is scanned (``delay``; ``tau`` for chaotic-data
    sweeps); ``by`` the grouping columns (``None``: :func:`default_by`). A ``sweep`` column, when
    present, always separates groups. Returns ``(curves, horizon)``:

    * curves: one row per group and x value with the key columns, ``x``, ``n`` (realizations,
      'error' rows excluded), ``k`` (successes), ``n_error``, ``rate``, ``wilson_lo``,
      ``wilson_hi``, ``group_id``.
    * horizon: one row per group with the key columns, ``group`` (a label), ``group_id``,
      ``n_x``, ``x_min``, ``x_max``, ``n``, ``n_error``, ``t50``, ``t50_relation``, ``t50_lo``,
      ``t50_lo_relation``, ``t50_hi``, ``t50_hi_relation`` and ``nonmonotone``. A relation is
      '=' (a value), '>=' (censored at x_max), '<' (censored at x_min) or 'n/a' (x not numeric,
      no realizations, or no bootstrap).

    Both carry the settings (x, by, keys, threshold, ...) in their schema metadata.
    """
    if not 0.0 < threshold <= 1.0:
        raise ReportError(f"threshold must be in (0, 1], got {threshold}")
    if by is not None:
        by = list(dict.fromkeys(by))
        if x in by:
            raise ReportError(f"--by must not contain the x column {x!r}")
    missing = missing_columns(table, x, by)
    if missing:
        raise ReportError(f"records lack required column(s): {', '.join(missing)}")
    if by is None:
        by = default_by(table, x)
    names = set(table.column_names)
    keys = (["sweep"] if "sweep" in names and "sweep" not in by else []) + list(by)

    # Per-row flags: 'error' rows are not realizations; 'diverged' rows are failures.
    success = pc.fill_null(pc.cast(table["success"], pa.bool_()), False)
    if "status" in names:
        status = pc.cast(_plain(table["status"]), pa.string())
        ok = pc.fill_null(pc.not_equal(status, "error"), True)
        diverged = pc.fill_null(pc.equal(status, "diverged"), False)
        succ = pc.and_(pc.and_(success, ok), pc.invert(diverged))
    else:
        ok = pa.chunked_array([pa.array(np.ones(table.num_rows, dtype=bool))])
        succ = success

    xcol = _plain(table[x])
    if not _is_numeric(xcol.type) and not pa.types.is_string(xcol.type):
        xcol = pc.cast(xcol, pa.string())
    slim = pa.table(
        {**{c: _plain(table[c]) for c in keys}, "__x": xcol, "__ok": ok, "__succ": succ}
    )
    cells = slim.group_by(keys + ["__x"], use_threads=True).aggregate(
        [("__ok", "sum"), ("__succ", "sum"), ("__ok", "count")]
    )
    n = pc.cast(cells["__ok_sum"], pa.int64())
    cells = pa.table(
        {
            **{c: cells[c] for c in keys},
            "__x": cells["__x"],
            "n": n,
            "k": pc.cast(cells["__succ_sum"], pa.int64()),
            "n_error": pc.subtract(cells["__ok_count"], n),
        }
    )
    meta = {
        "x": x,
        "by": list(by),
        "keys": keys,
        "threshold": threshold,
        "n_boot": int(n_boot),
        "seed": int(seed),
        "confidence": confidence,
    }
    return _summarize(cells, meta)


def pool(curves: pa.Table, by: Sequence[str]) -> tuple[pa.Table, pa.Table]:
    """Curves and horizon of the groups formed by ``by`` alone, from an aggregated curves table:
    the counts of the groups that differ only in the other axes are added up (exactly what
    :func:`aggregate` with this ``by`` gives). Settings (x, threshold, bootstrap) are kept."""
    meta = dict(table_meta(curves))
    x = meta.get("x", DEFAULT_X)
    unknown = [c for c in by if c not in meta.get("by", [])]
    if unknown:
        raise ReportError(f"cannot pool by {', '.join(unknown)}: not a grouping column")
    keys = [c for c in meta.get("keys", []) if c == "sweep" and c not in meta.get("by", [])] + list(by)
    cells = (
        pa.table({**{c: curves[c] for c in keys}, "__x": curves[x], "n": curves["n"],
                  "k": curves["k"], "n_error": curves["n_error"]})
        .group_by(keys + ["__x"])
        .aggregate([("n", "sum"), ("k", "sum"), ("n_error", "sum")])
        .rename_columns(keys + ["__x", "n", "k", "n_error"])
    )
    meta.update(by=list(by), keys=keys)
    return _summarize(cells, meta)


def _summarize(cells: pa.Table, meta: dict) -> tuple[pa.Table, pa.Table]:
    """Curves and horizon tables from cells (key columns, __x, n, k, n_error; any order)."""
    x, by, keys = meta["x"], meta["by"], meta["keys"]
    threshold, n_boot, seed = meta["threshold"], meta["n_boot"], meta["seed"]
    confidence = meta["confidence"]
    categorical = not _is_numeric(cells.schema.field("__x").type)
    meta = {**meta, "x_categorical": categorical}
    if categorical:
        xs = cells["__x"].combine_chunks()
        cells = cells.append_column("__rank", _natural_rank(xs))
        sort_x = "__rank"
    else:
        sort_x = "__x"
    order = []
    for c in keys:
        known = LEVEL_ORDER.get(c)
        if known and pa.types.is_string(cells.schema.field(c).type):
            cells = cells.append_column(f"__order_{c}", pc.index_in(cells[c], value_set=pa.array(known)))
            order.append((f"__order_{c}", "ascending"))
        order.append((c, "ascending"))
    cells = cells.sort_by(order + [(sort_x, "ascending")]).combine_chunks()

    size = cells.num_rows
    n = cells["n"].to_numpy().astype(np.int64)
    k = cells["k"].to_numpy().astype(np.int64)
    n_error = cells["n_error"].to_numpy().astype(np.int64)
    if size:
        change = np.zeros(size, dtype=bool)
        change[0] = True
        for c in keys:
            codes = _codes(cells[c])
            change[1:] |= codes[1:] != codes[:-1]
        starts = np.flatnonzero(change)
    else:
        starts = np.empty(0, dtype=np.int64)
    groups = starts.size
    gid = np.repeat(np.arange(groups), np.diff(np.append(starts, size))).astype(np.int32)

    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    lo, hi = stats.wilson_interval(k, n)

    curves = pa.table(
        {
            **{c: cells[c] for c in keys},
            x: cells["__x"],
            "n": pa.array(n),
            "k": pa.array(k),
            "n_error": pa.array(n_error),
            "rate": pa.array(rate, mask=np.isnan(rate)),
            "wilson_lo": pa.array(lo, mask=np.isnan(lo)),
            "wilson_hi": pa.array(hi, mask=np.isnan(hi)),
            "group_id": pa.array(gid),
        }
    )

    # T50 on the cells that have realizations and a finite numeric x.
    t50 = np.full(groups, np.nan)
    t_lo = np.full(groups, np.nan)
    t_hi = np.full(groups, np.nan)
    nonmono = np.zeros(groups, dtype=bool)
    x_min = np.full(groups, np.nan)
    x_max = np.full(groups, np.nan)
    n_x = np.zeros(groups, dtype=np.int64)
    if not categorical and size:
        xv_all = pc.cast(cells["__x"], pa.float64()).to_numpy(zero_copy_only=False)
        valid = (n > 0) & np.isfinite(xv_all)
        xv, kv, nv, gv = xv_all[valid], k[valid], n[valid], gid[valid]
        if xv.size:
            vstarts = np.flatnonzero(np.r_[True, gv[1:] != gv[:-1]])
            vg = gv[vstarts]
            point, mono_flag = stats.t50_point(xv, kv / nv, vstarts, threshold)
            blo, bhi = stats.t50_bootstrap(
                xv, kv, nv, vstarts, threshold, n_boot=n_boot, seed=seed, confidence=confidence
            )
            t50[vg], t_lo[vg], t_hi[vg], nonmono[vg] = point, blo, bhi, mono_flag
            x_min[vg] = xv[vstarts]
            x_max[vg] = xv[np.append(vstarts[1:], xv.size) - 1]
            n_x[vg] = np.diff(np.append(vstarts, xv.size))

    head = cells.select(keys).take(pa.array(starts, type=pa.int64())) if keys else pa.table({})
    t50_val, t50_rel = _relations(t50, x_min, x_max)
    lo_val, lo_rel = _relations(t_lo, x_min, x_max)
    hi_val, hi_rel = _relations(t_hi, x_min, x_max)
    n_sum = np.add.reduceat(n, starts) if groups else np.empty(0, dtype=np.int64)
    e_sum = np.add.reduceat(n_error, starts) if groups else np.empty(0, dtype=np.int64)
    horizon = pa.table(
        {
            **{c: head[c] for c in keys},
            "group": _group_labels(head, by) if groups else pa.array([], pa.string()),
            "group_id": pa.array(np.arange(groups, dtype=np.int32)),
            "n_x": pa.array(n_x),
            "x_min": pa.array(x_min, mask=np.isnan(x_min)),
            "x_max": pa.array(x_max, mask=np.isnan(x_max)),
            "n": pa.array(n_sum.astype(np.int64)),
            "n_error": pa.array(e_sum.astype(np.int64)),
            "t50": t50_val,
            "t50_relation": t50_rel,
            "t50_lo": lo_val,
            "t50_lo_relation": lo_rel,
            "t50_hi": hi_val,
            "t50_hi_relation": hi_rel,
            "nonmonotone": pa.array(nonmono),
        }
    )
    return _with_meta(curves, meta), _with_meta(horizon, meta)


# --------------------------------------------------------------------------------------------
# Synthetic records (benchmarks)
# --------------------------------------------------------------------------------------------


def synthetic_records(n_rows: int, seed: int = 0) -> pa.Table:
    """A records table shaped like a real parity sweep, for timing the report.

    Groups are configurations over arch, hidden, bits, floss_mode, floss_k, model_g and
    floss_pre_steps (as many as ``n_rows`` needs), each scanned over 6 delays with 16 realizations
    per delay (2 seeds x 8 ensemble members). Success is Bernoulli with a logistic fall-off around a
    per-group horizon; about 1% of rows diverge and 0.2% are errors. All DESIGN 7 columns are
    present. The table has exactly ``n_rows`` rows.
    """
    rng = np.random.default_rng(seed)
    delays = np.array([10, 20, 30, 40, 60, 80], dtype=np.int64)
    seeds, members = 2, 8
    per_cell = seeds * members
    n_cells = -(-n_rows // per_cell)
    n_groups = -(-n_cells // delays.size)

    axes = {
        "arch": np.array(["rnn", "lstm", "gru"]),
        "hidden": np.array([32, 64, 80, 128]),
        "bits": np.array([1, 2, 3]),
        "floss_mode": np.array(["none", "pre", "during", "pre+during", "regularizer"]),
        "floss_k": np.array([1, 16, 32, 75]),
        "model_g": np.array([0.8, 1.0, 1.2, 1.5, 2.0]),
    }
    g = np.arange(n_groups)
    values = {}
    stride = 1
    for name, levels in axes.items():
        values[name] = levels[(g // stride) % levels.size]
        stride *= levels.size
    values["floss_pre_steps"] = 500 * (1 + g // stride)
    # Per-group horizon: flossing and smaller task complexity help, as in the paper.
    boost = np.where(values["floss_mode"] == "none", 0.0, 12.0 + 0.2 * values["floss_k"])
    horizon = 15.0 + boost + 20.0 / values["bits"] + rng.normal(0.0, 4.0, n_groups)

    cell = np.arange(n_rows) // per_cell
    grp = cell // delays.size
    delay = delays[cell % delays.size]
    within = np.arange(n_rows) % per_cell
    seed_col = within // members
    member = within % members

    p = 1.0 / (1.0 + np.exp((delay - horizon[grp]) / 4.0))
    success = rng.random(n_rows) < p
    roll = rng.random(n_rows)
    status_code = np.where(roll < 0.002, 2, np.where(roll < 0.012, 1, 0))
    success &= status_code == 0
    status = pa.DictionaryArray.from_arrays(
        pa.array(status_code.astype(np.int8)), pa.array(["ok", "diverged", "error"])
    ).cast(pa.string())

    cell_keys = pa.array([f"{c:012x}" for c in range(n_cells)])
    trial_keys = pa.array([f"trial_{t:07d}" for t in range(n_cells * seeds)])
    acc = np.where(success, rng.uniform(0.95, 1.0, n_rows), rng.uniform(0.5, 0.95, n_rows))
    ets = np.where(success, rng.integers(200, 3000, n_rows), -1)
    lam1 = rng.normal(-0.05, 0.05, n_rows)
    cols = {
        "sweep": pa.array(np.full(n_rows, "synthetic-parity")),
        "trial_id": trial_keys.take(pa.array(cell * seeds + seed_col)),
        "member": pa.array(member),
        "seed": pa.array(seed_col),
        "config_key": cell_keys.take(pa.array(cell)),
        "arch": pa.array(values["arch"][grp]),
        "hidden": pa.array(values["hidden"][grp]),
        "task": pa.array(np.full(n_rows, "parity")),
        "bits": pa.array(values["bits"][grp]),
        "delay": pa.array(delay),
        "floss_mode": pa.array(values["floss_mode"][grp]),
        "floss_k": pa.array(values["floss_k"][grp]),
        "floss_strength": pa.array(np.zeros(n_rows)),
        "success": pa.array(success),
        "final_accuracy": pa.array(acc),
        "final_loss": pa.array(-np.log(acc)),
        "epochs_to_success": pa.array(ets, mask=ets < 0),
        "lambda_1": pa.array(lam1),
        "lambda_k": pa.array(lam1 - rng.uniform(0.0, 0.5, n_rows)),
        "status": status,
        "train_epochs": pa.array(np.full(n_rows, 3000)),
        "model_g": pa.array(values["model_g"][grp]),
        "floss_pre_steps": pa.array(values["floss_pre_steps"][grp]),
        "ensemble": pa.array(np.full(n_rows, members)),
    }
    return pa.table(cols)


# --------------------------------------------------------------------------------------------
# Reading records
# --------------------------------------------------------------------------------------------


def _concat(tables: list[pa.Table]) -> pa.Table:
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ReportError(f"record files have incompatible columns: {exc}") from None


def read_parquet_records(paths: Iterable[str | os.PathLike], x: str = DEFAULT_X) -> pa.Table:
    """Concatenate record files (a directory means every ``*.parquet`` below it)."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(p.rglob("*.parquet"))
            if not found:
                raise ReportError(f"no *.parquet files under {p}")
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            raise ReportError(f"no such file: {p}")
    if len(files) > 20:
        print(f"reading {len(files)} record files", file=sys.stderr)
    tables = []
    for f in files:
        try:
            t = pq.read_table(f)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ReportError(f"cannot read {f} as Parquet: {str(exc).splitlines()[0]}") from None
        missing = missing_columns(t, x)
        if missing:
            raise ReportError(f"{f}: missing required column(s): {', '.join(missing)}")
        tables.append(t)
    return _concat(tables)


def _check_store(uri: str) -> None:
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        if path and path != ":memory:" and not Path(path).exists():
            raise ReportError(
                f"no MLflow tracking store at {path} (pass --tracking-uri, or --from-parquet)"
            )


def _mlflow_client(uri: str):
    _check_store(uri)
    import logging

    # Our own progress line says what is read; one bar per child run would drown it.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    logging.getLogger("alembic").setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _search_all(client, experiment_ids, filter_string, order_by=None, max_results=None):
    runs, token = [], None
    while True:
        page = client.search_runs(
            experiment_ids=experiment_ids,
            filter_string=filter_string,
            order_by=order_by,
            max_results=1000 if max_results is None else max_results,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token or (max_results is not None and len(runs) >= max_results):
            return runs


def find_parent_run(client, experiment: str | None = None, run_id: str | None = None):
    """The parent run of a sweep launch: ``run_id``, else the latest in ``experiment``, else the
    latest parent run in the whole store. Returns ``(run, experiment_name)``."""
    from mlflow.exceptions import MlflowException

    uri = client.tracking_uri if hasattr(client, "tracking_uri") else ""
    parent_filter = f"tags.`{ROLE}` = 'parent'"
    if run_id:
        try:
            run = client.get_run(run_id)
        except MlflowException:
            raise ReportError(f"no run with id {run_id!r} in {uri}") from None
        role = run.data.tags.get(ROLE)
        if role not in (None, "parent"):
            raise ReportError(f"run {run_id} is not a sweep parent run ({ROLE} is {role!r})")
        exp = client.get_experiment(run.info.experiment_id)
        return run, exp.name
    if experiment:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            known = sorted(e.name for e in client.search_experiments())
            hint = f" (known: {', '.join(known[:10])}{', ...' if len(known) > 10 else ''})" if known else ""
            raise ReportError(f"unknown experiment {experiment!r} in {uri}{hint}")
        runs = _search_all(
            client, [exp.experiment_id], parent_filter, ["attributes.start_time DESC"], 1
        )
        if not runs:
            raise ReportError(
                f"no sweep launch in experiment {experiment!r}: no run tagged {ROLE}=parent"
            )
        return runs[0], exp.name
    exps = client.search_experiments()
    runs = _search_all(
        client, [e.experiment_id for e in exps], parent_filter, ["attributes.start_time DESC"], 1
    ) if exps else []
    if not runs:
        raise ReportError(f"no sweep found in {uri}: no run tagged {ROLE}=parent")
    exp = client.get_experiment(runs[0].info.experiment_id)
    return runs[0], exp.name


def read_mlflow_records(client, parent, experiment_name: str, x: str = DEFAULT_X) -> pa.Table:
    """Download and concatenate the records.parquet of every child run of ``parent``."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    pid = parent.info.run_id
    children = _search_all(
        client, [parent.info.experiment_id], f"tags.`{PARENT}` = '{pid}'"
    )
    children = [c for c in children if c.data.tags.get(ROLE, "child") == "child"]
    if not children:
        raise ReportError(f"no child runs found under parent run {pid} (experiment {experiment_name!r})")
    total = len(children)
    print(
        f"reading {RECORDS_ARTIFACT} of {total} child run(s) of parent run {pid} "
        f"(experiment {experiment_name!r})",
        file=sys.stderr,
    )
    tables, missing_art = [], 0
    every = max(1, total // 10)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flosssweep-report-") as tmp:
        for i, child in enumerate(children, 1):
            try:
                local = mlflow.artifacts.download_artifacts(
                    run_id=child.info.run_id,
                    artifact_path=RECORDS_ARTIFACT,
                    dst_path=os.path.join(tmp, child.info.run_id),
                    tracking_uri=client.tracking_uri,
                )
                t = pq.read_table(local)
            except (MlflowException, OSError, pa.ArrowInvalid):
                missing_art += 1
                continue
            missing = missing_columns(t, x)
            if missing:
                raise ReportError(
                    f"{RECORDS_ARTIFACT} of child run {child.info.run_id}: missing required "
                    f"column(s): {', '.join(missing)}"
                )
            tables.append(t)
            if total >= 20 and (i % every == 0 or i == total):
                print(f"  {i}/{total} ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    if missing_art:
        print(
            f"warning: {missing_art} of {total} child run(s) have no readable {RECORDS_ARTIFACT}; skipped",
            file=sys.stderr,
        )
    if not tables:
        raise ReportError(
            f"no records found: none of the {total} child run(s) of parent run {pid} has a {RECORDS_ARTIFACT}"
        )
    table = _concat(tables)
    if "sweep" not in table.column_names:
        table = table.append_column("sweep", pa.array([experiment_name] * table.num_rows))
    return table


# --------------------------------------------------------------------------------------------
# Text output
# --------------------------------------------------------------------------------------------


def _num(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "n/a"
    v = float(v)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    if abs(v) >= 1000:
        return f"{v:.0f}"
    return f"{v:.4g}"


def _bound(value, relation) -> str:
    if relation == "=":
        return _num(value)
    if relation == ">=":
        return f">= {_num(value)}"
    if relation == "<":
        return f"< {_num(value)}"
    return "n/a"


def _t50_text(row: dict, with_ci: bool) -> str:
    text = _bound(row["t50"], row["t50_relation"])
    if row["nonmonotone"]:
        text += "*"
    if with_ci and row["t50_relation"] != "n/a" and row["t50_lo_relation"] != "n/a":
        text += (
            f" [{_bound(row['t50_lo'], row['t50_lo_relation'])}, "
            f"{_bound(row['t50_hi'], row['t50_hi_relation'])}]"
        )
    return text


def _cell_text(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, float):
        return _num(v)
    return str(v)


def _sweep_views(curves: pa.Table, horizon: pa.Table):
    """Per sweep: (name, horizon rows, x values, k/n matrix as {group_id: {x: text}})."""
    meta = table_meta(horizon)
    x = meta.get("x", DEFAULT_X)
    hrows = horizon.to_pylist()
    k = curves["k"].to_numpy()
    n = curves["n"].to_numpy()
    gid = curves["group_id"].to_numpy()
    xs = curves[x].to_pylist()
    kn: dict[int, dict] = {}
    for g, xv, kk, nn in zip(gid.tolist(), xs, k.tolist(), n.tolist()):
        kn.setdefault(g, {})[xv] = f"{kk}/{nn}"
    sweeps = _split_by_sweep(hrows, meta)
    views = []
    for name, rows in sweeps.items():
        ids = {r["group_id"] for r in rows}
        xorder = {}
        for g, xv in zip(gid.tolist(), xs):
            if g in ids and xv not in xorder:
                xorder[xv] = None
        xvals = list(xorder)
        if not meta.get("x_categorical"):
            xvals.sort(key=lambda v: (v is None, v if v is not None else 0))
        views.append((name, rows, xvals, kn))
    return views


def _summary_line(name, rows, meta) -> str:
    n = sum(r["n"] for r in rows)
    err = sum(r["n_error"] for r in rows)
    parts = [f"{len(rows)} group(s)", f"{n} realization(s)"]
    if err:
        parts.append(f"{err} row(s) with status 'error' excluded from n (column 'errors')")
    parts.append(f"threshold {meta.get('threshold', DEFAULT_THRESHOLD):g}")
    if meta.get("n_boot", 0) > 0:
        parts.append(f"{meta['n_boot']} bootstrap resamples, seed {meta.get('seed', 0)}")
    title = f"sweep {name}" if name is not None else "records"
    return f"{title}: " + ", ".join(parts)


def _wide_rows(rows, xvals, kn, meta, *, for_csv: bool):
    by = meta.get("by", [])
    x = meta.get("x", DEFAULT_X)
    with_ci = meta.get("n_boot", 0) > 0
    any_err = any(r["n_error"] for r in rows)
    header = list(by) + [f"{x} {_cell_text(v)}" for v in xvals]
    if for_csv:
        header += [
            "t50",
            "t50_relation",
            "t50_lo",
            "t50_lo_relation",
            "t50_hi",
            "t50_hi_relation",
            "nonmonotone",
            "errors",
        ]
    else:
        header += ["T50 [95% CI]" if with_ci else "T50"] + (["errors"] if any_err else [])
    body = []
    for r in rows:
        line = [_cell_text(r[c]) for c in by]
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
            ]
        else:
            line.append(_t50_text(r, with_ci))
            if any_err:
                line.append(str(r["n_error"]))
        body.append(line)
    return header, body


def _align(header, body, markdown: bool) -> str:
    cols = list(zip(*([header] + body))) if body else [[h] for h in header]
    widths = [max(len(str(c)) for c in col) for col in cols]
    numeric = [
        all(any(ch.isdigit() for ch in str(c)) or str(c) in ("-", "n/a") for c in col[1:]) and len(col) > 1
        for col in cols
    ]

    def fmt(line):
        cells = [
            str(c).rjust(w) if num else str(c).ljust(w) for c, w, num in zip(line, widths, numeric)
        ]
        return ("| " + " | ".join(cells) + " |") if markdown else "  ".join(cells).rstrip()

    out = [fmt(header)]
    if markdown:
        out.append("| " + " | ".join(("-" * (w - 1) + ":") if num else "-" * w for w, num in zip(widths, numeric)) + " |")
    else:
        out.append("  ".join("-" * w for w in widths))
    out += [fmt(b) for b in body]
    return "\n".join(out)


def _footnotes(rows, meta) -> list[str]:
    notes = []
    x = meta.get("x", DEFAULT_X)
    if any(r["nonmonotone"] for r in rows):
        notes.append(
            f"* success rate is back at or above {meta.get('threshold', DEFAULT_THRESHOLD):g} after "
            f"the first crossing; T50 uses the first crossing (see --help)"
        )
    if meta.get("x_categorical"):
        notes.append(f"T50 is n/a: the x column {x!r} is not numeric")
    return notes


def format_report(curves: pa.Table, horizon: pa.Table, fmt: str = "table") -> str:
    """The report as text: 'table' (aligned, for a terminal), 'markdown', 'csv' or 'json'."""
    meta = table_meta(horizon)
    views = _sweep_views(curves, horizon)
    if fmt == "json":
        return _format_json(curves, horizon, meta)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        has_sweep = "sweep" in meta.get("keys", [])
        for i, (name, rows, xvals, kn) in enumerate(views):
            header, body = _wide_rows(rows, xvals, kn, meta, for_csv=True)
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
        header, body = _wide_rows(rows, xvals, kn, meta, for_csv=False)
        title = _summary_line(name, rows, meta)
        lines = [f"### {title}" if md else title, ""]
        lines.append(_align(header, body, md))
        notes = _footnotes(rows, meta)
        if notes:
            lines.append("")
            lines += notes
        blocks.append("\n".join(lines))
    if not blocks:
        return "no groups"
    return "\n\n".join(blocks)


def _format_json(curves: pa.Table, horizon: pa.Table, meta: dict) -> str:
    x = meta.get("x", DEFAULT_X)
    by = meta.get("by", [])
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
            "t50": {
                "value": r["t50"],
                "relation": r["t50_relation"],
                "lo": r["t50_lo"],
                "lo_relation": r["t50_lo_relation"],
                "hi": r["t50_hi"],
                "hi_relation": r["t50_hi_relation"],
            },
            "nonmonotone": r["nonmonotone"],
            "curve": points.get(r["group_id"], []),
        }

    sweeps = _split_by_sweep(horizon.to_pylist(), meta)
    doc = {
        "x": x,
        "by": by,
        "threshold": meta.get("threshold"),
        "confidence": meta.get("confidence"),
        "n_boot": meta.get("n_boot"),
        "seed": meta.get("seed"),
        "sweeps": [{"sweep": k, "groups": [group(r) for r in v]} for k, v in sweeps.items()],
    }
    return json.dumps(doc, indent=2, default=str)


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
        return [(float(marker), marker_label or f"{x} = {_num(marker)}")]
    out = []
    for item in marker:
        if isinstance(item, (tuple, list)):
            out.append((float(item[0]), str(item[1])))
        else:
            out.append((float(item), f"{x} = {_num(item)}"))
    return out


def _xlabel(x: str) -> str:
    return {"delay": "delay d (time steps)", "tau": "teacher-forcing interval tau"}.get(x, x)


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
    meta, x, threshold, by = _plot_settings(curves, x, threshold)
    categorical = bool(meta.get("x_categorical")) or not _is_numeric(curves.schema.field(x).type)
    markers = _normalize_markers(marker, marker_label, x) if not categorical else []

    points: dict = {}
    for r in curves.to_pylist():
        points.setdefault(r["group_id"], []).append(r)
    sweeps = _split_by_sweep(points.values(), meta, row_of=lambda pts: pts[0])

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
            panels.append((sweep, f"{facet} = {_cell_text(level)}", [g for g in groups if g[0][facet] == level]))
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
            legend.setdefault(", ".join(_cell_text(v) for v in key) if rest else "all", line)
        th = ax.axhline(threshold, color="0.3", linestyle=":", linewidth=1.2)
        legend.setdefault(f"threshold {threshold:g}", th)
        for j, (value, label) in enumerate(markers):
            ml = ax.axvline(value, color="black", linestyle=["--", "-.", ":"][j % 3], linewidth=1.3)
            legend.setdefault(label, ml)
        if categorical:
            ax.set_xticks(range(len(levels)))
            ax.set_xticklabels([_cell_text(v) for v in levels])
        elif 0 < len(tested) <= 12:
            ax.set_xticks(sorted(tested))
            ax.set_xticklabels([_num(v) for v in sorted(tested)])
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

    meta, x, threshold, by = _plot_settings(horizon, x, threshold)
    rows = [r for r in horizon.to_pylist() if r["t50_relation"] != "n/a" and r["t50"] is not None]
    if not rows:
        return None
    axis = axis or most_important_axis(horizon, by)
    if axis is not None and axis not in by:
        raise ReportError(f"--horizon-axis {axis!r} is not a grouping column ({', '.join(by) or 'none'})")
    rest = [c for c in by if c != axis]
    sweeps = _split_by_sweep(rows, meta)

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
                    ", ".join(_cell_text(v) for v in key) if rest else "T50",
                    Line2D([], [], marker="o", color=colors[key], linewidth=1.4),
                )
        if axis and not use_numeric:
            ax.set_xticks(range(len(levels)))
            ax.set_xticklabels([_cell_text(v) for v in levels])
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


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _split_columns(values: Sequence[str] | None) -> list[str] | None:
    if values is None:
        return None
    cols = [c.strip() for v in values for c in v.split(",") if c.strip()]
    if cols == ["none"]:
        return []
    return cols


def _parser() -> argparse.ArgumentParser:
    doc = __doc__.split("\nFunctions for other code")[0]
    p = argparse.ArgumentParser(
        prog="python -m flosssweep.report",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "exit status: 0 on success; 2 on bad input (no runs, unknown experiment or column,\n"
            "unreadable file); 1 when the report was made but could not be logged to MLflow."
        ),
    )
    src = p.add_argument_group("where the records come from (default: the most recent sweep in the tracking store)")
    one = src.add_mutually_exclusive_group()
    one.add_argument("--experiment", metavar="NAME",
                     help="MLflow experiment (= sweep name); its most recent parent run is reported")
    one.add_argument("--run", metavar="PARENT_RUN_ID",
                     help="the parent run of one sweep launch (tag flosssweep.role=parent)")
    one.add_argument("--from-parquet", nargs="+", metavar="PATH",
                     help="record files or directories of them (*.parquet); MLflow is not used")
    src.add_argument("--tracking-uri", metavar="URI",
                     help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                          "sqlite:///<absolute cwd>/mlflow.db)")
    ana = p.add_argument_group("analysis")
    ana.add_argument("--x", default=DEFAULT_X, metavar="COLUMN",
                     help="column scanned for the success curve and T50 (default: delay; e.g. tau)")
    ana.add_argument("--by", nargs="+", metavar="COLUMNS",
                     help="grouping columns, space or comma separated; 'none' pools every "
                          "configuration (default: every configuration column that varies, except "
                          "seed, member and the x column)")
    ana.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, metavar="RATE",
                     help="success rate T50 is measured at, in (0, 1] (default: 0.5)")
    ana.add_argument("--n-boot", type=int, default=DEFAULT_N_BOOT, metavar="N",
                     help="bootstrap resamples for the T50 interval; 0 turns it off (default: 1000)")
    ana.add_argument("--seed", type=int, default=0,
                     help="seed of the bootstrap, so the report is reproducible (default: 0)")
    out = p.add_argument_group("output")
    out.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table",
                     help="what is printed on stdout (default: table)")
    out.add_argument("--out", metavar="DIR",
                     help="also write success_curves.parquet, horizon.parquet, report.md, "
                          "success_vs_<x>.png and horizon.png into DIR")
    out.add_argument("--horizon-axis", metavar="COLUMN",
                     help="grouping column on the horizontal axis of horizon.png (default: the one "
                          "that explains most of the variation of T50)")
    out.add_argument("--marker", type=float, metavar="VALUE",
                     help="draw a vertical line at this x in the success-curve figure (e.g. a "
                          "predicted value)")
    out.add_argument("--marker-label", metavar="TEXT", help="legend text of --marker")
    out.add_argument("--no-log", action="store_true",
                     help="when reading from MLflow, do not log the outputs to the parent run "
                          "(default: they are logged under report/)")
    return p


def _check_threshold(p: argparse.ArgumentParser, args) -> None:
    if not 0.0 < args.threshold <= 1.0:
        p.error(f"--threshold must be in (0, 1], got {args.threshold}")
    if args.n_boot < 0:
        p.error(f"--n-boot must be >= 0, got {args.n_boot}")


def _run(args) -> int:
    by = _split_columns(args.by)
    client = parent = None
    if args.from_parquet:
        table = read_parquet_records(args.from_parquet, x=args.x)
        source = ", ".join(args.from_parquet)
    else:
        uri = resolve_uri(args.tracking_uri, Path.cwd())
        client = _mlflow_client(uri)
        parent, exp_name = find_parent_run(client, args.experiment, args.run)
        table = read_mlflow_records(client, parent, exp_name, x=args.x)
        source = f"parent run {parent.info.run_id}"
    if table.num_rows == 0:
        raise ReportError(f"no records found in {source}")
    if by:
        unknown = [c for c in by if c not in table.column_names]
        if unknown:
            raise ReportError(
                f"unknown --by column(s): {', '.join(unknown)} (columns: {', '.join(table.column_names)})"
            )
    print(f"aggregating {table.num_rows} record row(s) from {source}", file=sys.stderr)
    curves, horizon = aggregate(
        table, x=args.x, by=by, threshold=args.threshold, n_boot=args.n_boot, seed=args.seed
    )
    if args.horizon_axis and args.horizon_axis not in table_meta(horizon)["by"]:
        raise ReportError(
            f"--horizon-axis {args.horizon_axis!r} is not a grouping column "
            f"({', '.join(table_meta(horizon)['by']) or 'none'})"
        )
    print(format_report(curves, horizon, args.format))
    marker = args.marker
    if marker is None and args.x == "tau" and "lambda_max_data" in table.column_names:
        # chaotic-data records: mark the forcing interval the data predict, ln 2 / lambda_max per step
        lambdas = sorted({v for v in table["lambda_max_data"].to_pylist() if v is not None and v > 0})
        marker = [(np.log(2.0) / v, f"ln 2 / lambda_max = {np.log(2.0) / v:.1f}") for v in lambdas] or None

    need_files = args.out or (client is not None and not args.no_log)
    if not need_files:
        return 0
    with tempfile.TemporaryDirectory(prefix="flosssweep-report-") as tmp:
        out_dir = Path(args.out) if args.out else Path(tmp)
        written = write_outputs(
            curves, horizon, out_dir, marker=marker, marker_label=args.marker_label,
            horizon_axis=args.horizon_axis,
        )
        if args.out:
            print(f"wrote {', '.join(str(w) for w in written)}", file=sys.stderr)
        if client is not None and not args.no_log:
            try:
                for w in written:
                    client.log_artifact(parent.info.run_id, str(w), REPORT_ARTIFACT_DIR)
            except Exception as exc:  # the report itself is done; say why logging failed
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                print(f"warning: could not log the report to run {parent.info.run_id}: {first}",
                      file=sys.stderr)
                return 1
            print(f"logged {len(written)} file(s) to run {parent.info.run_id} under "
                  f"{REPORT_ARTIFACT_DIR}/", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_threshold(parser, args)
    try:
        return _run(args)
    except ReportError as exc:
        print(f"flosssweep.report: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
