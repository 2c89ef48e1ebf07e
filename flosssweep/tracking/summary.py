"""Writes a sweep's summary onto its parent run: metrics, a table artifact and the run's description."""

from __future__ import annotations

import json
import time

from flosssweep.names import REPORT_ARTIFACT_DIR
from flosssweep.tracking.recorder import MAX_METRICS_PER_BATCH

NOTE = "mlflow.note.content"  # MLflow's own: the run page renders it as markdown, above everything else
LOGGED_ARTIFACTS = "mlflow.loggedArtifacts"  # MLflow's own: artifacts its UI offers as tables


def log_summary(
    client,
    run_id: str,
    table: dict[str, list],
    metrics: list[tuple[str, float, int]],
    description: str,
    table_file: str,
) -> str:
    """Log onto `run_id`; returns the table's artifact path. The table is written the way
    `MlflowClient.log_table` writes one (pandas' split orientation, so `load_table` reads it), but
    replaces an earlier summary instead of appending to it: a report run twice shows one table."""
    from mlflow.entities import Metric, RunTag

    stamp = int(time.time() * 1000)
    items = [Metric(name, value, stamp, step) for name, value, step in metrics]
    for i in range(0, len(items), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=items[i : i + MAX_METRICS_PER_BATCH])
    names = list(table)
    rows = [list(row) for row in zip(*(table[n] for n in names))]
    path = f"{REPORT_ARTIFACT_DIR}/{table_file}"
    client.log_text(run_id, json.dumps({"columns": names, "data": rows}, default=str), path)
    logged = json.loads(client.get_run(run_id).data.tags.get(LOGGED_ARTIFACTS, "[]"))
    entry = {"path": path, "type": "table"}
    tags = [RunTag(NOTE, description)]
    if entry not in logged:
        tags.append(RunTag(LOGGED_ARTIFACTS, json.dumps(logged + [entry])))
    client.log_batch(run_id, tags=tags)
    return path
