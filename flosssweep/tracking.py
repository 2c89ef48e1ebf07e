"""MLflow bookkeeping of a sweep (DESIGN 9): one writer, the Ray driver.

Layout (the report module relies on it): one experiment per sweep name; one parent run per launch
(tags `flosssweep.role=parent`, `flosssweep.sweep`); one child run per trial (tags
`mlflow.parentRunId`, `flosssweep.role=child`, `flosssweep.trial_id`) with the flattened trial config
as params, the trainer's metrics with step = epoch, and the per-member records as `records.parquet`
at the child's artifact root.

Trials only report to Ray; `SweepLogger` is a Ray Tune callback living in the driver that turns
those reports into batched `log_batch` calls. It is idempotent over a resume: it finds the child runs
a parent already has, never logs a step twice and never records a finished trial twice.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback

from flosssweep import config as cfg

from flosssweep.layout import PARENT, RECORDS_ARTIFACT, ROLE, SWEEP, TRIAL_ID
from flosssweep.records import write as write_records
FLUSH_SECONDS = 5.0
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit per log_batch call
MAX_PARAMS_PER_BATCH = 100


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be used; the message says which and what to do."""


def quiet_mlflow_logs() -> None:
    """The SQLite store announces its schema migrations at INFO; a sweep's terminal has better uses."""
    for name in ("mlflow.store.db.utils", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


def artifact_location(uri: str, experiment: str) -> str | None:
    """For a local store, artifacts next to it (absolute); servers choose their own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts" / experiment).as_uri()
    return None


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Raise TrackingUnavailable unless the store answers: before any trial is launched."""
    quiet_mlflow_logs()
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as reply:
                if reply.status != 200:
                    raise TrackingUnavailable(f"MLflow server at {uri} answered {reply.status} on /health")
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", err)
            raise TrackingUnavailable(
                f"MLflow tracking server {uri} is not reachable ({reason}); start it (mlflow server "
                f"--host 0.0.0.0 --port 5000) or pass another --tracking-uri") from None
    elif uri.startswith("sqlite:///"):
        directory = Path(uri[len("sqlite:///"):]).parent
        if not directory.is_dir() or not os.access(directory, os.W_OK):
            raise TrackingUnavailable(f"cannot write the MLflow database in {directory} (tracking URI {uri})")
    try:
        client(uri).search_experiments(max_results=1)
    except Exception as err:  # noqa: BLE001 - any failure here means "cannot track"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrackingUnavailable(f"MLflow tracking store {uri} cannot be used: {first}") from None


def client(uri: str):
    from mlflow import MlflowClient

    quiet_mlflow_logs()
    return MlflowClient(tracking_uri=uri)


# -- the parent run ------------------------------------------------------------------------------
def start_parent(uri: str, sweep, ray_path: str) -> tuple[str, str]:
    """Create (or find) the sweep's experiment and open a parent run for this launch;
    returns (experiment_id, parent_run_id)."""
    from mlflow.entities import Param

    c = client(uri)
    experiment = c.get_experiment_by_name(sweep.name)
    if experiment is None:
        experiment_id = c.create_experiment(sweep.name, artifact_location=artifact_location(uri, sweep.name))
    else:
        experiment_id = experiment.experiment_id
        if experiment.lifecycle_stage == "deleted":
            c.restore_experiment(experiment_id)
    run = c.create_run(
        experiment_id,
        run_name=f"{sweep.name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
        tags={ROLE: "parent", SWEEP: sweep.name, "flosssweep.source": sweep.source,
              "flosssweep.ray_path": ray_path, "flosssweep.trials": str(sweep.num_trials())},
    )
    params = {"search": sweep.search, "num_samples": sweep.num_samples, "metric": sweep.metric,
              "mode": sweep.mode, "search_seed": sweep.search_seed,
              "scheduler": "asha" if sweep.scheduler else "none",
              "resources.cpu": sweep.resources["cpu"], "resources.gpu": sweep.resources["gpu"]}
    params.update({f"base.{k}": v for k, v in cfg.flatten(sweep.base).items()})
    params.update({f"space.{k}": axis.describe() for k, axis in sweep.space.items()})
    items = [Param(k, str(v)) for k, v in params.items()]
    for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
        c.log_batch(run.info.run_id, params=items[i:i + MAX_PARAMS_PER_BATCH])
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
    from mlflow.entities import ViewType

    counts = {"recorded": 0, "stopped": 0, "error": 0, "abandoned": 0, "open": 0}
    token = None
    while True:
        page = client(uri).search_runs([experiment_id], filter_string=f"tags.`{PARENT}` = '{parent_run_id}'",
                                       run_view_type=ViewType.ALL, max_results=1000, page_token=token)
        for run in page:
            tags = run.data.tags
            if tags.get("flosssweep.recorded") == "true":
                counts["recorded"] += 1
            elif tags.get("flosssweep.status") in ("stopped", "error", "abandoned"):
                counts[tags["flosssweep.status"]] += 1
            else:
                counts["open"] += 1
        token = page.token
        if not token:
            return counts


def end_parent(uri: str, parent_run_id: str, status: str, tags: dict[str, str]) -> None:
    from mlflow.entities import RunTag

    c = client(uri)
    c.log_batch(parent_run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    c.set_terminated(parent_run_id, status=status)


# -- the driver-side callback ---------------------------------------------------------------------
def trial_summary(records: list[dict]) -> dict[str, Any]:
    n = len(records)
    k = sum(bool(r.get("success")) for r in records)
    diverged = sum(r.get("status") == "diverged" for r in records)
    return {"successes": k, "members": n, "diverged": diverged,
            "status": "diverged" if diverged else "ok"}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


@dataclass
class _Child:
    """What the driver knows of one child run."""

    run_id: str
    trial_id: str  # as recorded in MLflow: the id the trial had when its run was created
    trial_config: str  # the trial's varied values, as JSON: how a re-created trial finds its run
    logged: set = field(default_factory=set)  # epochs whose metrics are in MLflow (or buffered)
    recorded: bool = False  # its records are in MLflow
    ended: bool = False  # stopped early, failed or abandoned


def _trial_config(trial) -> str:
    return json.dumps(trial.config, sort_keys=True, default=str)


class SweepLogger(Callback):
    """Ray Tune callback (driver only) that mirrors every trial into MLflow.

    Pickled into the Ray experiment (so that a resumed sweep gets it back); holds no live client
    while pickled. On a resumed launch it starts from the child runs MLflow already has: a trial
    Ray restores, or creates again from an older snapshot (under Optuna with a new trial id, found
    by its configuration), continues its own child run, so no trial is recorded twice.
    """

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, sweep_name: str,
                 base: dict, varied: list[str], flush_seconds: float = FLUSH_SECONDS):
        self.uri = uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sweep_name = sweep_name
        self.base = base
        self.varied = list(varied)
        self.flush_seconds = flush_seconds
        self._reset()

    def _reset(self) -> None:
        self._client = None
        self._children: list[_Child] = []
        self._of_trial: dict[str, _Child] = {}  # Ray trial id -> its child run
        self._buffer: dict[str, list] = {}  # run id -> pending Metric objects
        self._last_flush = time.monotonic()
        self._warned = 0.0

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def client(self):
        if self._client is None:
            self._client = client(self.uri)
        return self._client

    # -- Ray hooks ------------------------------------------------------------------------------
    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        self._load_existing()

    def on_trial_start(self, iteration, trials, trial, **info):
        child = self._child(trial, trials)
        if not child.recorded:
            child.ended = False
            self.client.update_run(child.run_id, status="RUNNING")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        epoch = result.get("epoch")
        if isinstance(epoch, int):
            self._buffer_epoch(self._child(trial, trials), epoch, result, result.get("timestamp"))
        self._flush_if_due()

    def on_step_end(self, iteration, trials, **info):
        self._flush_if_due()

    def on_trial_recover(self, iteration, trials, trial, **info):
        from mlflow.entities import RunTag

        child = self._child(trial, trials)
        self.client.log_batch(child.run_id, tags=[RunTag("flosssweep.retries", str(trial.num_failures))])

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(self._child(trial, trials), trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(self._child(trial, trials), trial, failed=True)

    def on_experiment_end(self, trials, **info):
        """Flush; and close the child runs of trials this Ray experiment no longer has (a resumed
        search that drew different trials in place of ones under way when its driver died)."""
        from mlflow.entities import RunTag

        self.flush()
        mine = {id(self._of_trial[t.trial_id]) for t in trials if t.trial_id in self._of_trial}
        for child in self._children:
            if id(child) not in mine and not child.recorded and not child.ended:
                self.client.log_batch(child.run_id, tags=[RunTag("flosssweep.status", "abandoned")])
                self.client.set_terminated(child.run_id, status="KILLED")
                child.ended = True

    # -- pieces ---------------------------------------------------------------------------------
    def _load_existing(self) -> None:
        """Child runs this parent already has (a resumed launch)."""
        from mlflow.entities import ViewType

        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.`{PARENT}` = '{self.parent_run_id}'",
                run_view_type=ViewType.ALL, max_results=1000, page_token=token)
            for run in page:
                tags = run.data.tags
                if TRIAL_ID not in tags:
                    continue
                child = _Child(run.info.run_id, tags[TRIAL_ID], tags.get("flosssweep.trial_config", ""),
                               recorded=tags.get("flosssweep.recorded") == "true",
                               ended=tags.get("flosssweep.status") in ("stopped", "error", "abandoned"))
                for key in run.data.metrics:
                    child.logged.update(m.step for m in self.client.get_metric_history(run.info.run_id, key))
                self._children.append(child)
                self._of_trial[child.trial_id] = child
            token = page.token
            if not token:
                break

    def _child(self, trial, trials) -> _Child:
        """The trial's child run: its own, one of an earlier driver's that no trial of this
        experiment holds and has the same configuration, or a new one."""
        if trial.trial_id in self._of_trial:
            return self._of_trial[trial.trial_id]
        key = _trial_config(trial)
        held = {id(self._of_trial[t.trial_id]) for t in trials if t.trial_id in self._of_trial}
        for child in self._children:
            if child.trial_config == key and id(child) not in held and not child.ended:
                self._of_trial[trial.trial_id] = child
                return child
        from mlflow.entities import Param

        config = cfg.resolve(self.base, trial.config)
        label = " ".join(f"{k}={_short(trial.config[k])}" for k in self.varied if k in trial.config)
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{trial.trial_id} {label}".strip(),
            tags={PARENT: self.parent_run_id, ROLE: "child", SWEEP: self.sweep_name, TRIAL_ID: trial.trial_id,
                  "flosssweep.config_key": cfg.config_key(config), "flosssweep.trial_config": key},
        )
        params = [Param(k, str(v)) for k, v in cfg.flatten(config).items()]
        for i in range(0, len(params), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run.info.run_id, params=params[i:i + MAX_PARAMS_PER_BATCH])
        child = _Child(run.info.run_id, trial.trial_id, key)
        self._children.append(child)
        self._of_trial[trial.trial_id] = child
        return child

    def _buffer_epoch(self, child: _Child, epoch: int, metrics: dict, timestamp: float | None = None) -> None:
        """Queue one report's metrics (the trainer's, named group/name) unless that epoch is
        already in MLflow: a resumed trial reports again what it had reported before."""
        from mlflow.entities import Metric

        if child.recorded or epoch in child.logged:
            return
        stamp = int((timestamp or time.time()) * 1000)
        for key, value in metrics.items():
            number = _number(value)
            if "/" in key and number is not None:
                self._buffer.setdefault(child.run_id, []).append(Metric(key, number, stamp, epoch))
        child.logged.add(epoch)

    def _flush_if_due(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()

    def flush(self, run_id: str | None = None) -> None:
        self._last_flush = time.monotonic()
        for rid in [run_id] if run_id else list(self._buffer):
            metrics = self._buffer.get(rid, [])
            try:
                while metrics:
                    self.client.log_batch(rid, metrics=metrics[:MAX_METRICS_PER_BATCH])
                    del metrics[:MAX_METRICS_PER_BATCH]
            except Exception as err:  # noqa: BLE001 - keep the sweep going, retry at the next flush
                if time.monotonic() - self._warned > 60:
                    self._warned = time.monotonic()
                    print(f"warning: MLflow logging failed, will retry: {str(err).splitlines()[0]}", flush=True)
                return
            self._buffer.pop(rid, None)

    def _finish(self, child: _Child, trial, failed: bool) -> None:
        from mlflow.entities import RunTag

        if child.recorded:
            return
        result = trial.last_result or {}
        for epoch, metrics in json.loads(result.get("history_json") or "[]"):
            self._buffer_epoch(child, epoch, metrics)  # epochs that never reached MLflow
        self.flush(child.run_id)
        records_json = result.get("records_json")
        c = self.client
        if failed or not records_json:
            c.log_batch(child.run_id, tags=[RunTag("flosssweep.status", "error" if failed else "stopped")])
            c.set_terminated(child.run_id, status="FAILED" if failed else "FINISHED")
            child.ended = True
            return
        records = [{**r, "sweep": self.sweep_name, "trial_id": child.trial_id} for r in json.loads(records_json)]
        summary = trial_summary(records)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, RECORDS_ARTIFACT)
            write_records(records, path)
            c.log_artifact(child.run_id, str(path))
        tags = [RunTag(f"flosssweep.{key}", str(summary[key])) for key in ("successes", "members", "diverged", "status")]
        c.log_batch(child.run_id, tags=tags + [RunTag("flosssweep.recorded", "true")])
        c.set_terminated(child.run_id, status="FINISHED")
        child.recorded = True


