"""names.py is the one list of metrics and record columns: both trainers emit only what it lists, and
everything it lists is emitted by one of them, so a sweep's `metric` can only name a real metric."""

from __future__ import annotations

import pytest

from flosssweep import names
from flosssweep.config import ConfigError, record_columns, resolve
from flosssweep.sweep import spec
from flosssweep.train import train

PARITY = {
    "model.hidden": 8,
    "task.delay": 2,
    "train.length": 12,
    "train.batch": 2,
    "train.epochs": 4,
    "train.success_window": 2,
    "train.report_every": 2,
    "floss.pre_steps": 2,
    "floss.horizon": 8,
    "floss.warmup": 2,
    "ensemble": 2,
}
CHAOTIC = {
    "task.name": "lorenz63",
    "task.dt": 0.05,
    "task.train_steps": 400,
    "task.test_steps": 200,
    "task.transient": 5.0,
    "task.tau": 5,
    "model.arch": "plrnn",
    "model.hidden": 6,
    "train.length": 10,
    "train.batch": 2,
    "train.epochs": 2,
    "train.success_window": 1,
    "train.report_every": 2,
    "train.eval_trajectories": 2,
    "train.eval_steps": 40,
    "floss.mode": "none",
    "floss.horizon": 8,
    "floss.warmup": 2,
    "ensemble": 2,
}


def emitted(dotted: dict) -> tuple[set[str], set[str], set[str]]:
    """(metric names reported, outcome columns of the records, config columns of the records)."""
    config = resolve(dotted)
    reports: list[dict] = []
    rows = train(config, report=lambda metrics, epoch: reports.append(metrics))
    config_columns = set(record_columns(config)) | {"tau", "floss_target"}
    columns = set().union(*rows)
    return set().union(*reports), columns - config_columns - set(names.IDENTITY_COLUMNS), columns & config_columns


@pytest.fixture(scope="module")
def both():
    return emitted(PARITY), emitted(CHAOTIC)


def test_trainers_emit_only_listed_metrics_and_every_listed_metric_is_emitted(both):
    (parity, _, _), (chaotic, _, _) = both
    assert parity == set(names.PARITY_METRICS)
    assert chaotic == set(names.CHAOTIC_METRICS)
    assert parity | chaotic == set(names.METRICS)


def test_records_hold_only_listed_outcomes_and_every_listed_outcome_is_recorded(both):
    (_, parity, _), (_, chaotic, _) = both
    assert parity <= set(names.OUTCOME_COLUMNS) and chaotic <= set(names.OUTCOME_COLUMNS)
    assert parity | chaotic == set(names.OUTCOME_COLUMNS)
    assert not (parity - chaotic) & set(names.CHAOTIC_OUTCOMES)


def test_a_sweep_metric_must_be_one_a_trainer_reports():
    sweep = {"name": "m", "base": {"train": {"epochs": 10, "success_window": 5}}, "space": {}}
    for metric in names.METRICS:
        assert spec.parse({**sweep, "metric": metric}).ray_metric_name == metric
    with pytest.raises(ConfigError, match="^metric: expected one of"):
        spec.parse({**sweep, "metric": "charts/accuracy_of_nothing"})
