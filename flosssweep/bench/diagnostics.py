"""`python -m flosssweep.bench --section diagnostics`: what the diagnostics over training cost per epoch.

One run times, on the same trial (rnn, N = 80, T = 300, B = 16, R = 16, k = 80, Tp = 55: the
settings of horizon_xor.yaml), the training epoch, the diagnostics of one report (the spectrum
estimate whose k exponents are kept) and those of one stage (the spectrum, the Tp-step Jacobian's
singular values and the gradient against the lag). The overhead per epoch at a report interval r
over E epochs is (report / r + 3 stages / E) / epoch; it is printed for the default interval.
"""

from __future__ import annotations

import torch

from flosssweep.bench.common import calibrate, measure
from flosssweep.config import SCHEMA, resolve

SIZES = {"hidden": 80, "length": 300, "batch": 16, "delay": 20, "ensemble": 16, "k": 80, "horizon": 55, "epochs": 3000}
QUICK = {"hidden": 12, "length": 30, "batch": 4, "delay": 4, "ensemble": 4, "k": 4, "horizon": 12, "epochs": 100}
STAGES = 3  # before training, after pre-flossing, at the end


def run(device: str, quick: bool, repeats: int) -> dict:
    from flosssweep.train import ParityTrial

    sizes = QUICK if quick else SIZES
    config = resolve(
        {
            "ensemble": sizes["ensemble"],
            "device": device,
            "model.hidden": sizes["hidden"],
            "task.bits": 2,
            "task.delay": sizes["delay"],
            "train.length": sizes["length"],
            "train.batch": sizes["batch"],
            "train.epochs": sizes["epochs"],
            "train.success_window": 1,
            "floss.mode": "none",
            "floss.k": sizes["k"],
            "floss.horizon": sizes["horizon"],
            "floss.warmup": min(16, sizes["horizon"] - 1),
        }
    )
    trial = ParityTrial(config)
    epochs = config["train"]["epochs"]
    seconds = 0.05 if quick else 2.0

    def epoch() -> None:
        trial.train_step()
        trial.epoch = (trial.epoch + 1) % epochs

    def fresh(stage: str):
        def observe() -> None:
            trial._state_spectrum = None  # a new state each call, as at every report
            trial.stage_curves(stage)

        return observe

    timings = {}
    for name, work in (("epoch", epoch), ("report", fresh("train")), ("stage", fresh("final"))):
        timings[name] = measure(work, calls=calibrate(work, seconds, device), repeats=repeats, device=device)
    every = SCHEMA["train.report_every"].default
    per_epoch = timings["report"]["wall_best"] / every + STAGES * timings["stage"]["wall_best"] / epochs
    return {
        "sizes": sizes,
        "report_every": every,
        "epochs": epochs,
        "timings": timings,
        "overhead": per_epoch / timings["epoch"]["wall_best"],
        "overhead_cpu": (timings["report"]["cpu_best"] / every + STAGES * timings["stage"]["cpu_best"] / epochs)
        / timings["epoch"]["cpu_best"],
        "threads": torch.get_num_threads(),
    }


def markdown(results: dict) -> str:
    t, s = results["timings"], results["sizes"]
    lines = [
        f"Diagnostics over training: rnn N = {s['hidden']}, T = {s['length']}, B = {s['batch']}, "
        f"R = {s['ensemble']}, k = {s['k']}, Tp = {s['horizon']}, {results['epochs']} epochs",
        "",
        "| what | wall ms (best) | wall ms (median) | CPU ms (best) |",
        "|---|---:|---:|---:|",
    ]
    for name, label in (
        ("epoch", "one training epoch"),
        ("report", "diagnostics of a report"),
        ("stage", "of a stage"),
    ):
        lines.append(
            f"| {label} | {t[name]['wall_best'] * 1e3:.2f} | {t[name]['wall_median'] * 1e3:.2f} | "
            f"{t[name]['cpu_best'] * 1e3:.2f} |"
        )
    lines += [
        "",
        f"Overhead per epoch at report_every = {results['report_every']}: {results['overhead'] * 100:.2f}% "
        f"(CPU time: {results['overhead_cpu'] * 100:.2f}%)",
    ]
    return "\n".join(lines)
