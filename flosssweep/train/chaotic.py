"""Training on chaotic data with sparse teacher forcing (Mikhaeil, Monfared & Durstewitz, NeurIPS 2022).

The network runs autonomously (no input): its latent state z evolves by `step`, and a linear
observation x = B z (+ c) is compared with the data. A batch is B windows of L + 1 consecutive
samples of the standardized training trajectory, drawn per member from its own stream. For each
window the state starts from the data, z_0 = B^+ x_0 (B^+ the Moore-Penrose pseudo-inverse), and
every `tau` steps it is replaced again by the state the observation implies, z_t <- B^+ x_t
(t = tau, 2 tau, ...): between forcing points the network runs freely, and backpropagation never
crosses a forcing point, so the gradient cannot grow beyond what tau steps of the dynamics allow.
The loss is the mean squared error of the next-step predictions B z_{t+1} against x_{t+1}, for every
t in the window. `tau: none` forces only z_0 (plain BPTT over the window); `tau: auto` takes
round(ln 2 / lambda_max) of the data, lambda_max per sample step, computed by the project's own
`lyapunov_spectrum` (see `flosssweep.chaos`).

What a forcing step replaces (`train.forcing`):
- `full` (default, as in the authors' code): z <- B^+ (x - c). The new state does not depend on the
  old one, so the gradient chain is cut exactly.
- `observed`: z <- z + B^+ (x - c - B z), i.e. only the component of z that the observation sees
  (the row space of B) is replaced and the rest runs on, gradient included. For an identity
  observation B = [I 0] this is forcing "the first N latents" while the others keep their values.

Observations per architecture: plrnn has a learned linear observation x = B z without bias (as in the
authors' code); rnn and gru read out their whole state with (w_out, c); the lstm reads out h only, so
its B is [w_out 0] and forcing sets h = w_out^+ (x - c) and the cell state to 0. In every case the
inferred state reproduces the observation exactly (B B^+ = I for B of full row rank).

After training, each member generates `train.eval_trajectories` free-running trajectories of
`train.eval_steps` steps from states inferred from evenly spaced test-set samples; D_stsp and D_H
compare them with the test set, and the largest Lyapunov exponent of the generated dynamics is
estimated on the trajectories' end points. A realization succeeds when D_stsp is below
`train.dstsp_threshold`. `train.dstsp_convention: authors` computes D_stsp as the STF authors'
evaluation does instead: one 100 000-step free run per member from the first test sample, 10 bins over
+-2 sd of the test data, points outside dropped (`chaos.authors_state_space_divergence`).
Everything else (ensembles, per-member Adam with non-finite guards, flossing schedules, reports,
checkpoints, records) is the parity trainer's.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from flosssweep import chaos
from flosssweep.floss import DTYPES, Flosser, exponents_of
from flosssweep.streams import MemberStreams
from flosssweep.train.loop import Trial

OBSERVED = 3  # dimensions of Lorenz-63 and Roessler data
LYAPUNOV_STARTS = 8  # generated end points the model's exponents are averaged over
LYAPUNOV_WARMUP = 1000  # steps before accumulating (the frame settles on the leading directions)
LYAPUNOV_STEPS = 4000  # accumulated steps (fewer when train.eval_steps is smaller)
LYAPUNOV_QR_EVERY = 5


# --------------------------------------------------------------------------------------------
# Observation, forcing, rollout
# --------------------------------------------------------------------------------------------


def observation(model, p: dict) -> tuple[Tensor, Tensor | None]:
    """The linear observation of each member: B (R, D, S) and bias (R, D) or None, x = B z + bias."""
    if model.arch == "plrnn":
        return p["B"], None
    B = p["w_out"]
    if model.state_size > B.shape[-1]:  # lstm: the readout sees h, not the cell state
        B = torch.cat([B, B.new_zeros(*B.shape[:-1], model.state_size - B.shape[-1])], dim=-1)
    return B, p["c"]


class Forcer:
    """Infers states from observations for one parameter set: `infer(x)` is B^+ (x - bias) and
    `force(z, x)` the forcing step of the chosen mode. x (R, B, D), z (R, B, S)."""

    def __init__(self, model, p: dict, mode: str = "full"):
        self.B, self.bias = observation(model, p)
        self.B_pinv = torch.linalg.pinv(self.B)  # (R, S, D)
        self.mode = mode

    def _centered(self, x: Tensor) -> Tensor:
        return x if self.bias is None else x - self.bias.unsqueeze(1)

    def infer(self, x: Tensor) -> Tensor:
        return torch.bmm(self._centered(x), self.B_pinv.transpose(1, 2))

    def force(self, z: Tensor, x: Tensor) -> Tensor:
        if self.mode == "full":
            return self.infer(x)
        residual = self._centered(x) - torch.bmm(z, self.B.transpose(1, 2))
        return z + torch.bmm(residual, self.B_pinv.transpose(1, 2))


def autonomous(model, p: dict, like: Tensor):
    """The input-free step `z -> z_next` of the model for states shaped like `like` (R, B, S)."""
    if model.stepper is not None:
        return model.stepper(p)
    none = like.new_zeros(*like.shape[:2], 0)  # zero input channels
    return lambda z: model.step(p, z, none)


def forced_at(t: int, tau: int | None) -> bool:
    """Whether the state is replaced by the data before step t (t = 0 is the initial state)."""
    return tau is not None and t > 0 and t % tau == 0


def rollout(
    model, p: dict, obs: Tensor, tau: int | None, forcing: str = "full", z0: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Sparsely forced run over a window. obs (L + 1, R, B, D) are the observations x_0 .. x_L.
    The state starts at z0 (default B^+ x_0), is replaced from x_t before step t whenever t is a
    positive multiple of tau, and steps autonomously. Returns (predictions of x_1 .. x_L
    (L, R, B, D), states z_1 .. z_L (L, R, B, S))."""
    forcer = Forcer(model, p, forcing)
    z = forcer.infer(obs[0]) if z0 is None else z0
    step = autonomous(model, p, z)
    states = []
    for t in range(obs.shape[0] - 1):
        if forced_at(t, tau):
            z = forcer.force(z, obs[t])
        z = step(z)
        states.append(z)
    states = torch.stack(states)
    return model.readout(p, states), states


