"""Inside a Ray worker: one trial of a sweep, with its checkpoints and progress reports."""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import time
from pathlib import Path

from flosssweep.config import resolve
from flosssweep.names import (
    DIAGNOSTICS_ARTIFACT,
    EPOCH,
    PROGRESS_DONE,
    PROGRESS_EPOCH,
    PROGRESS_TOTAL,
    PROGRESS_WHAT,
    RECORDS_ARTIFACT,
    RESTORED_FROM,
    SUCCESS_RATE,
    TRAINER_ENV,
    WORKER_TIME,
)
from flosssweep.protocol import CheckpointMeta, FinalResult
from flosssweep.records import write as write_records

TRAIN = "flosssweep.train:train"
STATE_FILE = "state.pt"  # trainer state (`Trial.state_dict`), in all but a finished trial's checkpoints
META_FILE = "meta.json"  # a `protocol.CheckpointMeta`, in every checkpoint
KEEP_STATES = 2  # checkpoints of a trial that keep their (large) state file
PROGRESS_SECONDS = 5.0  # between two progress results of a flossing trial (the status line shows every 30 s)


# -- inside a trial (a Ray worker) ----------------------------------------------------------------
class _Checkpoints:
    """A trial's checkpoints where Ray stores them (local disk or a cloud bucket).

    The experiment snapshot that --resume starts from can be seconds older than the newest
    checkpoint; it may even predate a trial, which Ray then creates again, in a new directory and,
    under Optuna, with a new trial id. So Ray is told to keep every checkpoint (num_to_keep=None: it
    refuses to resume from one it has deleted), trials drop the large state file from all but the
    KEEP_STATES newest checkpoints themselves, and a trial that starts looks through the whole
    experiment for the newest checkpoint of the same launch and configuration (seeded, hence the
    same computation): records if it had finished, else its latest state. It neither trains again
    what was done nor starts over what was under way.
    """

    def __init__(self, config: dict, launch: str, fs=None, directories: list[str] | None = None):
        self.config = json.loads(json.dumps(config))  # as it reads back from meta.json
        self.launch = launch
        self.fs, self.directories = fs, directories or []

    @classmethod
    def of_this_trial(cls, config: dict, launch: str) -> _Checkpoints:
        import posixpath

        import pyarrow.fs as pafs
        from ray import tune

        try:
            storage = tune.get_context().get_storage()
            fs, experiment, own = storage.storage_filesystem, storage.experiment_fs_path, storage.trial_fs_path
        except (AttributeError, RuntimeError):  # no storage context: only what Ray hands back
            checkpoint = tune.get_checkpoint()
            if checkpoint is None:
                return cls(config, launch)
            return cls(config, launch, checkpoint.filesystem, [posixpath.dirname(checkpoint.path.rstrip("/"))])
        directories = [
            info.path
            for info in fs.get_file_info(pafs.FileSelector(experiment, allow_not_found=True))
            if info.type == pafs.FileType.Directory
        ]
        return cls(config, launch, fs, sorted(set(directories) | {own}))

    def meta(self, epoch: int, done: bool, metrics: dict | None = None, history: list | None = None) -> str:
        return CheckpointMeta(epoch, done, self.launch, self.config, metrics or {}, history or []).dumps()

    def _scan(self) -> list[tuple[tuple, str, CheckpointMeta]]:
        """(sort key, path, meta) of every checkpoint of this trial with something to restore."""
        import pyarrow.fs as pafs

        found = []
        for directory in self.directories:
            for info in self.fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True)):
                if info.type != pafs.FileType.Directory or not info.base_name.startswith("checkpoint_"):
                    continue
                try:
                    with self.fs.open_input_stream(f"{info.path}/{META_FILE}") as stream:
                        meta = CheckpointMeta.loads(stream.read().decode())
                except (OSError, ValueError, TypeError):
                    continue
                if meta.config != self.config or meta.launch != self.launch:
                    continue
                has_state = self.fs.get_file_info(f"{info.path}/{STATE_FILE}").type == pafs.FileType.File
                if meta.done or has_state:
                    found.append(((bool(meta.done), meta.epoch), info.path, meta))
        return sorted(found)

    def newest(self):
        """The checkpoint to start from (a finished one first, then the latest epoch), or None."""
        from ray import tune

        found = self._scan() if self.fs is not None else []
        return tune.Checkpoint(path=found[-1][1], filesystem=self.fs) if found else None

    def prune(self) -> None:
        """After a checkpoint is persisted: delete the state of all but the newest few."""
        if self.fs is None:
            return
        for _, path, meta in self._scan()[:-KEEP_STATES]:
            if not meta.done:
                try:
                    self.fs.delete_file(f"{path}/{STATE_FILE}")
                except OSError:
                    pass


