"""A validated sweep as Ray Tune sees it: search domains, the search algorithm (Ray's or Optuna's), the scheduler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optuna.samplers import GridSampler
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from flosssweep.names import OPTUNA_STORAGE, OPTUNA_STUDY, PROGRESS_WHAT
from flosssweep.sweep.saved import SavedStateSearcher
from flosssweep.sweep.spec import DISCRETE, Axis, Sweep
from flosssweep.tracking.store import TrackingStore
from flosssweep.tracking.uris import sqlite_uri

STUDY_FILE = "optuna.db"


def domain(axis: Axis, as_choice: bool = False):
    """The axis as a Ray Tune domain (grid axes become `choice` when `as_choice`)."""
    lo, hi = axis.values[0], axis.values[-1]
    if axis.kind == "grid" and not as_choice:
        return tune.grid_search(list(axis.values))
    if axis.kind in DISCRETE:
        return tune.choice(list(axis.values))
    if axis.kind == "uniform":
        return tune.uniform(lo, hi)
    if axis.kind == "loguniform":
        return tune.loguniform(lo, hi)
    if axis.kind == "randint":
        return tune.randint(lo, hi + 1)  # Ray's upper bound is exclusive
    return tune.lograndint(lo, hi + 1)


def param_space(sweep: Sweep) -> dict[str, Any]:
    """Ray Tune param_space: one flat entry per varied dotted key (none under an adaptive axis, whose
    searcher hands every trial its values)."""
    if sweep.adaptive is not None or sweep.left_out:
        return {}
    as_choice = sweep.search != "grid"
    return {key: domain(axis, as_choice=as_choice) for key, axis in sweep.space.items()}


class RayGridSampler(GridSampler):
    """Optuna's grid sampler, minus its request that the study stop once every grid point is taken:
    Ray runs the trials (exactly the grid's number), not `study.optimize`, and Optuna would only
    complain that the request came from outside an objective."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


class ProgressAwareOptunaSearch(OptunaSearch):
    """Ray's Optuna searcher, minus the progress results of a flossing trial (names.PROGRESS_KEYS):
    they repeat the last reported value of the metric, or carry none yet, and are no step of the trial."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if PROGRESS_WHAT not in result:
            super().on_trial_result(trial_id, result)


class StoredOptunaSearch(ProgressAwareOptunaSearch):
    """Ray's Optuna searcher over a study in a database. A resumed launch restores the searcher from
    the experiment snapshot, which can be older than the database: a trial the killed driver had
    already told the study about is then reported again, and Optuna refuses to change a finished
    trial. Such reports are dropped (the study already holds their outcome)."""

    def _finished_in_study(self, trial_id: str) -> bool:
        trial = self._ot_trials.get(trial_id)
        return trial is not None and trial.storage.get_trial(trial._trial_id).state.is_finished()

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if not self._finished_in_study(trial_id):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self._finished_in_study(trial_id):
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)


class ListedSearch(SavedStateSearcher):
    """The given trials, in order, `max_concurrent` at a time: the cells of a grid that an --extend
    launch has still to run. Its place in the list is saved with the experiment, for --resume."""

    def __init__(self, configs: list[dict], max_concurrent: int | None = None):
        super().__init__()
        self.configs, self.max_concurrent = list(configs), max_concurrent
        self.next, self.running = 0, set()

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = max_concurrent or None
        return True

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.next >= len(self.configs):
            return Searcher.FINISHED
        if self.max_concurrent and len(self.running) >= self.max_concurrent:
            return None
        self.running.add(trial_id)
        self.next += 1
        return dict(self.configs[self.next - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.running.discard(trial_id)

    def get_state(self) -> dict:
        return {"next": self.next, "running": self.running}

    def set_state(self, state: dict) -> None:
        self.next, self.running = state["next"], state["running"]


def study_storage(store: TrackingStore, experiment_dir: str) -> str | None:
    """Where an Optuna search keeps its study: `optuna.db` next to a SQLite tracking store, else in
    a local Ray experiment directory; None (in memory) when both are remote, since SQLite needs a
    local file and a tracking server gives none."""
    beside = store.beside(STUDY_FILE)
    if beside is not None:
        return sqlite_uri(beside)
    if "://" not in experiment_dir:
        Path(experiment_dir).mkdir(parents=True, exist_ok=True)
        return sqlite_uri(Path(experiment_dir) / STUDY_FILE)
    return None


def study(sweep: Sweep, store: TrackingStore, experiment_dir: str, parent_run_id: str) -> dict | None:
    """An Optuna search's study, one per launch, kept where `study_storage` says and named on the
    parent run (None for other searches, or when it can only stay in memory)."""
    if sweep.search != "optuna":
        return None
    where = study_storage(store, experiment_dir)
    if where is None:
        print(
            "note: the Optuna study stays in memory (a tracking server and remote Ray storage leave no "
            "local file for it)",
            flush=True,
        )
        return None
    found = {"storage": where, "study_name": f"{sweep.name} {parent_run_id}"}
    store.tag_run(parent_run_id, {OPTUNA_STORAGE: where, OPTUNA_STUDY: found["study_name"]})
    print(f"Optuna study '{found['study_name']}' in {where}  (browse: optuna-dashboard {where})", flush=True)
    return found


def searcher(
    sweep: Sweep,
    storage: str | None = None,
    study_name: str | None = None,
    seen: list[dict] | None = None,
    tag: tuple | None = None,
):
    """The Ray search algorithm (seeded), limited to `max_concurrent` trials at once. Under Optuna,
    `storage` (a database URL) and `study_name` keep the study there, for optuna-dashboard and a
    resumed launch, which continues the same study. Under an adaptive axis, `seen` and `tag` go to
    `AdaptiveSearch`."""
    if sweep.adaptive is not None:
        from flosssweep.sweep.adaptive import AdaptiveSearch

        axis = sweep.adaptive
        return AdaptiveSearch(
            axis.key,
            axis.plan,
            sweep.groups(),
            sweep.base_values()["seed"],
            sweep.max_concurrent,
            seen=seen,
            tag=tag,
        )
    if sweep.left_out:
        return ListedSearch([cell for _ in range(sweep.num_samples) for cell in sweep.cells()], sweep.max_concurrent)
    if sweep.search == "optuna":
        import optuna

        kind, kept = ProgressAwareOptunaSearch, {}
        if storage:
            kind, kept = StoredOptunaSearch, {"storage": optuna.storages.RDBStorage(storage), "study_name": study_name}
        if sweep.optuna_grid:
            grid = {a.key: list(a.values) for a in sweep.space.values()}
            algorithm = kind(sampler=RayGridSampler(grid, seed=sweep.search_seed), **kept)
        else:
            algorithm = kind(seed=sweep.search_seed, **kept)
        return ConcurrencyLimiter(algorithm, sweep.max_concurrent) if sweep.max_concurrent else algorithm
    return BasicVariantGenerator(random_state=sweep.search_seed, max_concurrent=sweep.max_concurrent or 0)


def scheduler(sweep: Sweep):
    """ASHA on `epoch` when the sweep asks for it, else None (every trial runs to the end)."""
    if not sweep.scheduler:
        return None
    return ASHAScheduler(
        time_attr="epoch",
        max_t=sweep.max_epochs(),
        grace_period=sweep.scheduler["grace_period"],
        reduction_factor=sweep.scheduler["reduction_factor"],
    )