def free_run(model, p: dict, z: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """Generate `steps` steps from z (R, n, S) without forcing or gradients; returns the observations
    (R, n, steps, D) and the final state."""
    out = []
    with torch.no_grad():
        step = autonomous(model, p, z)
        for _ in range(steps):
            z = step(z)
            out.append(model.readout(p, z))
    return torch.stack(out, dim=2), z


def model_lyapunov(
    model,
    p: dict,
    z: Tensor,
    k: int,
    steps: int = LYAPUNOV_STEPS,
    warmup: int = LYAPUNOV_WARMUP,
    qr_every: int = LYAPUNOV_QR_EVERY,
) -> Tensor:
    """The k largest exponents (R, k) per step of each member's autonomous dynamics, averaged over the
    start states z (R, n, S), in float64 and without gradients."""
    p64 = {name: t.detach().double() for name, t in p.items()}
    z = z.detach().double()
    none = z.new_zeros(*z.shape[:2], 0)
    with torch.no_grad():
        exponents = exponents_of(
            model, p64, z, [none] * (warmup + steps), k, warmup=warmup, qr_every=qr_every, fused=False
        )
    return exponents.mean(dim=1)


def resolve_tau(tau, lambda_max_per_step: float) -> int | None:
    """The forcing interval in steps from the config value: an integer, 'none' (None) or 'auto'."""
    if tau == "none":
        return None
    if tau == "auto":
        return chaos.forcing_interval(lambda_max_per_step)
    return int(tau)


# --------------------------------------------------------------------------------------------
# Flossing toward a target on the autonomous model
# --------------------------------------------------------------------------------------------


class ChaoticFlosser(Flosser):
    """Flossing for autonomous models: the spectrum is estimated from a state inferred from a random
    training sample per member (instead of a random input sequence), and `floss.target` may be the
    data's largest exponent per step (`data`), resolved by the caller into `cfg['target']`."""

    def __init__(self, cfg: dict, model, params: dict, streams: MemberStreams, train_data: Tensor):
        super().__init__(cfg, model, params, streams)
        self.train_data = train_data  # (T, D) float tensor on the device

    def spectrum(self, streams: MemberStreams | None = None) -> Tensor:
        cfg = self.cfg
        dtype = DTYPES[cfg["dtype"]]
        index = (streams or self.streams).integers(len(self.train_data), (1,))
        x = self.train_data[index]  # (R, 1, D)
        p = {name: (t if name in self.model.flossed else t.detach()).to(dtype) for name, t in self.params.items()}
        z0 = Forcer(self.model, p).infer(x.to(dtype))
        none = z0.new_zeros(*z0.shape[:2], 0)
        exponents = exponents_of(
            self.model,
            p,
            z0,
            [none] * cfg["horizon"],
            cfg["k"],
            warmup=cfg["warmup"],
            qr_every=cfg["qr_every"],
            fused=False,
        )
        return exponents[:, 0].to(self.params[self.model.flossed[0]].dtype)


# --------------------------------------------------------------------------------------------
# The trial
# --------------------------------------------------------------------------------------------


class ChaoticTrial(Trial):
    """A trial on chaotic data: the shared loop with windows of the data as batches, sparsely forced
    rollouts as the forward pass, and D_stsp, D_H and the model's exponents as outcomes."""

    def __init__(self, config: dict):
        task = config["task"]
        self.data = chaos.make_data(
            task["name"], task["dt"], task["train_steps"], task["test_steps"], task["transient"], task["data_seed"]
        )
        self.lambda_data = self.data.lambda_max()  # per sample step
        self.tau = resolve_tau(task["tau"], self.lambda_data)
        self.train_data = torch.as_tensor(self.data.train, dtype=torch.float32, device=config["device"])
        self._evaluated: tuple[int, dict] | None = None
        super().__init__(config, inputs=0, outputs=OBSERVED)  # accuracy stays NaN: not defined here

    def make_flosser(self) -> ChaoticFlosser:
        floss_cfg = dict(self.config["floss"], target=self.floss_target)
        return ChaoticFlosser(floss_cfg, self.model, self.params, self.streams, self.train_data)

    @property
    def floss_target(self) -> float:
        target = self.config["floss"]["target"]
        return self.lambda_data if target == "data" else float(target)

    @property
    def effective_tau(self) -> int:
        """The forcing interval as a number of steps: min(tau, L), so `none` (and any tau >= L,
        which forces nothing inside a window either) is the window length L."""
        length = self.config["train"]["length"]
        return length if self.tau is None else min(self.tau, length)

    # -- one epoch -------------------------------------------------------------------------------
    def sample(self) -> Tensor:
        """Windows of L + 1 training samples, (L + 1, R, B, D), from each member's stream."""
        train = self.config["train"]
        span = train["length"] + 1
        starts = self.streams.integers(len(self.train_data) - span + 1, (train["batch"],))
        index = starts.unsqueeze(-1) + torch.arange(span, device=self.device)  # (R, B, L + 1)
        return self.train_data[index].permute(2, 0, 1, 3)

    def batch_loss(self) -> tuple[Tensor, None]:
        obs = self.sample()
        predictions, _ = rollout(self.model, self.params, obs, self.tau, self.config["train"]["forcing"])
        return ((predictions - obs[1:]) ** 2).mean(dim=(0, 2, 3)), None

    # -- evaluation ------------------------------------------------------------------------------
    def generate(self) -> tuple[np.ndarray, Tensor]:
        """Free-running trajectories (R, n, eval_steps, D) of every member from states inferred from
        n evenly spaced test samples, and their end states (R, n, S)."""
        train = self.config["train"]
        test = torch.as_tensor(self.data.test, dtype=torch.float32, device=self.device)
        starts = torch.linspace(0, len(test) - 1, train["eval_trajectories"]).round().long()
        R = len(self.streams)
        with torch.no_grad():
            z0 = Forcer(self.model, self.params).infer(test[starts].expand(R, -1, -1))
            trajectories, end = free_run(self.model, self.params, z0, train["eval_steps"])
        return trajectories.cpu().double().numpy(), end

    def generate_authors_run(self, steps: int = chaos.AUTHORS_FREE_RUN) -> np.ndarray:
        """One free run (R, steps, D) per member from the state inferred from the first test sample,
        that state's observation first, as the STF authors' evaluation generates (main_eval.py)."""
        test = torch.as_tensor(self.data.test[:1], dtype=torch.float32, device=self.device)
        with torch.no_grad():
            z0 = Forcer(self.model, self.params).infer(test.expand(len(self.streams), -1, -1))
            start = self.model.readout(self.params, z0)
            run, _ = free_run(self.model, self.params, z0, steps - 1)
        return torch.cat([start.unsqueeze(2), run], dim=2)[:, 0].cpu().double().numpy()

    def evaluate(self) -> dict:
        """Per-member D_stsp, D_H and exponents (cached per epoch)."""
        if self._evaluated is not None and self._evaluated[0] == self.epoch:
            return self._evaluated[1]
        train, k = self.config["train"], self.config["floss"]["k"]
        trajectories, end = self.generate()
        if train["dstsp_convention"] == "authors":
            dstsp = np.array(
                [chaos.authors_state_space_divergence(self.data.test, run) for run in self.generate_authors_run()]
            )
        else:
            dstsp = np.array(
                [chaos.state_space_divergence(self.data.test, traj, bins=train["dstsp_bins"]) for traj in trajectories]
            )
        dh = np.array([chaos.power_spectrum_distance(self.data.test, traj) for traj in trajectories])
        starts = end[:, : min(LYAPUNOV_STARTS, end.shape[1])]
        steps = min(LYAPUNOV_STEPS, train["eval_steps"])
        exponents = (
            model_lyapunov(self.model, self.params, starts, k, steps=steps, warmup=min(LYAPUNOV_WARMUP, steps // 4))
            .cpu()
            .numpy()
        )
        finite = np.isfinite(exponents).all(axis=1)
        exponents[~finite] = np.nan
        result = {"dstsp": dstsp, "dh": dh, "exponents": exponents}
        self._evaluated = (self.epoch, result)
        return result

    def succeeding(self) -> Tensor:
        threshold = self.config["train"]["dstsp_threshold"]
        return torch.as_tensor(self.evaluate()["dstsp"] < threshold) & self.active.cpu()

    def task_metrics(self) -> dict:
        ev = self.evaluate()
        alive = self.active.cpu().numpy()
        exponents = ev["exponents"][alive]
        dt = self.config["task"]["dt"]

        def mean(values) -> float:
            values = np.asarray(values, dtype=np.float64)
            return float(np.nanmean(values)) if values.size and not np.isnan(values).all() else float("nan")

        return {
            "losses/floss_now": mean(((exponents - self.floss_target) ** 2).mean(axis=1))
            if exponents.size
            else float("nan"),
            "charts/dstsp": mean(ev["dstsp"][alive]),
            "charts/dh": mean(ev["dh"][alive]),
            "charts/tau": self.effective_tau,
            "lyapunov/lambda_1": mean(exponents[:, 0]) if exponents.size else float("nan"),
            "lyapunov/lambda_k": mean(exponents[:, -1]) if exponents.size else float("nan"),
            "lyapunov/lambda_max_model_per_time": mean(exponents[:, 0] / dt) if exponents.size else float("nan"),
            "lyapunov/lambda_max_data_per_time": self.lambda_data / dt,
        }

    def config_columns(self) -> dict:
        columns = super().config_columns()
        columns["tau"] = self.effective_tau  # the number, so that tau is a numeric axis ('none' = L)
        columns["floss_target"] = self.floss_target  # likewise ('data' = the data's exponent per step)
        return columns

    def outcome(self, j: int) -> dict:
        ev, dt = self.evaluate(), self.config["task"]["dt"]
        lam = ev["exponents"][j]
        return {
            "lambda_1": float(lam[0]),
            "lambda_k": float(lam[-1]),
            "dstsp": float(ev["dstsp"][j]),
            "dh": float(ev["dh"][j]),
            "lambda_max_model": float(lam[0]),
            "lambda_max_data": self.lambda_data,
            "lambda_max_model_per_time": float(lam[0]) / dt,
            "lambda_max_data_per_time": self.lambda_data / dt,
            "tau_predicted": math.log(2.0) / self.lambda_data,
        }
