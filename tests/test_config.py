"""Configuration: a bad value is refused naming its dotted key; defaults and record columns per task."""

import pytest
import torch

from flosssweep import config as cfg
from flosssweep.config import ConfigError, resolve
from flosssweep.records import to_table

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"task.dleay": 3}, "task.dleay"),
        ({"train.epochs": "many"}, "train.epochs"),
        ({"floss.k": 81}, "floss.k"),
        ({"model.arch": "lstm", "floss.k": 161}, "floss.k"),
        ({"task.bits": 3, "task.delay": 10}, "task.delay"),
        ({"floss.mode": "sometimes"}, "floss.mode"),
    ],
)
def test_bad_config_names_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        resolve(overrides)
    assert err.value.key == key


PARITY_ONLY = {"task.bits", "task.delay", "train.success_threshold"}
CHAOTIC_ONLY = {
    "task.dt",
    "task.tau",
    "task.train_steps",
    "task.test_steps",
    "task.transient",
    "task.data_seed",
    "train.forcing",
    "train.dstsp_threshold",
    "train.dstsp_convention",
    "train.dstsp_bins",
    "train.eval_trajectories",
    "train.eval_steps",
}


@pytest.mark.parametrize("task", ["lorenz63", "roessler"])
def test_chaotic_data_defaults_to_no_flossing(task):
    assert cfg.resolve({"task.name": task})["floss"]["mode"] == "none"
    assert cfg.resolve({"task": {"name": task}}, {"floss.pre_steps": 3})["floss"]["mode"] == "none"
    # set by the user, in any layer, it stays
    assert cfg.resolve({"task.name": task, "floss.mode": "pre"})["floss"]["mode"] == "pre"
    assert cfg.resolve({"floss": {"mode": "during"}}, {"task.name": task})["floss"]["mode"] == "during"


def test_parity_keeps_flossing_before_training_by_default():
    assert cfg.resolve({})["floss"]["mode"] == "pre"
    assert cfg.resolve({"task.name": "parity"})["floss"]["mode"] == "pre"
    # the last layer's task decides the defaults
    assert cfg.resolve({"task.name": "lorenz63"}, {"task.name": "parity"})["floss"]["mode"] == "pre"


def test_bad_task_name_is_named_before_defaults_are_chosen():
    with pytest.raises(cfg.ConfigError) as err:
        cfg.resolve({"task": {"name": "henon"}})
    assert err.value.key == "task.name"


def test_applicable_keys_split_the_schema_by_task():
    parity = set(cfg.applicable_keys(cfg.resolve({})))
    chaotic = set(cfg.applicable_keys(cfg.resolve({"task.name": "lorenz63"})))
    every = set(cfg.SCHEMA)
    assert parity == every - CHAOTIC_ONLY
    assert chaotic == every - PARITY_ONLY
    assert {"train.success_window", "floss.mode", "floss.target", "model.arch"} <= parity & chaotic
    assert cfg.applicable_keys(cfg.resolve({})) == [k for k in cfg.SCHEMA if k in parity]  # schema order


def test_record_columns_hold_only_the_task_columns():
    parity = cfg.record_columns(cfg.resolve({"task.delay": 20, "task.bits": 2}))
    assert parity["delay"] == 20 and parity["bits"] == 2 and parity["train_success_threshold"] == 0.95
    assert not {"tau", "task_dt", "train_forcing", "train_dstsp_threshold", "train_eval_steps"} & set(parity)
    chaotic = cfg.record_columns(cfg.resolve({"task.name": "roessler", "task.tau": 7}))
    assert chaotic["tau"] == 7 and chaotic["task"] == "roessler" and chaotic["floss_mode"] == "none"
    assert not {"bits", "delay", "train_success_threshold"} & set(chaotic)
    assert len(parity) == len(cfg.SCHEMA) - len(CHAOTIC_ONLY)


def test_tables_leave_out_a_main_column_no_row_has():
    chaotic = cfg.record_columns(cfg.resolve({"task.name": "lorenz63"}))
    parity = cfg.record_columns(cfg.resolve({}))
    assert "delay" not in to_table([chaotic]).column_names
    mixed = to_table([chaotic, parity])
    assert mixed["delay"].to_pylist() == [None, 10] and mixed["tau"].to_pylist() == ["auto", None]
