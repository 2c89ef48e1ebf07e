"""Benchmarks: how many realizations per hour flosssweep trains, and what the rest costs.

    python -m flosssweep.bench                 # full sizes (a few minutes on 2 CPU cores)
    python -m flosssweep.bench --quick         # tiny sizes, 1-4 minutes (mostly Ray): checks that the harness runs
    python -m flosssweep.bench --device cuda   # the trainer and flossing sections on a GPU
    python -m flosssweep.bench --device cuda --section gpu   # only the GPU section (flosssweep.bench.gpu)
    python -m flosssweep.bench --section adaptive            # only adaptive placement (flosssweep.bench.adaptive)
    python -m flosssweep.bench --section diagnostics   # only what the diagnostics over training cost
    python -m flosssweep.bench --out DIR       # where bench.json and bench.md go (default bench_out)

Sections (all in one run unless --skip names some):

* trainer: realization-epochs per second of `Trial.train_step` (one fresh batch, forward, backward,
  clipped Adam step) for `rnn` ensembles R in {1, 4, 16, 64} and `lstm`, `gru` at R in {1, 16},
  without flossing and with a flossing loss at every epoch (floss.mode regularizer, k = 16,
  Tp = 55), N = 80, T = 300, B = 16.
* threads: the rnn, lstm and gru trainers at R = 16 on two threads (machines with 2+ cores), for
  sweeps that run fewer trials than cores.
* baseline: the same rnn epochs written the way one would by hand: one realization at a time, a
  torch.nn-style module with a Python loop over time steps, flossing through `torch.func.jvp`.
  Every rnn figure is also given as a ratio against it (same flossing setting, same run).
* torch: torch.nn.RNN / LSTM / GRU, one realization, Adam on binary cross-entropy, same sizes.
* peak: the core's float32 matmul rate (a 1024 x 1024 product, one thread).
* floor: the rnn R = 16 epoch with no overhead at all: its unavoidable ops (per-step products,
  tanh, the adjoint's multiply-add, the weight-gradient product) timed alone and added up.
* floss: one flossing step (spectrum forward + backward to the flossed weights) for N = 80,
  Tp = 55: rnn at k in {1, 16, 75}, lstm and gru at k = 16, fast path vs the generic jvp path.

The ratios of issue 12's targets (rnn GFLOP/s over the peak, gated R = 16 over torch.nn, the lstm
flossing step over the rnn's) are printed at the end, from figures of the same run.
* ray: Ray Tune overhead per trial: wall time of a sweep of near-empty trials (1 epoch of a tiny
  model) divided by their number, for the project's trainable (flosssweep.run) and for a minimal
  function trainable.
* report: `flosssweep.report.curves` on 10^5 and 10^6 synthetic record rows.

Every timed figure is the best of `--repeats` measurements (with the median alongside): other
processes on a shared machine only ever make a measurement slower. The load average before each
section is recorded with it. CPU time of the process is reported next to wall time for the
single-threaded sections, since it is less sensitive to other processes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from flosssweep.bench import adaptive, diagnostics, gpu, references
from flosssweep.bench.common import BenchError, calibrate, measure, trainer_config
from flosssweep.bench.tables import markdown
from flosssweep.sweep import overhead

SECTIONS = ("trainer", "threads", "baseline", "torch", "peak", "floor", "floss", "ray", "report")
GATED = ("lstm", "gru")

FULL = {
    "hidden": 80,
    "length": 300,
    "batch": 16,
    "delay": 10,
    "ensembles": [1, 4, 16, 64],
    "gated_ensembles": [1, 16],
    "train_k": 16,
    "strength": 0.01,
    "horizon": 55,
    "warmup": 16,
    "floss_ks": [1, 16, 75],
    "ray_trials": 32,
    "report_rows": [10**5, 10**6],
    "seconds": 2.0,
    "floss_calls": 20,
    "peak_size": 1024,
}
QUICK = {
    "hidden": 12,
    "length": 30,
    "batch": 4,
    "delay": 4,
    "ensembles": [1, 4],
    "gated_ensembles": [1, 4],
    "train_k": 2,
    "strength": 0.01,
    "horizon": 12,
    "warmup": 4,
    "floss_ks": [1, 2],
    "ray_trials": 4,
    "report_rows": [10**3, 10**4],
    "seconds": 0.05,
    "floss_calls": 2,
    "peak_size": 128,
}


def bench_trainer(
    sizes: dict, ensemble: int, flossing: bool, device: str, repeats: int, arch: str = "rnn", threads: int = 1
) -> dict:
    from flosssweep.train import ParityTrial as Trial

    trial = Trial(trainer_config(sizes, ensemble, flossing, device, arch, threads))
    epochs = trial.config["train"]["epochs"]

    def epoch() -> None:
        trial.train_step()
        trial.epoch = (trial.epoch + 1) % epochs  # steady state: the epoch counter only indexes the log

    torch.set_num_threads(threads)
    try:
        calls = calibrate(epoch, sizes["seconds"], device)
        timing = measure(epoch, calls=calls, repeats=repeats, device=device)
    finally:
        torch.set_num_threads(1)
    return {
        "arch": arch,
        "ensemble": ensemble,
        "threads": threads,
        "flossing": flossing,
        **timing,
        "rate": ensemble / timing["wall_best"],
        "rate_median": ensemble / timing["wall_median"],
        "rate_cpu": ensemble / timing["cpu_best"],
    }


class NaiveRNN(torch.nn.Module):
    """One realization of the vanilla RNN, written the obvious way: parameters as nn.Parameters,
    a Python loop over time steps, states collected in a list."""

    def __init__(self, hidden: int, seed: int = 0, relax_steps: int = 100):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        n = hidden
        self.J = torch.nn.Parameter(torch.randn(n, n, generator=gen) / math.sqrt(n))
        self.W_in = torch.nn.Parameter(torch.randn(n, 1, generator=gen))
        self.w_out = torch.nn.Parameter(torch.randn(1, n, generator=gen))
        self.b = torch.nn.Parameter(0.1 * torch.rand(n, generator=gen))
        x0 = torch.randn(n, generator=gen)
        with torch.no_grad():
            for _ in range(relax_steps):
                x0 = self.J @ torch.tanh(x0) + self.b
        self.x0 = torch.nn.Parameter(x0)
        self.c = torch.nn.Parameter(torch.full((1,), 0.001))

    def step(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) @ self.J.T + self.b + s @ self.W_in.T

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs (T, B, 1) -> logits (T, B)."""
        x = self.x0.expand(inputs.shape[1], -1)
        states = []
        for t in range(inputs.shape[0]):
            x = self.step(x, inputs[t])
            states.append(x)
        return (torch.stack(states) @ self.w_out.T + self.c)[..., 0]

    def spectrum(self, inputs: torch.Tensor, k: int, warmup: int) -> torch.Tensor:
        """The k largest Lyapunov exponents along one trajectory: the tangent frame is pushed with
        Jacobian-vector products (torch.func.jvp, vmapped over the k columns), then QR."""
        x = self.x0.unsqueeze(0)
        gen = torch.Generator().manual_seed(1)
        Q = torch.linalg.qr(torch.randn(x.shape[1], k, generator=gen))[0]
        total = 0.0
        for t in range(inputs.shape[0]):
            s = inputs[t]

            def push(q, x=x, s=s):
                return torch.func.jvp(lambda y: self.step(y, s), (x,), (q.unsqueeze(0),))[1][0]

            Q = torch.func.vmap(push, in_dims=1, out_dims=1)(Q)
            x = self.step(x, s)
            Q, R = torch.linalg.qr(Q)
            if t >= warmup:
                total = total + torch.log(torch.diagonal(R).abs().clamp_min(1e-30))
        return total / (inputs.shape[0] - warmup)


