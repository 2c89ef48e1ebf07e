"""Where records come from: Parquet files, or a sweep's child runs in MLflow.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable
import pyarrow as pa
import pyarrow.parquet as pq
from flosssweep.names import PARENT, RECORDS_ARTIFACT, ROLE
from flosssweep.tracking import store
from flosssweep.report.common import DEFAULT_X, ReportError
from flosssweep.report.curves import missing_columns


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


def mlflow_client(uri: str):
    _check_store(uri)

    # Our own progress line says what is read; one bar per child run would drown it.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    return store.client(uri)


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
        runs = store.search_all(
            client, [exp.experiment_id], parent_filter, ["attributes.start_time DESC"], 1
        )
        if not runs:
            raise ReportError(
                f"no sweep launch in experiment {experiment!r}: no run tagged {ROLE}=parent"
            )
        return runs[0], exp.name
    exps = client.search_experiments()
    runs = store.search_all(
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
    children = store.search_all(
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

