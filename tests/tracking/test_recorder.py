"""The child runs' params: the trial config's keys that apply to its task, in a real MLflow store."""

from types import SimpleNamespace

import pytest
from conftest import fresh_store

from flosssweep import config as cfg
from flosssweep.tracking.recorder import SweepRecorder
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
