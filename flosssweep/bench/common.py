"""What every section of the benchmark shares: the timing loop and the configuration of the trainer it times."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import torch


class BenchError(Exception):
    """A benchmark that cannot run here (one line for the user)."""


# -- timing -------------------------------------------------------------------------------------
def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(run: Callable[[], None], *, calls: int, repeats: int, device: str = "cpu") -> dict:
    """`repeats` measurements of `calls` calls of `run`: best and median wall and CPU seconds per call."""
    walls, cpus = [], []
    for _ in range(repeats):
        _sync(device)
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(calls):
            run()
        _sync(device)
        walls.append((time.perf_counter() - wall) / calls)
        cpus.append((time.process_time() - cpu) / calls)
    return {
        "wall_best": min(walls),
        "wall_median": statistics.median(walls),
        "cpu_best": min(cpus),
        "cpu_median": statistics.median(cpus),
        "calls": calls,
        "repeats": repeats,
    }


def calibrate(run: Callable[[], None], seconds: float, device: str = "cpu", most: int = 10_000) -> int:
    """How many calls of `run` take about `seconds` (after one warm-up call)."""
    run()
    _sync(device)
    started = time.perf_counter()
    run()
    _sync(device)
    once = max(time.perf_counter() - started, 1e-6)
    return max(1, min(most, math.ceil(seconds / once)))


# -- the trainer --------------------------------------------------------------------------------
def trainer_config(
    sizes: dict, ensemble: int, flossing: bool, device: str, arch: str = "rnn", threads: int = 1
) -> dict:
    from flosssweep.config import resolve

    floss = {"floss.mode": "none"}
    if flossing:
        floss = {
            "floss.mode": "regularizer",
            "floss.strength": sizes["strength"],
            "floss.k": sizes["train_k"],
            "floss.horizon": sizes["horizon"],
            "floss.warmup": sizes["warmup"],
        }
    return resolve(
        {
            "ensemble": ensemble,
            "device": device,
            "threads": threads,
            "model.arch": arch,
            "model.hidden": sizes["hidden"],
            "task.bits": 1,
            "task.delay": sizes["delay"],
            "train.length": sizes["length"],
            "train.batch": sizes["batch"],
            "train.epochs": 1000,
            "train.success_window": 1,
            **floss,
        }
    )
