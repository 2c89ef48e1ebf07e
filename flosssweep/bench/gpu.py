"""The GPU section: what one GPU trains, eager and as CUDA graphs, in one prepared run.

    python -m flosssweep.bench --device cuda --section gpu           # under 8 minutes on one GPU
    python -m flosssweep.bench --device cpu --quick --section gpu    # the same code at tiny sizes

It measures, in one process and one run (docs/PERFORMANCE.md, "GPU: how to run part 2"):

* epochs: realization-epochs per second of the parity trainer for rnn, lstm and gru at R = 1, 16,
  64, 256 and 1024, eager and graphed (`train.graph`; on a CPU the graphed structure runs with the
  capture replaced by eager calls), and the device's peak memory during each;
* floss: one flossing step (spectrum, backward, Adam) of an rnn trial at k = 16 and 75, R = 1 and 16;
* packing: 4 trials at R = 16 sharing the device (one thread and one CUDA stream each, the way
  `resources: {gpu: 0.25}` packs them, except that Ray would use 4 processes) against one trial at
  R = 64;
* torch: torch.nn.RNN / LSTM / GRU for one realization on the same device;
* checks: the streams' bits on the device equal the CPU's, and graphed epochs train what eager ones
  train (largest difference after `check_epochs` epochs of rnn and lstm trials);
* the targets as ratios of figures of this run, and paper_delay_scan.yaml projected onto one device.

A figure that fails (out of memory, a capture the device refuses) is recorded as its error and the
run goes on: the run is meant to be made once.
"""

from __future__ import annotations

import contextlib
import threading
import time

import torch

from flosssweep.bench import references
from flosssweep.bench.common import calibrate, measure, trainer_config
from flosssweep.bench.tables import _fmt, _table
from flosssweep.config import resolve
from flosssweep.streams import MemberStreams
from flosssweep.train import ParityTrial
from flosssweep.train.graph import epoch_runner

ARCHS = ("rnn", "lstm", "gru")
FULL = {
    "hidden": 80,
    "length": 300,
    "batch": 16,
    "delay": 10,
    "ensembles": [1, 16, 64, 256, 1024],
    "floss_ks": [16, 75],
    "floss_ensembles": [1, 16],
    "horizon": 55,
    "warmup": 16,
    "pack_ensemble": 16,
    "pack_trials": 4,
    "target_ensemble": 256,
    "check_epochs": 20,
    "seconds": 0.4,
}
QUICK = {
    "hidden": 12,
    "length": 30,
    "batch": 4,
    "delay": 4,
    "ensembles": [1, 4],
    "floss_ks": [2, 8],
    "floss_ensembles": [1, 2],
    "horizon": 12,
    "warmup": 4,
    "pack_ensemble": 2,
    "pack_trials": 4,
    "target_ensemble": 4,
    "check_epochs": 3,
    "seconds": 0.02,
}
# paper_delay_scan.yaml: 2 tasks x 10 delays x 3 schedules; 500 flossing steps before training (pre,
# pre+during) and 2 episodes of 500 (pre+during); a spectrum estimate every 50 epochs.
PAPER = {"trials": 60, "ensemble": 16, "epochs": 3000, "floss_steps": 20 * 500 + 20 * 1500, "report_every": 50}


def _error(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:200]


def _parity_trial(sizes: dict, arch: str, ensemble: int, device: str, graph: str) -> ParityTrial:
    config = trainer_config(sizes, ensemble, False, device, arch)
    config["train"]["graph"] = graph
    return ParityTrial(config)


def _steady(trial: ParityTrial):
    epochs = trial.config["train"]["epochs"]

    def epoch() -> None:
        trial.train_step()
        trial.epoch = (trial.epoch + 1) % epochs  # steady state: the epoch counter only indexes the log

    return epoch


def bench_epochs(sizes: dict, arch: str, ensemble: int, device: str, repeats: int) -> list[dict]:
    """The eager and the graphed epoch of one trial: rate, epoch time and peak device memory."""
    cuda = device == "cuda"
    rows = []
    try:
        trial = _parity_trial(sizes, arch, ensemble, device, "off")
    except torch.cuda.OutOfMemoryError as err:
        return [{"arch": arch, "ensemble": ensemble, "mode": mode, "error": _error(err)} for mode in ("eager", "graph")]
    epoch = _steady(trial)
    for mode in ("eager", "graph"):
        row = {"arch": arch, "ensemble": ensemble, "mode": mode}
        try:
            if mode == "graph":
                trial.epoch_step = epoch_runner(trial, capture=cuda)
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            timing = measure(epoch, calls=calibrate(epoch, sizes["seconds"], device), repeats=repeats, device=device)
            row.update(timing, rate=ensemble / timing["wall_best"])
            row["memory_bytes"] = torch.cuda.max_memory_allocated() if cuda else None
        except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
            row["error"] = _error(err)
        rows.append(row)
    del trial
    if cuda:
        torch.cuda.empty_cache()
    return rows


