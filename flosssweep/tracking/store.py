"""The MLflow store of sweeps, as one object: its URI resolved and checked once, one client, the
paged search, one parent run per launch.

Layout (the report module relies on it): one experiment per sweep name; one parent run per launch
(tags `flosssweep.role=parent`, `flosssweep.sweep`); one child run per trial (tags
`mlflow.parentRunId`, `flosssweep.role=child`, `flosssweep.trial_id`) with the trial config's keys that
apply to its task as params, the trainer's metrics with step = epoch, and the per-member records as `records.parquet`
at the child's artifact root.

The driver resolves a `TrackingStore` once and hands the same object to preflight, the recorder,
the Optuna study placement, the parent's lifecycle and the report (docs/DESIGN.md, "Corridors").
`flosssweep.tracking.uris` is the only module that reads or writes the `sqlite:///` form of a URI.
"""

from __future__ import annotations

import contextlib
import json
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
    CONFIG_KEY,
    END_REASON,
    ENDED_STATUSES,
    EXPERIMENT_KIND,
    LAUNCH,
    MLFLOW_BOUNDED_HTTP,
    OUTCOME_COUNTS,
    PARENT,
    RAY_PATH,
    RECORDED,
    ROLE,
    SOURCE,
    STATUS,
    SWEEP,
    TAG_PREFIX,
    TRIAL_CONFIG,
    TRIALS,
)
from flosssweep.tracking import uris

MAX_PARAMS_PER_BATCH = 100  # MLflow's limit per log_batch call
PAGE = 1000  # runs per search_runs page
CLOSED = "closed with --close"  # END_REASON of a launch ended by `run --close`
RESUMABLE = ("RUNNING", "KILLED")  # a parent run in either state may still be continued


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


