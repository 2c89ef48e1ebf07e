"""Ray Tune callbacks of the driver: the MLflow recorder's hooks, the terminal's progress lines, and the
stop of a sweep whose disk is full."""

from __future__ import annotations

import re
import time

from ray.tune import Callback

from flosssweep.checks import disk_full
from flosssweep.config import resolve
from flosssweep.names import (
    EPOCH,
    PROGRESS_DONE,
    PROGRESS_EPOCH,
    PROGRESS_TOTAL,
    PROGRESS_WHAT,
    TRIAL_STATES,
    WORKER_TIME,
)
from flosssweep.protocol import FinalResult
from flosssweep.sweep.storage import full
from flosssweep.tracking.recorder import SweepRecorder, run_label, trial_summary


class MLflowCallback(Callback):
    """Ray Tune callback that records every trial in MLflow. Runs in the driver process only (Ray
    calls callbacks there, never on workers); each hook hands over to `SweepRecorder`, which owns
    the client, the buffers and the resume logic."""

    def __init__(self, recorder: SweepRecorder):
        self.recorder = recorder
        self.stopped_by: Exception | None = None

    def __setstate__(self, state):  # a resumed launch starts afresh
        self.__dict__.update(state, stopped_by=None)

    def _in_trial_hook(self, record, *args) -> None:
        """Ray turns an exception from a trial's hook into something else: that trial's failure (and
        a rerun) from on_trial_complete, a TuneError with a traceback from on_trial_result. So what
        the recorder raises there (a full disk under the store, a write MLflow refused) is kept, and
        raised as itself at the step's end, which stops the sweep; nothing more is recorded meanwhile."""
        if self.stopped_by is None:
            try:
                record(*args)
            except Exception as err:  # noqa: BLE001 - re-raised in on_step_end
                self.stopped_by = err

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        self.recorder.load_existing()

    def on_step_begin(self, iteration, trials, **info):
        self.recorder.catch_up(trials)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._in_trial_hook(self.recorder.trial_started, trial, trials)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._in_trial_hook(self.recorder.trial_result, trial, trials, result)

    def on_step_end(self, iteration, trials, **info):
        if self.stopped_by is not None:
            raise self.stopped_by
        self.recorder.flush_if_due()

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._in_trial_hook(self.recorder.trial_retried, trial, trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._in_trial_hook(self.recorder.trial_ended, trial, trials, False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._in_trial_hook(self.recorder.trial_ended, trial, trials, True)

    def on_experiment_end(self, trials, **info):
        self.recorder.experiment_ended(trials)


class TerminalProgress(Callback):
    """What the terminal shows while a sweep runs: a line when a trial starts, a line when it
    finishes (its varied values and k/n members succeeding), and every `every` seconds a status line
    (`status_line`): how many trials are in each state and, for each running trial named by its
    values, its epoch out of its total or its flossing steps, with an ETA, and the sweep's ETA."""

    def __init__(self, varied: list[str], base: dict | None = None, every: float = 30.0):
        self.varied = list(varied)
        self.base = base or {}
        self.every = every
        self._last = self._start = time.monotonic()
        self._total = 0
        self._clock = Clocks()
        self._totals: dict[str, int] = {}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__.setdefault("base", {})  # pickled by a driver of an earlier version
        self._last = time.monotonic()
        self._clock, self._totals = Clocks(), {}  # a resumed driver measures its own rates

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        self._total = total_num_samples or 0
        self._start = time.monotonic()

    def _label(self, trial) -> str:
        label = run_label(trial.config, self.varied)
        return f"{label} ({trial.trial_id})" if label else trial.trial_id

    def _finished(self, trials, trial) -> int:
        return 1 + sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._clock.started(trial.trial_id)
        epoch = (trial.last_result or {}).get(EPOCH)
        # a restarted trial continues from its newest checkpoint, which may be older than its last report
        again = f" (again, from its newest checkpoint; it had reported epoch {epoch})" if epoch else ""
        print(f"started  {self._label(trial)}{again}", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._clock.saw(trial.trial_id, result)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._clock.ended(trial.trial_id)
        final = FinalResult.of(trial.last_result)
        done = f"[{self._finished(trials, trial)}/{self._total}]"
        if final is None:
            epoch = (trial.last_result or {}).get(EPOCH)
            print(f"{done} stopped early {self._label(trial)} at epoch {epoch}", flush=True)
            return
        summary = trial_summary(final.records)
        earlier = " (before the interruption)" if final.replayed else ""
        print(
            f"{done} finished{earlier} {self._label(trial)}: {summary['successes']}/{summary['members']} "
            f"succeeded" + (f", {summary['diverged']} diverged" if summary["diverged"] else ""),
            flush=True,
        )

    def on_trial_recover(self, iteration, trials, trial, **info):
        print(f"retrying {self._label(trial)} (its worker failed: {failure(trial)})", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        print(
            f"[{self._finished(trials, trial)}/{self._total}] FAILED {self._label(trial)} ({failure(trial)})",
            flush=True,
        )

    def on_step_end(self, iteration, trials, **info):
        if time.monotonic() - self._last < self.every:
            return
        self._last = time.monotonic()
        elapsed = self._last - self._start
        print(status_line(trials, self.varied, self._epochs, self._clock, elapsed, self._total), flush=True)

    def _epochs(self, trial) -> int:
        """The trial's train.epochs (its config over the sweep's base)."""
        if trial.trial_id not in self._totals:
            self._totals[trial.trial_id] = int(resolve(self.base, trial.config)["train"]["epochs"])
        return self._totals[trial.trial_id]


# `ray.exceptions.ActorDiedError: The actor died ...`, `OSError: [Errno 28] ...`: an exception's line
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt)\b.*)$")
SHOWN_CHARS = 200


def error_line(trial) -> str:
    """The last exception named in a failed trial's error file (the innermost cause, without its
    module path, cut at SHOWN_CHARS), or '' when it has none to read (a full disk may have left it
    empty)."""
    try:
        with open(trial.error_file, errors="replace") as stream:
            lines = stream.read(1 << 20).splitlines()
    except (OSError, TypeError):
        return ""
    found = [m.group(1) for m in map(EXCEPTION_LINE.match, map(str.strip, lines)) if m]
    line = found[-1] if found else ""
    return line if len(line) <= SHOWN_CHARS else line[: SHOWN_CHARS - 3] + "..."


def failure(trial) -> str:
    """What a failed trial's error was and where its whole traceback is."""
    line = error_line(trial)
    return f"{line}; error log: {trial.error_file}" if line else f"error log: {trial.error_file}"


class StorageFull(Exception):
    """A trial failed on a full disk; the message says which disk and what to do."""


class DiskWatch(Callback):
    """Stops the sweep at the first trial that fails on a full disk, before Ray retries it and every
    trial after it into the same wall: the storage path's disk has no room left, or the error is
    ENOSPC. What was recorded stays recorded, the runs are closed by the driver, and --resume
    continues once there is room."""

    def __init__(self, storage: str):
        self.storage = storage
        self.problem: str | None = None

    def __setstate__(self, state):  # a resumed launch starts with room again
        self.__dict__.update(state, problem=None)

    def _check(self, trial) -> None:
        line = error_line(trial)
        if full(self.storage):
            self.problem = f"the disk of the storage path {self.storage} is full (no space left on the device)"
        elif disk_full(line):
            self.problem = f"a disk of trial {trial.trial_id}'s worker is full ({line})"

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._check(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._check(trial)

    def on_step_end(self, iteration, trials, **info):
        if self.problem is not None:
            raise StorageFull(self.problem)


class Clocks:
    """When each trial started and how fast its epochs and flossing steps went: the status line's
    ETAs. A count's rate is measured from the first result that carried it, so time spent before (Ray
    starting a worker, pre-flossing before the first epoch) does not slow the epochs down; and on the
    worker's clock (names.WORKER_TIME) where the results carry it, since they can reach the driver in
    bursts. The epochs' rate leaves out the flossing episodes between them, which the status line
    counts in steps: a pre+during trial's 2 episodes of 500 steps took as long as 1000 of its epochs,
    and counted as epochs they made its ETA 3 h where 30 min were left."""

    def __init__(self, now=time.monotonic):
        self.now = now
        self.begun: dict[str, float] = {}  # trial id -> start
        self.first: dict[tuple[str, str], tuple[float, int]] = {}  # (trial id, what) -> (time, count) first seen
        self.last: dict[tuple[str, str], float] = {}  # (trial id, flossing stage) -> time last seen
        self.durations: list[float] = []  # seconds of the trials that finished while this driver ran

    def started(self, trial_id: str) -> None:
        self.begun.setdefault(trial_id, self.now())
        self.forget(trial_id)  # a restarted trial replays from its checkpoint: its rates start again

    def forget(self, trial_id: str) -> None:
        for key in [key for key in self.first if key[0] == trial_id]:
            del self.first[key]
            self.last.pop(key, None)

    def when(self, result: dict) -> float:
        return result[WORKER_TIME] if WORKER_TIME in result else self.now()

    def saw(self, trial_id: str, result: dict) -> None:
        what, count = counted(result)
        if what is not None:
            self.first.setdefault((trial_id, what), (self.when(result), count))
            if what != EPOCH:  # a flossing stage's span, which the epochs' rate leaves out
                self.last[trial_id, what] = self.when(result)

    def ended(self, trial_id: str) -> None:
        if trial_id in self.begun:
            self.durations.append(self.now() - self.begun.pop(trial_id))
        self.forget(trial_id)

    def remaining(self, trial_id: str, what: str, done: int, total: int, result: dict) -> float | None:
        """Seconds until `done` reaches `total` at the rate since `what` was first seen, up to `result`
        (the trial's latest); None before a rate can be told."""
        if (trial_id, what) not in self.first:
            return None
        since, count = self.first[trial_id, what]
        elapsed = self.when(result) - since
        if what == EPOCH:
            elapsed -= self.flossing_since(trial_id, since)
        if done <= count or elapsed <= 0:
            return None
        return (total - done) * elapsed / (done - count)

    def flossing_since(self, trial_id: str, since: float) -> float:
        """Seconds the trial spent in the flossing stages that began at or after `since` (each from
        its first progress result to its latest, so short by at most one progress interval)."""
        return sum(
            self.last[key] - begun
            for key, (begun, _) in self.first.items()
            if key[0] == trial_id and key[1] != EPOCH and begun >= since
        )


def counted(result: dict) -> tuple[str | None, int]:
    """What a result counts and how far: ("epoch", n), or a flossing stage and its steps done."""
    if PROGRESS_WHAT in result:
        return f"{result[PROGRESS_WHAT]}", int(result[PROGRESS_DONE])
    if isinstance(result.get(EPOCH), int):
        return EPOCH, int(result[EPOCH])
    return None, 0


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


SHOWN = 6  # running trials named on a status line


def status_line(trials, varied: list[str], epochs, clock: Clocks, elapsed: float, total: int = 0) -> str:
    """`-- 2.5 min: 2 finished, 2 running, 2 pending; pre delay=16 epoch 300/1000 ETA 1.2 min, none
    delay=24 pre-flossing 200/500 steps; sweep ETA 4.0 min`. `epochs(trial)`: its total epochs. The
    sweep's ETA: what the running trials have left, plus the pending trials at the mean duration of a
    finished trial (of a running one's projected duration before any finished), shared among as many
    trials as run at once. `total`: the sweep's trials, of which Ray Tune may not have made all yet
    (those count as pending)."""
    counts: dict[str, int] = {}
    for t in trials:
        state = TRIAL_STATES.get(t.status, t.status.lower())
        counts[state] = counts.get(state, 0) + 1
    pending = TRIAL_STATES["PENDING"]
    if total > len(trials):
        counts[pending] = counts.get(pending, 0) + total - len(trials)
    running = [t for t in trials if TRIAL_STATES.get(t.status) == "running"]
    parts, left, projected = [], [], []
    for t in running:
        result, last = t.last_result or {}, epochs(t)
        what, done = counted(result)
        if what is None or what == EPOCH:
            text, eta = f"epoch {done}/{last}", clock.remaining(t.trial_id, EPOCH, done, last, result)
        else:
            steps_total, epoch = int(result[PROGRESS_TOTAL]), int(result.get(PROGRESS_EPOCH, 0))
            text = f"{what} {done}/{steps_total} steps at epoch {epoch}/{last}"
            # the steps left, then the epochs left at their rate (none yet before the first epoch)
            steps = clock.remaining(t.trial_id, what, done, steps_total, result)
            after = clock.remaining(t.trial_id, EPOCH, epoch, last, result) if epoch < last else 0.0
            eta = steps + after if steps is not None and after is not None else None
        parts.append(f"{run_label(t.config, varied) or t.trial_id} {text}" + (f" ETA {duration(eta)}" if eta else ""))
        left.append(eta)
        begun = clock.begun.get(t.trial_id)
        if eta is not None and begun is not None:
            projected.append(clock.now() - begun + eta)
    line = f"-- {duration(elapsed)}: " + ", ".join(f"{n} {state}" for state, n in counts.items())
    if parts:
        line += "; " + ", ".join(parts[:SHOWN]) + (f", {len(parts) - SHOWN} more running" if len(parts) > SHOWN else "")
    typical = clock.durations or projected
    waiting = counts.get(pending, 0)
    if running and all(eta is not None for eta in left) and (typical or not waiting):
        mean = sum(typical) / len(typical) if typical else 0.0
        line += f"; sweep ETA {duration((sum(left) + waiting * mean) / len(running))}"
    return line
