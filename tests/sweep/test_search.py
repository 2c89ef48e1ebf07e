"""A validated sweep as Ray sees it: domains, seeded searchers, the grid sampler, ASHA."""

from __future__ import annotations

import pickle
from pathlib import Path

import optuna
import pytest
from conftest import sweep_with
from ray import tune

from flosssweep.sweep import search
from flosssweep.sweep import spec as space
from flosssweep.sweep.search import StoredOptunaSearch, study_storage
from flosssweep.tracking.store import TrackingStore

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "search_spaces").glob("*.yaml"))
MINE = ["quickstart", "paper_delay_scan", "exponents", "architectures", "strength_optuna"]


# -- the shipped sweep files -------------------------------------------------------------------------
def test_grid_counts_and_ray_space():
    from ray import tune

    sweep = space.parse(sweep_with(num_samples=3, space__seed={"choice": [0, 1, 2]}))
    assert sweep.num_trials() == 2 * 2 * 3
    ps = search.param_space(sweep)
    assert ps["floss.mode"] == tune.grid_search(["none", "pre"])
    assert isinstance(ps["seed"], tune.search.sample.Categorical)
    described = sweep.describe()
    assert described.count("\n") >= 4 + 12 and "drawn per trial: seed" in described


def test_random_search_draws_grid_axes_too():
    from ray import tune

    sweep = space.parse(sweep_with(search="random", num_samples=5))
    assert sweep.num_trials() == 5
    assert isinstance(search.param_space(sweep)["task.delay"], tune.search.sample.Categorical)


def test_distributions_become_ray_domains_with_inclusive_integer_bounds():
    sweep = space.parse(
        sweep_with(
            space={
                "floss.strength": {"loguniform": [0.001, 1.0]},
                "model.g": {"uniform": [0.5, 2.0]},
                "floss.k": {"randint": [1, 4]},
                "floss.pre_steps": {"lograndint": [1, 64]},
            },
            base__floss__mode="regularizer",
        )
    )
    ps = search.param_space(sweep)
    assert (ps["floss.strength"].lower, ps["floss.strength"].upper) == (0.001, 1.0)
    assert (ps["floss.k"].lower, ps["floss.k"].upper) == (1, 5)  # Ray's upper bound is exclusive
    assert ps["floss.pre_steps"].upper == 65


def test_optuna_over_distributions_is_seeded():
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    raw = sweep_with(
        search="optuna",
        num_samples=4,
        max_concurrent=2,
        space={"floss.strength": {"loguniform": [0.001, 1.0]}, "floss.k": {"randint": [1, 8]}},
        base__floss__mode="regularizer",
    )

    def first_suggestions():
        sweep = space.parse(raw)
        searcher = search.searcher(sweep)
        assert isinstance(searcher, ConcurrencyLimiter) and isinstance(searcher.searcher, OptunaSearch)
        searcher.set_search_properties(sweep.ray_metric_name, sweep.mode, search.param_space(sweep))
        return [searcher.suggest(f"t{i}") for i in range(2)]

    one, two = first_suggestions(), first_suggestions()
    assert one == two and one[0] != one[1]
    assert 1 <= one[0]["floss.k"] <= 8 and 0.001 <= one[0]["floss.strength"] <= 1.0


def test_optuna_over_grids_only_uses_the_grid_sampler():
    import optuna

    sweep = space.parse(sweep_with(search="optuna"))
    assert sweep.optuna_grid and sweep.num_trials() == 4 and sweep.tune_num_samples() == 4
    assert isinstance(search.searcher(sweep)._sampler, optuna.samplers.GridSampler)
    assert pickle.loads(pickle.dumps(search.searcher(sweep)._sampler))  # Ray saves the searcher with pickle


def test_asha_scheduler_stops_on_epochs():
    from ray.tune.schedulers import ASHAScheduler

    sweep = space.parse(sweep_with(scheduler={"type": "asha", "grace_period": 10, "reduction_factor": 2}))
    scheduler = search.scheduler(sweep)
    assert isinstance(scheduler, ASHAScheduler) and scheduler._time_attr == "epoch"
    assert search.scheduler(space.parse(sweep_with(scheduler="none"))) is None


# -- An Optuna study kept in a database, and a searcher restored from a snapshot older than it. ----------
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
