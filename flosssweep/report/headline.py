"""The headline of a sweep for its parent run: a table, metrics and a description MLflow's UI shows as
they are (`flosssweep.tracking.summary` writes them there).

Per group: its success counts per x and its T50 with the interval, as a table (the format of
`MlflowClient.log_table`, read back by `load_table`); the same numbers as metrics of the parent run
(`t50/<group>`, and `success_rate/<group>` with step = x when x is an integer column, so the
parent's chart of it is the success curve); and the markdown table as the run's description, which
the run page renders on top.
"""

from __future__ import annotations

import re

from flosssweep.report.curves import Aggregate, split_by_sweep
from flosssweep.report.text import cell_text, num_text

TABLE_ARTIFACT = "summary.json"  # under the parent's report/ directory
_T50_METRIC = {"=": "t50", ">=": "t50_at_least", "<": "t50_below"}  # censored values say so in the name


def _bound(value, relation) -> str:
    if relation not in _T50_METRIC or value is None:
        return "n/a"
    return {"=": "", ">=": ">= ", "<": "< "}[relation] + num_text(value)


def _metric_key(text: str) -> str:
    """MLflow allows letters, digits, '_', '-', '.', ' ', ':' and '/' in a metric name."""
    return re.sub(r"[^\w.\- /]", "_", text)


def group_label(row: dict, by: list[str], sweep=None) -> str:
    parts = [f"{c}.{cell_text(row[c])}" for c in by] or ["all"]
    return _metric_key((f"{sweep} " if sweep is not None else "") + " ".join(parts))


def summary_table(aggregated: Aggregate) -> dict[str, list]:
    """One row per group: its axes, realizations, k/n per x, T50 and its 95% interval (as text, so a
    censored value reads '>= 24'), and the fitted T50 with its interval when the report fits one."""
    curves, horizon, settings = aggregated.curves, aggregated.horizon, aggregated.settings
    x, by = settings.x, settings.by
    keyed = "sweep" in settings.keys
    counts: dict = {}
    for r in curves.to_pylist():
        counts.setdefault(r["group_id"], {})[r[x]] = f"{r['k']}/{r['n']}"
    xs = sorted({v for per in counts.values() for v in per if v is not None}, key=lambda v: (str(type(v)), v))
    columns: dict[str, list] = {name: [] for name in (["sweep"] if keyed else []) + by + ["realizations"]}
    columns.update({f"{x} {cell_text(v)}": [] for v in xs})
    fit = settings.fit is not None
    columns.update({"T50": [], "T50 low": [], "T50 high": []})
    if fit:
        columns.update({"fitted T50": [], "fitted T50 low": [], "fitted T50 high": []})
    for r in horizon.to_pylist():
        for name in (["sweep"] if keyed else []) + by:
            columns[name].append(r[name])
        columns["realizations"].append(r["n"])
        for v in xs:
            columns[f"{x} {cell_text(v)}"].append(counts.get(r["group_id"], {}).get(v, "-"))
        columns["T50"].append(_bound(r["t50"], r["t50_relation"]) + ("*" if r["nonmonotone"] else ""))
        columns["T50 low"].append(_bound(r["t50_lo"], r["t50_lo_relation"]))
        columns["T50 high"].append(_bound(r["t50_hi"], r["t50_hi_relation"]))
        if fit:
            columns["fitted T50"].append(_bound(r["fit_t50"], r["fit_t50_relation"]))
            columns["fitted T50 low"].append(_bound(r["fit_t50_lo"], r["fit_t50_lo_relation"]))
            columns["fitted T50 high"].append(_bound(r["fit_t50_hi"], r["fit_t50_hi_relation"]))
    return columns


def summary_metrics(aggregated: Aggregate) -> list[tuple[str, float, int]]:
    """(name, value, step) per group: T50 (step 0), and the success rate at each x (step = x)
    when every x is an integer."""
    curves, horizon, settings = aggregated.curves, aggregated.horizon, aggregated.settings
    x, by = settings.x, settings.by
    keyed = len(split_by_sweep(horizon.to_pylist(), settings)) > 1
    label = {r["group_id"]: group_label(r, by, r["sweep"] if keyed else None) for r in horizon.to_pylist()}
    metrics = [
        (f"{_T50_METRIC[r['t50_relation']]}/{label[r['group_id']]}", round(float(r["t50"]), 4), 0)
        for r in horizon.to_pylist()
        if r["t50_relation"] in _T50_METRIC and r["t50"] is not None
    ]
    points = [r for r in curves.to_pylist() if r["n"] > 0 and r[x] is not None]
    if all(isinstance(r[x], int) and not isinstance(r[x], bool) for r in points):
        metrics += [(f"success_rate/{label[r['group_id']]}", float(r["rate"]), int(r[x])) for r in points]
    return metrics
