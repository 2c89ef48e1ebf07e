"""Ray's cost per trial, for the benchmark: sweeps of near-empty trials, bare and through the project's driver."""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from flosssweep.sweep.loopback import loopback_only
from flosssweep.tracking.uris import sqlite_uri


class OverheadUnavailable(Exception):
    """The project's sweep path could not run; the benchmark reports the section as skipped."""


def _quiet_ray_env() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")


def _minimal_trainable(config: dict) -> None:
    from ray import tune

    tune.report({"charts/success_rate": 1.0, "epoch": 1})


def _overhead_sweep(trials: int) -> dict:
    """A sweep file (as a dict) of `trials` near-empty trials: one epoch of a tiny network."""
    return {
        "name": "bench-ray-overhead",
        "search": "grid",
        "max_concurrent": 2,
        "resources": {"cpu": 1, "gpu": 0},
        "base": {
            "model": {"hidden": 8},
            "task": {"bits": 1, "delay": 2},
            "train": {"epochs": 1, "length": 10, "batch": 2, "success_window": 1},
            "floss": {"mode": "none"},
            "ensemble": 1,
        },
        "space": {"seed": {"grid": list(range(trials))}},
    }


def bench_ray(sizes: dict, repeats: int) -> dict:
    """Per-trial overhead as the wall time of a sweep of near-empty trials over their number, at
    two sweep sizes, which also splits it into a fixed cost per sweep and a marginal cost per trial."""
    _quiet_ray_env()
    sizes_n = sorted({max(1, sizes["ray_trials"] // 8), sizes["ray_trials"]})
    out: dict = {"trials": sizes["ray_trials"], "sizes": sizes_n}
    started = time.perf_counter()
    with loopback_only(True):
        import ray

        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=True,
            logging_level="ERROR",
        )
    out["ray_init_seconds"] = time.perf_counter() - started
    try:
        with tempfile.TemporaryDirectory(prefix="flosssweep-bench-") as tmp:
            out["minimal"] = _overhead(lambda n, i: _minimal_sweep(tmp, n, i), sizes_n, repeats)
            out["project"] = _overhead(lambda n, i: _project_sweep(tmp, n, i), sizes_n, repeats)
    finally:
        ray.shutdown()
    return out


def _overhead(sweep: Callable[[int, int], float], sizes_n: list[int], repeats: int) -> dict:
    walls: dict[int, list[float]] = {n: [] for n in sizes_n}
    try:
        for i in range(repeats):
            for n in sizes_n:
                walls[n].append(sweep(n, i))
    except OverheadUnavailable as err:
        return {"skipped": str(err)}
    n, best = sizes_n[-1], {m: min(w) for m, w in walls.items()}
    result = {
        "per_trial_best": best[n] / n,
        "per_trial_median": statistics.median(walls[n]) / n,
        "walls": {str(m): w for m, w in walls.items()},
    }
    if len(sizes_n) > 1:
        # One estimate per repeat (the two sizes timed back to back), then their median and range: a
        # difference of two noisy wall times can come out negative, which is noise, not a cost.
        small = sizes_n[0]
        marginal = [(big - little) / (n - small) for big, little in zip(walls[n], walls[small])]
        fixed = [little - m * small for little, m in zip(walls[small], marginal)]
        result["marginal_per_trial"] = statistics.median(marginal)
        result["marginal_range"] = [min(marginal), max(marginal)]
        result["fixed_per_sweep"] = statistics.median(fixed)
        result["repeats"] = len(marginal)
    return result


def _minimal_sweep(tmp: str, trials: int, i: int) -> float:
    """A function trainable that reports once, through tune.Tuner with actor reuse."""
    from ray import tune

    tuner = tune.Tuner(
        _minimal_trainable,
        param_space={"i": tune.grid_search(list(range(trials)))},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=2),
        run_config=tune.RunConfig(name=f"minimal-{trials}-{i}", storage_path=tmp, verbose=0),
    )
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        tuner.fit()
    return time.perf_counter() - started


def _project_sweep(tmp: str, trials: int, i: int) -> float:
    """The whole `python -m flosssweep.run` path (validation, MLflow parent run, the project's
    trainable and TuneConfig, the driver-side MLflow callback) on a sweep of near-empty trials."""
    try:
        import yaml

        from flosssweep.sweep import driver
    except ImportError as err:
        raise OverheadUnavailable(f"flosssweep.sweep.driver not importable: {err}") from None
    sweep_file = Path(tmp, f"overhead-{trials}.yaml")
    sweep_file.write_text(yaml.safe_dump(_overhead_sweep(trials)))
    argv = [
        str(sweep_file),
        "--tracking-uri",
        sqlite_uri(f"{tmp}/mlflow-{trials}-{i}.db"),
        "--storage-path",
        str(Path(tmp, f"ray-{trials}-{i}")),
        "--address",
        "local",
        "--num-cpus",
        "2",
    ]
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            code = driver.main(argv)
    except Exception as err:  # noqa: BLE001 - the sweep service is another module's: report, do not crash the bench
        raise OverheadUnavailable(f"flosssweep.sweep.driver.main failed: {type(err).__name__}: {err}") from None
    if code != 0:
        raise OverheadUnavailable(f"flosssweep.sweep.driver.main exited with status {code}")
    return time.perf_counter() - started
