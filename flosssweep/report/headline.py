"""The headline of a sweep for its parent run: a table, metrics and a description MLflow's UI shows as
they are (`flosssweep.tracking.summary` writes them there).

Per group: its success counts per x and its T50 with the interval, as a table (the format of
`MlflowClient.log_table`, read back by `load_table`); the same numbers as metrics of the parent
run, each a single value whose latest is the answer (an MLflow metric list and runs table show only
the latest value of a key): `t50/<group>` and its interval ends `t50_low/`, `t50_high/` (`_at_least`
or `_below` added to the name when censored there), rounded as the tables are; the counts per x as
tags `successes/<group>/<x> <v>` = 'k/n' (a count alone is no rate, and as metrics they would push
the T50 charts down the run's metrics page, whose sections MLflow sorts by name); the T50s in words
for the run's name; and the markdown table as the run's description, which the run page renders on top.
"""

from __future__ import annotations

import re

from flosssweep.report.curves import Aggregate, split_by_sweep
from flosssweep.report.text import bound_text, cell_text, estimate_text, t50_text

TABLE_ARTIFACT = "summary.json"  # under the parent's report/ directory
_CENSORED = {"=": "", ">=": "_at_least", "<": "_below"}  # a censored value says so in its metric's name


def _bound(value, relation) -> str:
    return "n/a" if relation not in _CENSORED or value is None else bound_text(value, relation)


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


def _labels(aggregated: Aggregate) -> dict[int, str]:
    horizon, settings = aggregated.horizon, aggregated.settings
    keyed = len(split_by_sweep(horizon.to_pylist(), settings)) > 1
    return {r["group_id"]: group_label(r, settings.by, r["sweep"] if keyed else None) for r in horizon.to_pylist()}


def summary_metrics(aggregated: Aggregate) -> list[tuple[str, float, int]]:
    """(name, value, step 0) per group: T50 and its interval ends, to the digits the tables show."""
    label = _labels(aggregated)
    metrics = []
    for r in aggregated.horizon.to_pylist():
        for name, end in (("t50", ""), ("t50_low", "_lo"), ("t50_high", "_hi")):
            value, relation = r[f"t50{end}"], r[f"t50{end}_relation"]
            if relation in _CENSORED and value is not None:
                shown = float(estimate_text(value)) if relation == "=" else float(value)
                metrics.append((f"{name}{_CENSORED[relation]}/{label[r['group_id']]}", shown, 0))
    return metrics


def summary_tags(aggregated: Aggregate) -> dict[str, str]:
    """'k/n' per group and x, under `successes/<group>/<x> <value>`."""
    label, x = _labels(aggregated), aggregated.settings.x
    return {
        _metric_key(f"successes/{label[r['group_id']]}/{x} {cell_text(r[x])}"): f"{r['k']}/{r['n']}"
        for r in aggregated.curves.to_pylist()
        if r["n"] > 0 and r[x] is not None
    }


def headline(aggregated: Aggregate, most: int = 4) -> str:
    """T50 per group in a few words, for the parent run's name ('T50 none 12.6, pre >= 24'); the
    range over the groups when there are more than `most`."""
    rows = [r for r in aggregated.horizon.to_pylist() if r["t50_relation"] != "n/a"]
    if not rows:
        return "T50 n/a"
    if len(rows) > most:
        values = [r["t50"] for r in rows]
        return f"T50 {estimate_text(min(values))} to {estimate_text(max(values))} over {len(rows)} groups"
    by = aggregated.settings.by
    return "T50 " + ", ".join(
        (" ".join(cell_text(r[c]) for c in by) + " " if by else "") + t50_text(r, False) for r in rows
    )
