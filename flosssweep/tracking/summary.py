"""Writes a sweep's summary onto its parent run: metrics, a table artifact and the run's description."""

from __future__ import annotations

import json
import re
import time

from flosssweep.names import LAUNCH, REPORT_ARTIFACT_DIR
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
    tags: dict[str, str] | None = None,
    headline: str | None = None,
) -> str:
    """Log onto `run_id`; returns the table's artifact path. The table is written the way
    `MlflowClient.log_table` writes one (pandas' split orientation, so `load_table` reads it), but
    replaces an earlier summary instead of appending to it: a report run twice shows one table.
    `headline` goes into the run's name after its launch stamp, the launch's facts after it."""
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
    run_tags = [RunTag(NOTE, description)] + [RunTag(k, v) for k, v in (tags or {}).items()]
    if entry not in logged:
        run_tags.append(RunTag(LOGGED_ARTIFACTS, json.dumps(logged + [entry])))
    client.log_batch(run_id, tags=run_tags)
    if headline:
        run = client.get_run(run_id)
        if LAUNCH not in run.data.tags:  # a parent run of an older flosssweep: its name is its launch's
            client.set_tag(run_id, LAUNCH, run.info.run_name or "")
        client.update_run(run_id, name=_named(run, headline))
    return path


def _named(run, headline: str) -> str:
    """'12-07 00:41 T50 none 12.6, pre 20.6 · floss_mode × delay, 6 trials': the answer right after
    the stamp, where the runs table's narrow name column still shows it."""
    launch = run.data.tags.get(LAUNCH) or run.info.run_name or ""
    stamp = re.match(r"(\d\d-\d\d \d\d:\d\d) (.*)", launch)
    return f"{stamp[1]} {headline} · {stamp[2]}" if stamp else f"{headline} · {launch}".rstrip(" ·")


def ui_page(experiment_id: str, run_id: str) -> str:
    """The address, after the UI's root, that shows a launch's answer first: its parent run's metrics
    page, whose first charts are T50 per group (MLflow 3.17's address cannot choose the runs table's
    columns: those live in the browser's storage). `workflowType` keeps the model-training view, which
    the UI would otherwise replace with its GenAI one (docs/DESIGN.md, "What a reader sees")."""
    return f"#/experiments/{experiment_id}/runs/{run_id}/model-metrics?workflowType=machine_learning"
