"""An Optuna study kept in a database, and a searcher restored from a snapshot older than it."""

import optuna
import pytest
from ray import tune

from flosssweep.sweep.search import StoredOptunaSearch, study_storage
from flosssweep.tracking.store import TrackingStore


def test_the_study_lives_next_to_a_sqlite_store_else_in_a_local_experiment_directory(tmp_path):
    sqlite, server = TrackingStore(f"sqlite:///{tmp_path}/m/mlflow.db"), TrackingStore("http://127.0.0.1:5000")
    assert study_storage(sqlite, "s3://b/x") == f"sqlite:///{tmp_path}/m/optuna.db"
    assert study_storage(server, str(tmp_path / "ray" / "s")) == f"sqlite:///{tmp_path}/ray/s/optuna.db"
    assert (tmp_path / "ray" / "s").is_dir()
    assert study_storage(server, "s3://bucket/ray/s") is None


def searcher(url: str) -> StoredOptunaSearch:
    return StoredOptunaSearch(
        space={"x": tune.uniform(0.0, 1.0)},
        metric="m",
        mode="max",
        seed=0,
        storage=optuna.storages.RDBStorage(url),
        study_name="s run",
    )


def test_a_searcher_restored_from_an_older_snapshot_skips_what_the_study_already_holds(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    first = searcher(url)
    assert "x" in first.suggest("t1")
    snapshot = tmp_path / "searcher.pkl"
    first.save(str(snapshot))  # the experiment snapshot the resumed driver will start from
    first.on_trial_result("t1", {"m": 0.2, "training_iteration": 1})
    first.on_trial_complete("t1", {"m": 0.5, "training_iteration": 2})  # then the driver is killed

    resumed = searcher(url)
    resumed.restore(str(snapshot))
    resumed.on_trial_result("t1", {"m": 0.2, "training_iteration": 1})  # replayed: no UpdateFinishedTrialError
    resumed.on_trial_complete("t1", {"m": 0.5, "training_iteration": 2})
    assert "x" in resumed.suggest("t2")  # the search goes on, in the same study
    resumed.on_trial_complete("t2", {"m": 0.7, "training_iteration": 2})
    study = optuna.load_study(study_name="s run", storage=url)
    assert [t.value for t in study.trials] == [0.5, 0.7]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_plain_optuna_search_would_refuse_the_replayed_report(tmp_path):
    from ray.tune.search.optuna import OptunaSearch

    url = f"sqlite:///{tmp_path}/optuna.db"
    s = OptunaSearch(
        space={"x": tune.uniform(0.0, 1.0)},
        metric="m",
        mode="max",
        seed=0,
        storage=optuna.storages.RDBStorage(url),
        study_name="s run",
    )
    s.suggest("t1")
    s.save(str(tmp_path / "snap.pkl"))
    s.on_trial_complete("t1", {"m": 0.5, "training_iteration": 2})
    again = OptunaSearch(
        space={"x": tune.uniform(0.0, 1.0)},
        metric="m",
        mode="max",
        seed=0,
        storage=optuna.storages.RDBStorage(url),
        study_name="s run",
    )
    again.restore(str(tmp_path / "snap.pkl"))
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        again.on_trial_result("t1", {"m": 0.2, "training_iteration": 1})
