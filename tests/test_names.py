"""names.py is the one list of metrics and record columns: both trainers emit only what it lists, and
everything it lists is emitted by one of them, so a sweep's `metric` can only name a real metric."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from flosssweep import names
from flosssweep.config import ConfigError, record_columns, resolve
from flosssweep.sweep import spec
from flosssweep.train import train

PACKAGE = Path(__file__).resolve().parents[1] / "flosssweep"

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


# -- keys that cross a process boundary --------------------------------------------------------------
def test_the_typed_protocol_writes_exactly_the_listed_keys():
    from flosssweep.protocol import CheckpointMeta, FinalResult, LaunchFile

    final = FinalResult([{"success": True}], [[0, {"losses/task": 1.0}]], replayed=True)
    assert set(final.to_result()) == {names.RESULT_RECORDS, names.RESULT_HISTORY, names.RESULT_REPLAYED}
    assert FinalResult.of(final.to_result()) == final, "what the worker writes, the driver reads back"
    assert FinalResult.of({names.EPOCH: 3}) is None, "an intermediate report is no final result"
    meta = CheckpointMeta(3, False, "run", {"task.delay": 2}, {"losses/task": 1.0}, [[0, {}]])
    assert tuple(json.loads(meta.dumps())) == names.CHECKPOINT_META_KEYS
    assert CheckpointMeta.loads(meta.dumps()) == meta
    launch = LaunchFile("p", "1", "sqlite:////x/mlflow.db", "s.yaml", {"a": 1}, {"storage": "s", "study_name": "n"})
    assert tuple(json.loads(launch.dumps())) == names.LAUNCH_KEYS
    assert LaunchFile.loads(launch.dumps()) == launch


# Modules on a process boundary: a Ray worker and the driver's hooks, the driver, the tracking store.
BOUNDARY = ("sweep/worker.py", "sweep/callbacks.py", "sweep/driver.py", "tracking/recorder.py", "tracking/store.py")


def literal_keys(path: Path) -> set[str]:
    """Every string literal a module uses as a key: `x["key"]`, `x.get("key")`, `{"key": ...}`."""
    keys = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Subscript):
            candidates = [node.slice]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in KEY_METHODS:
            candidates = node.args[:1]
        elif isinstance(node, ast.Dict):
            candidates = [k for k in node.keys if k is not None]
        else:
            continue
        keys.update(c.value for c in candidates if isinstance(c, ast.Constant) and isinstance(c.value, str))
    return keys


KEY_METHODS = ("get", "pop", "setdefault")


def vocabulary() -> set[str]:
    """What a boundary module may spell: the names listed in names.py, the config schema's keys and
    the sweep file's keys (a sweep's parent run records them as params)."""
    from flosssweep import config as cfg

    listed = {v for v in vars(names).values() if isinstance(v, str)}
    for value in vars(names).values():
        if isinstance(value, tuple | dict):
            listed.update(v for v in value if isinstance(v, str))
    listed.update(names.CONFIG_COLUMNS.values())
    config_keys = {part for key in cfg.SCHEMA for part in [key, *key.split(".")]}
    sweep_keys = set(spec.TOP_KEYS) | set(spec.RESOURCE_KEYS) | {f"resources.{k}" for k in spec.RESOURCE_KEYS}
    return listed | config_keys | sweep_keys | {"MLFLOW_TRACKING_URI", "uri"}


@pytest.mark.parametrize("module", BOUNDARY)
def test_every_key_a_boundary_module_spells_is_listed_in_names(module):
    unlisted = literal_keys(PACKAGE / module) - vocabulary()
    assert not unlisted, f"{module} spells keys that names.py does not list: {sorted(unlisted)}"


def test_the_key_check_finds_an_unlisted_key(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('result["records_json"]; result.get("made_up_key"); {"epoch": 1}\n')
    assert literal_keys(probe) - vocabulary() == {"made_up_key"}
