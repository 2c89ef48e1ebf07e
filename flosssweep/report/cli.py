"""The report's command line: `python -m flosssweep.report`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from flosssweep.checks import OneLineParser, one_line, os_problem, private_files
from flosssweep.names import REPORT_ARTIFACT_DIR
from flosssweep.report import style
from flosssweep.report.common import DEFAULT_N_DRAWS, DEFAULT_THRESHOLD, ReportError, StoreUnavailable
from flosssweep.report.fit import FITS
from flosssweep.report.headline import TABLE_ARTIFACT
from flosssweep.report.make import FromParquet, FromStore, ReportSettings, make_report
from flosssweep.tracking.store import TrackingStore

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
    src = p.add_argument_group(
        "where the records come from (default: every launch of the most recent sweep in the tracking store)"
    )
    one = src.add_mutually_exclusive_group()
    one.add_argument(
        "--experiment",
        metavar="NAME",
        help="MLflow experiment (= sweep name); the records of every launch of it are reported",
    )
    one.add_argument(
        "--run",
        "--launch",
        metavar="PARENT_RUN_ID",
        help="one launch alone: its parent run (tag flosssweep.role=parent)",
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
        "--n-draws",
        type=int,
        default=DEFAULT_N_DRAWS,
        metavar="N",
        help="draws from the cells' Beta posteriors for the T50 interval (not a bootstrap: docs/DESIGN.md, "
        "'Statistics'); 0 turns it off (default: 1000)",
    )
    ana.add_argument(
        "--fit",
        choices=FITS,
        help="also fit each group's success curve and report the fitted T50 (posterior median and 95%% interval) "
        "beside the interpolated one; logistic: a logistic with lapse and guess rates (docs/DESIGN.md, "
        "'Adaptive delay placement')",
    )
    # The old name of --n-draws, kept so that existing scripts run; it named a bootstrap this never was.
    ana.add_argument("--n-boot", type=int, dest="n_draws", help=argparse.SUPPRESS)
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
        "--seed", type=int, default=0, help="seed of the posterior draws, so the report is reproducible (default: 0)"
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
        "--spectrum-at",
        type=float,
        metavar="VALUE",
        help="draw the spectrum over training from the realizations at this x only (e.g. one delay, where every "
        "schedule was tested); default: each group's realizations at every x, pooled",
    )
    out.add_argument(
        "--log",
        action="store_true",
        help="when reading from MLflow, also log the outputs and the summary onto the sweep's parent run "
        "(under report/, its metrics and its description); the sweep's own report at its end does this",
    )
    # Logging used to be the default; --no-log is what every call is now.
    out.add_argument("--no-log", action="store_true", help=argparse.SUPPRESS)
    return p


def settings_of(p: argparse.ArgumentParser, args: argparse.Namespace) -> ReportSettings:
    try:
        thresholds = [float(t) for t in args.thresholds.split(",") if t.strip()]
    except ValueError:
        p.error(f"--thresholds: expected numbers separated by commas, got {args.thresholds!r}")
    pair = None
    if args.map:
        pair = _split_columns([args.map])
        if len(pair) != 2:
            raise ReportError(f"--map: expected two columns X,Y, got {args.map!r}")
    return ReportSettings(
        x=args.x,
        by=_split_columns(args.by),
        threshold=args.threshold,
        n_draws=args.n_draws,
        seed=args.seed,
        fit=args.fit,
        outcome=args.outcome,
        thresholds=thresholds,
        format=args.format,
        out=Path(args.out) if args.out else None,
        figure_formats=args.figure_format.split(","),
        figure_size=args.figure_size,
        horizon_axis=args.horizon_axis,
        marker=args.marker,
        marker_label=args.marker_label,
        map=tuple(pair) if pair else None,
        spectrum_at=args.spectrum_at,
        log=args.log and not args.no_log,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    private_files()
    try:
        settings = settings_of(parser, args)
        if args.from_parquet:
            source = FromParquet(args.from_parquet)
        else:
            store = TrackingStore.resolve(args.tracking_uri, Path.cwd())
            source = FromStore(store, args.experiment, args.run)
        report = make_report(source, settings)
    except ReportError as exc:
        print(f"flosssweep.report: error: {one_line(str(exc))}", file=sys.stderr)
        return 3 if isinstance(exc, StoreUnavailable) else 2
    except OSError as exc:  # --out filled up or went away while the files were written
        where = args.out or "a temporary directory"
        print(f"flosssweep.report: error: cannot write the report to {where}: {os_problem(exc)}", file=sys.stderr)
        return 2
    if report.log_error:
        print(f"warning: could not log the report to its parent run: {report.log_error}", file=sys.stderr)
        return 1
    if report.logged_to:
        print(
            f"logged {len(report.written)} file(s) to run {report.logged_to} under {REPORT_ARTIFACT_DIR}/, and "
            f"the summary as its metrics, description and {REPORT_ARTIFACT_DIR}/{TABLE_ARTIFACT}",
            file=sys.stderr,
        )
    return 0
