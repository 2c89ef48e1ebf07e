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

from flosssweep.names import DIAGNOSTIC_STAGES, RETENTION_GATE
from flosssweep.report import style
from flosssweep.report.common import group_labels, level_key
from flosssweep.report.text import align, num_text

# A unit whose gate is above this contracts by less than ln 0.9 = -0.1 per step: its state outlives
# 10 steps with no input, which is what the table counts as saturated.
SATURATED = 0.9


def retention_by_stage(diagnostics: pa.Table, records: pa.Table, by: Sequence[str], x: str) -> pa.Table:
    """One row per (group, x, stage) that holds retention gates: group label, x, stage, members,
    units (members x N), the mean gate over them and the share of units above SATURATED. Groups in
    reading order, x by value, stages in the order they happen; trials that `records` does not hold
    are left out. An empty table where no trial recorded a gate (a tanh rnn, a PLRNN)."""
    gates = diagnostics.filter(pc.equal(diagnostics["quantity"], RETENTION_GATE))
    label_of, order_of = group_labels(records, by)
    x_of = dict(zip(records["config_key"].to_pylist(), records[x].to_pylist()))
    cells: dict[tuple, list[float]] = {}
    members: dict[tuple, set] = {}
    for r in gates.select(["config_key", "seed", "stage", "member", "value"]).to_pylist():
        if r["config_key"] not in label_of:
            continue
        cell = (label_of[r["config_key"]], x_of[r["config_key"]], r["stage"])
        cells.setdefault(cell, []).append(r["value"])
        members.setdefault(cell, set()).add((r["config_key"], r["seed"], r["member"]))

    def reading_order(cell: tuple) -> tuple:
        group, at, stage = cell
        return (order_of[group], group, level_key(x, at), DIAGNOSTIC_STAGES.index(stage))

    out = []
    for cell in sorted(cells, key=reading_order):
        values = np.asarray(cells[cell])
        group, at, stage = cell
        out.append(
            {
                "group": group,
                x: at,
                "stage": stage,
                "members": len(members[cell]),
                "units": len(values),
                "mean_gate": float(values.mean()),
                "share_saturated": float((values > SATURATED).mean()),
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
    return (f"**{title}**\n\n" if markdown else f"{title}\n") + align(header, body, markdown)