class TerminalProgress(Callback):
    """What the terminal shows while a sweep runs: a line when a trial starts, a line when it
    finishes (its varied values and k/n members succeeding), and every `every` seconds a
    status line with the epoch each running trial has reached."""

    def __init__(self, varied: list[str], every: float = 30.0):
        self.varied = list(varied)
        self.every = every
        self._last = self._start = time.monotonic()
        self._total = 0

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._last = time.monotonic()

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        self._total = total_num_samples or 0
        self._start = time.monotonic()

    def _label(self, trial) -> str:
        values = " ".join(f"{k}={_short(trial.config[k])}" for k in self.varied if k in trial.config)
        return f"{trial.trial_id} {values}".strip()

    def _finished(self, trials, trial) -> int:
        return 1 + sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial)

    def on_trial_start(self, iteration, trials, trial, **info):
        epoch = (trial.last_result or {}).get("epoch")
        print(f"started  {self._label(trial)}" + (f" (from epoch {epoch})" if epoch else ""), flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result or {}
        done = f"[{self._finished(trials, trial)}/{self._total}]"
        if "records_json" not in result:
            print(f"{done} stopped early {self._label(trial)} at epoch {result.get('epoch')}", flush=True)
            return
        summary = trial_summary(json.loads(result["records_json"]))
        earlier = " (before the interruption)" if result.get("replayed") else ""
        print(f"{done} finished{earlier} {self._label(trial)}: {summary['successes']}/{summary['members']} "
              f"succeeded" + (f", {summary['diverged']} diverged" if summary["diverged"] else ""), flush=True)

    def on_trial_recover(self, iteration, trials, trial, **info):
        print(f"retrying {self._label(trial)} (its worker failed: {trial.error_file})", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"[{self._finished(trials, trial)}/{self._total}] FAILED {self._label(trial)} "
              f"(error log: {trial.error_file})", flush=True)

    def on_step_end(self, iteration, trials, **info):
        if time.monotonic() - self._last < self.every:
            return
        self._last = time.monotonic()
        counts = {}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        running = [t for t in trials if t.status == "RUNNING"]
        epochs = ", ".join(f"{t.trial_id} epoch {(t.last_result or {}).get('epoch', 0)}" for t in running[:6])
        elapsed = (time.monotonic() - self._start) / 60
        print(f"-- {elapsed:.1f} min: " + ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items()))
              + (f"; {epochs}" if epochs else ""), flush=True)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)
