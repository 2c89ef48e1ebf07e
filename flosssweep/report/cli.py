"""The report's command line: `python -m flosssweep.report`."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from flosssweep.checks import OneLineParser, Unwritable, one_line, os_problem, private_files, writable_directory
from flosssweep.names import REPORT_ARTIFACT_DIR
from flosssweep.report import style
from flosssweep.report.common import (
    DEFAULT_N_BOOT,
    DEFAULT_THRESHOLD,
    MAX_N_BOOT,
    MAX_SEED,
    ReportError,
    StoreUnavailable,
    check_finite_x,
    default_x,
)
from flosssweep.report.curves import aggregate, table_meta
from flosssweep.report.figures import write_outputs
from flosssweep.report.maps import map_caption, plot_success_map, success_map
from flosssweep.report.outcomes import format_outcomes, outcome_summary, plot_outcome
from flosssweep.report.sources import find_parent_run, mlflow_client, read_mlflow_records, read_parquet_records
from flosssweep.report.summary import TABLE_ARTIFACT, summary_metrics, summary_table
from flosssweep.report.text import format_report
from flosssweep.tracking.store import resolve_uri
from flosssweep.tracking.summary import log_summary

# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _split_columns(values: Sequence[str] | None) -> list[str] | None:
    if values is None:
        return None
    cols = [c.strip() for v in values for c in v.split(",") if c.strip()]
    if cols == ["none"]:
        return []
    return cols


def _parser() -> argparse.ArgumentParser:
    import flosssweep.report as package

    doc = package.__doc__.split("\nThe package, in the order")[0]
    p = OneLineParser(
        prog="python -m flosssweep.report",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "exit status: 0 on success; 2 on bad input (no runs, unknown experiment or column,\n"
            "unreadable file, conflicting records, an --out that cannot be written); 3 when the\n"
            "tracking store does not answer; 1 when the report was made but could not be logged\n"
            "to MLflow. Records of one realization read twice are counted once."
        ),
    )
    src = p.add_argument_group("where the records come from (default: the most recent sweep in the tracking store)")
    one = src.add_mutually_exclusive_group()
    one.add_argument(
        "--experiment", metavar="NAME", help="MLflow experiment (= sweep name); its most recent parent run is reported"
    )
    one.add_argument(
        "--run", metavar="PARENT_RUN_ID", help="the parent run of one sweep launch (tag flosssweep.role=parent)"
    )
    one.add_argument(
        "--from-parquet",
        nargs="+",
        metavar="PATH",
        help="record files or directories of them (*.parquet); MLflow is not used",
    )
    src.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<absolute cwd>/mlflow.db)",
    )
    ana = p.add_argument_group("analysis")
    ana.add_argument(
        "--x",
        metavar="COLUMN",
        help="column scanned for the success curve and T50 (default: delay, the longest "
        "lag d; spacing = delay / bits, the spacing of the parity inputs, which the "
        "reference implementation calls its delay; tau for chaotic data)",
    )
    ana.add_argument(
        "--by",
        nargs="+",
        metavar="COLUMNS",
        help="grouping columns, space or comma separated; 'none' pools every "
        "configuration (default: every configuration column that varies, except "
        "seed, member and the x column)",
    )
    ana.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        metavar="RATE",
        help="success rate T50 is measured at, in (0, 1] (default: 0.5)",
    )
    ana.add_argument(
        "--n-boot",
        type=int,
        default=DEFAULT_N_BOOT,
        metavar="N",
        help="bootstrap resamples for the T50 interval; 0 turns it off (default: 1000)",
    )
    ana.add_argument(
        "--outcome",
        metavar="COLUMN",
        help="also summarize this numeric record column against x: median, quartiles and "
        "the share of realizations below each --thresholds value (e.g. dstsp)",
    )
    ana.add_argument(
        "--thresholds",
        default="1,2,3",
        metavar="T1,T2,...",
        help="thresholds for --outcome, comma separated (default: 1,2,3)",
    )
    ana.add_argument(
        "--seed", type=int, default=0, help="seed of the bootstrap, so the report is reproducible (default: 0)"
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "--format",
        choices=["table", "markdown", "csv", "json"],
        default="table",
        help="what is printed on stdout (default: table)",
    )
    out.add_argument(
        "--out",
        metavar="DIR",
        help="also write success_curves.parquet, horizon.parquet, report.md (tables and "
        "figure captions), success_vs_<x> and horizon figures into DIR",
    )
    out.add_argument(
        "--figure-format",
        default=",".join(style.FORMATS),
        metavar="LIST",
        help="figure files, comma separated from png, pdf, svg (default: all three)",
    )
    out.add_argument(
        "--figure-size",
        choices=style.SIZES,
        default="auto",
        help="figure width: single column (3.4 in), double column (7 in), or auto: single "
        "for one panel, double for more (default: auto)",
    )
    out.add_argument(
        "--horizon-axis",
        metavar="COLUMN",
        help="grouping column on the horizontal axis of horizon.png (default: the one "
        "that explains most of the variation of T50)",
    )
    out.add_argument(
        "--marker",
        type=float,
        metavar="VALUE",
        help="draw a vertical line at this x in the success-curve figure (e.g. a predicted value)",
    )
    out.add_argument("--marker-label", metavar="TEXT", help="legend text of --marker")
    out.add_argument(
        "--map",
        metavar="X,Y",
        help="also draw the success rate of every tested pair of these two columns as a map "
        "(for Optuna or random searches, e.g. floss_strength,floss_k)",
    )
    out.add_argument(
        "--no-log",
        action="store_true",
        help="when reading from MLflow, do not log the outputs to the parent run "
        "(default: they are logged under report/)",
    )
    return p


def _check_threshold(p: argparse.ArgumentParser, args) -> None:
    if not 0.0 < args.threshold <= 1.0:
        p.error(f"--threshold must be in (0, 1], got {args.threshold}")
    if not 0 <= args.n_boot <= MAX_N_BOOT:
        p.error(f"--n-boot must be in 0..{MAX_N_BOOT}, got {args.n_boot}")
    if not 0 <= args.seed <= MAX_SEED:
        p.error(f"--seed must be in 0..{MAX_SEED}, got {args.seed}")
    if args.marker is not None and not np.isfinite(args.marker):
        p.error(f"--marker must be a finite number, got {args.marker}")
    try:
        args.thresholds = [float(t) for t in args.thresholds.split(",") if t.strip()]
    except ValueError:
        p.error(f"--thresholds: expected numbers separated by commas, got {args.thresholds!r}")


def _description(curves, horizon) -> str:
    return (
        format_report(curves, horizon, "markdown") + f"\n\nFigures, captions and tables: artifacts under "
        f"`{REPORT_ARTIFACT_DIR}/` (report.md, success_vs_*, horizon.*, {TABLE_ARTIFACT})."
    )


def _run(args) -> int:
    by = _split_columns(args.by)
    formats = style.parse_formats(args.figure_format)  # refused before the records are read
    client = parent = None
    if args.out:
        try:
            writable_directory(args.out, "--out")
        except Unwritable as exc:
            raise ReportError(str(exc)) from None
    if args.from_parquet:
        table = read_parquet_records(args.from_parquet, x=args.x)
        source = ", ".join(args.from_parquet)
    else:
        uri = resolve_uri(args.tracking_uri, Path.cwd())
        client = mlflow_client(uri, write=not args.no_log)
        parent, exp_name = find_parent_run(client, args.experiment, args.run)
        table = read_mlflow_records(client, parent, exp_name, x=args.x)
        source = f"parent run {parent.info.run_id}"
    if table.num_rows == 0:
        raise ReportError(f"no records found in {source}")
    args.x = args.x or default_x(table.column_names)
    check_finite_x(table, args.x)
    if by:
        unknown = [c for c in by if c not in table.column_names]
        if unknown:
            raise ReportError(
                f"unknown --by column(s): {', '.join(unknown)} (columns: {', '.join(table.column_names)})"
            )
    cells = None
    if args.map:
        columns = _split_columns([args.map])
        if len(columns) != 2:
            raise ReportError(f"--map: expected two columns X,Y, got {args.map!r}")
        cells = success_map(table, *columns, threshold=args.threshold)
    print(f"aggregating {table.num_rows} record row(s) from {source}", file=sys.stderr)
    curves, horizon = aggregate(table, x=args.x, by=by, threshold=args.threshold, n_boot=args.n_boot, seed=args.seed)
    if args.horizon_axis and args.horizon_axis not in table_meta(horizon)["by"]:
        raise ReportError(
            f"--horizon-axis {args.horizon_axis!r} is not a grouping column "
            f"({', '.join(table_meta(horizon)['by']) or 'none'})"
        )
    print(format_report(curves, horizon, args.format))
    summary = None
    if args.outcome:
        summary = outcome_summary(
            table, args.outcome, x=args.x, by=table_meta(horizon)["by"], thresholds=args.thresholds
        )
        print("\n" + format_outcomes(summary, args.outcome, args.x, args.thresholds))
    marker = args.marker
    if marker is None and args.x == "tau" and "lambda_max_data" in table.column_names:
        # chaotic-data records: mark the forcing interval the data predict, ln 2 / lambda_max per step
        lambdas = sorted({v for v in table["lambda_max_data"].to_pylist() if v is not None and v > 0})
        marker = [(np.log(2.0) / v, f"ln 2 / lambda_max = {np.log(2.0) / v:.1f}") for v in lambdas] or None

    need_files = args.out or (client is not None and not args.no_log)
    if not need_files:
        return 0
    with tempfile.TemporaryDirectory(prefix="flosssweep-report-") as tmp:
        out_dir = Path(args.out) if args.out else Path(tmp)
        written = write_outputs(
            curves,
            horizon,
            out_dir,
            marker=marker,
            marker_label=args.marker_label,
            horizon_axis=args.horizon_axis,
            formats=formats,
            size=args.figure_size,
        )
        if summary is not None:
            written.append(out_dir / f"outcome_{args.outcome}.parquet")
            pq.write_table(summary, written[-1])
            written.append(out_dir / f"{args.outcome}_vs_{args.x}.png")
            plot_outcome(
                summary,
                args.outcome,
                args.x,
                written[-1],
                marker=[(args.marker, args.marker_label or f"x = {args.marker:g}")]
                if isinstance(marker, float)
                else marker,
            )
        if cells is not None:
            x_map, y_map = _split_columns([args.map])
            stem = out_dir / f"map_{x_map}_{y_map}"
            written += plot_success_map(cells, x_map, y_map, stem, formats)
            with open(out_dir / "report.md", "a") as report_md:
                report_md.write(f"\n![Map]({stem.name}.{formats[0]})\n\n**Map.** {map_caption(cells, x_map, y_map)}\n")
        if args.out:
            print(f"wrote {', '.join(str(w) for w in written)}", file=sys.stderr)
        if client is not None and not args.no_log:
            try:
                for w in written:
                    client.log_artifact(parent.info.run_id, str(w), REPORT_ARTIFACT_DIR)
                log_summary(
                    client,
                    parent.info.run_id,
                    summary_table(curves, horizon),
                    summary_metrics(curves, horizon),
                    _description(curves, horizon),
                    TABLE_ARTIFACT,
                )
            except Exception as exc:  # noqa: BLE001 - the report itself is done; say why logging failed
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                print(f"warning: could not log the report to run {parent.info.run_id}: {first}", file=sys.stderr)
                return 1
            print(
                f"logged {len(written)} file(s) to run {parent.info.run_id} under "
                f"{REPORT_ARTIFACT_DIR}/, and the summary as its metrics, description and "
                f"{REPORT_ARTIFACT_DIR}/{TABLE_ARTIFACT}",
                file=sys.stderr,
            )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _check_threshold(parser, args)
    private_files()
    try:
        return _run(args)
    except ReportError as exc:
        print(f"flosssweep.report: error: {one_line(str(exc))}", file=sys.stderr)
        return 3 if isinstance(exc, StoreUnavailable) else 2
    except OSError as exc:  # --out filled up or went away while the files were written
        where = args.out or "a temporary directory"
        print(f"flosssweep.report: error: cannot write the report to {where}: {os_problem(exc)}", file=sys.stderr)
        return 2
