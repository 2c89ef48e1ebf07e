"""Sweep files: the shipped ones load, bad ones are refused naming the dotted key (no Ray needed)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from conftest import TINY, sweep_with

from flosssweep.config import ConfigError, config_key
from flosssweep.sweep import spec as space

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "search_spaces").glob("*.yaml"))
MINE = sorted(p.stem for p in SHIPPED)


def refused(raw) -> str:
    with pytest.raises(ConfigError) as info:
        space.parse(raw)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- the shipped sweep files -------------------------------------------------------------------------
@pytest.mark.parametrize("name", MINE)
def test_shipped_sweep_files_exist_and_validate(name):
    sweep = space.load(space.locate(name))
    assert sweep.num_trials() >= 1
    head = Path(sweep.source).read_text().split("\nname:")[0]
    assert head.startswith("# "), "a sweep file starts with a comment"
    text = head.lower()
    assert "question" in text and "cost" in text, "the opening comment says what it answers and what it costs"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_file_in_search_spaces_validates(path):
    space.load(path)


def test_quickstart_compares_flossing_with_none_in_six_or_more_trials():
    sweep = space.load(space.locate("quickstart"))
    assert sweep.num_trials() >= 6
    modes = sweep.space["floss.mode"].values
    assert "none" in modes and any(m != "none" for m in modes)


def test_paper_delay_scan_is_the_papers_experiment():
    sweep = space.load(space.locate("paper_delay_scan"))
    assert set(sweep.space["task.bits"].values) == {1, 2}
    assert set(sweep.space["floss.mode"].values) == {"none", "pre", "pre+during"}
    assert len(sweep.space["task.delay"].values) >= 5
    realizations = sweep.trial_config({})["ensemble"] * sweep.num_samples
    if "seed" in sweep.space:
        realizations *= len(sweep.space["seed"].values)
    assert realizations >= 10
    # flossing on the reference implementation's schedule: 500 steps before training, then an
    # episode of 500 steps every 100 epochs, twice; k = 75 of N = 80, Tp = 55, B = 16, T = 300
    c = sweep.trial_config({"floss.mode": "pre+during", "task.bits": 2, "task.delay": 40})
    assert (c["floss"]["pre_steps"], c["floss"]["every"], c["floss"]["steps"], c["floss"]["episodes"]) == (
        500,
        100,
        500,
        2,
    )
    assert (c["floss"]["k"], c["model"]["hidden"], c["floss"]["horizon"]) == (75, 80, 55)
    assert (c["train"]["epochs"], c["train"]["batch"], c["train"]["length"]) == (3000, 16, 300)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_parity_sweep_files_state_the_delay_convention(path):
    sweep = space.load(path)
    if sweep.base_values()["task"]["name"] == "parity":
        header = path.read_text().split("\nname:")[0]
        assert "longest lag d" in header and "d / bits" in header


def test_chaotic_sweep_base_defaults_to_no_flossing_and_shows_only_its_keys():
    raw = {
        "name": "chaos",
        "base": {"task": {"name": "lorenz63", "train_steps": 4000}, "model": {"arch": "plrnn"}},
        "space": {"task.tau": {"grid": [5, 10]}},
    }
    sweep = space.parse(raw)
    assert sweep.base_values()["floss"]["mode"] == "none"
    assert sweep.trial_config({"task.tau": 5})["floss"]["mode"] == "none"
    every_trial = next(line for line in sweep.describe().splitlines() if "every trial:" in line)
    assert "floss.mode=none" in every_trial and "task.name=lorenz63" in every_trial
    assert "task.delay" not in every_trial and "task.bits" not in every_trial
    parity = space.parse(TINY).describe()
    assert "task.tau" not in parity and "task.bits=1" in parity


def test_optuna_file_searches_strength_and_k():
    sweep = space.load(space.locate("strength_optuna"))
    assert sweep.search == "optuna"
    assert {"floss.strength", "floss.k"} <= set(sweep.space)


def test_locate_by_name_path_or_project_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # far from the checkout, as on a Ray head node
    expected = space.locate("quickstart")
    assert expected.name == "quickstart.yaml" and expected.is_absolute()
    assert space.locate("quickstart.yaml") == expected
    assert space.locate("search_spaces/quickstart.yaml") == expected
    own = tmp_path / "mine.yaml"
    own.write_text(yaml.safe_dump(TINY))
    assert space.locate("mine.yaml") == own.resolve()
    with pytest.raises(ConfigError, match="quickstart"):
        space.locate("no_such_sweep")


# -- what a sweep turns into -------------------------------------------------------------------------
def test_gpu_fraction_runs_trials_on_cuda():
    sweep = space.parse(sweep_with(resources={"cpu": 1, "gpu": 0.25}))
    assert sweep.trial_config({"floss.mode": "pre", "task.delay": 2})["device"] == "cuda"
    assert math.isclose(sweep.resources["gpu"], 0.25)


def test_cpus_per_trial_become_its_torch_threads_unless_the_base_sets_them():
    def threads(resources, **base):
        sweep = space.parse(sweep_with(resources=resources, **base))
        return sweep.trial_config({"floss.mode": "pre", "task.delay": 2})["threads"]

    assert threads({"cpu": 1}) == 1
    assert threads({"cpu": 0.5}) == 1
    assert threads({"cpu": 2}) == 2
    assert threads({"cpu": 2}, base__threads=1) == 1


# -- refusals: one line, the dotted key, what was expected ------------------------------------------
@pytest.mark.parametrize(
    "changes, key, words",
    [
        ({"colour": "red"}, "colour", "a sweep key"),
        ({"name": "has space"}, "name", "letters, digits"),
        ({"search": "bayes"}, "search", "grid, random, optuna"),
        ({"metric": "accuracy"}, "metric", "success_rate"),
        ({"num_samples": 0}, "num_samples", ">= 1"),
        ({"resources": {"cpu": 1, "gpu": 1.5}}, "resources.gpu", "fraction"),
        ({"resources": {"cpu": 1, "tpu": 1}}, "resources.tpu", "cpu or gpu"),
        ({"scheduler": "hyperband"}, "scheduler", "asha"),
        ({"scheduler": {"type": "asha", "grace_period": 100}}, "scheduler.grace_period", "at most the trial's epochs"),
        ({"base__model__hiden": 8}, "base.model.hiden", "known keys under model"),
        ({"base__train__epochs": "many"}, "base.train.epochs", "an integer"),
        ({"base__device": "cuda"}, "resources.gpu", "> 0 when trials run on device cuda"),
        ({"space__model__hidden": {"grid": [8]}}, "space.model", "a known config key"),
        ({"space__task.delay": {"grid": [2, "four"]}}, "space.task.delay.grid[1]", "an integer"),
        ({"space__task.delay": {"grid": []}}, "space.task.delay.grid", "non-empty list"),
        ({"space__task.delay": {"grid": [2, 2]}}, "space.task.delay.grid", "distinct"),
        ({"space__task.delay": 4}, "space.task.delay", "fixed values belong under base"),
        ({"space__task.delay": {"range": [1, 4]}}, "space.task.delay.range", "one of grid, choice"),
        ({"space__task.delay": {"uniform": [1, 4]}}, "space.task.delay", "randint or lograndint"),
        ({"space__floss.mode": {"uniform": [0, 1]}}, "space.floss.mode", "grid or choice"),
        ({"space__floss.mode": {"grid": ["none", "sometimes"]}}, "space.floss.mode.grid[1]", "one of none, pre"),
        ({"space__model.g": {"uniform": [2.0, 1.0]}}, "space.model.g.uniform", "low < high"),
        ({"space__floss.target": {"loguniform": [0.0, 1.0]}}, "space.floss.target.loguniform[0]", "> 0"),
        # cross-key checks on the base merged with each corner of the space
        ({"space__floss.k": {"grid": [1, 16]}}, "space.floss.k", "at most the state size 8"),
        ({"space__task.bits": {"grid": [1, 3]}}, "space.task.delay", "a multiple of task.bits = 3"),
        ({"space__task.delay": {"randint": [2, 40]}}, "space.task.delay", "less than train.length = 40"),
        ({"space__model.hidden": {"grid": [4, 16]}, "base__floss__k": 6}, "base.floss.k", "model.hidden=4"),
        ({"space__floss.strength": {"loguniform": [0.01, 1.0]}}, "space.floss.strength", "0 when floss.mode is none"),
        # Optuna cannot mix grids with distributions
        ({"search": "optuna", "space__seed": {"randint": [0, 9]}}, "space.floss.mode", "under search: optuna"),
        ({"search": "optuna", "num_samples": 3}, "num_samples", "grid sampler"),
        # replicates: whole numbers, on a grid, the only thing that varies the seed
        ({"replicates": 0}, "replicates", ">= 1"),
        ({"replicates": 2.5}, "replicates", "an integer"),
        ({"replicates": 3, "search": "random"}, "replicates", "only with search: grid"),
        ({"replicates": 3, "space__seed": {"grid": [0, 1]}}, "replicates", "not together with a space.seed axis"),
        ({"replicates": 3, "base__seed": 2**32 - 2}, "replicates", "at most 2 from base seed 4294967294"),
    ],
)
def test_bad_sweeps_are_refused_with_the_dotted_key(changes, key, words):
    message = refused(sweep_with(**changes))
    assert message.startswith(key + ": "), message
    assert words in message, message


def test_bad_yaml_names_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nspace:\n  task.delay: {grid: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: expected valid YAML \(line \d+"):
        space.load(bad)


def test_fingerprint_ignores_concurrency_but_not_the_space():
    one = space.parse(sweep_with(max_concurrent=1)).fingerprint()
    assert one == space.parse(sweep_with(max_concurrent=4)).fingerprint()
    assert one != space.parse(sweep_with(**{"space__task.delay": {"grid": [2, 6]}})).fingerprint()


def test_replicates_repeat_every_cell_with_the_next_base_seeds():
    sweep = space.parse(sweep_with(replicates=3, base__seed=5))
    assert sweep.num_trials() == 4 * 3  # the 2 x 2 grid of TINY, three times
    assert sweep.space["seed"] == space.Axis("seed", "grid", (5, 6, 7))
    configs = [sweep.trial_config({"floss.mode": "pre", "task.delay": 2, "seed": s}) for s in (5, 6, 7)]
    assert [c["seed"] for c in configs] == [5, 6, 7]
    # one configuration: the seed is operational, so the replicates share the config_key
    assert len({config_key(c) for c in configs}) == 1
    assert "seed" in sweep.describe() and sweep.fingerprint() != space.parse(sweep_with()).fingerprint()
    assert space.parse(sweep_with(replicates=1)).space.keys() == space.parse(sweep_with()).space.keys()
