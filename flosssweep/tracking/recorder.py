"""Driver-side writer of child runs: every trial's params, metrics per epoch and records, once."""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flosssweep import config as cfg
from flosssweep.names import (
    CONFIG_KEY,
    DIAGNOSTICS_ARTIFACT,
    ENDED_STATUSES,
    EPOCH,
    PARENT,
    RECORDED,
    RECORDS_ARTIFACT,
    RETRIES,
    ROLE,
    STATUS,
    SUMMARY_TAGS,
    SWEEP,
    TAG_PREFIX,
    TRIAL_CONFIG,
    TRIAL_ID,
    ZERO_UNTIL_RAISED,
)
from flosssweep.protocol import FinalResult
from flosssweep.records import write as write_records
from flosssweep.tracking.store import TrackingStore

FLUSH_SECONDS = 5.0
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit per log_batch call


def trial_summary(records: list[dict]) -> dict[str, Any]:
    n = len(records)
    k = sum(bool(r.get("success")) for r in records)
    diverged = sum(r.get("status") == "diverged" for r in records)
    return {"successes": k, "members": n, "diverged": diverged, "status": "diverged" if diverged else "ok"}


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
    raised: set = field(default_factory=set)  # ZERO_UNTIL_RAISED counters logged non-zero once


def _trial_config(trial) -> str:
    return json.dumps(trial.config, sort_keys=True, default=str)


class SweepRecorder:
    """Mirrors every trial of one launch into MLflow. Lives in the Ray driver, called by the hooks of
    `sweep.callbacks.MLflowCallback`; a `trial` is anything with Ray's trial attributes (`trial_id`,
    `config`, `last_result`, `num_failures`), so this module needs no Ray.

    Pickled into the Ray experiment (so that a resumed sweep gets it back); its `TrackingStore`
    pickles as its URI alone. On a resumed launch it starts from the child runs MLflow already has: a trial
    Ray restores, or creates again from an older snapshot (under Optuna with a new trial id, found
    by its configuration), continues its own child run, so no trial is recorded twice.
    """

    def __init__(
        self,
        store: TrackingStore,
        experiment_id: str,
        parent_run_id: str,
        sweep_name: str,
        base: dict,
        varied: list[str],
        flush_seconds: float = FLUSH_SECONDS,
        run_tags: dict[str, str] | None = None,
    ):
        """`run_tags`: more tags of every child run (the provenance MLflow's UI shows as Source)."""
        self.run_tags = dict(run_tags or {})
        self.store = store
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sweep_name = sweep_name
        self.base = base
        self.varied = list(varied)
        self.flush_seconds = flush_seconds
        self._reset()

    def _reset(self) -> None:
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
        return self.store.client

    # -- what the driver's hooks call ------------------------------------------------------------
    def trial_started(self, trial, trials) -> None:
        child = self._child(trial, trials)
        if not child.recorded:
            child.ended = False
            self.client.update_run(child.run_id, status="RUNNING")

    def trial_result(self, trial, trials, result: dict) -> None:
        epoch = result.get(EPOCH)
        if isinstance(epoch, int):
            self._buffer_epoch(self._child(trial, trials), epoch, result, result.get("timestamp"))
        self.flush_if_due()

    def trial_retried(self, trial, trials) -> None:
        from mlflow.entities import RunTag

        child = self._child(trial, trials)
        self.client.log_batch(child.run_id, tags=[RunTag(RETRIES, str(trial.num_failures))])

    def trial_ended(self, trial, trials, failed: bool) -> None:
        self._finish(self._child(trial, trials), trial, failed)

    def experiment_ended(self, trials) -> None:
        """Flush; and close the child runs of trials this Ray experiment no longer has (a resumed
        search that drew different trials in place of ones under way when its driver died)."""
        from mlflow.entities import RunTag

        self.flush()
        mine = {id(self._of_trial[t.trial_id]) for t in trials if t.trial_id in self._of_trial}
        for child in self._children:
            if id(child) not in mine and not child.recorded and not child.ended:
                self.client.log_batch(child.run_id, tags=[RunTag(STATUS, "abandoned")])
                self.client.set_terminated(child.run_id, status="KILLED")
                child.ended = True

    # -- pieces ---------------------------------------------------------------------------------
    def load_existing(self) -> None:
        """Child runs this parent already has (a resumed launch)."""
        for run in self.store.children(self.experiment_id, self.parent_run_id, deleted_too=True):
            tags = run.data.tags
            if TRIAL_ID not in tags:
                continue
            child = _Child(
                run.info.run_id,
                tags[TRIAL_ID],
                tags.get(TRIAL_CONFIG, ""),
                recorded=tags.get(RECORDED) == "true",
                ended=tags.get(STATUS) in ENDED_STATUSES,
            )
            child.raised = set(run.data.metrics) & set(ZERO_UNTIL_RAISED)
            for key in run.data.metrics:
                child.logged.update(m.step for m in self.client.get_metric_history(run.info.run_id, key))
            self._children.append(child)
            self._of_trial[child.trial_id] = child

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
        config = cfg.resolve(self.base, trial.config)
        label = run_label(trial.config, self.varied)
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"{label} ({trial.trial_id})" if label else trial.trial_id,
            tags={
                PARENT: self.parent_run_id,
                ROLE: "child",
                SWEEP: self.sweep_name,
                TRIAL_ID: trial.trial_id,
                CONFIG_KEY: cfg.config_key(config),
                TRIAL_CONFIG: key,
                **self.run_tags,
            },
        )
        self.store.log_params(run.info.run_id, {k: cfg.get_dotted(config, k) for k in cfg.applicable_keys(config)})
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
            if "/" not in key or number is None:
                continue
            if key in ZERO_UNTIL_RAISED:
                if number == 0 and key not in child.raised:
                    continue
                child.raised.add(key)
            self._buffer.setdefault(child.run_id, []).append(Metric(key, number, stamp, epoch))
        child.logged.add(epoch)

    def flush_if_due(self) -> None:
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
        final = FinalResult.of(trial.last_result)
        for epoch, metrics in final.history if final else []:
            self._buffer_epoch(child, epoch, metrics)  # epochs that never reached MLflow
        self.flush(child.run_id)
        c = self.client
        if failed or final is None:
            c.log_batch(child.run_id, tags=[RunTag(STATUS, "error" if failed else "stopped")])
            c.set_terminated(child.run_id, status="FAILED" if failed else "FINISHED")
            child.ended = True
            return
        records = [{**r, "sweep": self.sweep_name, "trial_id": child.trial_id} for r in final.records]
        summary = trial_summary(records)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp, RECORDS_ARTIFACT)
            write_records(records, path)
            c.log_artifact(child.run_id, str(path))
            diagnostics = _copy_diagnostics(trial, Path(tmp))
            if diagnostics is not None:
                c.log_artifact(child.run_id, str(diagnostics))
        tags = [RunTag(f"{TAG_PREFIX}{key}", str(summary[key])) for key in SUMMARY_TAGS]
        # FINISHED before the tag that says so: a driver killed in between leaves a run that a resumed
        # driver still records (and reopens), never one tagged recorded yet left RUNNING for good.
        c.set_terminated(child.run_id, status="FINISHED")
        c.log_batch(child.run_id, tags=tags + [RunTag(RECORDED, "true")])
        child.recorded = True


