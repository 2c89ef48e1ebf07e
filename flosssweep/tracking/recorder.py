"""Driver-side writer of child runs: every trial's params, metrics per epoch and records, once."""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flosssweep import config as cfg
from flosssweep.checks import disk_full, redact
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
from flosssweep.tracking.store import TrackingStore, TrackingUnavailable

FLUSH_SECONDS = 5.0
MAX_METRICS_PER_BATCH = 1000  # MLflow's limit per log_batch call
RETRY_SECONDS = 20.0  # while MLflow does not answer, how often the waiting writes are tried again
WAIT_LINE_SECONDS = 60.0  # at the sweep's end, a line this often while they still wait
# MLflow's answers that a request is wrong, which trying again cannot change
REFUSED = {
    "INVALID_PARAMETER_VALUE",
    "RESOURCE_ALREADY_EXISTS",
    "RESOURCE_DOES_NOT_EXIST",
    "BAD_REQUEST",
    "INVALID_STATE",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
}


def unanswered(err: BaseException) -> bool:
    """A write that may pass when tried again: the store did not answer (refused or timed-out
    connection, a server error, a locked SQLite database), as opposed to a request MLflow refused or
    a full disk under the store, which waiting does not empty."""
    from mlflow.exceptions import MlflowException

    if disk_full(err):
        return False
    if isinstance(err, MlflowException):
        return err.error_code not in REFUSED
    return isinstance(err, (OSError, ConnectionError)) or type(err).__name__ == "OperationalError"


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

    run_id: str | None  # None until MLflow has created it (a write that waits while MLflow is down)
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

    Every write goes through one ordered queue (`_write`): when MLflow stops answering, the writes
    wait there, Ray Tune's loop and the training go on, and the queue is tried again every
    RETRY_SECONDS; at the experiment's end the driver waits for it to empty. A write MLflow refuses
    is raised at once.

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
        self._buffer: dict[int, tuple[_Child, list]] = {}  # id(child) -> (child, Metric objects to log)
        self._last_flush = time.monotonic()
        self._outbox: deque[Callable[[], None]] = deque()  # writes not yet done, in order
        self._down_since: float | None = None  # when MLflow stopped answering
        self._last_try = 0.0
        self._spool: Path | None = None  # records and diagnostics files of writes that wait
        self._caught_up = False  # finished trials of an earlier driver looked at (catch_up)

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
            self._write(lambda: self.client.update_run(child.run_id, status="RUNNING"))

    def trial_result(self, trial, trials, result: dict) -> None:
        epoch = result.get(EPOCH)
        if isinstance(epoch, int):
            self._buffer_epoch(self._child(trial, trials), epoch, result, result.get("timestamp"))
        self.flush_if_due()

    def trial_retried(self, trial, trials) -> None:
        from mlflow.entities import RunTag

        child, tag = self._child(trial, trials), RunTag(RETRIES, str(trial.num_failures))
        self._write(lambda: self.client.log_batch(child.run_id, tags=[tag]))

    def trial_ended(self, trial, trials, failed: bool) -> None:
        self._finish(self._child(trial, trials), trial, failed)

    def catch_up(self, trials) -> None:
        """Once per driver: record the trials that Ray has as finished but MLflow not (an earlier
        driver died with their writes waiting for the store); Ray calls no hook for them again."""
        if self._caught_up:
            return
        self._caught_up = True
        for trial in trials:
            if trial.status == "TERMINATED":
                child = self._child(trial, trials)
                if not child.recorded and not child.ended:
                    self._finish(child, trial, failed=False)

    def experiment_ended(self, trials) -> None:
        """Flush; and close the child runs of trials this Ray experiment no longer has (a resumed
        search that drew different trials in place of ones under way when its driver died)."""

        self.flush()
        mine = {id(self._of_trial[t.trial_id]) for t in trials if t.trial_id in self._of_trial}
        for child in self._children:
            if id(child) not in mine and not child.recorded and not child.ended:
                self._write(lambda child=child: self._end(child, "abandoned", "KILLED"))
                child.ended = True
        self.wait_for_store()

    def wait_for_store(self) -> None:
        """Until every waiting write is done: the driver closes the launch only after its trials."""
        last_line = time.monotonic()
        while self._outbox:
            time.sleep(1.0)
            self._drain()
            if self._outbox and time.monotonic() - last_line >= WAIT_LINE_SECONDS:
                last_line = time.monotonic()
                print(
                    f"waiting for MLflow at {redact(self.store.uri)} to answer: {len(self._outbox)} write(s) "
                    "left (the finished trials' records are in Ray's storage meanwhile)",
                    flush=True,
                )

    # -- the queue of writes ----------------------------------------------------------------------
    def _write(self, write: Callable[[], None]) -> None:
        self._outbox.append(write)
        self._drain()

    def _drain(self) -> None:
        """Do the waiting writes in order, up to the first that MLflow does not answer; while it does
        not, try at most every RETRY_SECONDS (each try costs the client's bounded retries)."""
        if self._down_since is not None and time.monotonic() - self._last_try < RETRY_SECONDS:
            return
        while self._outbox:
            try:
                self._outbox[0]()
            except Exception as err:
                self._last_try = time.monotonic()  # after the try: a hung server's try takes its timeouts
                if disk_full(err):
                    self._outbox.clear()  # the driver stops; --resume records the finished trials again
                    raise TrackingUnavailable(
                        f"the disk of the tracking store {redact(self.store.uri)} is full (no space left on the device)"
                    ) from None
                if not unanswered(err):
                    self._outbox.popleft()  # raised once, not again by the cleanup that follows
                    raise
                if self._down_since is None:
                    self._down_since = time.monotonic()
                    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                    print(
                        f"MLflow at {redact(self.store.uri)} does not answer ({first}); the trials go on, "
                        f"and what they report waits to be recorded (tried again every {RETRY_SECONDS:.0f} s)",
                        flush=True,
                    )
                return
            self._outbox.popleft()
        if self._down_since is not None:
            minutes = (time.monotonic() - self._down_since) / 60
            print(f"MLflow answers again after {minutes:.1f} min: what waited is recorded", flush=True)
            self._down_since = None
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None

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
        child = _Child(None, trial.trial_id, key)
        tags = {
            PARENT: self.parent_run_id,
            ROLE: "child",
            SWEEP: self.sweep_name,
            TRIAL_ID: trial.trial_id,
            CONFIG_KEY: cfg.config_key(config),
            TRIAL_CONFIG: key,
            **self.run_tags,
        }
        params = {k: cfg.get_dotted(config, k) for k in cfg.applicable_keys(config)}

        def create() -> None:  # tried again after a failure: the run is made once
            if child.run_id is None:
                name = f"{label} ({trial.trial_id})" if label else trial.trial_id
                child.run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
            self.store.log_params(child.run_id, params)

        self._children.append(child)
        self._of_trial[trial.trial_id] = child
        self._write(create)
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
            self._buffer.setdefault(id(child), (child, []))[1].append(Metric(key, number, stamp, epoch))
        child.logged.add(epoch)

    def flush_if_due(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_seconds:
            self.flush()
        else:
            self._drain()

    def flush(self, child: _Child | None = None) -> None:
        """Hand the buffered metrics (of `child`, or of every child) to the queue of writes."""
        self._last_flush = time.monotonic()
        for key in [id(child)] if child is not None else list(self._buffer):
            if key not in self._buffer:
                continue
            owner, metrics = self._buffer.pop(key)
            for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
                batch = metrics[i : i + MAX_METRICS_PER_BATCH]
                # queued all before any is tried: a write that raises must not leave later batches unqueued
                self._outbox.append(lambda owner=owner, batch=batch: self.client.log_batch(owner.run_id, metrics=batch))
        self._drain()

    def _end(self, child: _Child, status: str, run_status: str) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(child.run_id, tags=[RunTag(STATUS, status)])
        self.client.set_terminated(child.run_id, status=run_status)

    def _spooled(self) -> Path:
        """A folder for the files of writes that may wait (removed once none does)."""
        if self._spool is None:
            self._spool = Path(tempfile.mkdtemp(prefix="flosssweep-recorder-"))
        return self._spool

    def _finish(self, child: _Child, trial, failed: bool) -> None:
        from mlflow.entities import RunTag

        if child.recorded:
            return
        final = FinalResult.of(trial.last_result)
        for epoch, metrics in final.history if final else []:
            self._buffer_epoch(child, epoch, metrics)  # epochs that never reached MLflow
        self.flush(child)
        if failed or final is None:
            failed_or_stopped = ("error", "FAILED") if failed else ("stopped", "FINISHED")
            self._write(lambda: self._end(child, *failed_or_stopped))
            child.ended = True
            return
        records = [{**r, "sweep": self.sweep_name, "trial_id": child.trial_id} for r in final.records]
        summary = trial_summary(records)
        folder = Path(tempfile.mkdtemp(dir=self._spooled()))
        write_records(records, folder / RECORDS_ARTIFACT)
        files = [folder / RECORDS_ARTIFACT, _copy_diagnostics(trial, folder)]
        tags = [RunTag(f"{TAG_PREFIX}{key}", str(summary[key])) for key in SUMMARY_TAGS]

        def record() -> None:  # each step may be done again after a failure with the same outcome
            for path in filter(None, files):
                self.client.log_artifact(child.run_id, str(path))
            # FINISHED before the tag that says so: a driver killed in between leaves a run that a
            # resumed driver still records (and reopens), never one tagged recorded yet left RUNNING.
            self.client.set_terminated(child.run_id, status="FINISHED")
            self.client.log_batch(child.run_id, tags=tags + [RunTag(RECORDED, "true")])

        self._write(record)
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