class TrackingStore:
    """One MLflow tracking store. Made with `resolve` (the command line's flag, the environment or the
    default) or from an absolute URI; holds one client, made on first use. Pickles as its URI alone,
    so the recorder that Ray stores with its experiment carries no live connection."""

    def __init__(self, uri: str):
        self.uri = uri
        self._client = None

    @classmethod
    def resolve(cls, flag: str | None, launch_dir: str | Path) -> TrackingStore:
        """`--tracking-uri`, else MLFLOW_TRACKING_URI, else SQLite in the launch directory; local paths
        made absolute (Ray trials run in directories of their own)."""
        base = Path(launch_dir).resolve()
        uri = flag or os.environ.get("MLFLOW_TRACKING_URI") or uris.sqlite_uri(base / "mlflow.db")
        return cls(uris.absolute(uri, base))

    @classmethod
    def default(cls, launch_dir: str | Path) -> TrackingStore:
        return cls(uris.sqlite_uri(Path(launch_dir).resolve() / "mlflow.db"))

    def __getstate__(self) -> dict:
        return {"uri": self.uri}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["uri"])

    def __eq__(self, other) -> bool:
        return isinstance(other, TrackingStore) and other.uri == self.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    def __repr__(self) -> str:
        return f"TrackingStore({self.uri!r})"

    def __str__(self) -> str:
        return self.uri

    # -- where it is -------------------------------------------------------------------------------
    @property
    def database(self) -> Path | None:
        """The SQLite file of a local store; None for a server or a file store."""
        path = uris.sqlite_path(self.uri)
        return None if path is None or str(path) in ("", ":memory:") else path

    @property
    def is_server(self) -> bool:
        return self.uri.startswith(("http://", "https://"))

    def beside(self, name: str) -> Path | None:
        """A file next to a SQLite store's database (None for other stores)."""
        return None if self.database is None else self.database.parent / name

    def artifact_location(self, experiment: str) -> str | None:
        """For a local store, artifacts next to it (absolute); servers choose their own."""
        folder = self.beside("mlartifacts")
        return None if folder is None else (folder / experiment).as_uri()

    # -- whether it answers ------------------------------------------------------------------------
    def check(self, timeout: float = 5.0, attempts: int = 2, write: bool = True) -> None:
        """Raise TrackingUnavailable unless the store answers, within about `attempts` x `timeout`
        seconds (MLflow's own client retries for minutes): before any work starts. `write`: the caller
        will write there too. A URI that cannot work whatever the store does is TrackingURIInvalid."""
        quiet_mlflow_logs()
        uri = self.uri
        try:
            uris.check(uri, write)
        except uris.URIProblem as err:
            raise TrackingURIInvalid(str(err)) from None
        if self.is_server:
            _check_server(uri, timeout, attempts)
        elif "://" in uri and not uri.startswith("file:") and uris.sqlite_path(uri) is None:
            raise TrackingURIInvalid(
                f"tracking URI {uri}: expected http://, https://, sqlite:/// or file: (or a directory)"
            )
        try:
            with self._first_connection():
                self.client.search_experiments(max_results=1)
        except Exception as err:  # noqa: BLE001 - any failure here means "cannot track"
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TrackingUnavailable(f"MLflow tracking store {uri} cannot be used: {first}") from None

    @contextlib.contextmanager
    def _first_connection(self):
        """For SQLite, hold a lock on the database's directory: the first connection to a new database
        migrates its schema, and two sweeps starting together would race in that migration."""
        if self.database is None:
            yield
            return
        import fcntl

        fd = os.open(self.database.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    @property
    def client(self):
        if self._client is None:
            from mlflow import MlflowClient

            quiet_mlflow_logs()
            if self.is_server:
                for name, value in MLFLOW_BOUNDED_HTTP.items():
                    os.environ.setdefault(name, value)
            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def search_all(
        self,
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
            page = self.client.search_runs(
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

    def children(self, experiment_id: str, parent_run_id: str, **options) -> list:
        """The child runs of one launch."""
        return self.search_all([experiment_id], f"tags.`{PARENT}` = '{parent_run_id}'", **options)

    def tag_run(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    # -- the parent run of a launch ----------------------------------------------------------------
    def start_parent(self, sweep, ray_path: str) -> tuple[str, str]:
        """Create (or find) the sweep's experiment and open a parent run for this launch;
        returns (experiment_id, parent_run_id)."""
        c = self.client
        experiment = c.get_experiment_by_name(sweep.name)
        kind, training = EXPERIMENT_KIND
        if experiment is None:
            experiment_id = c.create_experiment(
                sweep.name, artifact_location=self.artifact_location(sweep.name), tags={kind: training}
            )
        else:
            experiment_id = experiment.experiment_id
            if experiment.lifecycle_stage == "deleted":
                c.restore_experiment(experiment_id)
            if experiment.tags.get(kind) != training:  # made by an older flosssweep
                c.set_experiment_tag(experiment_id, kind, training)
        name = parent_name(sweep, time.localtime())
        run = c.create_run(
            experiment_id,
            run_name=name,
            tags={
                LAUNCH: name,
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
        self.log_params(run.info.run_id, params)
        if sweep.text:
            c.log_text(run.info.run_id, sweep.text, "sweep.yaml")
        return experiment_id, run.info.run_id

    def log_params(self, run_id: str, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])

    def reopen_parent(self, parent_run_id: str) -> None:
        """A resumed launch writes into the parent run it started with."""
        try:
            self.client.get_run(parent_run_id)
        except Exception:  # noqa: BLE001
            raise TrackingUnavailable(f"parent run {parent_run_id} of this sweep is not in {self.uri}") from None
        self.client.update_run(parent_run_id, status="RUNNING")

    def parent_status(self, parent_run_id: str) -> tuple[str, str | None] | None:
        """(status, end reason) of a launch's parent run, or None when the store or the run is gone.
        Checked in seconds, not MLflow's minutes of retries."""
        try:
            self.check(write=False)
            run = self.client.get_run(parent_run_id)
        except Exception:  # noqa: BLE001 - an unreadable store or a deleted run: no launch to protect
            return None
        return run.info.status, run.data.tags.get(END_REASON)

    def outcome(self, experiment_id: str, parent_run_id: str) -> dict[str, int]:
        """How the child runs of a launch ended, counted from MLflow itself: `recorded` (finished, with
        records), `stopped` (by the scheduler), `error` (failed after its retries), `abandoned` (under
        way when a driver died, and not part of the resumed experiment), `open` (under way when the
        driver stopped: resumable)."""
        counts = dict.fromkeys(OUTCOME_COUNTS, 0)
        for run in self.children(experiment_id, parent_run_id, deleted_too=True):
            tags = run.data.tags
            if tags.get(RECORDED) == "true":
                counts["recorded"] += 1
            elif tags.get(STATUS) in ENDED_STATUSES:
                counts[tags[STATUS]] += 1
            else:
                counts["open"] += 1
        return counts

    def recorded_trials(self, sweep_name: str) -> list[dict]:
        """Every trial with records in the sweep's experiment, whichever launch ran it: its varied
        values (`trial_config`), `config_key`, `seed`, and `successes` of `members` (what `--extend`
        starts from)."""
        experiment = self.client.get_experiment_by_name(sweep_name)
        if experiment is None:
            return []
        found = []
        query = f"tags.`{ROLE}` = 'child' and tags.`{RECORDED}` = 'true'"
        for run in self.search_all([experiment.experiment_id], query):
            tags, params = run.data.tags, run.data.params
            found.append(
                {
                    "trial_config": json.loads(tags.get(TRIAL_CONFIG) or "{}"),
                    "config_key": tags.get(CONFIG_KEY, ""),
                    "seed": int(params.get("seed", 0)),
                    "successes": int(tags.get(f"{TAG_PREFIX}successes", 0)),
                    "members": int(tags.get(f"{TAG_PREFIX}members", 0)),
                }
            )
        return found

    def run_tags(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.tags)

    def end_parent(self, parent_run_id: str, status: str, tags: dict[str, str]) -> None:
        """Close the parent run, and as KILLED every child run still RUNNING under it (a trial
        interrupted with its launch; a resumed launch sets it RUNNING again when the trial restarts)."""
        self.tag_run(parent_run_id, tags)
        c = self.client
        if status != "FINISHED":
            experiment_id = c.get_run(parent_run_id).info.experiment_id
            for run in self.children(experiment_id, parent_run_id):
                if run.info.status == "RUNNING":
                    c.set_terminated(run.info.run_id, status="KILLED")
        c.set_terminated(parent_run_id, status=status)

    def close_launches(self, sweep_name: str, experiment_dir: str) -> list[str]:
        """End the launches of the sweep in `experiment_dir` that are still RUNNING or resumable: the
        parent and every open child run KILLED, the parent tagged closed. Needs MLflow only (the
        storage folder may be gone). Returns the parent run ids it closed."""
        experiment = self.client.get_experiment_by_name(sweep_name)
        if experiment is None:
            return []
        closed = []
        for run in self.search_all([experiment.experiment_id], f"tags.`{ROLE}` = 'parent'"):
            tags = run.data.tags
            if (
                run.info.status not in RESUMABLE
                or tags.get(END_REASON) == CLOSED
                or tags.get(RAY_PATH) != experiment_dir
            ):
                continue
            for child in self.children(experiment.experiment_id, run.info.run_id):
                if child.data.tags.get(RECORDED) != "true" and STATUS not in child.data.tags:
                    self.client.set_tag(child.info.run_id, STATUS, "abandoned")
            self.end_parent(run.info.run_id, "KILLED", {END_REASON: CLOSED})
            closed.append(run.info.run_id)
        return closed


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


def parent_name(sweep, when: time.struct_time) -> str:
    """A launch's run name, told apart from the others in the runs table's narrow name column: the
    launch's month, day and minute first, then the varied axes and the number of trials (the sweep's
    name is the experiment's, shown above the table)."""
    axes = " × ".join(cfg.column_name(key) for key in sweep.space) or "no axes"
    return f"{time.strftime('%m-%d %H:%M', when)} {axes}, {sweep.num_trials()} trials"