class _Progress:
    """Turns the trainer's `report(metrics, epoch)` and `checkpoint(state, epoch)` into
    `ray.tune.report` calls: a report and the checkpoint of the same epoch travel together (a
    checkpoint at most every `checkpoint_seconds`), and the last epoch's report waits for the
    records so that the final result carries them.

    Every report also goes into `history`, which each checkpoint and the final result carry: the
    driver fills in from it whatever epochs never reached MLflow (a driver killed with metrics
    still in its buffer, a trial resumed from a checkpoint after those epochs).

    The first report of each start also carries RESTORED_FROM, the epoch of the checkpoint it
    started from (0 for a fresh start), so that MLflow shows where a retried trial picked up."""

    def __init__(
        self,
        final_epoch: int,
        checkpoint_seconds: float,
        checkpoints: _Checkpoints,
        history: list | None = None,
        restored_from: int = 0,
        metric: str | None = None,
    ):
        self.metric = metric  # the sweep's metric, which Ray Tune wants in every result
        self.last_progress = -math.inf
        self.restored_from: int | None = restored_from  # None once the first report is out
        self.final_epoch = final_epoch
        self.checkpoint_seconds = checkpoint_seconds
        self.checkpoints = checkpoints
        self.history = list(history or [])  # [epoch, metrics] of every report of the trial
        self.last_checkpoint = time.monotonic()
        self.held: tuple[dict, int, float] | None = None  # a report waiting for its checkpoint, and its time
        self.state: tuple[dict, int] | None = None  # a checkpoint waiting for its report

    def report(self, metrics: dict, epoch: int) -> None:
        if self.held is not None:
            self._send()
        if self.restored_from is not None:
            metrics = {**metrics, RESTORED_FROM: self.restored_from}
            self.restored_from = None
        self.history.append([int(epoch), metrics])
        self.held = (metrics, epoch, time.time())  # the status line's rates need when the epoch was reached, not sent
        if epoch < self.final_epoch and self.state is not None and self.state[1] == epoch:
            self._send(self.state[0])

    def checkpoint(self, state: dict, epoch: int) -> None:
        if epoch >= self.final_epoch:
            return  # the final report carries the records instead
        if self.held is not None and self.held[1] == epoch:
            self._send(state)
        else:
            self.state = (state, epoch)

    def steps(self, what: str, done: int, total: int, epoch: int) -> None:
        """The trainer's `progress`: a progress result (names.PROGRESS_KEYS) at the first step and then
        every PROGRESS_SECONDS, so that the driver's status line shows flossing steps, not a frozen epoch."""
        from ray import tune

        if done > 1 and time.monotonic() - self.last_progress < PROGRESS_SECONDS:
            return
        self.last_progress = time.monotonic()
        latest = self.history[-1][1].get(self.metric) if self.history else None
        result = {PROGRESS_WHAT: what, PROGRESS_DONE: done, PROGRESS_TOTAL: total, PROGRESS_EPOCH: epoch}
        result[WORKER_TIME] = time.time()
        tune.report({self.metric: latest, **result} if self.metric else result)

    def _send(self, state: dict | None = None) -> None:
        import tempfile

        import torch
        from ray import tune

        metrics, epoch, when = self.held
        self.held, self.state = None, None
        result = _result(metrics, epoch, when)
        if state is None or time.monotonic() - self.last_checkpoint < self.checkpoint_seconds:
            tune.report(result)
            return
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(state, Path(tmp, STATE_FILE))
            Path(tmp, META_FILE).write_text(self.checkpoints.meta(epoch, False, history=self.history))
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))
        self.last_checkpoint = time.monotonic()
        self.checkpoints.prune()

    def finish(self, records: list[dict], diagnostics=None) -> None:
        metrics, epoch = self.held[:2] if self.held is not None else ({}, self.final_epoch)
        self.held = None
        _final_report(self.checkpoints, epoch, metrics, FinalResult(records, self.history), diagnostics)


