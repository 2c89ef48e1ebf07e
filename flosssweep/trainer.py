"""One trial: a resolved config in, one record per ensemble member out.

Reads top to bottom like the paper's training loop: build R members, floss before training, then one
fresh batch and one Adam step per epoch (with flossing episodes or a flossing regulariser as
configured), and finally judge each member's success. Knows nothing of Ray or MLflow: the caller
passes `report(metrics, epoch)` for progress and `checkpoint(state, epoch)` to persist state.
"""

from __future__ import annotations

import copy
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from flosssweep import models, tasks
from flosssweep.config import CHAOTIC_TASKS, config_key, record_columns
from flosssweep.floss import Flosser, floss_loss
from flosssweep.optim import MemberAdam, clip, finite_members, member_norms

Report = Callable[[dict, int], None]
Checkpoint = Callable[[dict, int], None]

CONVERGENCE_WINDOW = 20  # epochs of the moving mean that defines epochs_to_success


def member_generators(seed: int, members: int, stream: int = 0) -> list[torch.Generator]:
    """One generator per member, seeded by (seed, member, stream) alone: member j of seed s is the
    same realization whatever the ensemble size."""
    gens = []
    for j in range(members):
        state = np.random.SeedSequence([seed, j, stream]).generate_state(2, dtype=np.uint32)
        gens.append(torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1])))
    return gens


def epochs_to_success(accuracy: np.ndarray, threshold: float, window: int = CONVERGENCE_WINDOW) -> int | None:
    """First epoch (counted from 1) at which the mean accuracy of the last `window` epochs reaches
    `threshold`, or None."""
    if len(accuracy) < window:
        return None
    moving = np.convolve(accuracy, np.ones(window) / window, mode="valid")
    hits = np.flatnonzero(moving >= threshold)
    return int(hits[0]) + window if len(hits) else None


