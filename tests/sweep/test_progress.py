"""Progress a user can trust: the sweep's status line (trials by their values, epochs done of total,
ETAs, "finished"), the flossing steps a trial reports between two epochs, and the trial command's
lines (no NaN for what does not exist yet)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from conftest import sweep_environment

from flosssweep import trial as trial_cli
from flosssweep.names import EPOCH, PROGRESS_DONE, PROGRESS_EPOCH, PROGRESS_TOTAL, PROGRESS_WHAT, WORKER_TIME
from flosssweep.sweep.callbacks import Clocks, status_line
from flosssweep.train import train

VARIED = ["floss.mode", "task.delay"]


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def a_trial(trial_id: str, status: str, mode: str, delay: int, result: dict | None = None):
    return SimpleNamespace(
        trial_id=trial_id, status=status, config={"floss.mode": mode, "task.delay": delay}, last_result=result
    )


def test_status_line_names_trials_by_values_with_epochs_of_total_and_etas():
    now = Clock()
    clock = Clocks(now)
    training = a_trial("t1", "RUNNING", "pre", 16, {EPOCH: 0})
    flossing = a_trial("t2", "RUNNING", "none", 24)
    clock.started("t0")
    now.t += 120.0
    clock.ended("t0")  # one trial took 2 min
    for t in (training, flossing):
        clock.started(t.trial_id)
    clock.saw("t1", {EPOCH: 0})
    pre = {PROGRESS_WHAT: "pre-flossing", PROGRESS_DONE: 1, PROGRESS_TOTAL: 500, PROGRESS_EPOCH: 0}
    clock.saw("t2", pre)
    now.t += 60.0
    training.last_result = {EPOCH: 300}
    flossing.last_result = {**pre, PROGRESS_DONE: 201}
    trials = [
        a_trial("t0", "TERMINATED", "none", 16),
        training,
        flossing,
        a_trial("t3", "PENDING", "pre", 24),
    ]
    line = status_line(trials, VARIED, lambda t: 1000, clock, elapsed=180.0)
    assert line.startswith("-- 3.0 min: 1 finished, 2 running, 1 pending; ")
    assert "terminated" not in line
    # 300 epochs in 60 s: 700 left take 140 s
    assert "pre delay=16 epoch 300/1000 ETA 2.3 min" in line
    # 200 steps in 60 s; its epochs have no rate yet, so no ETA for the trial nor for the sweep
    assert "none delay=24 pre-flossing 201/500 steps at epoch 0/1000," not in line
    assert line.endswith("none delay=24 pre-flossing 201/500 steps at epoch 0/1000")
    assert "sweep ETA" not in line


def test_sweep_eta_shares_the_work_left_among_the_running_trials():
    now = Clock()
    clock = Clocks(now)
    clock.started("t0")
    now.t += 100.0
    clock.ended("t0")  # a finished trial took 100 s
    running = [a_trial("t1", "RUNNING", "pre", 8, {EPOCH: 0}), a_trial("t2", "RUNNING", "none", 8, {EPOCH: 0})]
    for t in running:
        clock.started(t.trial_id)
        clock.saw(t.trial_id, {EPOCH: 0})
    now.t += 50.0
    for t in running:
        t.last_result = {EPOCH: 50}  # half of 100 epochs in 50 s: 50 s left each
    trials = [a_trial("t0", "TERMINATED", "none", 8), *running, a_trial("t3", "PENDING", "pre", 16)]
    line = status_line(trials, VARIED, lambda t: 100, clock, elapsed=150.0)
    # (50 + 50 + 1 pending x 100 s) / 2 running = 100 s
    assert line.endswith("; sweep ETA 1.7 min"), line
    assert "pre delay=8 epoch 50/100 ETA 50 s" in line


def test_etas_run_on_the_workers_clock_when_results_arrive_in_a_burst():
    clock = Clocks(Clock())  # the driver's clock stands still: both results reach it at once
    trial = a_trial("t1", "RUNNING", "none", 8, {EPOCH: 0, WORKER_TIME: 10.0})
    clock.started("t1")
    clock.saw("t1", trial.last_result)
    trial.last_result = {EPOCH: 100, WORKER_TIME: 30.0}  # 100 epochs in 20 s of the worker's time
    line = status_line([trial], VARIED, lambda t: 400, clock, elapsed=40.0, total=3)
    assert line == "-- 40 s: 1 running, 2 pending; none delay=8 epoch 100/400 ETA 60 s; sweep ETA 3.0 min", line


def test_the_epochs_eta_leaves_out_the_flossing_episodes_between_epochs():
    clock = Clocks(Clock())
    trial = a_trial("t1", "RUNNING", "pre+during", 8)
    clock.started("t1")

    def seen(result):
        trial.last_result = result
        clock.saw("t1", result)
        return status_line([trial], VARIED, lambda t: 1000, clock, elapsed=0.0)

    pre = {PROGRESS_WHAT: "pre-flossing", PROGRESS_TOTAL: 50, PROGRESS_EPOCH: 0}
    seen({**pre, PROGRESS_DONE: 1, WORKER_TIME: -30.0})
    seen({**pre, PROGRESS_DONE: 50, WORKER_TIME: -1.0})  # before the first epoch: not the epochs' time either
    seen({EPOCH: 0, WORKER_TIME: 0.0})
    seen({EPOCH: 100, WORKER_TIME: 10.0})  # 0.1 s an epoch
    episode = {PROGRESS_WHAT: "flossing episode 1/1", PROGRESS_TOTAL: 500, PROGRESS_EPOCH: 100}
    seen({**episode, PROGRESS_DONE: 1, WORKER_TIME: 10.0})
    # halfway through the episode: 250 steps in 50 s, then 900 epochs at 0.1 s
    line = seen({**episode, PROGRESS_DONE: 251, WORKER_TIME: 60.0})
    assert "flossing episode 1/1 251/500 steps at epoch 100/1000 ETA 2.3 min" in line, line
    seen({**episode, PROGRESS_DONE: 500, WORKER_TIME: 110.0})
    # 200 epochs in 120 s, of which 100 s were flossing: 800 epochs left at 0.1 s
    line = seen({EPOCH: 200, WORKER_TIME: 120.0})
    assert "epoch 200/1000 ETA 80 s;" in line, line


def test_a_status_line_before_any_rate_shows_no_eta():
    clock = Clocks(Clock())
    trials = [a_trial("t1", "RUNNING", "pre", 8), a_trial("t2", "PENDING", "none", 8)]
    line = status_line(trials, VARIED, lambda t: 100, clock, elapsed=5.0)
    assert line == "-- 5 s: 1 running, 1 pending; pre delay=8 epoch 0/100"


def test_training_reports_flossing_steps_done_out_of_total():
    config = trial_cli.load_config(
        trial_cli.parse_args(
            [
                "model.hidden=8",
                "train.length=30",
                "train.epochs=20",
                "train.success_window=5",
                "floss.mode=pre+during",
                "floss.pre_steps=4",
                "floss.every=10",
                "floss.episodes=1",
                "floss.steps=3",
                "floss.horizon=10",
                "floss.warmup=2",
                "ensemble=1",
            ]
        )
    )
    heard = []
    train(config, progress=lambda what, done, total, epoch: heard.append((what, done, total, epoch)))
    assert heard == [("pre-flossing", n, 4, 0) for n in range(1, 5)] + [
        ("flossing episode 1/1", n, 3, 10) for n in range(1, 4)
    ]


TINY_TRIAL = ["model.hidden=8", "train.length=30", "train.epochs=20", "train.report_every=10", "ensemble=2"]
TINY_TRIAL += ["train.success_window=5", "floss.pre_steps=3", "floss.horizon=10", "floss.warmup=2"]


@pytest.mark.parametrize("mode", ["none", "pre"])
def test_the_trial_command_prints_no_nan_for_what_does_not_exist_yet(capsys, mode):
    assert trial_cli.main([*TINY_TRIAL, f"floss.mode={mode}"]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out.lower(), out
    lines = out.splitlines()
    if mode == "pre":
        assert lines[1].startswith("pre-flossing 3/3 steps at epoch 0/20"), out
    before = next(line for line in lines if line.startswith("before training"))
    assert " loss " not in before and " acc " not in before, before  # no epoch trained: neither exists yet
    assert "success 0/2" in before and "lambda_1" in before
    # the two success definitions are named where they appear
    assert "mean accuracy over the last 5 epochs" in out and "20-epoch moving mean" in out


def seconds_to_first_line(tmp_path, attempt: int) -> tuple[float, str]:
    """A sweep started as a user starts it: seconds from the command to its first line, and the line."""
    command = [sys.executable, "-m", "flosssweep.run", "quickstart", "--address", "local", "--num-cpus", "2"]
    command += ["--tracking-uri", f"sqlite:///{tmp_path}/m{attempt}.db", "--storage-path", str(tmp_path / "ray")]
    started = time.monotonic()
    driver = subprocess.Popen(
        command, cwd=tmp_path, env=sweep_environment(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        first = driver.stdout.readline().decode()
        return time.monotonic() - started, first
    finally:
        driver.send_signal(signal.SIGINT)  # Ctrl-C: whatever it had started, it stops itself
        try:
            driver.wait(timeout=120)
        except subprocess.TimeoutExpired:
            driver.kill()
            driver.wait()


@pytest.mark.slow
def test_first_line_of_a_sweep_within_two_seconds(tmp_path):
    """Measured from the command to its first line on stdout, in a fresh interpreter. The best of up to
    three launches counts: on a machine shared with other work one launch can wait for a core."""
    seen = []
    for attempt in range(3):
        elapsed, first = seconds_to_first_line(tmp_path, attempt)
        assert first.startswith("quickstart: 6 trials; checking"), first
        seen.append(round(elapsed, 2))
        if elapsed < 2.0:
            return
    raise AssertionError(f"seconds to the first line, three launches: {seen}")


@pytest.mark.slow
def test_a_flossing_sweep_under_optuna_and_asha_reports_progress_that_neither_records(ray_local, tmp_path, monkeypatch):
    """Progress results (flossing steps, the metric not measured yet) pass Ray Tune's metric check,
    Optuna and ASHA without becoming a step of the trial: MLflow holds the epochs alone, the study
    only real values."""
    import optuna
    import yaml
    from mlflow import MlflowClient

    from flosssweep import names, run

    monkeypatch.chdir(tmp_path)  # every trial reports its first pre-flossing step, before any metric exists
    sweep = {
        "name": "tiny-progress",
        "search": "optuna",
        "num_samples": 2,
        "max_concurrent": 2,
        "scheduler": {"type": "asha", "grace_period": 10, "reduction_factor": 2},
        "base": {
            "model": {"hidden": 8},
            "task": {"bits": 1, "delay": 2},
            "train": {"epochs": 20, "length": 30, "success_window": 5, "report_every": 10},
            "floss": {"mode": "pre", "pre_steps": 20, "horizon": 10, "warmup": 2},
            "ensemble": 2,
        },
        "space": {"floss.lr": {"loguniform": [0.0001, 0.01]}},
    }
    path = tmp_path / "tiny-progress.yaml"
    path.write_text(yaml.safe_dump(sweep))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert run.main([str(path), "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"), "--no-report"]) == 0
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny-progress")
    children = [r for r in client.search_runs([experiment.experiment_id]) if r.data.tags.get(names.ROLE) == "child"]
    assert len(children) == 2
    for child in children:
        steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, "charts/success_rate"))
        assert steps == [0, 10, 20], steps
        assert not any(key.startswith("progress") for key in child.data.metrics)
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path}/optuna.db")
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        # epochs 0 and 10 (the last one is the trial's value), at Ray's iteration numbers, which count
        # the progress results too; none of them a value
        values = trial.intermediate_values
        assert len(values) == 2 and all(isinstance(v, float) for v in values.values()), values


@pytest.mark.slow
def test_an_epochs_result_carries_the_time_the_epoch_was_reached(ray_local, tmp_path):
    """The worker holds a report until its checkpoint, or until the next report where no checkpoint
    comes (epoch 0, after pre-flossing). The time it carries is the report's: stamped when sent, epoch
    0 came out after the flossing episode that followed it, and the status line saw 10 epochs in no
    time (ETA 0 s)."""
    from ray.tune import Callback

    from flosssweep.sweep import spec
    from flosssweep.sweep.driver import build_tuner

    class Heard(Callback):
        def __init__(self):
            self.results = []

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.results.append(result)

    sweep = spec.parse(
        {
            "name": "tiny-times",
            "base": {
                "model": {"hidden": 8},
                "task": {"bits": 1, "delay": 2},
                "train": {"epochs": 20, "length": 30, "success_window": 5, "report_every": 10},
                "floss": {"mode": "pre+during", "pre_steps": 5, "every": 5, "episodes": 1, "steps": 20, "horizon": 10},
                "ensemble": 2,
            },
            "space": {"floss.warmup": {"grid": [2]}},
        }
    )
    heard = Heard()
    build_tuner(sweep, str(tmp_path / "ray"), heard, launch="test").fit()
    epoch0 = next(r[WORKER_TIME] for r in heard.results if r.get(EPOCH) == 0 and PROGRESS_WHAT not in r)
    episode = next(r[WORKER_TIME] for r in heard.results if str(r.get(PROGRESS_WHAT)).startswith("flossing episode"))
    assert epoch0 < episode, (epoch0, episode)