def _result(metrics: dict, epoch: int, when: float | None = None) -> dict:
    """`epoch` first: Ray's status table shows the first few numbers of a result. `when`: the worker's
    time of the report (now if None)."""
    first = (SUCCESS_RATE, "charts/accuracy", "losses/task")
    result = {EPOCH: int(epoch)}
    result.update({k: metrics[k] for k in first if k in metrics})
    result.update({k: v for k, v in metrics.items() if k not in result})
    result[WORKER_TIME] = time.time() if when is None else when
    return result


def _final_report(checkpoints: _Checkpoints, epoch: int, metrics: dict, final: FinalResult, diagnostics=None) -> None:
    """The trial's last result: its metrics, the success rate over members and the `FinalResult`,
    with a checkpoint that marks the trial done and holds the records and the diagnostics over
    training (an Arrow table, too large for a result: the driver reads it from the checkpoint)."""
    import tempfile

    import pyarrow.parquet as pq
    from ray import tune

    result = _result(metrics, epoch)
    if final.records:
        result[SUCCESS_RATE] = sum(bool(r["success"]) for r in final.records) / len(final.records)
    result.update(final.to_result())
    with tempfile.TemporaryDirectory() as tmp:
        write_records(final.records, Path(tmp, RECORDS_ARTIFACT))
        if diagnostics is not None:
            pq.write_table(diagnostics, Path(tmp, DIAGNOSTICS_ARTIFACT))
        Path(tmp, META_FILE).write_text(checkpoints.meta(epoch, True, metrics=metrics, history=final.history))
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))


def _load_train():
    """The train function: `flosssweep.train:train`, or the one TRAINER_ENV names (tests only)."""
    module, _, name = (os.environ.get(TRAINER_ENV) or TRAIN).partition(":")
    return getattr(importlib.import_module(module), name)


def run_trial(
    config: dict,
    *,
    base: dict,
    sweep_name: str,
    launch: str,
    checkpoint_seconds: float = 60.0,
    provenance: dict | None = None,
    metric: str | None = None,
) -> None:
    """Ray Tune function trainable: one trial of the sweep (its dotted values over the base).
    `provenance`: the driver's `flosssweep.provenance.collect()`, added to every record; `metric`: the
    sweep's metric as Ray Tune knows it (`Sweep.ray_metric_name`)."""

    import pyarrow.parquet as pq
    import torch
    from ray import tune

    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    trial_config = resolve(base, config)
    trial_id = tune.get_context().get_trial_id()
    checkpoints = _Checkpoints.of_this_trial(config, launch)
    restore, history, restored_from = None, [], 0
    newest = checkpoints.newest()
    if newest is not None:
        with newest.as_directory() as directory:
            meta = CheckpointMeta.loads(Path(directory, META_FILE).read_text())
            if meta.done:  # finished before the driver went away: report, do not retrain
                records = pq.read_table(Path(directory, RECORDS_ARTIFACT)).to_pylist()
                records = [{**r, "trial_id": trial_id} for r in records]  # this trial's id, if Ray gave a new one
                kept = Path(directory, DIAGNOSTICS_ARTIFACT)
                diagnostics = pq.read_table(kept) if kept.is_file() else None
                final = FinalResult(records, meta.history, replayed=True)
                _final_report(checkpoints, meta.epoch, meta.metrics, final, diagnostics)
                return
            restore = torch.load(Path(directory, STATE_FILE), weights_only=False)
            history, restored_from = meta.history, int(meta.epoch)
    progress = _Progress(
        trial_config["train"]["epochs"], checkpoint_seconds, checkpoints, history, restored_from, metric
    )
    diagnostics = []
    records = _load_train()(
        trial_config,
        report=progress.report,
        checkpoint=progress.checkpoint,
        restore=restore,
        progress=progress.steps,
        diagnostics=diagnostics.append,
    )
    progress.finish(
        [{"sweep": sweep_name, "trial_id": trial_id, **r, **(provenance or {})} for r in records],
        diagnostics[0] if diagnostics else None,
    )
