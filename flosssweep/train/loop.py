"""The training loop every trial shares: R members side by side, guarded Adam steps, flossing, checkpoints.

A trial is an ensemble of independent realizations trained in lockstep. Reads top to bottom like the
paper's loop: floss before training, then one fresh batch and one optimizer step per epoch (with
flossing episodes or a flossing regularizer as configured), reports and checkpoints every
`train.report_every` epochs, and finally one record per member. Tasks plug in by subclassing `Trial`
and providing the batch loss, the metrics and the outcome columns of a record; the loop knows
nothing of Ray or MLflow: the caller passes `report(metrics, epoch)` and `checkpoint(state, epoch)`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from flosssweep import models
from flosssweep.config import config_key, record_columns
from flosssweep.floss import Flosser
from flosssweep.names import RECORDS_VERSION
from flosssweep.optim import MemberAdam, clip, finite_members, member_norms
from flosssweep.streams import MemberStreams
from flosssweep.train.diagnostics import Curves, curves_table
from flosssweep.train.graph import epoch_runner

Report = Callable[[dict, int], None]
Checkpoint = Callable[[dict, int], None]
# progress(what, done, total, epoch) during work between two reports: flossing steps done of total,
# what being "pre-flossing" or "flossing episode i/n" (pre-flossing alone can take minutes)
Progress = Callable[[str, int, int, int], None]


def member_generators(seed: int, members: int, stream: int = 0) -> list[torch.Generator]:
    """One generator per member, seeded by (seed, member, stream) alone: member j of seed s starts
    from the same weights whatever the ensemble size. (Its data come from `MemberStreams`.)"""
    gens = []
    for j in range(members):
        state = np.random.SeedSequence([seed, j, stream]).generate_state(2, dtype=np.uint32)
        gens.append(torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1])))
    return gens


def nanmean(values: Tensor) -> float:
    """Mean over the finite-or-NaN entries; NaN for an empty tensor (no member alive)."""
    return float(values.double().nanmean()) if values.numel() else float("nan")


class Trial:
    """One configuration trained as `ensemble` realizations. Subclasses provide:

    - the input and output sizes, passed to `__init__` (the model is built from the config with them);
    - optionally `make_flosser()`, called once the params exist (the default flosses the model's own dynamics);
    - `batch_loss()` -> (loss (R,), accuracy (R,) or None) on a fresh batch, differentiable;
    - `task_metrics()`, the task's own metrics (merged over the shared ones);
    - `outcome(j)`, the task's own record columns of member j;
    - `succeeding()` -> bool (R,);
    - optionally `stage_diagnostics()`, per-member values recorded at the start, after pre-flossing and at the end;
    - optionally `stage_curves(stage)`, per-member vectors kept over training (`diagnostics_table`).
    """

    def __init__(self, config: dict, inputs: int, outputs: int):
        self.config = config
        c, train = config, config["train"]
        self.device = torch.device(c["device"])
        members = c["ensemble"]
        self.streams = MemberStreams(c["seed"], members, stream=0, device=self.device)
        # Diagnostics draw from their own streams so that reporting never changes the training data; a
        # task numbers its diagnostic draws by the training state (ParityTrial.state_spectrum), so
        # their counter is not part of a checkpoint.
        self.diagnostic_streams = MemberStreams(c["seed"], members, stream=1, device=self.device)
        self.model = models.build(c, inputs=inputs, outputs=outputs)
        self.params = models.init_params(self.model, member_generators(c["seed"], members), device=self.device)
        self.optimizer = MemberAdam(list(self.params.values()), lr=train["lr"])
        self.flosser = self.make_flosser()

        self.epoch = 0
        self.pre_flossed = False
        # Per-epoch values stay on the device and are read back at reports (`read_back`), never per
        # epoch; on the CPU the host copy is the device tensor itself.
        self.loss_device = torch.full((train["epochs"], members), float("nan"), device=self.device)
        self.accuracy_device = torch.full((train["epochs"], members), float("nan"), device=self.device)
        on_cpu = self.device.type == "cpu"
        self.loss = self.loss_device if on_cpu else torch.full((train["epochs"], members), float("nan"))
        self.accuracy = self.accuracy_device if on_cpu else torch.full((train["epochs"], members), float("nan"))
        self.active = torch.ones(members, dtype=torch.bool, device=self.device)
        self.nonfinite = torch.zeros(members, dtype=torch.long, device=self.device)
        self.consecutive_nonfinite = torch.zeros(members, dtype=torch.long, device=self.device)
        self.grad_norm = torch.full((members,), float("nan"), device=self.device)
        self.floss_value = torch.full((members,), float("nan"), device=self.device)
        self.stages: dict[str, Tensor] = {}  # per-member diagnostics at the start, after pre-flossing, at the end
        self.curves: Curves = []  # diagnostics over training (flosssweep.train.diagnostics)
        self.epoch_step = epoch_runner(self)  # guarded_step, eager or replayed from a CUDA graph

    def make_flosser(self) -> Flosser:
        return Flosser(self.config["floss"], self.model, self.params, self.streams)

    # -- one epoch -------------------------------------------------------------------------------
    def train_step(self) -> None:
        """One epoch: the guarded step, its loss and accuracy kept on the device."""
        loss, accuracy = self.epoch_step()
        self.loss_device[self.epoch].copy_(loss)
        if accuracy is not None:
            self.accuracy_device[self.epoch].copy_(accuracy)

    def guarded_step(self) -> tuple[Tensor, Tensor | None]:
        """One guarded step: a member whose loss or gradient is not finite is skipped (its Adam state
        untouched), and after `train.max_nonfinite` consecutive skips it is diverged for good.
        Capturable: fixed shapes, no host sync, state changed in place; returns the detached
        (loss, accuracy) (R,)."""
        train, floss = self.config["train"], self.config["floss"]
        loss, accuracy = self.batch_loss()
        total = loss
        if floss["strength"] > 0:
            floss_value = self.flosser.loss()
            total = loss + floss["strength"] * floss_value
            self.floss_value.copy_(floss_value.detach())

        # allow_unused: a chaotic model's readout of h alone never touches the LSTM cell state's x0
        grads = torch.autograd.grad(total.sum(), list(self.params.values()), allow_unused=True, materialize_grads=True)
        ok = finite_members(total.detach(), grads) & self.active
        norms = member_norms(grads)
        self.grad_norm.copy_(norms.norm(dim=0).detach())
        self.optimizer.step(clip(grads, train["clip"], train["clip_mode"], norms), ok)

        skipped = self.active & ~ok
        self.nonfinite += skipped
        self.consecutive_nonfinite.copy_(torch.where(ok, 0, self.consecutive_nonfinite + skipped))
        self.active &= self.consecutive_nonfinite < train["max_nonfinite"]
        return loss.detach(), None if accuracy is None else accuracy.detach()

    def read_back(self) -> None:
        """Bring the per-epoch loss and accuracy kept on the device to their host copies."""
        if self.loss is not self.loss_device:
            self.loss[: self.epoch] = self.loss_device[: self.epoch].cpu()
            self.accuracy[: self.epoch] = self.accuracy_device[: self.epoch].cpu()

    # -- the whole trial -------------------------------------------------------------------------
    def run(
        self, report: Report | None = None, checkpoint: Checkpoint | None = None, progress: Progress | None = None
    ) -> list[dict]:
        train, floss = self.config["train"], self.config["floss"]
        started = time.perf_counter()
        if not self.pre_flossed:
            self.mark_stage("initial")
            if self.flosser.before_training:
                steps = self._steps(progress, "pre-flossing", floss["pre_steps"])
                self.floss_value.copy_(self.flosser.run(floss["pre_steps"], self.active, steps))
            self.pre_flossed = True
            self.mark_stage("pre")
            if report:
                report(self.metrics(), 0)
        while self.epoch < train["epochs"]:
            if self.flosser.episode_due(self.epoch):
                what = f"flossing episode {self.flosser.episodes_done + 1}/{floss['episodes']}"
                steps = self._steps(progress, what, floss["steps"])
                self.floss_value.copy_(self.flosser.run(floss["steps"], self.active, steps))
                self.flosser.episodes_done += 1
            self.train_step()
            self.epoch += 1
            if self.epoch % train["report_every"] == 0 or self.epoch == train["epochs"]:
                if self.epoch < train["epochs"]:  # the last one is the final stage's
                    self.observe("train")
                if report:
                    report(self.metrics(), self.epoch)
                if checkpoint:
                    checkpoint(self.state_dict(), self.epoch)
        self.read_back()
        self.mark_stage("final")
        return self.records(time.perf_counter() - started)

    def _steps(self, progress: Progress | None, what: str, total: int) -> Callable[[int], None] | None:
        """The flosser's per-step hook that tells `progress` how far `what` has come."""
        if progress is None:
            return None
        return lambda done: progress(what, done, total, self.epoch)

    def mark_stage(self, stage: str) -> None:
        """Keep the task's stage diagnostics (`stage_diagnostics`) as record columns `<name>_<stage>`."""
        for name, values in self.stage_diagnostics().items():
            self.stages[f"{name}_{stage}"] = values.detach().cpu()
        self.observe(stage)

    def observe(self, stage: str) -> None:
        """Keep the task's diagnostics over training (`stage_curves`) of the current state."""
        values = {name: t.detach().cpu() for name, t in self.stage_curves(stage).items()}
        if values:
            self.curves.append((self.epoch, stage, values))

    def diagnostics_table(self):
        """The diagnostics over training as one long Arrow table (names.DIAGNOSTIC_COLUMNS)."""
        return curves_table(self.curves, config_key(self.config), self.config["seed"])

    # -- results ---------------------------------------------------------------------------------
    def metrics(self) -> dict:
        """What every task reports, then the task's own (names.METRICS lists them all)."""
        self.read_back()
        alive = self.active.cpu()
        last = self.epoch - 1
        loss = self.loss[last][alive] if last >= 0 else torch.tensor([])
        shared = {
            "losses/task": nanmean(loss),
            "losses/floss": nanmean(self.floss_value.cpu()[alive]),
            "charts/success_rate": float(self.succeeding().float().mean()),
            "charts/grad_norm": nanmean(self.grad_norm.cpu()[alive]),
            "charts/nonfinite_steps": int(self.nonfinite.sum()) + int(self.flosser.nonfinite.sum()),
            "charts/diverged": int((~alive).sum()),
        }
        return {**shared, **self.task_metrics()}

    def records(self, seconds: float) -> list[dict]:
        """One row per member: the configuration's columns, who the member is, what happened to it."""
        c, train = self.config, self.config["train"]
        window = slice(max(0, train["epochs"] - train["success_window"]), train["epochs"])
        columns = self.config_columns()
        key = config_key(c)
        success = self.succeeding()
        active = self.active.cpu()
        nonfinite = (self.nonfinite + self.flosser.nonfinite).cpu()
        rows = []
        for j in range(len(self.streams)):
            final_loss = float(self.loss[window, j].mean())
            # a member whose loss ended non-finite diverged, even if its guard never tripped
            ok = bool(active[j]) and np.isfinite(final_loss)
            rows.append(
                {
                    **columns,
                    "member": j,
                    "seed": c["seed"],
                    "config_key": key,
                    "success": ok and bool(success[j]),
                    "final_loss": final_loss,
                    "status": "ok" if ok else "diverged",
                    "nonfinite_steps": int(nonfinite[j]),
                    "train_seconds": seconds,
                    "records_version": RECORDS_VERSION,
                    **{name: float(values[j]) for name, values in self.stages.items()},
                    **self.outcome(j),
                }
            )
        return rows

    def config_columns(self) -> dict:
        return record_columns(self.config)

    # -- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """A snapshot (copies, not views of live tensors) from which `load_state_dict` continues: every
        attribute `run`, `metrics` and `records` read, so a resumed trial reports what an uninterrupted
        one would (docs/DESIGN.md, "Corridors")."""
        self.read_back()
        return copy.deepcopy(
            {
                "records_version": RECORDS_VERSION,
                "epoch": self.epoch,
                "pre_flossed": self.pre_flossed,
                "params": {name: t.detach() for name, t in self.params.items()},
                "optimizer": self.optimizer.state_dict(),
                "flosser": self.flosser.state_dict(),
                "streams": self.streams.state_dict(),
                "accuracy": self.accuracy,
                "loss": self.loss,
                "active": self.active,
                "nonfinite": self.nonfinite,
                "consecutive_nonfinite": self.consecutive_nonfinite,
                "grad_norm": self.grad_norm,
                "floss_value": self.floss_value,
                "stages": self.stages,
                "curves": self.curves,
            }
        )

    def load_state_dict(self, state: dict) -> None:
        made_by = state.get("records_version", 2 if "streams" in state else 1)
        if made_by != RECORDS_VERSION:
            raise ValueError(
                f"checkpoint of records version {made_by}, this trainer makes version {RECORDS_VERSION}: its "
                "streams or diagnostics cannot continue on this version's; start the trial again"
            )
        self.epoch, self.pre_flossed = state["epoch"], state["pre_flossed"]
        with torch.no_grad():
            for name, t in self.params.items():
                t.copy_(state["params"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.flosser.load_state_dict(state["flosser"])
        self.streams.load_state_dict(state["streams"])
        for name in ("accuracy", "loss", "active", "nonfinite", "consecutive_nonfinite", "grad_norm", "floss_value"):
            getattr(self, name).copy_(state[name])
        self.loss_device.copy_(self.loss)
        self.accuracy_device.copy_(self.accuracy)
        self.stages = dict(state.get("stages", {}))
        self.curves = list(state.get("curves", []))

    # -- what a task provides ----------------------------------------------------------------------
    def batch_loss(self) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def task_metrics(self) -> dict:
        raise NotImplementedError

    def outcome(self, j: int) -> dict:
        raise NotImplementedError

    def succeeding(self) -> Tensor:
        raise NotImplementedError

    def stage_diagnostics(self) -> dict[str, Tensor]:
        """Per-member values (R,) worth comparing before training, after pre-flossing and at the end."""
        return {}

    def stage_curves(self, stage: str) -> dict[str, Tensor]:
        """Per-member vectors {quantity: (R, n)} kept over training: at every report during training
        (`stage` "train") and at the stages ("initial", "pre", "final")."""
        return {}
