"""D_stsp against the sparse-teacher-forcing interval tau on Lorenz-63, at CPU scale.

The grid and base configuration of search_spaces/chaotic_tau.yaml (plrnn only by default), run
through the project's trainer without Ray or MLflow: one trial per tau, each an ensemble of
`--members` realizations. Prints, per tau, the median and quartiles of D_stsp over realizations,
the success count (D_stsp below the sweep's threshold), D_H and the generated dynamics' largest
exponent next to the data's; names the predicted tau (ln 2 / lambda_max) and the tau that won
(lowest median D_stsp). Records go to --out as Parquet (one file per trial), so

    python -m flosssweep.report --from-parquet OUT --x tau --by arch --marker <tau_predicted>

draws the success curves from the same records.

    python experiments/chaotic_tau.py --members 8 --epochs 3000 --jobs 2 --out experiments/out/chaotic_tau
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import yaml

from flosssweep import records
from flosssweep.config import resolve
from flosssweep.trainer import train

SWEEP = Path(__file__).resolve().parents[1] / "search_spaces" / "chaotic_tau.yaml"


def run_trial(job: tuple[dict, Path]) -> tuple[list[dict], float]:
    config, out = job
    started = time.perf_counter()
    rows = train(config)
    for row in rows:
        row["sweep"], row["trial_id"] = "chaotic-tau-cpu", f"{row['arch']}-tau-{config['task']['tau']}"
    records.write(rows, out / f"{rows[0]['trial_id']}.parquet")
    return rows, time.perf_counter() - started


def summary(rows_by_tau: list[tuple[str, list[dict], float]], threshold: float) -> str:
    lines = ["| tau (steps) | realizations | D_stsp median [quartiles] | successes (D_stsp < "
             f"{threshold:g}) | D_H median | lambda_max model / data (per time unit) | wall (s) |",
             "|---|---|---|---|---|---|---|"]
    for label, rows, seconds in rows_by_tau:
        d = np.array([r["dstsp"] for r in rows])
        dh = np.array([r["dh"] for r in rows])
        lam = np.array([r["lambda_max_model_per_time"] for r in rows])
        q1, med, q3 = np.percentile(d, [25, 50, 75])
        wins = sum(r["success"] for r in rows)
        tau = f"{label} = {rows[0]['tau']}" if label in ("auto", "none") else label
        lines.append(f"| {tau} | {len(rows)} | {med:.2f} [{q1:.2f}, {q3:.2f}] | {wins}/{len(rows)} | "
                     f"{np.median(dh):.3f} | {np.nanmedian(lam):.3f} / {rows[0]['lambda_max_data_per_time']:.3f} "
                     f"| {seconds:.0f} |")
    return "\n".join(lines)


def main() -> None:
    sweep = yaml.safe_load(SWEEP.read_text())
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="plrnn", help="model.arch (the sweep also runs lstm)")
    parser.add_argument("--taus", nargs="+", default=[str(t) for t in sweep["space"]["task.tau"]["grid"]],
                        help="forcing intervals: integers, auto, none (default: the sweep's grid)")
    parser.add_argument("--members", type=int, default=sweep["base"]["ensemble"], help="realizations per tau")
    parser.add_argument("--epochs", type=int, default=sweep["base"]["train"]["epochs"], help="training epochs")
    parser.add_argument("--seed", type=int, default=0, help="base seed of every ensemble")
    parser.add_argument("--jobs", type=int, default=1, help="trials run at once (one core each)")
    parser.add_argument("--out", type=Path, default=Path("experiments/out/chaotic_tau"), help="records directory")
    args = parser.parse_args()

    jobs = []
    for tau in args.taus:
        tau_value = yaml.safe_load(tau)
        config = resolve(sweep["base"], {"model.arch": args.arch, "task.tau": tau_value, "ensemble": args.members,
                                         "train.epochs": args.epochs, "seed": args.seed})
        jobs.append((config, args.out))
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.jobs > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            results = pool.map(run_trial, jobs, chunksize=1)
    else:
        results = [run_trial(job) for job in jobs]
    total = time.perf_counter() - started

    rows_by_tau = [(tau, rows, seconds) for tau, (rows, seconds) in zip(args.taus, results)]
    threshold = jobs[0][0]["train"]["dstsp_threshold"]
    first = results[0][0][0]
    predicted = math.log(2.0) / first["lambda_max_data"]
    medians = {rows[0]["tau"]: float(np.median([r["dstsp"] for r in rows])) for _, rows, _ in rows_by_tau}
    rates = {rows[0]["tau"]: np.mean([r["success"] for r in rows]) for _, rows, _ in rows_by_tau}
    won = min(medians, key=medians.get)
    print(f"{first['task']} at dt = {first['task_dt']}: lambda_max = {first['lambda_max_data_per_time']:.4f} per time "
          f"unit = {first['lambda_max_data']:.5f} per step; predicted tau = ln 2 / lambda_max = {predicted:.1f} steps")
    print(f"{args.arch}, hidden {first['hidden']}, window L = {first['train_length']}, {args.epochs} epochs, "
          f"{args.members} realizations per tau, seed {args.seed}; {total / 60:.1f} minutes wall, {args.jobs} job(s)\n")
    print(summary(rows_by_tau, threshold))
    best_rate = max(rates.values())
    print(f"\nlowest median D_stsp at tau = {won} (predicted {predicted:.1f}); highest success rate "
          f"{best_rate:.2f} at tau = {', '.join(str(t) for t, r in rates.items() if r == best_rate)}")
    print(f"records: {args.out}/*.parquet")


if __name__ == "__main__":
    main()
