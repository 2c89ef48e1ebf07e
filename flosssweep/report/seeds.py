"""Between-seed spread: T50 of each independent seed of a group next to its own interval.

A sweep with `replicates: n` (or a seed grid) trains every configuration as n independent ensembles,
one per base seed. The report pools them into one group; this table splits each group by seed again
and says, per seed, whether its T50 lies inside every other seed's interval. Seeds whose point values
fall outside each other's intervals mean the within-seed interval understates how much T50 moves
between independent sets of initial networks and data.
"""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.compute as pc

from flosssweep.report.curves import Aggregate, _plain, aggregate, with_x
from flosssweep.report.text import bound_text, t50_text, titled_table

SEED = "seed"


def _signed(value, relation: str) -> float:
    """A bound as a number on an extended line: '>= x' is +inf and '< x' is -inf (censored beyond the
    scanned range), 'n/a' is NaN."""
    if relation == ">=":
        return math.inf
    if relation == "<":
        return -math.inf
    return math.nan if relation == "n/a" or value is None else float(value)


def inside(t50: float, lo: float, hi: float) -> bool | None:
    """Whether a T50 lies in [lo, hi] (all as `_signed` gives them); None when any is NaN."""
    if math.isnan(t50) or math.isnan(lo) or math.isnan(hi):
        return None
    return lo <= t50 <= hi


def _with_own_curves(table: pa.Table, keys: list[str], x: str) -> pa.Table:
    """The rows of the seeds that cover two x values or more within their group."""
    columns = [_plain(table[c]).to_pylist() for c in [*keys, SEED]]
    xs: dict[tuple, set] = {}
    for cell, value in zip(zip(*columns), _plain(with_x(table, x)[x]).to_pylist()):  # x may be derived
        xs.setdefault(cell, set()).add(value)
    return table.filter(pa.array([len(xs[cell]) >= 2 for cell in zip(*columns)]))


def seed_spread(table: pa.Table, aggregated: Aggregate) -> pa.Table | None:
    """One row per (group, seed): the group's keys and label, the seed, its n, T50 and interval (as
    text), and `inside_others`, e.g. '2/2': of the other seeds of the group, how many intervals hold
    this seed's T50. Only seeds with a curve of their own count: those at two x or more in their group
    (an adaptive sweep that places an x twice gives the second trial a new seed, which is no replicate).
    None when no group has two such seeds (nothing to compare)."""
    settings = aggregated.settings
    if SEED not in table.column_names or settings.x_categorical or SEED in settings.by:
        return None
    table = _with_own_curves(table, settings.keys, settings.x)
    if table.num_rows == 0:
        return None
    seeds = _plain(table[SEED])
    if settings.keys:
        counts = (
            pa.table({**{c: _plain(table[c]) for c in settings.keys}, SEED: seeds})
            .group_by(settings.keys)
            .aggregate([(SEED, "count_distinct")])
        )
        distinct = pc.max(counts[f"{SEED}_count_distinct"]).as_py()
    else:
        distinct = pc.count_distinct(seeds).as_py()
    if distinct < 2:
        return None
    split = aggregate(
        table,
        x=settings.x,
        by=[*settings.by, SEED],
        threshold=settings.threshold,
        n_draws=settings.n_draws,
        seed=settings.seed,
        confidence=settings.confidence,
    )
    labels = {tuple(r[c] for c in settings.keys): r["group"] for r in aggregated.horizon.to_pylist()}
    groups: dict[tuple, list[dict]] = {}
    for row in split.horizon.to_pylist():
        groups.setdefault(tuple(row[c] for c in settings.keys), []).append(row)
    out = []
    for key, members in groups.items():
        for row in members:
            t50 = _signed(row["t50"], row["t50_relation"])
            held = [
                inside(t50, _signed(o["t50_lo"], o["t50_lo_relation"]), _signed(o["t50_hi"], o["t50_hi_relation"]))
                for o in members
                if o is not row
            ]
            known = [h for h in held if h is not None]
            out.append(
                {
                    **dict(zip(settings.keys, key)),
                    "group": labels.get(key, "all"),
                    SEED: row[SEED],
                    "n": row["n"],
                    "t50": bound_text(row["t50"], row["t50_relation"]),
                    "t50_interval": t50_text(row, with_ci=True),
                    "inside_others": f"{sum(known)}/{len(known)}" if known else "n/a",
                }
            )
    return pa.Table.from_pylist(out)


def format_seed_spread(spread: pa.Table, markdown: bool = False) -> str:
    """The spread as a small table: group, seed, n, T50 [interval], inside the others' intervals."""
    header = ["group", SEED, "n", "T50 [interval]", "inside others' intervals"]
    body = [[r["group"], str(r[SEED]), str(r["n"]), r["t50_interval"], r["inside_others"]] for r in spread.to_pylist()]
    title = "T50 per seed (between-seed spread against each seed's own interval)"
    return titled_table(title, header, body, markdown)
