"""Training: one trial of a resolved config in, one record per ensemble member out; no Ray, no MLflow.

`train(config, report, checkpoint, restore, progress)` picks the trial for the task: delayed parity
(`train.parity`) or chaotic data with sparse teacher forcing (`train.chaotic`), both users of the
shared loop in `train.loop`.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
import torch

from flosssweep.config import CHAOTIC_TASKS
from flosssweep.train.chaotic import ChaoticTrial
from flosssweep.train.loop import Checkpoint, Progress, Report, Trial, member_generators
from flosssweep.train.parity import ParityTrial, epochs_to_success

__all__ = ["ChaoticTrial", "ParityTrial", "Trial", "epochs_to_success", "make_trial", "member_generators", "train"]


def make_trial(config: dict) -> Trial:
    return ChaoticTrial(config) if config["task"]["name"] in CHAOTIC_TASKS else ParityTrial(config)


def train(
    config: dict,
    report: Report | None = None,
    checkpoint: Checkpoint | None = None,
    restore: dict | None = None,
    progress: Progress | None = None,
    diagnostics: Callable[[pa.Table], None] | None = None,
) -> list[dict]:
    """Run one trial of `config` (resolved by `flosssweep.config.resolve`); returns one record per
    member (docs/DESIGN.md, "Records", without `sweep` and `trial_id`, which the caller adds).
    `report(metrics, epoch)` every `train.report_every` epochs, `progress` during flossing (`train.loop`);
    `diagnostics` gets the trial's diagnostics over training (`flosssweep.train.diagnostics`)."""
    torch.set_num_threads(config["threads"])
    trial = make_trial(config)
    if restore is not None:
        trial.load_state_dict(restore)
    records = trial.run(report, checkpoint, progress)
    if diagnostics is not None:
        diagnostics(trial.diagnostics_table())
    return records