def _copy_diagnostics(trial, into: Path) -> Path | None:
    """The diagnostics over training that the trial's final checkpoint holds, copied into `into`
    (from the local disk or the bucket of Ray's storage), or None when it holds none: a trial of a
    trainer without diagnostics, or a checkpoint no longer readable (a warning says which)."""
    checkpoint = getattr(trial, "checkpoint", None)
    if checkpoint is None:
        return None
    source = f"{checkpoint.path.rstrip('/')}/{DIAGNOSTICS_ARTIFACT}"
    target = into / DIAGNOSTICS_ARTIFACT
    try:
        with checkpoint.filesystem.open_input_stream(source) as stream, open(target, "wb") as out:
            out.write(stream.read())
    except FileNotFoundError:
        return None
    except OSError as err:
        print(f"warning: diagnostics of trial {trial.trial_id} not logged: {str(err).splitlines()[0]}", flush=True)
        return None
    return target


def run_label(config: dict, varied: list[str]) -> str:
    """A child's name: its varied values, words first and bare ('pre'), then numbers under the last
    part of their key where that is unambiguous ('pre delay=24'): the UI's run-name column shows about
    a dozen characters, and two children must differ within them."""
    keys = [k for k in varied if k in config]
    words = [short_value(config[k]) for k in keys if isinstance(config[k], str)]
    numbers = [k for k in keys if not isinstance(config[k], str)]
    last = [k.rsplit(".", 1)[-1] for k in numbers]
    names = [short if last.count(short) == 1 else cfg.column_name(k) for k, short in zip(numbers, last)]
    return " ".join(words + [f"{name}={short_value(config[k])}" for name, k in zip(names, numbers)])


def short_value(value: Any) -> str:
    """A config value as a run name or a terminal line shows it."""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)