def bench_baseline(sizes: dict, flossing: bool, device: str, repeats: int) -> dict:
    if device != "cpu":
        return {"flossing": flossing, "skipped": "the hand-written baseline is measured on the CPU only"}
    torch.manual_seed(0)
    model = NaiveRNN(sizes["hidden"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    T, B, d = sizes["length"], sizes["batch"], sizes["delay"]

    def epoch() -> None:
        bits = torch.randint(0, 2, (B, T)).float()
        targets = torch.zeros_like(bits)
        targets[:, d:] = bits[:, :-d]
        logits = model(bits.T.unsqueeze(-1))
        loss = F.binary_cross_entropy_with_logits(logits[d:], targets.T[d:])
        if flossing:
            horizon = torch.randint(0, 2, (sizes["horizon"], 1, 1)).float()
            exponents = model.spectrum(horizon, sizes["train_k"], sizes["warmup"])
            loss = loss + sizes["strength"] * (exponents**2).mean()
        optimizer.zero_grad()
        loss.backward()
        for p in model.parameters():
            torch.nn.utils.clip_grad_norm_(p, 0.03)
        optimizer.step()

    calls = calibrate(epoch, sizes["seconds"])
    timing = measure(epoch, calls=calls, repeats=repeats)
    return {
        "flossing": flossing,
        **timing,
        "rate": 1 / timing["wall_best"],
        "rate_median": 1 / timing["wall_median"],
        "rate_cpu": 1 / timing["cpu_best"],
    }


# -- one flossing step ------------------------------------------------------------------------
def bench_floss_step(sizes: dict, k: int, analytic: bool, device: str, repeats: int, arch: str = "rnn") -> dict:
    from flosssweep import models
    from flosssweep.floss import floss_loss, model_spectrum
    from flosssweep.streams import MemberStreams
    from flosssweep.train import member_generators

    model = models.ARCHITECTURES[arch](sizes["hidden"])
    params = models.init_params(model, member_generators(0, 1), device=device)
    flossed = [params[name] for name in model.flossed]
    inputs_stream = MemberStreams(0, 1, stream=2, device=device)
    Tp = sizes["horizon"]

    def step() -> None:
        inputs = inputs_stream.bits((Tp,)).T.reshape(Tp, 1, 1, 1)
        exponents = model_spectrum(model, params, inputs, k, warmup=sizes["warmup"], analytic=analytic)
        torch.autograd.grad(floss_loss(exponents).sum(), flossed)

    step()
    timing = measure(step, calls=sizes["floss_calls"], repeats=repeats, device=device)
    return {
        "arch": arch,
        "k": k,
        "tangent": "analytic" if analytic else "generic",
        "hidden": sizes["hidden"],
        "horizon": Tp,
        **timing,
    }


# -- the report ---------------------------------------------------------------------------------
def bench_report(rows: int, repeats: int) -> dict:
    from flosssweep import report

    started = time.perf_counter()
    table = report.synthetic_records(rows, seed=0)
    generate = time.perf_counter() - started
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        report.aggregate(table)
        walls.append(time.perf_counter() - started)
    return {
        "rows": rows,
        "seconds_best": min(walls),
        "seconds_median": statistics.median(walls),
        "generate_seconds": generate,
    }


# -- the machine --------------------------------------------------------------------------------
def machine(device: str) -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    info = {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_at_start": os.getloadavg()[0],
        "torch": torch.__version__,
        "python": platform.python_version(),
        "commit": commit,
        "device": device,
        "torch_threads": 1,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


# -- Markdown -----------------------------------------------------------------------------------
# -- command line -------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flosssweep.bench",
        description="Measure trainer throughput, the flossing step, Ray overhead "
        "and report aggregation; write bench.json and bench.md.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, 1-4 minutes (most of it Ray's start and its small sweeps): checks the harness, not the speed",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="device of the trainer and flossing sections (default cpu)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench_out"), help="output folder (default bench_out)")
    parser.add_argument(
        "--skip",
        nargs="*",
        choices=SECTIONS,
        default=[],
        metavar="SECTION",
        help="sections to leave out: " + ", ".join(SECTIONS),
    )
    parser.add_argument("--repeats", type=int, default=None, help="measurements per figure (default 5, quick 1)")
    parser.add_argument(
        "--section",
        choices=("all", "gpu", "adaptive", "diagnostics"),
        default="all",
        help="all: the sections above (less --skip); gpu: only the GPU section, eager and graphed epochs "
        "at R up to 1024, packing, torch.nn and issue 23's targets (gpu.json, gpu.md); adaptive: only the "
        "simulation of adaptive delay placement against a fixed grid (adaptive.json, adaptive.md); "
        "diagnostics: only the cost of the diagnostics over training per epoch (diagnostics.json, diagnostics.md)",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise BenchError(
            "--device cuda: CUDA is not available on this machine (torch "
            f"{torch.__version__}, cuda build {torch.version.cuda or 'none'})"
        )
    torch.set_num_threads(1)
    if args.section == "adaptive":
        return {**adaptive.run(args.quick), "machine": machine("cpu")}
    if args.section == "gpu":
        return {
            **gpu.run(args.device, args.quick, args.repeats or (1 if args.quick else 3)),
            "machine": machine(args.device),
        }
    if args.section == "diagnostics":
        return {
            **diagnostics.run(args.device, args.quick, args.repeats or (1 if args.quick else 5)),
            "machine": machine(args.device),
        }
    sizes = dict(QUICK if args.quick else FULL)
    repeats = args.repeats or (1 if args.quick else 5)
    skip = set(args.skip)
    results: dict = {
        "quick": args.quick,
        "sizes": sizes,
        "repeats": repeats,
        "machine": machine(args.device),
        "load": {},
    }

    def section(name: str, work: Callable[[], object]) -> None:
        if name in skip:
            return
        results["load"][name] = os.getloadavg()[0]
        print(f"[bench] {name} (load {results['load'][name]:.2f}) ...", file=sys.stderr, flush=True)
        results[name] = work()

    runs = [("rnn", R) for R in sizes["ensembles"]] + [(arch, R) for arch in GATED for R in sizes["gated_ensembles"]]
    section(
        "trainer",
        lambda: [
            bench_trainer(sizes, R, flossing, args.device, repeats, arch)
            for arch, R in runs
            for flossing in (False, True)
        ],
    )
    section(
        "threads",
        lambda: (
            [
                bench_trainer(sizes, max(sizes["gated_ensembles"]), False, args.device, repeats, arch, threads=2)
                for arch in ("rnn", *GATED)
            ]
            if args.device == "cpu" and (os.cpu_count() or 1) >= 2
            else []
        ),
    )
    section("baseline", lambda: [bench_baseline(sizes, flossing, args.device, repeats) for flossing in (False, True)])
    section(
        "torch",
        lambda: (
            [references.bench_torch_net(arch, sizes, measure, calibrate, repeats) for arch in references.TORCH_NETS]
            if args.device == "cpu"
            else []
        ),
    )
    section("peak", lambda: references.bench_peak(sizes["peak_size"], measure, calibrate, sizes["seconds"], repeats))
    section(
        "floor",
        lambda: references.bench_rnn_floor(sizes, max(sizes["gated_ensembles"]), measure, calibrate, repeats),
    )
    steps = [("rnn", k) for k in sizes["floss_ks"]] + [(arch, sizes["train_k"]) for arch in GATED]
    section(
        "floss",
        lambda: [
            bench_floss_step(sizes, k, analytic, args.device, repeats, arch)
            for arch, k in steps
            for analytic in (True, False)
        ],
    )
    section("ray", lambda: overhead.bench_ray(sizes, max(1, min(repeats, 2))))
    section("report", lambda: [bench_report(rows, max(1, min(repeats, 3))) for rows in sizes["report_rows"]])
    results["machine"]["load_at_end"] = os.getloadavg()[0]
    results["ratios"] = references.ratios(results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = run(args)
    except BenchError as err:
        print(f"flosssweep.bench: error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    name = args.section if args.section in ("gpu", "adaptive", "diagnostics") else "bench"
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1))
    if args.section == "adaptive":
        table = adaptive.markdown(results, results["machine"])
    elif args.section == "gpu":
        table = gpu.markdown(results, results["machine"])
    elif args.section == "diagnostics":
        table = diagnostics.markdown(results)
    else:
        table = markdown(results)
    (args.out / f"{name}.md").write_text(table + "\n")
    print(table)
    print(f"written: {args.out / f'{name}.json'}, {args.out / f'{name}.md'}", file=sys.stderr)
    return 0
