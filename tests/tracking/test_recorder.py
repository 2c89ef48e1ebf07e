"""The child runs' params: the trial config's keys that apply to its task, in a real MLflow store."""

from types import SimpleNamespace

import pytest
from conftest import fresh_store

from flosssweep import config as cfg
from flosssweep import names
from flosssweep.tracking.recorder import SweepRecorder, run_label
from flosssweep.tracking.store import TrackingStore


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory, migrated_store):
    uri = fresh_store(migrated_store, tmp_path_factory.mktemp("mlflow") / "mlflow.db")
    tracking = TrackingStore(uri)
    experiment_id = tracking.client.create_experiment("params")
    return tracking, tracking.client, experiment_id


def child_params(mlflow_store, base: dict, trial_config: dict) -> dict:
    tracking, client, experiment_id = mlflow_store
    parent = client.create_run(experiment_id)
    recorder = SweepRecorder(tracking, experiment_id, parent.info.run_id, "params", base, list(trial_config))
    trial = SimpleNamespace(trial_id="t0", config=trial_config, last_result={}, num_failures=0)
    recorder.trial_started(trial, [trial])
    (child,) = client.search_runs([experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return child.data.params


def test_chaotic_trial_params_leave_out_parity_keys(mlflow_store):
    params = child_params(mlflow_store, {"task": {"name": "lorenz63"}, "model": {"arch": "plrnn"}}, {"task.tau": 5})
    assert params["task.tau"] == "5" and params["task.name"] == "lorenz63" and params["floss.mode"] == "none"
    assert not {"task.bits", "task.delay", "train.success_threshold"} & set(params)
    assert set(params) == set(cfg.applicable_keys(cfg.resolve({"task.name": "lorenz63"})))


def test_parity_trial_params_leave_out_chaotic_keys(mlflow_store):
    params = child_params(mlflow_store, {"model": {"hidden": 8}}, {"task.delay": 4})
    assert params["task.delay"] == "4" and params["floss.mode"] == "pre"
    assert not {"task.tau", "task.dt", "train.forcing", "train.dstsp_threshold", "train.eval_steps"} & set(params)


# -- Child runs as the MLflow UI lists them: named by their values, no charts of counters that never moved.
BASE = {
    "model": {"hidden": 8},
    "task": {"bits": 1, "delay": 2},
    "train": {"epochs": 30, "length": 40, "success_window": 10},
}


def test_names_lead_with_the_varied_values_words_first_numbers_under_short_unambiguous_keys():
    assert run_label({"task.delay": 24, "floss.mode": "pre"}, ["task.delay", "floss.mode"]) == "pre delay=24"
    # two keys end alike: the record column names tell them apart
    assert run_label({"train.lr": 0.001, "floss.lr": 0.01}, ["train.lr", "floss.lr"]) == "train_lr=0.001 floss_lr=0.01"


def test_child_run_name_tags_and_counters_logged_from_their_first_non_zero_value(tmp_path, mlflow_uri):
    uri = mlflow_uri
    tracking = TrackingStore(uri)
    client = tracking.client
    experiment = client.create_experiment("c", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(experiment).info.run_id
    recorder = SweepRecorder(
        tracking,
        experiment,
        parent,
        "c",
        BASE,
        ["task.delay", "floss.mode"],
        flush_seconds=0,
        run_tags={"mlflow.source.git.commit": "abc"},
    )
    trial = SimpleNamespace(
        trial_id="t_00001", config={"task.delay": 4, "floss.mode": "none"}, last_result={}, num_failures=0
    )
    recorder.trial_started(trial, [trial])
    for epoch, nonfinite in ((0, 0), (10, 0), (20, 3), (30, 0)):
        recorder.trial_result(
            trial,
            [trial],
            {
                "epoch": epoch,
                "losses/task": 1.0 / (1 + epoch),
                "charts/nonfinite_steps": nonfinite,
                "charts/diverged": 0,
            },
        )
    recorder.flush()
    run = client.search_runs([experiment], f"tags.`{names.PARENT}` = '{parent}'")[0]
    assert run.info.run_name == "none delay=4 (t_00001)"
    assert run.data.tags["mlflow.source.git.commit"] == "abc"
    assert "charts/diverged" not in run.data.metrics  # never non-zero: no chart of zeros
    history = client.get_metric_history(run.info.run_id, "charts/nonfinite_steps")
    assert [(m.step, m.value) for m in history] == [(20, 3.0), (30, 0.0)]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "losses/task")] == [0, 10, 20, 30]
