"""The MLflow store of sweeps: its URI, whether it answers, the paged search, and one parent run per launch.

Layout (the report module relies on it): one experiment per sweep name; one parent run per launch
(tags `flosssweep.role=parent`, `flosssweep.sweep`); one child run per trial (tags
`mlflow.parentRunId`, `flosssweep.role=child`, `flosssweep.trial_id`) with the trial config's keys that
apply to its task as params, the trainer's metrics with step = epoch, and the per-member records as `records.parquet`
at the child's artifact root.

Trials only report to Ray; in the driver, `sweep.callbacks.MLflowCallback` hands those reports to
`tracking.recorder.SweepRecorder`, which writes them in batched `log_batch` calls.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from flosssweep import config as cfg
from flosssweep import provenance
from flosssweep.checks import redact
from flosssweep.names import (
    ENDED_STATUSES,
    EXPERIMENT_KIND,
    PARENT,
    RAY_PATH,
    RECORDED,
    ROLE,
    SOURCE,
    STATUS,
    SWEEP,
    TAG_PREFIX,
    TRIALS,
)
from flosssweep.tracking import uris

MAX_PARAMS_PER_BATCH = 100  # MLflow's limit per log_batch call
PAGE = 1000  # runs per search_runs page


# -- where the store is --------------------------------------------------------------------------
def default_uri(launch_dir: str | Path) -> str:
    return "sqlite:///" + str(Path(launch_dir).resolve() / "mlflow.db")


def resolve_uri(flag: str | None, launch_dir: str | Path) -> str:
    """`--tracking-uri`, else MLFLOW_TRACKING_URI, else SQLite in the launch directory; local paths
    made absolute (Ray trials run in directories of their own)."""
    uri = flag or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(launch_dir)
    return absolute_uri(uri, launch_dir)


def absolute_uri(uri: str, launch_dir: str | Path) -> str:
    base = Path(launch_dir).resolve()
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        if path and path != ":memory:" and not path.startswith("/"):
            return "sqlite:///" + str(base / path)
        return uri
    if uri.startswith("file:"):
        path = uri[len("file:") :].removeprefix("//")
        return Path(base, path).resolve().as_uri() if not path.startswith("/") else uri
    if "://" not in uri and ":" not in uri.split("/")[0]:
        return Path(base, uri).resolve().as_uri()  # a bare directory: MLflow's file store
    return uri


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be used; the message says which and what to do. `code`: the exit
    status, 3 (does not answer) unless the URI itself is wrong (2)."""

    code = 3

    def __init__(self, message: str):
        super().__init__(redact(message))  # the line is printed: a URI's password is not


class TrackingURIInvalid(TrackingUnavailable):
    code = 2


