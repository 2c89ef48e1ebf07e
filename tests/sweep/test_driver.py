"""Sweeps end to end: real (tiny) trials through a local Ray into a temporary SQLite MLflow store,
read back; an interrupted sweep resumed; a dying worker retried; bad input refused."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT, in_process, sweep_environment

from flosssweep import names, run
from flosssweep.sweep import driver
from flosssweep.tracking.store import TrackingStore

TINY_BASE = {
    "model": {"hidden": 8},
    "task": {"bits": 1},
    "train": {"epochs": 30, "length": 40, "success_window": 10, "report_every": 10},
    "floss": {"pre_steps": 5, "horizon": 20, "warmup": 5},
    "ensemble": 2,
}


def write_sweep(directory: Path, name: str, **fields) -> Path:
    sweep = {
        "name": name,
        "max_concurrent": 2,
        "checkpoint_seconds": 0,
        "base": copy.deepcopy(TINY_BASE),
        "space": {"floss.mode": {"grid": ["none", "pre"]}, "task.delay": {"grid": [2, 4]}},
    }
    sweep.update(fields)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def mlflow_client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def runs_of(uri: str, experiment: str) -> tuple[list, list]:
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get(names.ROLE) == "parent"]
    children = [r for r in runs if r.data.tags.get(names.ROLE) == "child"]
    return parents, children


def records_of(uri: str, run_id: str, into: Path):
    into.mkdir(parents=True, exist_ok=True)
    path = mlflow_client(uri).download_artifacts(run_id, names.RECORDS_ARTIFACT, str(into))
    return pq.read_table(path)


def sweep_command(*args: str) -> list[str]:
    """A sweep driver in its own process, as a user starts it."""
    return [sys.executable, "-m", "flosssweep.run", *args]


def with_trainer(env: dict[str, str], trainer: str) -> dict[str, str]:
    """The environment of a driver whose Ray workers call a test trainer (`conftest:<name>`) instead
    of the real one: the worker alone reads it, no production signature carries it."""
    return {**env, names.TRAINER_ENV: trainer}


# -- a real sweep, read back from MLflow -----------------------------------------------------------------
@pytest.mark.slow
def test_grid_sweep_records_every_trial_in_mlflow(ray_local, tmp_path, monkeypatch, capsys, request):
    monkeypatch.chdir(tmp_path)
    previous = os.umask(0o022)  # a shared machine's usual umask, which the driver must tighten
    request.addfinalizer(lambda: os.umask(previous))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = write_sweep(tmp_path, "tiny-grid")
    args = [str(path), "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray")]
    code = run.main([*args, "--report-out", str(tmp_path / "report")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert (tmp_path / "report" / "horizon.png").stat().st_size > 0, "the sweep's one report, also on disk"

    # the terminal: one line per finished trial named by its values, as its MLflow run is, and k/n
    finished = [line for line in out.splitlines() if " finished " in line and "succeeded" in line]
    assert len(finished) == 4
    named = {line.split(" finished ")[1].split(" (")[0] for line in finished}
    assert named == {"none delay=2", "pre delay=2", "none delay=4", "pre delay=4"}, finished
    assert all(line.split(": ")[-1].split()[0].count("/") == 1 for line in finished)

    parents, children = runs_of(uri, "tiny-grid")
    assert len(parents) == 1 and len(children) == 4
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags[names.SWEEP] == "tiny-grid"
    assert f"python -m flosssweep.report --run {parent.info.run_id}" in out

    seen = set()
    for child in children:
        tags, params = child.data.tags, child.data.params
        assert tags["mlflow.parentRunId"] == parent.info.run_id and child.info.status == "FINISHED"
        trial_id = tags[names.TRIAL_ID]
        seen.add((params["floss.mode"], params["task.delay"]))
        # params: the trial config's keys that apply to its task (parity: no tau, no D_stsp settings)
        assert params["model.hidden"] == "8" and params["train.epochs"] == "30" and params["ensemble"] == "2"
        assert "task.tau" not in params and "train.dstsp_threshold" not in params
        # metrics: one point per report, step = epoch, never twice
        history = mlflow_client(uri).get_metric_history(child.info.run_id, "charts/accuracy")
        assert [m.step for m in history] == [0, 10, 20, 30]
        assert {"losses/task", "charts/success_rate", "lyapunov/lambda_1"} <= set(child.data.metrics)
        # records: one row per realization, with the trial's identity and config columns
        table = records_of(uri, child.info.run_id, tmp_path / "dl" / trial_id)
        rows = table.to_pylist()
        assert len(rows) == 2 and [r["member"] for r in rows] == [0, 1]
        assert {r["trial_id"] for r in rows} == {trial_id} and {r["sweep"] for r in rows} == {"tiny-grid"}
        assert {"success", "status", "final_accuracy", "config_key", "floss_mode", "delay"} <= set(table.column_names)
        assert rows[0]["floss_mode"] == params["floss.mode"] and str(rows[0]["delay"]) == params["task.delay"]
        assert tags["flosssweep.successes"] == str(sum(r["success"] for r in rows))
        # diagnostics over training: the k exponents of every report and the stages' curves, per member
        into = tmp_path / "dl-diag" / trial_id
        into.mkdir(parents=True)
        diagnostics = pq.read_table(
            mlflow_client(uri).download_artifacts(child.info.run_id, names.DIAGNOSTICS_ARTIFACT, str(into))
        )
        assert set(diagnostics["stage"].to_pylist()) == set(names.DIAGNOSTIC_STAGES)
        assert set(diagnostics["member"].to_pylist()) == {0, 1}
        assert set(diagnostics["config_key"].to_pylist()) == {rows[0]["config_key"]}
    assert seen == {("none", "2"), ("none", "4"), ("pre", "2"), ("pre", "4")}
    assert (tmp_path / "mlartifacts").is_dir(), "a local store keeps its artifacts next to the database"
    # the files that hold results and the tracking URI are the user's alone (issue 24), despite umask 022
    for held in (tmp_path / "mlflow.db", tmp_path / "mlartifacts", tmp_path / "ray" / "tiny-grid" / driver.LAUNCH_FILE):
        assert stat.S_IMODE(held.stat().st_mode) & 0o077 == 0, f"{held} is {oct(held.stat().st_mode)}"
    check_what_a_reader_sees(uri, parent, children, out, tmp_path / "ray" / "tiny-grid", tmp_path)


def check_what_a_reader_sees(uri, parent, children, out, experiment_dir, tmp_path):
    """Issue 14: the MLflow experiment opens in the model-training view, children are named by their
    values, provenance is everywhere, the parent holds the summary, the terminal and disk carry no
    copies of Ray's own logs."""
    from flosssweep import provenance

    client = mlflow_client(uri)
    assert client.get_experiment(parent.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    for child in children:
        name = child.info.run_name
        assert name.split()[0] in ("none", "pre") and name.split()[1].startswith("delay="), name
        assert child.data.tags["mlflow.source.git.commit"] == provenance.collect()["code_commit"]
        assert name.endswith(f"({child.data.tags[names.TRIAL_ID]})")
        assert not set(names.ZERO_UNTIL_RAISED) & set(child.data.metrics), "flat-zero counters are not charted"
    here = provenance.collect()
    tags = client.get_run(parent.info.run_id).data.tags
    for column in names.PROVENANCE_COLUMNS:  # the command is this process's: the driver runs in it
        assert tags[f"flosssweep.{column}"] == provenance.tags(here, "flosssweep.")[f"flosssweep.{column}"]
    rows = records_of(uri, children[0].info.run_id, tmp_path / "dl-prov").to_pylist()
    assert {r["code_commit"] for r in rows} == {here["code_commit"]}
    assert rows[0]["torch_version"] == here["torch_version"]
    assert rows[0]["mlflow_version"] == here["mlflow_version"] and rows[0]["command"] == here["command"]
    # the summary, browsable on the parent: metrics, the description, a table MLflow's load_table reads
    metrics = client.get_run(parent.info.run_id).data.metrics
    assert metrics and all(k.startswith("t50") for k in metrics), "only T50s, whose latest value is the answer"
    assert {t: v for t, v in tags.items() if t.startswith("successes/floss_mode.none/")}.keys() == {
        "successes/floss_mode.none/delay 2",
        "successes/floss_mode.none/delay 4",
    }
    assert tags["mlflow.note.content"].startswith("**T50**") and "flossing schedule" in tags["mlflow.note.content"]
    assert " T50 " in client.get_run(parent.info.run_id).info.run_name
    # the last line's address opens that parent's metrics page, whose first charts are the T50s
    page = f"#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}/model-metrics"
    assert out.rstrip().splitlines()[-1].endswith(f"{page}?workflowType=machine_learning")
    assert {"path": "report/summary.json", "type": "table"} in json.loads(tags["mlflow.loggedArtifacts"])
    # the terminal: our lines and the report, not Ray's box and hints; no duplicate per-trial logs on disk
    for noise in ("Configuration for experiment", "View detailed results", "tensorboard", "INFO"):
        assert noise not in out
    assert "T50 [95% CI]" in out
    for pattern in ("progress.csv", "result.json", "events.out.tfevents*"):
        assert not list(experiment_dir.rglob(pattern)), pattern


@pytest.mark.slow
def test_optuna_sweep_runs_seeded_trials(ray_local, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    base = copy.deepcopy(TINY_BASE)
    base["floss"]["mode"] = "regularizer"
    path = write_sweep(
        tmp_path,
        "tiny-optuna",
        search="optuna",
        num_samples=2,
        max_concurrent=1,
        base=base,
        space={"floss.strength": {"loguniform": [0.001, 0.1]}, "floss.k": {"randint": [1, 4]}},
    )
    assert run.main([str(path), "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray")]) == 0
    parents, children = runs_of(uri, "tiny-optuna")
    assert len(children) == 2
    # the study outlives the sweep, next to the tracking store, for optuna-dashboard and importances
    import optuna

    tags = parents[0].data.tags
    assert tags[names.OPTUNA_STORAGE] == f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.load_study(study_name=tags[names.OPTUNA_STUDY], storage=tags[names.OPTUNA_STORAGE])
    assert tags[names.OPTUNA_STUDY] == f"tiny-optuna {parents[0].info.run_id}"
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and {"floss.strength", "floss.k"} == set(done[0].params)
    assert f"optuna-dashboard sqlite:///{tmp_path}/optuna.db" in capsys.readouterr().out
    for child in children:
        assert 0.001 <= float(child.data.params["floss.strength"]) <= 0.1
        assert 1 <= int(child.data.params["floss.k"]) <= 4
        assert child.data.tags.get("flosssweep.recorded") == "true"


@pytest.mark.slow
def test_a_trial_whose_worker_dies_is_retried_in_one_line_without_ray_s_actor_traceback(tmp_path):
    """Before, Ray forwarded the raylet's "a worker died" text and the actor's traceback to the terminal.
    Now the driver's line names the retried trial and its error log; the rest stays in Ray's logs."""
    marks = tmp_path / "marks"
    marks.mkdir()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    path = write_sweep(tmp_path, "tiny-dies", space={"task.delay": {"grid": [2]}})
    args = [str(path), "--tracking-uri", uri, "--storage-path", str(tmp_path / "ray"), "--address", "local"]
    driver = subprocess.run(
        sweep_command(*args, "--num-cpus", "2"),
        cwd=tmp_path,
        env=with_trainer(sweep_environment(marks), "conftest:die_once_train"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    code, out = driver.returncode, driver.stdout
    assert code == 0, out + driver.stderr
    retried = [line for line in out.splitlines() if line.startswith("retrying")]
    assert len(retried) == 1 and "error log: " in retried[0], out
    said = out + driver.stderr
    assert "Traceback" not in said and "(raylet)" not in said and "pid=" not in said, said
    _, children = runs_of(uri, "tiny-dies")
    assert len(children) == 1
    child = children[0]
    assert child.info.status == "FINISHED" and child.data.tags["flosssweep.retries"] == "1"
    steps = [m.step for m in mlflow_client(uri).get_metric_history(child.info.run_id, "charts/accuracy")]
    assert steps == [0, 10, 20, 30], "the retry resumed from a checkpoint and logged no epoch twice"
    assert len(records_of(uri, child.info.run_id, tmp_path / "dl").to_pylist()) == 2


# -- interrupted and resumed ------------------------------------------------------------------------------
RESUMABLE = {
    # a grid: Ray re-creates a trial its last snapshot did not know under the same trial id
    "grid": {"space": {"floss.mode": {"grid": ["none", "pre"]}, "task.delay": {"grid": [2, 4, 6]}}},
    # Optuna: such a trial comes back with a new trial id (and, seeded, the same configuration)
    "optuna": {
        "search": "optuna",
        "num_samples": 5,
        "base_floss_mode": "regularizer",
        "space": {"floss.strength": {"loguniform": [0.001, 0.1]}, "floss.k": {"randint": [1, 4]}},
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("search", list(RESUMABLE))
def test_a_killed_sweep_resumes_without_rerunning_or_duplicating_trials(tmp_path, search):
    marks = tmp_path / "marks"
    marks.mkdir()
    env = sweep_environment(marks)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    fields = dict(RESUMABLE[search])
    base = copy.deepcopy(TINY_BASE)
    base["train"].update({"epochs": 200, "report_every": 20})
    base["floss"]["mode"] = fields.pop("base_floss_mode", "pre")
    name = f"tiny-resume-{search}"
    path = write_sweep(tmp_path, name, base=base, max_concurrent=1, **fields)
    trials = 6 if search == "grid" else 5
    args = [
        str(path),
        "--tracking-uri",
        uri,
        "--storage-path",
        str(tmp_path / "ray"),
        "--address",
        "local",
        "--num-cpus",
        "2",
    ]

    driver = subprocess.Popen(
        sweep_command(*args),
        cwd=tmp_path,
        env=with_trainer(env, "conftest:logged_train"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    deadline = time.monotonic() + 120
    for line in driver.stdout:
        lines.append(line)
        if sum(" finished " in seen for seen in lines) >= 2 or time.monotonic() > deadline:
            break
    time.sleep(1.0)  # let the third trial get going
    driver.send_signal(signal.SIGKILL)  # the driver dies mid-sweep: no chance to clean up
    driver.wait(timeout=30)
    assert sum(" finished " in line for line in lines) >= 2, "".join(lines)

    parents, children = runs_of(uri, name)
    recorded_before = {
        c.data.tags[names.TRIAL_ID] for c in children if c.data.tags.get("flosssweep.recorded") == "true"
    }
    configs_before = {
        c.data.tags[names.TRIAL_CONFIG] for c in children if c.data.tags.get("flosssweep.recorded") == "true"
    }
    assert len(parents) == 1 and len(recorded_before) >= 2
    starts_before = (marks / "starts.log").read_text().splitlines()

    resumed = subprocess.run(
        sweep_command(*args, "--resume"),
        cwd=tmp_path,
        env=with_trainer(env, "conftest:logged_train"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming sweep {name}" in resumed.stdout

    # no trial that had finished trains again (under Optuna it may come back with a new id: its
    # configuration gives it away)
    parents, children = runs_of(uri, name)
    config_of = {c.data.tags[names.TRIAL_ID]: c.data.tags[names.TRIAL_CONFIG] for c in children}
    starts_after = (marks / "starts.log").read_text().splitlines()[len(starts_before) :]
    restarted = {line.split()[0] for line in starts_after}
    assert not restarted & recorded_before, "a trial that had finished trained again"
    assert not {config_of.get(t) for t in restarted} & configs_before, "a finished configuration trained again"

    # one child run per trial, each complete, none duplicated
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    recorded = [c for c in children if c.data.tags.get("flosssweep.recorded") == "true"]
    assert len(recorded) == trials, [c.data.tags for c in children]
    assert len({c.data.tags[names.TRIAL_CONFIG] for c in recorded}) == trials
    client = mlflow_client(uri)
    for child in recorded:
        assert child.info.status == "FINISHED"
        steps = sorted(m.step for m in client.get_metric_history(child.info.run_id, "charts/accuracy"))
        assert steps == list(range(0, 201, 20)), f"{child.data.tags[names.TRIAL_ID]} logged {steps}"
        assert len(records_of(uri, child.info.run_id, tmp_path / "dl" / child.info.run_id).to_pylist()) == 2
    others = [c for c in children if c not in recorded]
    assert all(c.data.tags.get("flosssweep.status") == "abandoned" for c in others)
    if search == "optuna":  # the resumed launch went on with its own study, in the same database
        import optuna

        tags = parents[0].data.tags
        study = optuna.load_study(study_name=tags[names.OPTUNA_STUDY], storage=tags[names.OPTUNA_STORAGE])
        assert optuna.get_all_study_names(tags[names.OPTUNA_STORAGE]) == [tags[names.OPTUNA_STUDY]]
        assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) >= trials

    # Ray's folder holds a replayed trial's finished checkpoint twice: the report counts it once
    from flosssweep.report.sources import read_parquet_records

    assert read_parquet_records([tmp_path / "ray" / name]).num_rows == trials * 2


# -- refusals before anything starts ---------------------------------------------------------------------
def run_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    """The sweep command in this process (a refusal, a dry run: nothing that starts Ray)."""
    return in_process(run.main, *args, cwd=cwd, env=sweep_environment(cwd))


def test_invalid_sweep_in_its_own_process_leaves_no_traceback(tmp_path):
    path = write_sweep(tmp_path, "bad", space={"model.widht": {"grid": [8]}})
    result = subprocess.run(
        sweep_command(str(path)), cwd=tmp_path, env=sweep_environment(tmp_path), capture_output=True, text=True
    )
    assert result.returncode == 2 and result.stderr.startswith("flosssweep.run: error: space.model.widht: expected")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "space, key",
    [
        ({"floss.k": {"grid": [1, 16]}}, "space.floss.k"),
        ({"task.delay": {"grid": [2, "x"]}}, "space.task.delay.grid[1]"),
        ({"model.widht": {"grid": [8]}}, "space.model.widht"),
    ],
)
def test_invalid_sweep_exits_2_with_one_line_and_no_traceback(tmp_path, space, key):
    path = write_sweep(tmp_path, "bad", space=space)
    result = run_cli(str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"flosssweep.run: error: {key}: expected")
    assert "Traceback" not in result.stdout + result.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "ray_results").exists()


def test_unknown_sweep_name_and_bad_options_exit_2(tmp_path):
    result = run_cli("no_such_sweep", cwd=tmp_path)
    assert result.returncode == 2 and "quickstart" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("quickstart", "--max-concurrent", "0", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("flosssweep.run: error: --max-concurrent")
    result = run_cli("quickstart", "--max-concurent", "2", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--max-concurent" in result.stderr
    result = run_cli("quickstart", "--resume", cwd=tmp_path)
    assert result.returncode == 2 and "--resume: no launch of sweep quickstart" in result.stderr


def test_unreachable_tracking_server_stops_before_ray_starts(tmp_path, monkeypatch, capsys):
    import ray

    monkeypatch.chdir(tmp_path)
    was_running = ray.is_initialized()
    path = write_sweep(tmp_path, "nowhere")
    started = time.monotonic()
    code = run.main([str(path), "--tracking-uri", "http://127.0.0.1:9", "--address", "local"])
    err = capsys.readouterr().err
    assert code == driver.EXIT_UNAVAILABLE and time.monotonic() - started < 30
    assert "MLflow tracking server http://127.0.0.1:9 is not reachable" in err and err.count("\n") == 1
    assert ray.is_initialized() == was_running and not (tmp_path / "ray_results").exists()


def test_dry_run_lists_trials_without_starting_anything(tmp_path):
    result = run_cli("quickstart", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "6 trials" in result.stdout and result.stdout.count("none") >= 3
    assert not any(tmp_path.iterdir())


def base_keys(listing: str) -> set[str]:
    """The keys of a dry run's 'base of every trial' block."""
    block = listing.split("base of every trial", 1)[1].splitlines()[1:]
    return {line.lstrip(" *").split()[0] for line in block if line.strip()}


def test_dry_run_lists_only_the_keys_of_the_sweeps_task(tmp_path):
    from flosssweep.config import SCHEMA

    parity = base_keys(run_cli("quickstart", "--dry-run", cwd=tmp_path).stdout)
    assert {"task.delay", "task.bits", "train.success_threshold", "floss.pre_steps"} <= parity
    chaotic_only = {key for key, field in SCHEMA.items() if "parity" not in field.tasks}
    assert {"task.tau", "train.dstsp_threshold", "task.dt"} <= chaotic_only
    assert not parity & chaotic_only, sorted(parity & chaotic_only)
    chaotic = base_keys(run_cli("chaotic_tau", "--dry-run", cwd=tmp_path).stdout)
    assert {"task.tau", "train.dstsp_threshold"} <= chaotic and not {"task.delay", "task.bits"} & chaotic
    # a sweep that varies the task lists the keys of each of its tasks
    both = write_sweep(
        tmp_path, "both", base={"model": {"hidden": 8}}, space={"task.name": {"grid": ["parity", "lorenz63"]}}
    )
    assert {"task.delay", "task.tau"} <= base_keys(run_cli(str(both), "--dry-run", cwd=tmp_path).stdout)


def test_run_py_works_as_a_lone_file_like_ray_submit_runs_it(tmp_path):
    """`ray submit` copies run.py to the head node's home directory and runs it there, next to
    nothing of the checkout: it must hand over to the installed package."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(ROOT / "flosssweep" / "run.py", home / "run.py")
    env = sweep_environment(tmp_path)
    env["PYTHONPATH"] = str(ROOT)  # stands for the package installed by the cluster's setup_commands
    result = subprocess.run(
        [sys.executable, str(home / "run.py"), "search_spaces/quickstart.yaml", "--dry-run"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "sweep quickstart" in result.stdout
    # and from the checkout, as `python flosssweep/run.py`
    result = subprocess.run(
        [sys.executable, "flosssweep/run.py", "quickstart", "--dry-run"],
        cwd=ROOT,
        env=sweep_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "sweep quickstart" in result.stdout, result.stderr


# -- tracking URI ---------------------------------------------------------------------------------------
def test_tracking_uri_precedence_and_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    resolve_uri = lambda flag, where: TrackingStore.resolve(flag, where).uri
    assert resolve_uri(None, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert resolve_uri(None, tmp_path) == "http://mlflow.example:5000"
    assert resolve_uri("sqlite:///runs/m.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/runs/m.db"
    assert resolve_uri("sqlite:////abs/m.db", tmp_path) == "sqlite:////abs/m.db"
    assert resolve_uri("mlruns", tmp_path) == (tmp_path / "mlruns").resolve().as_uri()
