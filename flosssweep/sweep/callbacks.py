"""Ray Tune callbacks of the driver: the MLflow recorder's hooks and the terminal's progress lines."""

from __future__ import annotations

import time

from ray.tune import Callback

from flosssweep.names import EPOCH
from flosssweep.protocol import FinalResult
from flosssweep.tracking.recorder import SweepRecorder, short_value, trial_summary


class MLflowCallback(Callback):
    """Ray Tune callback that records every trial in MLflow. Runs in the driver process only (Ray
    calls callbacks there, never on workers); each hook hands over to `SweepRecorder`, which owns
    the client, the buffers and the resume logic."""

    def __init__(self, recorder: SweepRecorder):
        self.recorder = recorder

    def setup(self, stop=None, num_samples=None, total_num_samples=None, **info):
        self.recorder.load_existing()

    def on_trial_start(self, iteration, trials, trial, **info):
        self.recorder.trial_started(trial, trials)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.recorder.trial_result(trial, trials, result)

    def on_step_end(self, iteration, trials, **info):
        self.recorder.flush_if_due()

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.recorder.trial_retried(trial, trials)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.recorder.trial_ended(trial, trials, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.recorder.trial_ended(trial, trials, failed=True)

    def on_experiment_end(self, trials, **info):
        self.recorder.experiment_ended(trials)


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
        values = " ".join(f"{k}={short_value(trial.config[k])}" for k in self.varied if k in trial.config)
        return f"{trial.trial_id} {values}".strip()

    def _finished(self, trials, trial) -> int:
        return 1 + sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial)

    def on_trial_start(self, iteration, trials, trial, **info):
        epoch = (trial.last_result or {}).get(EPOCH)
        print(f"started  {self._label(trial)}" + (f" (from epoch {epoch})" if epoch else ""), flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
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
        print(f"retrying {self._label(trial)} (its worker failed: {trial.error_file})", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        print(
            f"[{self._finished(trials, trial)}/{self._total}] FAILED {self._label(trial)} "
            f"(error log: {trial.error_file})",
            flush=True,
        )

    def on_step_end(self, iteration, trials, **info):
        if time.monotonic() - self._last < self.every:
            return
        self._last = time.monotonic()
        counts = {}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        running = [t for t in trials if t.status == "RUNNING"]
        epochs = ", ".join(f"{t.trial_id} epoch {(t.last_result or {}).get(EPOCH, 0)}" for t in running[:6])
        elapsed = (time.monotonic() - self._start) / 60
        print(
            f"-- {elapsed:.1f} min: "
            + ", ".join(f"{v} {k.lower()}" for k, v in sorted(counts.items()))
            + (f"; {epochs}" if epochs else ""),
            flush=True,
        )
