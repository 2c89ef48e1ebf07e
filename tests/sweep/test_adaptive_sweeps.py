"""Adaptive and extended sweeps end to end: real (tiny) trials through a local Ray into SQLite MLflow.
A driver killed mid-round resumes with the same posterior and no trial twice; --extend adds rounds to an
adaptive sweep and cells to a grid, and every realization stays recorded once."""

from __future__ import annotations

import copy
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import sweep_environment
from test_driver import TINY_BASE, records_of, runs_of, sweep_command, with_trainer

from flosssweep import names

ROUND_LINE = re.compile(r"^(\S+): T50 (.+) after round (\d+) \((\d+) realizations\)$")


def write(path: Path, name: str, space: dict, epochs: int = 60) -> Path:
    base = copy.deepcopy(TINY_BASE)
    base["train"].update({"epochs": epochs, "report_every": 20})
    sweep = {"name": name, "max_concurrent": 1, "checkpoint_seconds": 0, "base": base, "space": space}
    path.write_text(yaml.safe_dump(sweep))
    return path


def adaptive_space(rounds: int) -> dict:
    return {
        "floss.mode": {"grid": ["none", "pre"]},
        "task.delay": {"adaptive": {"lo": 2, "hi": 24, "step": 2, "rounds": rounds, "per_round": 2}},
    }


def arguments(path: Path, tmp_path: Path) -> list[str]:
    return [
        str(path),
        "--tracking-uri",
        f"sqlite:///{tmp_path}/mlflow.db",
        "--storage-path",
        str(tmp_path / "ray"),
        "--address",
        "local",
        "--num-cpus",
        "2",
        "--no-report",
    ]


def run_sweep(args: list[str], tmp_path: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(sweep_command(*args), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def round_lines(text: str) -> dict[tuple[str, int], str]:
    found = {}
    for line in text.splitlines():
        if match := ROUND_LINE.match(line.strip()):
            found[(match[1], int(match[3]))] = line.strip()
    return found


def recorded(uri: str, name: str, tmp_path: Path) -> tuple[list, list[tuple]]:
    """The recorded child runs of every launch, and the realization keys of all their records."""
    _, children = runs_of(uri, name)
    done = [c for c in children if c.data.tags.get(names.RECORDED) == "true"]
    keys = []
    for child in done:
        rows = records_of(uri, child.info.run_id, tmp_path / "dl" / child.info.run_id).to_pylist()
        keys.extend(tuple(row[k] for k in names.REALIZATION_KEY) for row in rows)
    return done, keys


@pytest.mark.slow
def test_a_driver_killed_mid_round_resumes_with_the_same_posterior_and_no_trial_twice(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    env = with_trainer(sweep_environment(marks), "conftest:logged_train")
    name = "tiny-adaptive-resume"
    args = arguments(write(tmp_path / f"{name}.yaml", name, adaptive_space(rounds=3)), tmp_path)
    uri = args[2]

    driver = subprocess.Popen(
        sweep_command(*args), cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines, deadline = [], time.monotonic() + 300
    for line in driver.stdout:  # kill it once a group's round 2 has started
        lines.append(line)
        after_round_1 = any("after round 1" in seen for seen in lines)
        if (after_round_1 and line.startswith("started ")) or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    before = "".join(lines)
    assert "after round 1" in before, before
    _, children = runs_of(uri, name)
    finished_before = {c.data.tags[names.TRIAL_ID] for c in children if c.data.tags.get(names.RECORDED) == "true"}
    starts_before = len((marks / "starts.log").read_text().splitlines())

    resumed = run_sweep([*args, "--resume"], tmp_path, env)
    assert f"resuming sweep {name}" in resumed.stdout

    # the rounds went on from the same posterior: a round reported on both sides of the kill (its
    # last trial replayed) is reported with the same interval; every round of both groups is there
    lines_before, lines_after = round_lines(before), round_lines(resumed.stdout)
    for key in lines_before.keys() & lines_after.keys():
        assert lines_before[key] == lines_after[key]
    assert {**lines_before, **lines_after}.keys() == {(g, r) for g in ("none", "pre") for r in (1, 2, 3)}

    # no finished trial trained again, one child run per trial, every realization once
    restarted = {line.split()[0] for line in (marks / "starts.log").read_text().splitlines()[starts_before:]}
    assert not restarted & finished_before, "a trial that had finished trained again"
    parents, _ = runs_of(uri, name)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags.get(names.ADAPTIVE_STATE) == "finished"
    done, keys = recorded(uri, name, tmp_path)
    assert len(done) == 2 * 3 * 2 and len({c.data.tags[names.TRIAL_CONFIG] for c in done}) == len(done)
    assert len(keys) == len(set(keys)) == 2 * 3 * 2 * TINY_BASE["ensemble"]
    # and the posterior saw them all, once: the last line of each group counts its group's realizations
    for group in ("none", "pre"):
        last = ROUND_LINE.match(lines_after[(group, 3)])
        assert int(last[4]) == 3 * 2 * TINY_BASE["ensemble"]


@pytest.mark.slow
def test_extend_adds_rounds_to_an_adaptive_sweep_and_cells_to_a_grid_each_realization_once(tmp_path):
    env = sweep_environment(tmp_path)
    # adaptive: one round, then one more from what the first launch recorded
    name = "tiny-adaptive-extend"
    args = arguments(write(tmp_path / f"{name}.yaml", name, adaptive_space(rounds=1), epochs=30), tmp_path)
    uri = args[2]
    first = run_sweep(args, tmp_path, env)
    assert round_lines(first.stdout).keys() == {("none", 1), ("pre", 1)}
    extended = run_sweep([*args, "--extend"], tmp_path, env)
    assert "its groups start from 4 recorded trial(s)" in extended.stdout
    lines = round_lines(extended.stdout)
    members = TINY_BASE["ensemble"]
    assert all(ROUND_LINE.match(lines[(g, 1)])[4] == str(2 * 2 * members) for g in ("none", "pre")), lines
    parents, _ = runs_of(uri, name)
    assert len(parents) == 2 and all(p.info.status == "FINISHED" for p in parents)
    done, keys = recorded(uri, name, tmp_path)
    assert len(done) == 2 * 2 * 2
    configs = [c.data.tags[names.TRIAL_CONFIG] for c in done]
    assert len(set(configs)) == len(configs), "a trial ran twice"
    assert len(keys) == len(set(keys)) == 2 * 2 * 2 * members

    # grid: delays 2 and 4, then 2, 4 and 6 with --extend: only the new cells run
    name = "tiny-grid-extend"
    path = tmp_path / f"{name}.yaml"
    grid = {"floss.mode": {"grid": ["none", "pre"]}, "task.delay": {"grid": [2, 4]}}
    args = arguments(write(path, name, grid, epochs=20), tmp_path)
    run_sweep(args, tmp_path, env)
    grid["task.delay"]["grid"] = [2, 4, 6]
    write(path, name, grid, epochs=20)
    extended = run_sweep([*args, "--extend"], tmp_path, env)
    assert "4 cell(s) already recorded are left out, 2 trial(s) to run" in extended.stdout
    assert "2 of 2 trials finished" in extended.stdout
    done, keys = recorded(uri, name, tmp_path)
    assert len(done) == 6 and len({c.data.tags[names.TRIAL_CONFIG] for c in done}) == 6
    assert len(keys) == len(set(keys)) == 6 * members
    again = run_sweep([*args, "--extend"], tmp_path, env)  # nothing left: nothing runs
    assert "every cell is recorded already" in again.stdout
    assert len(runs_of(uri, name)[0]) == 2
