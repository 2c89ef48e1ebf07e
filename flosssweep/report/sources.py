"""Where records come from: Parquet files, or a sweep's child runs in MLflow."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flosssweep.names import DIAGNOSTICS_ARTIFACT, PARENT, RECORDS_ARTIFACT, ROLE
from flosssweep.records import RecordConflict, deduplicate
from flosssweep.report.common import DEFAULT_X, ReportError, StoreUnavailable, default_x
from flosssweep.report.curves import missing_columns
from flosssweep.tracking import uris
from flosssweep.tracking.store import TrackingStore, TrackingUnavailable

# --------------------------------------------------------------------------------------------
# Reading records
# --------------------------------------------------------------------------------------------


def _concat(tables: list[pa.Table], origins: list[str]) -> pa.Table:
    """One table, every realization in it once (the same file twice, overlapping globs, or a Ray
    folder holding a replayed trial's second finished checkpoint would otherwise count it twice)."""
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ReportError(f"record files have incompatible columns: {exc}") from None
    try:
        starts = np.cumsum([0] + [t.num_rows for t in tables])
        table, dropped = deduplicate(table, lambda row: origins[int(np.searchsorted(starts, row, "right")) - 1])
    except RecordConflict as exc:
        raise ReportError(str(exc)) from None
    if dropped:
        print(
            f"note: {dropped} record row(s) read twice were counted once (same realization, same outcome)",
            file=sys.stderr,
        )
    return table


def memory_bytes() -> int:
    """This machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def read_parquet_file(path: Path) -> pa.Table:
    """One Parquet file, or ReportError in one line. Its footer is read first: a file whose row
    groups claim more than half this machine's memory (uncompressed) is refused before any of them is
    read, since records of even a 10,000-trial sweep take megabytes. A device or a pipe is refused
    unopened (opening a pipe blocks until someone writes to it)."""
    if not path.is_file():
        raise ReportError(f"{path}: expected a regular Parquet file (not a device, pipe or socket)")
    try:
        footer = pq.read_metadata(path)
        claimed = sum(footer.row_group(i).total_byte_size for i in range(footer.num_row_groups))
        if claimed > memory_bytes() // 2:
            raise ReportError(
                f"{path}: expected a records or diagnostics file that fits in memory, its footer claims "
                f"{claimed / 2**30:.1f} GiB of rows"
            )
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ReportError(f"cannot read {path} as Parquet: {str(exc).splitlines()[0]}") from None


def _check_records(t: pa.Table, where: str, x: str | None) -> None:
    missing = missing_columns(t, x or default_x(t.column_names))
    if missing:
        raise ReportError(f"{where}: missing required column(s): {', '.join(missing)}")
    kind = t.schema.field("success").type
    if not pa.types.is_boolean(kind) and not pa.types.is_null(kind):
        raise ReportError(f"{where}: column success: expected true/false values, got {kind}")


def is_diagnostics(path: Path) -> bool:
    """A trial's diagnostics over training (`diagnostics.parquet`, or a name ending so), not records."""
    return path.name.endswith(DIAGNOSTICS_ARTIFACT)


def read_parquet_diagnostics(paths: Iterable[str | os.PathLike]) -> pa.Table | None:
    """The diagnostics files among `paths` (and below its directories), concatenated; None if none."""
    files = []
    for p in map(Path, paths):
        files += sorted(f for f in p.rglob("*.parquet") if is_diagnostics(f)) if p.is_dir() else [p] * is_diagnostics(p)
    tables = [read_parquet_file(f) for f in dict.fromkeys(files)]
    return pa.concat_tables(tables) if tables else None


def _child_table(store: TrackingStore, run_id: str, artifact: str, tmp: str) -> pa.Table | None:
    """A child run's Parquet artifact, downloaded under `tmp`; None where it has none readable."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact, dst_path=os.path.join(tmp, run_id), tracking_uri=store.uri
        )
        return pq.read_table(local)
    except (MlflowException, OSError, pa.ArrowInvalid):
        return None


def read_mlflow_diagnostics(store: TrackingStore, parent) -> pa.Table | None:
    """The diagnostics.parquet of every child run of ``parent`` that has one, concatenated; None if none."""
    tables = []
    children = store.children(parent.info.experiment_id, parent.info.run_id)
    with tempfile.TemporaryDirectory(prefix="flosssweep-report-") as tmp:
        for child in children:
            if child.data.tags.get(ROLE, "child") != "child":
                continue
            table = _child_table(store, child.info.run_id, DIAGNOSTICS_ARTIFACT, tmp)
            if table is not None:
                tables.append(table)
    return pa.concat_tables(tables) if tables else None


def read_parquet_records(paths: Iterable[str | os.PathLike], x: str | None = DEFAULT_X) -> pa.Table:
    """Concatenate record files (a directory means every ``*.parquet`` below it but diagnostics files)."""
    files: list[Path] = []
    for p in dict.fromkeys(Path(p).resolve() for p in paths):
        p = Path(p)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*.parquet") if not is_diagnostics(f))
            if not found:
                raise ReportError(f"no *.parquet files under {p}")
            files.extend(f for f in found if f not in files)
        elif p.exists():
            if p in files:
                continue
            files.append(p)
        else:
            raise ReportError(f"no such file: {p}")
    if len(files) > 20:
        print(f"reading {len(files)} record files", file=sys.stderr)
    tables = []
    for f in files:
        t = read_parquet_file(f)
        _check_records(t, str(f), x)
        tables.append(t)
    return _concat(tables, [str(f) for f in files])


def open_store(store: TrackingStore, write: bool = False) -> TrackingStore:
    """The store, once it answers (in seconds, or ReportError). A report reads: a SQLite store must
    already hold MLflow's tables, so the report never creates or migrates a database
    (`uris.check_readable_store`). `write`: the report will log its outputs there."""
    try:
        uris.check_readable_store(store.uri)
    except uris.URIProblem as err:
        raise ReportError(str(err)) from None
    try:
        store.check(write=write)
    except TrackingUnavailable as exc:
        raise (StoreUnavailable if exc.code == 3 else ReportError)(str(exc)) from None

    # Our own progress line says what is read; one bar per child run would drown it.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return store


def find_parent_run(store: TrackingStore, experiment: str | None = None, run_id: str | None = None):
    """The parent run of a sweep launch: ``run_id``, else the latest in ``experiment``, else the
    latest parent run in the whole store. Returns ``(run, experiment_name)``."""
    from mlflow.exceptions import MlflowException

    client, uri = store.client, store.uri
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
        return _latest_launch(store, [exp.experiment_id], f"experiment {experiment!r}"), exp.name
    exps = client.search_experiments()
    run = _latest_launch(store, [e.experiment_id for e in exps], uri)
    return run, client.get_experiment(run.info.experiment_id).name


def _latest_launch(store: TrackingStore, experiment_ids: list[str], where: str):
    """The most recent parent run that has a child run: a launch refused or killed before its
    first trial started is no sweep to report."""
    parents = (
        store.search_all(experiment_ids, f"tags.`{ROLE}` = 'parent'", ["attributes.start_time DESC"])
        if experiment_ids
        else []
    )
    for run in parents:
        if store.children(run.info.experiment_id, run.info.run_id, max_results=1):
            return run
    if not parents:
        raise ReportError(f"no sweep found in {where}: no run tagged {ROLE}=parent")
    raise ReportError(
        f"no child runs found under the {len(parents)} parent run(s) in {where} "
        "(every launch there stopped before its first trial)"
    )


def read_mlflow_records(
    store: TrackingStore, parent, experiment_name: str, x: str | None = DEFAULT_X, every_launch: bool = False
) -> pa.Table:
    """Download and concatenate the records.parquet of every child run of ``parent``, or with
    ``every_launch`` of every launch in ``parent``'s experiment (each realization counted once)."""

    pid = parent.info.run_id
    if every_launch:
        children = store.search_all([parent.info.experiment_id], f"tags.`{ROLE}` = 'child'")
        launches = len({c.data.tags.get(PARENT) for c in children})
        whose = f"{launches} launch(es) of experiment {experiment_name!r} (the latest: parent run {pid})"
    else:
        children = store.children(parent.info.experiment_id, pid)
        children = [c for c in children if c.data.tags.get(ROLE, "child") == "child"]
        whose = f"parent run {pid} (experiment {experiment_name!r})"
    if not children:
        raise ReportError(f"no child runs found under {whose}")
    total = len(children)
    print(f"reading {RECORDS_ARTIFACT} of {total} child run(s) of {whose}", file=sys.stderr)
    tables, origins, missing_art = [], [], 0
    every = max(1, total // 10)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flosssweep-report-") as tmp:
        for i, child in enumerate(children, 1):
            t = _child_table(store, child.info.run_id, RECORDS_ARTIFACT, tmp)
            if t is None:
                missing_art += 1
                continue
            _check_records(t, f"{RECORDS_ARTIFACT} of child run {child.info.run_id}", x)
            tables.append(t)
            origins.append(f"child run {child.info.run_id}")
            if total >= 20 and (i % every == 0 or i == total):
                print(f"  {i}/{total} ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    if missing_art:
        print(
            f"warning: {missing_art} of {total} child run(s) have no readable {RECORDS_ARTIFACT}; skipped",
            file=sys.stderr,
        )
    if not tables:
        raise ReportError(f"no records found: none of the {total} child run(s) of {whose} has a {RECORDS_ARTIFACT}")
    try:
        table = _concat(tables, origins)
    except ReportError as exc:
        if not every_launch:
            raise
        # e.g. a launch on another device, or by code that changed the results: read them one at a time
        raise ReportError(f"{exc}; the launches disagree, report one with --launch PARENT_RUN_ID") from None
    if "sweep" not in table.column_names:
        table = table.append_column("sweep", pa.array([experiment_name] * table.num_rows))
    return table
