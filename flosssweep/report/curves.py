"""Records -> success-rate curves per (group, x) and the horizon T50 per group, as Arrow tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flosssweep.names import IDENTITY_COLUMNS, OUTCOME_COLUMNS, OUTCOME_PREFIXES, REPORT_SETTINGS
from flosssweep.report import stats
from flosssweep.report.common import (
    DEFAULT_N_DRAWS,
    DEFAULT_THRESHOLD,
    DEFAULT_X,
    DERIVED_X,
    LEVEL_ORDER,
    RELATIONS,
    REQUIRED_COLUMNS,
    ReportError,
)
from flosssweep.report.fit import check_fit, fit_groups

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


def is_numeric(t: pa.DataType) -> bool:
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
    that differs between realizations of one configuration). A derived ``x`` (``spacing``) also
    leaves out the column it replaces (``delay``).
    """
    schema = _config_column_names()
    allowed = None if schema is None else schema[0] - schema[1]
    replaced = DERIVED_X.get(x, (x,))[0]
    candidates = [
        c
        for c in table.column_names
        if c not in (x, replaced)
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
    """Required columns (success, the x column or those a derived x is computed from, and any --by
    column) that ``table`` lacks."""
    need = list(REQUIRED_COLUMNS) + list(DERIVED_X.get(x, (x,))) + list(by or [])
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
    rel = pa.DictionaryArray.from_arrays(pa.array(code, type=pa.int8()), pa.array(RELATIONS))
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


@dataclass(frozen=True)
class Settings:
    """How an aggregate was made; every table, text and figure of a report reads them here."""

    x: str  # the column scanned for the success curve and T50
    by: list[str]  # grouping columns
    keys: list[str]  # columns that separate groups: `sweep` (records of several sweeps), then `by`
    threshold: float  # success rate T50 is read at
    n_draws: int  # posterior draws behind the T50 interval (0: none)
    seed: int
    confidence: float
    x_categorical: bool = False  # x holds text: success counts only, T50 n/a
    fit: str | None = None  # a model fitted to each group beside the interpolated T50 (report/fit.py)

    def attach(self, table: pa.Table) -> pa.Table:
        """`table` carrying these settings in its schema metadata, so that a written curves or horizon
        file says how it was made (read back with `Settings.of`)."""
        return table.replace_schema_metadata({REPORT_SETTINGS: json.dumps(asdict(self)).encode()})

    @classmethod
    def of(cls, table: pa.Table) -> Settings:
        """The settings a written curves or horizon table carries."""
        raw = (table.schema.metadata or {}).get(REPORT_SETTINGS.encode())
        if raw is None:
            raise ReportError("the table carries no report settings (not written by flosssweep.report)")
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class Aggregate:
    """Success-rate curves (one row per group and x), the horizon (one row per group), the settings
    that made them, and with a fit its curves (group_id, x, rate: the posterior mean success rate)."""

    curves: pa.Table
    horizon: pa.Table
    settings: Settings
    fitted: pa.Table | None = None


def split_by_sweep(items, settings: Settings, row_of=lambda item: item) -> dict:
    """Items grouped by their row's sweep, in first-seen order; one group (key None) when the
    records came from a single sweep and carry no sweep key."""
    keyed = "sweep" in settings.keys
    sweeps: dict = {}
    for item in items:
        sweeps.setdefault(row_of(item)["sweep"] if keyed else None, []).append(item)
    return sweeps


def with_x(table: pa.Table, x: str) -> pa.Table:
    """``table`` with its derived x column computed when ``x`` is one (``spacing`` = delay / bits,
    null where either is), else unchanged."""
    if x != "spacing":
        return table
    delay, bits = (pc.cast(_plain(table[c]), pa.float64()) for c in DERIVED_X[x])
    if x in table.column_names:
        table = table.drop_columns([x])
    return table.append_column(x, pc.divide(delay, bits))


def aggregate(
    table: pa.Table,
    x: str = DEFAULT_X,
    by: Sequence[str] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    n_draws: int = DEFAULT_N_DRAWS,
    seed: int = 0,
    confidence: float = 0.95,
    fit: str | None = None,
) -> Aggregate:
    """Success-rate curves and T50 per group from a records table.

    ``x`` is the column along which success is scanned (``delay``, the longest lag; ``spacing``,
    computed as delay / bits; ``tau`` for chaotic-data sweeps). Rows without an x value (a
    chaotic trial has no delay) are left out. ``by`` the grouping columns (``None``:
    :func:`default_by`). A ``sweep`` column, when present, always separates groups. Returns an
    `Aggregate` of:

    * curves: one row per group and x value with the key columns, ``x``, ``n`` (realizations,
      'error' rows excluded), ``k`` (successes), ``n_error``, ``rate``, ``wilson_lo``,
      ``wilson_hi``, ``group_id``.
    * horizon: one row per group with the key columns, ``group`` (a label), ``group_id``,
      ``n_x``, ``x_min``, ``x_max``, ``n``, ``n_error``, ``t50``, ``t50_relation``, ``t50_lo``,
      ``t50_lo_relation``, ``t50_hi``, ``t50_hi_relation`` and ``nonmonotone``. A relation is
      '=' (a value), '>=' (censored at x_max), '<' (censored at x_min) or 'n/a' (x not numeric,
      no realizations, or no posterior draws).
      With ``fit`` ('logistic', see :mod:`flosssweep.report.fit`) also ``fit_t50``, ``fit_t50_lo``,
      ``fit_t50_hi`` and their relations: the fitted posterior's median and interval.

    and the `Settings` that made them.
    """
    if not 0.0 < threshold <= 1.0:
        raise ReportError(f"threshold must be in (0, 1], got {threshold}")
    check_fit(fit, threshold)
    if by is not None:
        by = list(dict.fromkeys(by))
        if x in by:
            raise ReportError(f"--by must not contain the x column {x!r}")
    missing = missing_columns(table, x, by)
    if missing:
        raise ReportError(
            f"records lack required column(s): {', '.join(missing)}"
            + (f" (--x {x} is computed from {' and '.join(DERIVED_X[x])})" if x in DERIVED_X else "")
        )
    table = with_x(table, x)
    if table[x].null_count:
        table = table.filter(pc.is_valid(table[x]))
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
    if not is_numeric(xcol.type) and not pa.types.is_string(xcol.type):
        xcol = pc.cast(xcol, pa.string())
    slim = pa.table({**{c: _plain(table[c]) for c in keys}, "__x": xcol, "__ok": ok, "__succ": succ})
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
    settings = Settings(x, list(by), keys, threshold, int(n_draws), int(seed), confidence, fit=fit)
    return _summarize(cells, settings)


def pool(aggregated: Aggregate, by: Sequence[str]) -> Aggregate:
    """The aggregate of the groups formed by ``by`` alone: the counts of the groups that differ only
    in the other axes are added up (exactly what :func:`aggregate` with this ``by`` gives). Settings
    (x, threshold, posterior draws) are kept."""
    settings, curves = aggregated.settings, aggregated.curves
    x = settings.x
    unknown = [c for c in by if c not in settings.by]
    if unknown:
        raise ReportError(f"cannot pool by {', '.join(unknown)}: not a grouping column")
    keys = [c for c in settings.keys if c == "sweep" and c not in settings.by] + list(by)
    cells = (
        pa.table(
            {
                **{c: curves[c] for c in keys},
                "__x": curves[x],
                "n": curves["n"],
                "k": curves["k"],
                "n_error": curves["n_error"],
            }
        )
        .group_by(keys + ["__x"])
        .aggregate([("n", "sum"), ("k", "sum"), ("n_error", "sum")])
        .rename_columns(keys + ["__x", "n", "k", "n_error"])
    )
    return _summarize(cells, replace(settings, by=list(by), keys=keys))


def _summarize(cells: pa.Table, settings: Settings) -> Aggregate:
    """The aggregate of cells (key columns, __x, n, k, n_error; any order)."""
    x, by, keys = settings.x, settings.by, settings.keys
    threshold, n_draws, seed = settings.threshold, settings.n_draws, settings.seed
    confidence = settings.confidence
    categorical = not is_numeric(cells.schema.field("__x").type)
    settings = replace(settings, x_categorical=categorical)
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
    fitted = None
    fit_values = [np.full(groups, np.nan) for _ in range(3)]
    if not categorical and size:
        xv_all = pc.cast(cells["__x"], pa.float64()).to_numpy(zero_copy_only=False)
        valid = (n > 0) & np.isfinite(xv_all)
        xv, kv, nv, gv = xv_all[valid], k[valid], n[valid], gid[valid]
        if xv.size:
            vstarts = np.flatnonzero(np.r_[True, gv[1:] != gv[:-1]])
            vg = gv[vstarts]
            point, mono_flag = stats.t50_point(xv, kv / nv, vstarts, threshold)
            blo, bhi = stats.t50_posterior_draws(
                xv, kv, nv, vstarts, threshold, n_draws=n_draws, seed=seed, confidence=confidence
            )
            t50[vg], t_lo[vg], t_hi[vg], nonmono[vg] = point, blo, bhi, mono_flag
            x_min[vg] = xv[vstarts]
            x_max[vg] = xv[np.append(vstarts[1:], xv.size) - 1]
            n_x[vg] = np.diff(np.append(vstarts, xv.size))
            if settings.fit:
                fit = fit_groups(xv, kv, nv, vstarts, threshold, confidence)
                for column, values in zip(fit_values, (fit.t50, fit.lo, fit.hi)):
                    column[vg] = values
                fitted = _fitted_table(vg, fit.curves, x)

    head = cells.select(keys).take(pa.array(starts, type=pa.int64()))
    # With no key columns (one sweep's records without a sweep column, nothing varied) there is
    # one group, and a table without columns cannot carry its row count.
    labels = _group_labels(head, by) if keys else pa.array(["all"] * groups, type=pa.string())
    t50_val, t50_rel = _relations(t50, x_min, x_max)
    lo_val, lo_rel = _relations(t_lo, x_min, x_max)
    hi_val, hi_rel = _relations(t_hi, x_min, x_max)
    n_sum = np.add.reduceat(n, starts) if groups else np.empty(0, dtype=np.int64)
    e_sum = np.add.reduceat(n_error, starts) if groups else np.empty(0, dtype=np.int64)
    horizon = pa.table(
        {
            **{c: head[c] for c in keys},
            "group": labels,
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
    if settings.fit:
        for name, values in zip(("fit_t50", "fit_t50_lo", "fit_t50_hi"), fit_values):
            value, relation = _relations(values, x_min, x_max)
            horizon = horizon.append_column(name, value).append_column(f"{name}_relation", relation)
    return Aggregate(curves, horizon, settings, fitted)


def _fitted_table(group_ids: np.ndarray, curves: list[tuple[np.ndarray, np.ndarray]], x: str) -> pa.Table:
    """The fitted curves as one long table: group_id, x, rate."""
    sizes = [xs.size for xs, _ in curves]
    return pa.table(
        {
            "group_id": pa.array(np.repeat(group_ids, sizes).astype(np.int32)),
            x: pa.array(np.concatenate([xs for xs, _ in curves]) if curves else np.empty(0)),
            "rate": pa.array(np.concatenate([rate for _, rate in curves]) if curves else np.empty(0)),
        }
    )
