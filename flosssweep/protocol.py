"""What crosses a process boundary between a trial and the driver, as types: a trial's final result
(worker -> driver, through Ray), a checkpoint's meta file (worker -> the same trial's next start) and
the launch file (driver -> a later driver's --resume or --close).

Each type writes and reads its own keys, and those keys are listed in `names.py` (a test fails on an
unlisted one), so no module spells them. Nothing here imports Ray or MLflow.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from flosssweep.names import CHECKPOINT_META_KEYS, LAUNCH_KEYS, RESULT_HISTORY, RESULT_RECORDS, RESULT_REPLAYED

History = list[list]  # [epoch, metrics] of every report of a trial, in order


@dataclass
class FinalResult:
    """The last result of a trial: its records (one per realization) and every report it made, as
    JSON strings so that Ray's loggers leave them alone. `replayed`: the trial had finished before
    an interrupted driver saw it, and reports again from its finished checkpoint."""

    records: list[dict]
    history: History
    replayed: bool = False

    def to_result(self) -> dict[str, Any]:
        return {
            RESULT_RECORDS: json.dumps(self.records),
            RESULT_HISTORY: json.dumps(self.history),
            RESULT_REPLAYED: int(self.replayed),
        }

    @classmethod
    def of(cls, result: dict | None) -> FinalResult | None:
        """The final result in a Ray result, or None for an intermediate report (or a trial the
        scheduler stopped early)."""
        if not result or RESULT_RECORDS not in result:
            return None
        return cls(
            json.loads(result[RESULT_RECORDS]),
            json.loads(result.get(RESULT_HISTORY) or "[]"),
            bool(result.get(RESULT_REPLAYED)),
        )


@dataclass
class CheckpointMeta:
    """`meta.json` of every checkpoint of a trial: which launch and configuration it belongs to (a
    trial that starts looks for its own among all the experiment's checkpoints), the epoch, whether
    the trial had finished, and its metrics history so far."""

    epoch: int
    done: bool
    launch: str
    config: dict
    metrics: dict = field(default_factory=dict)
    history: History = field(default_factory=list)

    def dumps(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def loads(cls, text: str) -> CheckpointMeta:
        """Raises ValueError for a file that is not a checkpoint meta of this version."""
        data = json.loads(text)
        if not isinstance(data, dict) or not {"epoch", "done", "launch", "config"} <= set(data):
            raise ValueError("not a flosssweep checkpoint meta file")
        return cls(**{k: data[k] for k in CHECKPOINT_META_KEYS if k in data})


@dataclass
class LaunchFile:
    """What `--resume` and `--close` need of a launch, kept in its Ray experiment directory."""

    parent_run_id: str
    experiment_id: str
    tracking_uri: str
    sweep: str  # the sweep file it was launched from
    fingerprint: Any  # what must not change for a resume (spec.Sweep.fingerprint)
    optuna: dict | None = None  # where an Optuna search keeps its study
    extended: list | None = None  # an --extend launch: the grid cells it leaves out (recorded before)

    def dumps(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def loads(cls, text: str) -> LaunchFile:
        data = json.loads(text)
        return cls(**{k: data.get(k) for k in LAUNCH_KEYS})