class Trial:
    def __init__(self, config: dict):
        self.config = config
        c, train = config, config["train"]
        self.device = torch.device(c["device"])
        members = c["ensemble"]
        self.generators = member_generators(c["seed"], members)
        # Diagnostics draw from their own streams so that reporting never changes the training data.
        self.diagnostic_generators = member_generators(c["seed"], members, stream=1)
        self.model = models.build(c)
        self.params = models.init_params(self.model, self.generators, device=self.device)
        self.task = tasks.Parity(c["task"]["bits"], c["task"]["delay"], train["batch"], train["length"])
        self.optimizer = MemberAdam(list(self.params.values()), lr=train["lr"])
        self.flosser = Flosser(c["floss"], self.model, self.params, self.generators)
        self.workspace = models.Workspace()  # scratch memory of the fused forward, reused every epoch

        self.start_bookkeeping(train["epochs"], members)

    def start_bookkeeping(self, epochs: int, members: int) -> None:
        """Per-epoch history and per-member status, as a fresh trial has them."""
        self.epoch = 0
        self.pre_flossed = False
        self.accuracy = torch.full((epochs, members), float("nan"))
        self.loss = torch.full((epochs, members), float("nan"))
        self.active = torch.ones(members, dtype=torch.bool, device=self.device)
        self.nonfinite = torch.zeros(members, dtype=torch.long, device=self.device)
        self.consecutive_nonfinite = torch.zeros(members, dtype=torch.long, device=self.device)
        self.grad_norm = torch.full((members,), float("nan"))
        self.floss_value = torch.full((members,), float("nan"))

    # -- one epoch -------------------------------------------------------------------------------
    def train_step(self) -> None:
        train, floss = self.config["train"], self.config["floss"]
        inputs, targets = self.task.sample(self.generators, self.device)
        x0 = self.model.initial_state(self.params, train["batch"])
        if hasattr(self.model, "logits"):  # fused forward with a hand-written backward (rnn)
            logits = self.model.logits(self.params, x0, inputs, self.workspace)
        else:
            logits = self.model.readout(self.params, self.model.run(self.params, x0, inputs))
        logits = logits[..., 0][self.task.scored]
        scored = targets[self.task.scored]
        loss = F.binary_cross_entropy_with_logits(logits, scored, reduction="none").mean(dim=(0, 2))
        accuracy = ((logits > 0) == (scored > 0.5)).float().mean(dim=(0, 2))
        total = loss
        if floss["strength"] > 0:
            floss_value = self.flosser.loss()
            total = loss + floss["strength"] * floss_value
            self.floss_value = floss_value.detach().cpu()

        grads = torch.autograd.grad(total.sum(), list(self.params.values()))
        ok = finite_members(total.detach(), grads) & self.active
        norms = member_norms(grads)
        self.grad_norm = norms.norm(dim=0).detach().cpu()
        self.optimizer.step(clip(grads, train["clip"], train["clip_mode"], norms), ok)

        skipped = self.active & ~ok
        self.nonfinite += skipped
        self.consecutive_nonfinite = torch.where(ok, 0, self.consecutive_nonfinite + skipped)
        self.active &= self.consecutive_nonfinite < train["max_nonfinite"]
        self.accuracy[self.epoch] = accuracy.detach().cpu()
        self.loss[self.epoch] = loss.detach().cpu()

    # -- the whole trial -------------------------------------------------------------------------
    def run(self, report: Report | None = None, checkpoint: Checkpoint | None = None) -> list[dict]:
        train = self.config["train"]
        started = time.perf_counter()
        if not self.pre_flossed:
            if self.flosser.before_training:
                self.floss_value = self.flosser.run(self.config["floss"]["pre_steps"], self.active).cpu()
            self.pre_flossed = True
            if report:
                report(self.metrics(), 0)
        while self.epoch < train["epochs"]:
            if self.flosser.episode_due(self.epoch):
                self.floss_value = self.flosser.run(self.config["floss"]["steps"], self.active).cpu()
                self.flosser.episodes_done += 1
            self.train_step()
            self.epoch += 1
            if self.epoch % train["report_every"] == 0 or self.epoch == train["epochs"]:
                if report:
                    report(self.metrics(), self.epoch)
                if checkpoint:
                    checkpoint(self.state_dict(), self.epoch)
        return self.records(time.perf_counter() - started)

    # -- diagnostics and results ----------------------------------------------------------------
    def spectrum(self) -> torch.Tensor:
        """Exponents (R, k) on a fresh input sequence from the diagnostic streams, no gradients."""
        with torch.no_grad():
            return self.flosser.spectrum(generators=self.diagnostic_generators).cpu()

    def succeeding(self) -> torch.Tensor:
        """Bool (R,): mean accuracy over the last success_window epochs (fewer early on) passes."""
        train = self.config["train"]
        window = self.accuracy[max(0, self.epoch - train["success_window"]): self.epoch]
        if len(window) == 0:
            return torch.zeros(len(self.generators), dtype=torch.bool)
        return (window.mean(dim=0) >= train["success_threshold"]) & self.active.cpu()

    def metrics(self) -> dict:
        exponents = self.spectrum()
        alive = self.active.cpu()
        last = self.epoch - 1
        accuracy = self.accuracy[last][alive] if last >= 0 else torch.tensor([])
        loss = self.loss[last][alive] if last >= 0 else torch.tensor([])
        lambda_1, lambda_k = exponents[:, 0][alive], exponents[:, -1][alive]
        horizon = self.config["floss"]["horizon"]

        def mean(t: torch.Tensor) -> float:
            return float(t.nanmean()) if t.numel() else float("nan")

        return {
            "losses/task": mean(loss),
            "losses/floss": mean(self.floss_value[alive]),
            "losses/floss_now": mean(floss_loss(exponents, self.config["floss"]["target"])[alive]),
            "charts/accuracy": mean(accuracy),
            "charts/success_rate": float(self.succeeding().float().mean()),
            "charts/grad_norm": mean(self.grad_norm[alive]),
            "charts/nonfinite_steps": int(self.nonfinite.sum()) + int(self.flosser.nonfinite.sum()),
            "charts/diverged": int((~alive).sum()),
            "lyapunov/lambda_1": mean(lambda_1),
            "lyapunov/lambda_k": mean(lambda_k),
            "lyapunov/mean_abs": mean(exponents[alive].abs()),
            "lyapunov/log_condition": mean((lambda_1 - lambda_k) * horizon),
        }

    def records(self, seconds: float) -> list[dict]:
        c, train = self.config, self.config["train"]
        exponents = self.spectrum()
        window = slice(train["epochs"] - train["success_window"], train["epochs"])
        columns = record_columns(c)
        key = config_key(c)
        rows = []
        for j in range(len(self.generators)):
            ok = bool(self.active[j])
            final_accuracy = float(self.accuracy[window, j].mean())
            rows.append({
                **columns,
                "member": j,
                "seed": c["seed"],
                "config_key": key,
                "success": ok and final_accuracy >= train["success_threshold"],
                "final_accuracy": final_accuracy,
                "final_loss": float(self.loss[window, j].mean()),
                "epochs_to_success": epochs_to_success(self.accuracy[:, j].numpy(), train["success_threshold"]),
                "lambda_1": float(exponents[j, 0]),
                "lambda_k": float(exponents[j, -1]),
                "status": "ok" if ok else "diverged",
                "nonfinite_steps": int(self.nonfinite[j]) + int(self.flosser.nonfinite[j]),
                "train_seconds": seconds,
            })
        return rows

    # -- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """A snapshot (copies, not views of live tensors) from which `load_state_dict` continues."""
        return copy.deepcopy({
            "epoch": self.epoch, "pre_flossed": self.pre_flossed,
            "params": {name: t.detach() for name, t in self.params.items()},
            "optimizer": self.optimizer.state_dict(), "flosser": self.flosser.state_dict(),
            "generators": [g.get_state() for g in self.generators],
            "diagnostic_generators": [g.get_state() for g in self.diagnostic_generators],
            "accuracy": self.accuracy, "loss": self.loss, "active": self.active,
            "nonfinite": self.nonfinite, "consecutive_nonfinite": self.consecutive_nonfinite,
        })

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pre_flossed = state["epoch"], state["pre_flossed"]
        with torch.no_grad():
            for name, t in self.params.items():
                t.copy_(state["params"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.flosser.load_state_dict(state["flosser"])
        for gen, saved in zip(self.generators + self.diagnostic_generators,
                              state["generators"] + state["diagnostic_generators"]):
            gen.set_state(saved)
        for name in ("accuracy", "loss", "active", "nonfinite", "consecutive_nonfinite"):
            getattr(self, name).copy_(state[name])


def train(config: dict, report: Report | None = None, checkpoint: Checkpoint | None = None,
          restore: dict | None = None) -> list[dict]:
    """Run one trial of `config` (resolved by `flosssweep.config.resolve`); returns one record per
    member (DESIGN 7, without `sweep` and `trial_id`, which the caller adds)."""
    torch.set_num_threads(config["threads"])
    if config["task"]["name"] in CHAOTIC_TASKS:  # chaotic data: sparse teacher forcing (flosssweep.stf)
        from flosssweep.stf import chaotic_train
        return chaotic_train(config, report, checkpoint, restore)
    trial = Trial(config)
    if restore is not None:
        trial.load_state_dict(restore)
    return trial.run(report, checkpoint)
