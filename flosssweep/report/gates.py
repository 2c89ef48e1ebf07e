"""The retention gate of gated cells per group, x and stage: the mean gate and the share of saturated units.

The diagnostics over training of an LSTM or GRU trial record every unit's retention gate at the
stages (before training, after pre-flossing, at the end): the LSTM's forget gate and the GRU's
update gate, each averaged over a batch (flosssweep.train.diagnostics). A gate g near 1 carries the
unit's state over with a contraction of about ln g per step, so flossing can bring a gated network's
exponents to 0 by saturating its gates instead of by making it remember its input. This table pools
the units of every member of a (group, x) cell, per stage, so a reader sees whether a schedule's
near-zero exponents go with saturated gates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flosssweep import config as cfg
from flosssweep.names import DIAGNOSTIC_STAGES, RETENTION_GATE
from flosssweep.report import style
from flosssweep.report.common import group_labels, level_key
from flosssweep.report.curves import with_x
from flosssweep.report.text import num_text, titled_table

# A unit whose gate is above this contracts by less than ln 0.9 = -0.1 per step: its state outlives
# 10 steps with no input, which is what the table counts as saturated.
SATURATED = 0.9


def retention_by_stage(diagnostics: pa.Table, records: pa.Table, by: Sequence[str], x: str) -> pa.Table:
    """One row per (group, x, stage) that holds retention gates: group label, x, stage, members,
    units (members x N, each counted once however often the diagnostics were read), the mean gate over
    them and the share of units above SATURATED, both over the finite gates (a diverged member's NaN
    gates are left out of both). Groups in reading order, x by value, stages in the order they happen;
    'pre' only for trials that flossed before training (for the others it repeats 'initial'); trials
    that `records` does not hold are left out. Empty where no trial recorded a gate (tanh rnn, PLRNN)."""
    gates = diagnostics.filter(pc.equal(diagnostics["quantity"], RETENTION_GATE))
    label_of, order_of = group_labels(records, by)
    records = with_x(records, x)
    mode, pre_steps = cfg.column_name("floss.mode"), cfg.column_name("floss.pre_steps")
    trials = records.select(["config_key", x, *(c for c in (mode, pre_steps) if c in records.column_names)]).to_pylist()
    x_of = {t["config_key"]: t[x] for t in trials}
    pre_flossed = {t["config_key"] for t in trials if cfg.flosses_before_training(t.get(mode), t.get(pre_steps) or 0)}
    units: dict[tuple, dict[tuple, float]] = {}
    for r in gates.select(["config_key", "seed", "stage", "member", "index", "value"]).to_pylist():
        key = r["config_key"]
        if key not in label_of or (r["stage"] == "pre" and key not in pre_flossed):
            continue
        cell = (label_of[key], x_of[key], r["stage"])
        units.setdefault(cell, {})[key, r["seed"], r["member"], r["index"]] = r["value"]

    def reading_order(cell: tuple) -> tuple:
        group, at, stage = cell
        return (order_of[group], group, level_key(x, at), DIAGNOSTIC_STAGES.index(stage))

    out = []
    for cell in sorted(units, key=reading_order):
        values = np.asarray(list(units[cell].values()), dtype=float)
        finite = values[np.isfinite(values)]
        group, at, stage = cell
        out.append(
            {
                "group": group,
                x: at,
                "stage": stage,
                "members": len({unit[:3] for unit in units[cell]}),
                "units": len(values),
                "mean_gate": float(finite.mean()) if finite.size else float("nan"),
                "share_saturated": float((finite > SATURATED).mean()) if finite.size else float("nan"),
            }
        )
    return pa.Table.from_pylist(out)


def format_retention(table: pa.Table, x: str, markdown: bool = False) -> str:
    """The table for people: group, x, stage, members, units, mean gate, share of units above SATURATED."""
    header = ["group", style.symbol(x), "stage", "members", "units", "mean gate", f"gate > {SATURATED:g}"]
    body = [
        [
            r["group"],
            num_text(r[x]),
            r["stage"],
            str(r["members"]),
            str(r["units"]),
            f"{r['mean_gate']:.3f}",
            f"{100 * r['share_saturated']:.1f}%",
        ]
        for r in table.to_pylist()
    ]
    title = "Retention gate (LSTM forget gate, GRU update gate) per stage, over every unit of the cell's members"
    return titled_table(title, header, body, markdown)