def bench_floss(sizes: dict, k: int, ensemble: int, device: str, repeats: int) -> dict:
    """One flossing step of an rnn trial: spectrum of k exponents, its backward, the flossing Adam."""
    config = resolve(
        {
            "ensemble": ensemble,
            "device": device,
            "model.hidden": sizes["hidden"],
            "task.delay": sizes["delay"],
            "train.length": sizes["length"],
            "train.batch": sizes["batch"],
            "train.epochs": 1,
            "train.success_window": 1,
            "floss.mode": "pre",
            "floss.k": k,
            "floss.horizon": sizes["horizon"],
            "floss.warmup": sizes["warmup"],
        }
    )
    row = {"k": k, "ensemble": ensemble}
    try:
        trial = ParityTrial(config)

        def step() -> None:
            trial.flosser.run(1, trial.active)

        row.update(measure(step, calls=calibrate(step, sizes["seconds"], device), repeats=repeats, device=device))
    except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
        row["error"] = _error(err)
    return row


def bench_packing(sizes: dict, device: str, repeats: int) -> dict:
    """`pack_trials` trials of R = `pack_ensemble` run side by side (a thread and a stream each),
    against one trial of R = pack_trials x pack_ensemble; both as `train.graph: auto` runs them."""
    n, R = sizes["pack_trials"], sizes["pack_ensemble"]
    cuda = device == "cuda"
    try:
        one = _parity_trial(sizes, "rnn", n * R, device, "auto")
        single = _steady(one)
        calls = calibrate(single, sizes["seconds"], device)
        alone = measure(single, calls=calls, repeats=repeats, device=device)
        trials = [_parity_trial(sizes, "rnn", R, device, "auto") for _ in range(n)]
        epochs = [_steady(t) for t in trials]
        for epoch in epochs:  # captures happen here, one at a time: a capture must not overlap other work
            epoch()
        streams = [torch.cuda.Stream() if cuda else None for _ in trials]

        def work(epoch, stream) -> None:
            with torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
                for _ in range(calls):
                    epoch()

        walls = []
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            threads = [threading.Thread(target=work, args=pair) for pair in zip(epochs, streams)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if cuda:
                torch.cuda.synchronize()
            walls.append(time.perf_counter() - started)
    except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
        return {"trials": n, "ensemble": R, "error": _error(err)}
    return {
        "trials": n,
        "ensemble": R,
        "epochs": calls,
        "packed_rate": n * R * calls / min(walls),
        "single_rate": n * R / alone["wall_best"],
    }


def checks(sizes: dict, device: str) -> dict:
    """The device against the CPU where they must agree: bits of the streams (exactly), and graphed
    against eager epochs from the same initial state (up to float32 round-off on a GPU)."""
    out: dict = {}
    shape = (sizes["batch"], sizes["length"])
    out["streams_equal_cpu"] = bool(
        torch.equal(MemberStreams(0, 4, device=device).bits(shape).cpu(), MemberStreams(0, 4).bits(shape))
    )
    for arch in ("rnn", "lstm"):
        try:
            eager = _parity_trial(sizes, arch, sizes["pack_ensemble"], device, "off")
            graphed = _parity_trial(sizes, arch, sizes["pack_ensemble"], device, "off")
            graphed.epoch_step = epoch_runner(graphed, capture=device == "cuda")
            for trial in (eager, graphed):
                for _ in range(sizes["check_epochs"]):
                    trial.train_step()
                    trial.epoch += 1
                trial.read_back()
            out[f"{arch}_graph_max_param_difference"] = max(
                float((graphed.params[name] - eager.params[name]).detach().abs().max()) for name in eager.params
            )
            epochs = sizes["check_epochs"]
            out[f"{arch}_graph_max_loss_difference"] = float((graphed.loss[:epochs] - eager.loss[:epochs]).abs().max())
        except (RuntimeError, torch.cuda.OutOfMemoryError) as err:
            out[f"{arch}_graph_error"] = _error(err)
    return out


def _rate(rows: list[dict], arch: str, ensemble: int, mode: str) -> float | None:
    for r in rows:
        if (r["arch"], r["ensemble"], r["mode"]) == (arch, ensemble, mode) and "rate" in r:
            return r["rate"]
    return None


def targets(results: dict) -> dict:
    """Issue 23's targets from figures of this run (None where a figure is missing)."""
    sizes, rows = results["sizes"], results["epochs"]
    small, large = sizes["ensembles"][0], sizes["target_ensemble"]
    out: dict = {}
    rates = {m: (_rate(rows, "rnn", small, m), _rate(rows, "rnn", large, m)) for m in ("eager", "graph")}
    for mode, (r1, rl) in rates.items():
        # epoch wall time at R = large over R = 1: (large / rate_large) / (small / rate_small)
        out[f"rnn_epoch_R{large}_over_R{small}_{mode}"] = (large / rl) / (small / r1) if r1 and rl else None
    net = next((r["rate"] for r in results["torch"] if r["arch"] == "rnn" and "rate" in r), None)
    best = max((r["rate"] for r in rows if r["arch"] == "rnn" and "rate" in r), default=None)
    out["rnn_best_over_nn_rnn"] = best / net if best and net else None
    out["paper_delay_scan_minutes"] = projection(results)
    return out


def projection(results: dict) -> float | None:
    """Minutes of paper_delay_scan.yaml on one device: its realization-epochs at the packed rate
    (trials of R = pack_ensemble side by side), plus its flossing steps and spectrum estimates at the
    measured step time of the largest k, counted one after another (no packing assumed for them)."""
    sizes, pack = results["sizes"], results["packing"]
    floss = [f for f in results["floss"] if f["ensemble"] == sizes["floss_ensembles"][-1] and "wall_best" in f]
    if "packed_rate" not in pack or not floss:
        return None
    step = max(floss, key=lambda f: f["k"])["wall_best"]
    p = PAPER
    training = p["trials"] * p["ensemble"] * p["epochs"] / pack["packed_rate"]
    spectra = p["floss_steps"] + p["trials"] * p["epochs"] // p["report_every"]
    return (training + spectra * step) / 60


def run(device: str, quick: bool, repeats: int) -> dict:
    sizes = dict(QUICK if quick else FULL)
    results: dict = {"section": "gpu", "quick": quick, "sizes": sizes, "repeats": repeats, "device": device}
    if device == "cuda":
        results["gpu"] = torch.cuda.get_device_name()
        results["memory_total_bytes"] = torch.cuda.get_device_properties(0).total_memory
    results["epochs"] = [
        row for arch in ARCHS for R in sizes["ensembles"] for row in bench_epochs(sizes, arch, R, device, repeats)
    ]
    results["floss"] = [
        bench_floss(sizes, k, R, device, repeats) for k in sizes["floss_ks"] for R in sizes["floss_ensembles"]
    ]
    results["packing"] = bench_packing(sizes, device, repeats)
    results["torch"] = [
        references.bench_torch_net(arch, sizes, measure, calibrate, repeats, device) for arch in references.TORCH_NETS
    ]
    results["targets"] = targets(results)
    results["checks"] = checks(sizes, device)
    return results


def markdown(results: dict, machine: dict) -> str:
    s = results["sizes"]
    where = results.get("gpu") or f"{machine['cpu']} (CPU)"
    lines = [
        f"# flosssweep GPU section ({'quick' if results['quick'] else 'full'})",
        "",
        f"Device: {where}; torch {machine['torch']}; commit {machine['commit'] or '?'}; {machine['date']}; "
        f"N={s['hidden']}, T={s['length']}, B={s['batch']}.",
        "",
    ]
    rows = []
    for r in results["epochs"]:
        memory = r.get("memory_bytes")
        rows.append(
            f"| {r['arch']} | {r['ensemble']} | {r['mode']} | "
            + (
                f"{r['error']} | - | - |"
                if "error" in r
                else f"{_fmt(1e3 * r['wall_best'])} | {_fmt(r['rate'])} | "
                f"{_fmt(memory / 2**20) if memory is not None else '-'} |"
            )
        )
    lines += _table(
        "## Epochs: realization-epochs per second, eager and graphed",
        "| arch | R | epoch | epoch (ms) | real.-epochs/s | peak memory (MiB) |",
        "|---|---:|---|---:|---:|---:|",
        rows,
    )
    rows = [
        f"| {f['k']} | {f['ensemble']} | " + (f"{f['error']} |" if "error" in f else f"{_fmt(1e3 * f['wall_best'])} |")
        for f in results["floss"]
    ]
    lines += _table(
        "## One flossing step (rnn, spectrum + backward + Adam)", "| k | R | ms |", "|---:|---:|---:|", rows
    )
    p = results["packing"]
    rows = (
        [f"| {p['trials']} x R={p['ensemble']} | {p['error']} | - |"]
        if "error" in p
        else [
            f"| {p['trials']} trials x R={p['ensemble']}, side by side | {_fmt(p['packed_rate'])} | "
            f"{_fmt(p['packed_rate'] / p['single_rate'])} |",
            f"| 1 trial x R={p['trials'] * p['ensemble']} | {_fmt(p['single_rate'])} | 1 |",
        ]
    )
    lines += _table(
        "## Packing: trials sharing the device against one larger trial (rnn)",
        "| layout | real.-epochs/s | x one trial |",
        "|---|---:|---:|",
        rows,
    )
    rows = [f"| torch.nn.{r['arch'].upper()} | 1 | {_fmt(r['rate'])} |" for r in results["torch"]]
    lines += _table("## torch.nn, one realization", "| network | R | real.-epochs/s |", "|---|---:|---:|", rows)
    rows = [f"| {name} | {value} |" for name, value in results["checks"].items()]
    lines += _table("## Checks: device against CPU, graphed against eager", "| check | value |", "|---|---|", rows)
    rows = [f"| {name} | {_fmt(value)} |" for name, value in results["targets"].items()]
    lines += _table(
        "## Targets (R=256 over R=1 at most 2; over nn.RNN at least 50; paper scan at most 10 minutes)",
        "| ratio | value |",
        "|---|---:|",
        rows,
    )
    return "\n".join(lines).rstrip() + "\n"