def quiet_mlflow_logs() -> None:
    """The SQLite store announces its schema migrations at INFO; a sweep's terminal has better uses."""
    for name in ("mlflow.store.db.utils", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


def artifact_location(uri: str, experiment: str) -> str | None:
    """For a local store, artifacts next to it (absolute); servers choose their own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts" / experiment).as_uri()
    return None


def check_reachable(uri: str, timeout: float = 5.0, attempts: int = 2, write: bool = True) -> None:
    """Raise TrackingUnavailable unless the store answers, within about `attempts` x `timeout`
    seconds (MLflow's own client retries for minutes): before any work starts. `write`: the caller
    will write there too."""
    quiet_mlflow_logs()
    try:
        uris.check(uri, write)
    except uris.URIProblem as err:
        raise TrackingURIInvalid(str(err)) from None
    if uri.startswith(("http://", "https://")):
        _check_server(uri, timeout, attempts)
    elif "://" in uri and not uri.startswith(("file:", uris.SQLITE)):
        raise TrackingURIInvalid(
            f"tracking URI {uri}: expected http://, https://, sqlite:/// or file: (or a directory)"
        )
    try:
        with _first_connection(uri):
            client(uri).search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - any failure here means "cannot track"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrackingUnavailable(f"MLflow tracking store {uri} cannot be used: {first}") from None


def _check_server(uri: str, timeout: float, attempts: int) -> None:
    reason = None
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(uris.health_request(uri), timeout=timeout) as reply:
                if reply.status == 200:
                    return
                reason = f"it answered {reply.status} on /health"
        except urllib.error.HTTPError as err:
            reason = f"it answered {err.code} on /health"
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
        if attempt + 1 < attempts:
            time.sleep(1.0)
    raise TrackingUnavailable(
        f"MLflow tracking server {uri} is not reachable ({reason}); start it (mlflow server "
        f"--host 127.0.0.1 --port 5000) or pass another --tracking-uri"
    )


@contextlib.contextmanager
def _first_connection(uri: str):
    """For SQLite, hold a lock on the database's directory: the first connection to a new database
    migrates its schema, and two sweeps starting together would race in that migration."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    fd = os.open(Path(uri[len("sqlite:///") :]).parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def client(uri: str):
    from mlflow import MlflowClient

    quiet_mlflow_logs()
    return MlflowClient(tracking_uri=uri)


def search_all(
    client,
    experiment_ids: list[str],
    filter_string: str,
    order_by: list[str] | None = None,
    max_results: int | None = None,
    deleted_too: bool = False,
) -> list:
    """Every run that matches (or the first `max_results`), page by page: MLflow returns at most
    PAGE runs per call."""
    from mlflow.entities import ViewType

    runs, token = [], None
    while True:
        page = client.search_runs(
            experiment_ids,
            filter_string=filter_string,
            order_by=order_by,
            run_view_type=ViewType.ALL if deleted_too else ViewType.ACTIVE_ONLY,
            max_results=PAGE if max_results is None else min(PAGE, max_results),
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token or (max_results is not None and len(runs) >= max_results):
            return runs


# -- the parent run ------------------------------------------------------------------------------
def start_parent(uri: str, sweep, ray_path: str) -> tuple[str, str]:
    """Create (or find) the sweep's experiment and open a parent run for this launch;
    returns (experiment_id, parent_run_id)."""
    from mlflow.entities import Param

    c = client(uri)
    experiment = c.get_experiment_by_name(sweep.name)
    kind, training = EXPERIMENT_KIND
    if experiment is None:
        experiment_id = c.create_experiment(
            sweep.name, artifact_location=artifact_location(uri, sweep.name), tags={kind: training}
        )
    else:
        experiment_id = experiment.experiment_id
        if experiment.lifecycle_stage == "deleted":
            c.restore_experiment(experiment_id)
        if experiment.tags.get(kind) != training:  # made by an older flosssweep
            c.set_experiment_tag(experiment_id, kind, training)
    run = c.create_run(
        experiment_id,
        run_name=f"{sweep.name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
        tags={
            ROLE: "parent",
            SWEEP: sweep.name,
            SOURCE: sweep.source,
            RAY_PATH: ray_path,
            TRIALS: str(sweep.num_trials()),
            **provenance.tags(provenance.collect(), TAG_PREFIX),
        },
    )
    params = {
        "search": sweep.search,
        "num_samples": sweep.num_samples,
        "metric": sweep.metric,
        "mode": sweep.mode,
        "search_seed": sweep.search_seed,
        "scheduler": "asha" if sweep.scheduler else "none",
        "resources.cpu": sweep.resources["cpu"],
        "resources.gpu": sweep.resources["gpu"],
    }
    params.update({f"base.{k}": v for k, v in cfg.flatten(sweep.base).items()})
    params.update({f"space.{k}": axis.describe() for k, axis in sweep.space.items()})
    items = [Param(k, str(v)) for k, v in params.items()]
    for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
        c.log_batch(run.info.run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])
    if sweep.text:
        c.log_text(run.info.run_id, sweep.text, "sweep.yaml")
    return experiment_id, run.info.run_id


def reopen_parent(uri: str, parent_run_id: str) -> None:
    """A resumed launch writes into the parent run it started with."""
    c = client(uri)
    try:
        c.get_run(parent_run_id)
    except Exception:  # noqa: BLE001
        raise TrackingUnavailable(f"parent run {parent_run_id} of this sweep is not in {uri}") from None
    c.update_run(parent_run_id, status="RUNNING")


def outcome(uri: str, experiment_id: str, parent_run_id: str) -> dict[str, int]:
    """How the child runs of a launch ended, counted from MLflow itself: `recorded` (finished, with
    records), `stopped` (by the scheduler), `error` (failed after its retries), `abandoned` (under
    way when a driver died, and not part of the resumed experiment), `open` (under way when the
    driver stopped: resumable)."""
    counts = {"recorded": 0, "stopped": 0, "error": 0, "abandoned": 0, "open": 0}
    for run in search_all(client(uri), [experiment_id], f"tags.`{PARENT}` = '{parent_run_id}'", deleted_too=True):
        tags = run.data.tags
        if tags.get(RECORDED) == "true":
            counts["recorded"] += 1
        elif tags.get(STATUS) in ENDED_STATUSES:
            counts[tags[STATUS]] += 1
        else:
            counts["open"] += 1
    return counts


def tag_run(uri: str, run_id: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    client(uri).log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def end_parent(uri: str, parent_run_id: str, status: str, tags: dict[str, str]) -> None:
    """Close the parent run, and as KILLED every child run still RUNNING under it (a trial
    interrupted with its launch; a resumed launch sets it RUNNING again when the trial restarts)."""
    tag_run(uri, parent_run_id, tags)
    c = client(uri)
    if status != "FINISHED":
        experiment_id = c.get_run(parent_run_id).info.experiment_id
        for run in search_all(c, [experiment_id], f"tags.`{PARENT}` = '{parent_run_id}'"):
            if run.info.status == "RUNNING":
                c.set_terminated(run.info.run_id, status="KILLED")
    c.set_terminated(parent_run_id, status=status)
