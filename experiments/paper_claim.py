"""The flossing paper's central claim at its own scale, as a runnable experiment.

N = 80 vanilla RNN on the delayed XOR task: at a delay where plain training stays at chance within
2000 epochs, 500 steps of flossing before training make it learnable (Engelken, NeurIPS 2023, Fig. 3).
Every realization is a member of one ensemble trial, so a row costs one trial.

    python experiments/paper_claim.py --delays 30 40 --members 8 --k 40
"""

from __future__ import annotations

import argparse
import time

from flosssweep.trainer import train

from flosssweep.config import resolve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delays", type=int, nargs="+", default=[40], help="XOR delays d to try")
    parser.add_argument("--members", type=int, default=8, help="realizations per (delay, mode)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the ensemble")
    parser.add_argument("--k", type=int, default=40, help="exponents flossed before training")
    parser.add_argument("--epochs", type=int, default=2000, help="training epochs")
    parser.add_argument("--modes", nargs="+", default=["none", "pre"], help="flossing modes to compare")
    args = parser.parse_args()

    print("| delay | flossing | successes | mean final accuracy | wall time (s) |")
    print("|---|---|---|---|---|")
    for delay in args.delays:
        for mode in args.modes:
            config = resolve(
                {
                    "model.hidden": 80,
                    "task.bits": 2,
                    "task.delay": delay,
                    "floss.mode": mode,
                    "floss.k": args.k,
                    "floss.pre_steps": 500,
                    "train.epochs": args.epochs,
                    "ensemble": args.members,
                    "seed": args.seed,
                    "train.report_every": 500,
                }
            )
            started = time.perf_counter()
            rows = train(config)
            seconds = time.perf_counter() - started
            wins = sum(r["success"] for r in rows)
            accuracy = sum(r["final_accuracy"] for r in rows) / len(rows)
            label = "none" if mode == "none" else f"{mode} (k = {args.k}, 500 steps)"
            print(f"| {delay} | {label} | {wins}/{len(rows)} | {accuracy:.3f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
