"""Run one trial (an ensemble of realizations) without Ray or MLflow.

python -m flosssweep.trial task.bits=1 task.delay=5 ensemble=4 train.epochs=400 --out r.parquet
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

from flosssweep import footprint, provenance, records, yamlio
from flosssweep.checks import OneLineParser, Unwritable, one_line, private_files, writable_file
from flosssweep.config import CHAOTIC_TASKS, SCHEMA, ConfigError, applicable_keys, flatten, parse_override, resolve
from flosssweep.train import train
from flosssweep.train.parity import CONVERGENCE_WINDOW


def _choices(field) -> str:
    if not field.choices:
        return ""
    words = "|".join(map(str, field.choices))
    return f"one of {words}; " if field.kind is str else f"a number or {words}; "


def keys_help() -> str:
    width = max(map(len, SCHEMA))
    lines = [
        f"  {key:<{width}}  {field.help} ({_choices(field)}default {field.default!r})" for key, field in SCHEMA.items()
    ]
    return "configuration keys (override as dotted.key=value):\n" + "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(
        prog="python -m flosssweep.trial",
        description="Train one trial: `ensemble` independent realizations of one configuration, side by "
        "side. Prints progress and a per-member table; writes the records (one row per member) "
        "as Parquet.",
        epilog=keys_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="dotted.key=value",
        help="config values on top of --config and the defaults, e.g. task.delay=20",
    )
    parser.add_argument("--config", type=Path, help="YAML file with a (nested or dotted) config")
    parser.add_argument("--out", type=Path, help="write the per-member records to this Parquet file")
    parser.add_argument(
        "--diagnostics",
        type=Path,
        help="write the diagnostics over training (spectrum per report, Jacobian and gradient against the lag "
        "at the stages) to this Parquet file; name it *diagnostics.parquet next to --out and the report draws it",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument(
        "--dry-run", action="store_true", help="check the config and --out, print the config and its memory estimate"
    )
    return parser.parse_intermixed_args(argv)  # overrides may come after a flag too


def load_config(args: argparse.Namespace) -> dict:
    layers = []
    if args.config:
        layer, _ = yamlio.load_file(args.config)
        if not isinstance(layer, dict):
            raise ConfigError(str(args.config), "a YAML mapping of config keys", layer)
        layers.append(layer)
    layers.append(dict(parse_override(text) for text in args.overrides))
    return resolve(*layers)


def success_definitions(config: dict) -> str:
    """What `success` and `epochs_to_success` mean for this config: the two are measured differently."""
    train = config["train"]
    if config["task"]["name"] in CHAOTIC_TASKS:
        return f"success: D_stsp < {train['dstsp_threshold']} on free-running trajectories (train.dstsp_threshold)"
    threshold = train["success_threshold"]
    return (
        f"success: mean accuracy over the last {train['success_window']} epochs >= {threshold} "
        f"(train.success_window); epochs_to_success: first epoch at which the {CONVERGENCE_WINDOW}-epoch "
        f"moving mean of accuracy reaches {threshold}"
    )


def _shown(name: str, value, spec: str) -> str:
    """`name value`, or nothing for a value that does not exist (NaN: no epoch trained yet, no member alive)."""
    return f"  {name} {value:{spec}}" if value is not None and math.isfinite(value) else ""


class ProgressPrinter:
    """The trial's lines: flossing steps (at most every `every` seconds, and the last), then one line
    per report. Before the first epoch there is no loss nor accuracy: the line leaves them out."""

    def __init__(self, config: dict, every: float = 2.0):
        self.epochs, self.members, self.every = config["train"]["epochs"], config["ensemble"], every
        self.started = self.last_steps = time.perf_counter()

    def steps(self, what: str, done: int, total: int, epoch: int) -> None:
        now = time.perf_counter()
        if done < total and now - self.last_steps < self.every:
            return
        self.last_steps = now
        print(f"{what} {done}/{total} steps at epoch {epoch}/{self.epochs}  [{now - self.started:.1f}s]", flush=True)

    def report(self, metrics: dict, epoch: int) -> None:
        label = "before training" if epoch == 0 else f"epoch {epoch:>{len(str(self.epochs))}}/{self.epochs}"
        quality = (
            _shown("D_stsp", metrics.get("charts/dstsp"), ".3f")
            if "charts/dstsp" in metrics  # chaotic data
            else _shown("acc", metrics.get("charts/accuracy"), ".3f")
        )
        succeeding = round(metrics["charts/success_rate"] * self.members)
        print(
            label
            + (_shown("loss", metrics["losses/task"], ".4f") + quality if epoch else "")
            + f"  success {succeeding}/{self.members}"
            + _shown("lambda_1", metrics["lyapunov/lambda_1"], "+.4f")
            + _shown("lambda_k", metrics["lyapunov/lambda_k"], "+.4f")
            + _shown("floss", metrics["losses/floss_now"], ".2e")
            + (f"  diverged {metrics['charts/diverged']}" if metrics.get("charts/diverged") else "")
            + f"  [{time.perf_counter() - self.started:.1f}s]",
            flush=True,
        )


def _number(value: float, width: int, decimals: int, sign: str = "") -> str:
    """Fixed decimals for ordinary values; a huge one (a diverged member's loss) in exponent form,
    not as a 37-digit integer."""
    if value is not None and abs(value) < 1e6:
        return f"{value:>{sign}{width}.{decimals}f}"
    return f"{value:>{sign}{width}.{decimals - 1}e}" if value is not None else f"{'-':>{width}}"


def member_table(rows: list[dict]) -> str:
    header = (
        f"{'member':>6} {'status':>8} {'success':>7} {'accuracy':>8} {'loss':>8} {'epochs_to_success':>17} "
        f"{'lambda_1':>9} {'lambda_k':>9}"
    )
    lines = [header]
    for r in rows:
        # chaotic data has neither an accuracy nor an epoch of success: those columns show "-"
        reached = "-" if r.get("epochs_to_success") is None else str(r["epochs_to_success"])
        lines.append(
            f"{r['member']:>6} {r['status']:>8} {str(r['success']):>7} {_number(r.get('final_accuracy'), 8, 3)} "
            f"{_number(r['final_loss'], 8, 4)} {reached:>17} {_number(r['lambda_1'], 9, 4, '+')} "
            f"{_number(r['lambda_k'], 9, 4, '+')}"
        )
    wins = sum(r["success"] for r in rows)
    if rows and "dstsp" in rows[0]:  # chaotic data: the reconstruction metrics of each member
        lines.append(f"{'member':>6} {'D_stsp':>8} {'D_H':>6} {'lambda_max model/data per time unit':>36}")
        lines += [
            f"{r['member']:>6} {_number(r['dstsp'], 8, 3)} {_number(r['dh'], 6, 3)} "
            f"{_number(r['lambda_max_model_per_time'], 26, 4, '+')} / {r['lambda_max_data_per_time']:.4f}"
            for r in rows
        ]
    lines.append(f"{wins}/{len(rows)} members succeeded")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    private_files()
    try:
        config = load_config(args)
    except ConfigError as err:
        print(f"flosssweep.trial: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    if config["device"] == "cuda" and not torch.cuda.is_available():
        print("flosssweep.trial: error: device: expected cpu, CUDA is not available on this machine", file=sys.stderr)
        return 2
    try:
        out = writable_file(args.out, "--out") if args.out else None
        diagnostics_out = writable_file(args.diagnostics, "--diagnostics") if args.diagnostics else None
    except Unwritable as err:
        print(f"flosssweep.trial: error: {one_line(str(err))}", file=sys.stderr)
        return 2
    if args.dry_run:
        flat = flatten(config)
        print("\n".join(f"{key} = {flat[key]!r}" for key in applicable_keys(config)))
        chaotic = config["task"]["name"] in CHAOTIC_TASKS
        print(f"estimated memory: {sum(size for size, _, _ in footprint.terms(config, chaotic)) / 2**20:.1f} MiB")
        return 0
    printer = None if args.quiet else ProgressPrinter(config)
    if printer:
        print(success_definitions(config), flush=True)
    made_by = provenance.collect()
    diagnostics: list = []
    rows = [
        {**row, **made_by}
        for row in train(
            config,
            report=printer and printer.report,
            progress=printer and printer.steps,
            diagnostics=diagnostics.append,
        )
    ]
    print(member_table(rows))
    print(success_definitions(config))
    try:
        if out:
            print(f"records written to {records.write_or_keep(rows, out)}")
        if diagnostics_out:
            pq.write_table(diagnostics[0], diagnostics_out)
            print(f"diagnostics written to {diagnostics_out}")
    except (records.NotWritten, OSError) as err:
        print(f"flosssweep.trial: error: {one_line(str(err))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
