"""D_stsp against the sparse-teacher-forcing interval tau on Lorenz-63, at CPU scale.

The grid and base configuration of search_spaces/chaotic_tau.yaml (plrnn only by default), run
through the project's trainer without Ray or MLflow: one trial per tau, each an ensemble of
`--members` realizations. Prints, per tau, the median and quartiles of D_stsp over realizations,
the success count (D_stsp below the sweep's threshold), D_H and the generated dynamics' largest
exponent next to the data's; names the predicted tau (ln 2 / lambda_max) and the tau that won
(lowest median D_stsp). Records go to --out as Parquet (one file per trial), so

    python -m flosssweep.report --from-parquet OUT --x tau --by arch --marker <tau_predicted>

draws the success curves from the same records. `--summarize` rereads the records in --out instead
of training; both write dstsp_vs_tau.png (every realization's D_stsp against tau, the predicted
tau marked) into --out.

    python experiments/chaotic_tau.py --members 8 --epochs 3000 --jobs 2 --out experiments/out/chaotic_tau
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml
from flosssweep.trainer import train

from flosssweep import records
from flosssweep.config import resolve

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
    lines = [
        "| tau (steps) | realizations | D_stsp median [quartiles] | successes (D_stsp < "
        f"{threshold:g}) | D_H median | lambda_max model / data (per time unit) | training (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, rows, _ in rows_by_tau:
        seconds = rows[0]["train_seconds"]
        d = np.array([r["dstsp"] for r in rows])
        dh = np.array([r["dh"] for r in rows])
        lam = np.array([r["lambda_max_model_per_time"] for r in rows])
        q1, med, q3 = np.percentile(d, [25, 50, 75])
        wins = sum(r["success"] for r in rows)
        tau = f"{label} = {rows[0]['tau']}" if label in ("auto", "none") else label
        lines.append(
            f"| {tau} | {len(rows)} | {med:.2f} [{q1:.2f}, {q3:.2f}] | {wins}/{len(rows)} | "
            f"{np.median(dh):.3f} | {np.nanmedian(lam):.3f} / {rows[0]['lambda_max_data_per_time']:.3f} "
            f"| {seconds:.0f} |"
        )
    return "\n".join(lines)


def plot(rows_by_tau: list[tuple[str, list[dict], float]], predicted: float, threshold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4))
    taus = [rows[0]["tau"] for _, rows, _ in rows_by_tau]
    for tau, (_label, rows, _) in zip(taus, rows_by_tau):
        d = np.array([r["dstsp"] for r in rows])
        jitter = np.linspace(-0.06, 0.06, len(d)) * tau
        ax.scatter(tau + jitter, d, s=14, color="tab:blue", alpha=0.6, linewidths=0)
        ax.plot([tau / 1.15, tau * 1.15], [np.median(d)] * 2, color="black", linewidth=2)
    ax.axvline(predicted, color="tab:red", linestyle="--", label=f"ln 2 / lambda_max = {predicted:.1f}")
    ax.axhline(threshold, color="0.5", linestyle=":", label=f"success threshold {threshold:g}")
    ax.set_xscale("log")
    ax.set_xticks(
        taus,
        [f"{label}\n({tau})" if label in ("auto", "none") else label for tau, (label, _, _) in zip(taus, rows_by_tau)],
    )
    ax.tick_params(axis="x", labelsize=8)
    ax.minorticks_off()
    ax.set_xlabel("sparse teacher forcing interval tau (steps)")
    ax.set_ylabel("D_stsp (test data || generated)")
    rows = rows_by_tau[0][1]
    ax.set_title(
        f"{rows[0]['arch']} on {rows[0]['task']} (dt {rows[0]['task_dt']}, L {rows[0]['train_length']}): "
        "realizations and medians",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def read_back(out: Path, taus: list[str], arch: str) -> list[tuple[list[dict], float]]:
    results = []
    for tau in taus:
        rows = pq.read_table(out / f"{arch}-tau-{tau}.parquet").to_pylist()
        results.append((rows, rows[0]["train_seconds"]))
    return results


def main() -> None:
    sweep = yaml.safe_load(SWEEP.read_text())
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="plrnn", help="model.arch (the sweep also runs lstm)")
    parser.add_argument(
        "--taus",
        nargs="+",
        default=[str(t) for t in sweep["space"]["task.tau"]["grid"]],
        help="forcing intervals: integers, auto, none (default: the sweep's grid)",
    )
    parser.add_argument("--members", type=int, default=sweep["base"]["ensemble"], help="realizations per tau")
    parser.add_argument("--epochs", type=int, default=sweep["base"]["train"]["epochs"], help="training epochs")
    parser.add_argument("--seed", type=int, default=0, help="base seed of every ensemble")
    parser.add_argument("--jobs", type=int, default=1, help="trials run at once (one core each)")
    parser.add_argument("--out", type=Path, default=Path("experiments/out/chaotic_tau"), help="records directory")
    parser.add_argument("--summarize", action="store_true", help="reread the records in --out instead of training")
    args = parser.parse_args()

    jobs = []
    for tau in args.taus:
        tau_value = yaml.safe_load(tau)
        config = resolve(
            sweep["base"],
            {
                "model.arch": args.arch,
                "task.tau": tau_value,
                "ensemble": args.members,
                "train.epochs": args.epochs,
                "seed": args.seed,
            },
        )
        jobs.append((config, args.out))
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.summarize:
        results = read_back(args.out, args.taus, args.arch)
    elif args.jobs > 1:
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
    print(
        f"{first['task']} at dt = {first['task_dt']}: lambda_max = {first['lambda_max_data_per_time']:.4f} per time "
        f"unit = {first['lambda_max_data']:.5f} per step; predicted tau = ln 2 / lambda_max = {predicted:.1f} steps"
    )
    when = "records reread" if args.summarize else f"{total / 60:.1f} minutes wall, {args.jobs} job(s)"
    print(
        f"{args.arch}, hidden {first['hidden']}, window L = {first['train_length']}, {first['train_epochs']} epochs, "
        f"{len(results[0][0])} realizations per tau, seed {first['seed']}; {when}\n"
    )
    print(summary(rows_by_tau, threshold))
    best_rate = max(rates.values())
    print(
        f"\nlowest median D_stsp at tau = {won} (predicted {predicted:.1f}); highest success rate "
        f"{best_rate:.2f} at tau = {', '.join(str(t) for t, r in rates.items() if r == best_rate)}"
    )
    plot(rows_by_tau, predicted, threshold, args.out / "dstsp_vs_tau.png")
    print(f"records: {args.out}/*.parquet; figure: {args.out / 'dstsp_vs_tau.png'}")


if __name__ == "__main__":
    main()
