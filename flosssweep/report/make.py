"""The report as a function: `make_report(source, settings)` reads the records, aggregates them,
prints and writes what the settings ask for, and logs it onto the sweep's parent run when asked.

The command line (`report.cli`) and the sweep driver both call it; neither builds the other's
arguments. Every refusal is a `ReportError` with one line.
"""

from __future__ import annotations

import math
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flosssweep.checks import Unwritable, writable_directory
from flosssweep.names import REPORT_ARTIFACT_DIR
from flosssweep.report import style
from flosssweep.report.common import (
    DEFAULT_N_DRAWS,
    DEFAULT_THRESHOLD,
    MAX_N_DRAWS,
    MAX_SEED,
    ReportError,
    check_finite_x,
    default_x,
)
from flosssweep.report.curves import Aggregate, aggregate, split_by_sweep
from flosssweep.report.figures import series_looks, write_outputs
from flosssweep.report.fit import check_fit
from flosssweep.report.gates import format_retention, retention_by_stage
from flosssweep.report.headline import TABLE_ARTIFACT, headline, summary_metrics, summary_table, summary_tags
from flosssweep.report.html import write_html
from flosssweep.report.maps import map_caption, plot_success_map, success_map
from flosssweep.report.outcomes import format_outcomes, outcome_summary, plot_outcome
from flosssweep.report.seeds import format_seed_spread, seed_spread
from flosssweep.report.sources import (
    find_parent_run,
    open_store,
    read_mlflow_diagnostics,
    read_mlflow_records,
    read_parquet_diagnostics,
    read_parquet_records,
)
from flosssweep.report.spectra import plot_spectrum_evolution, spectrum_caption, spectrum_evolution
from flosssweep.report.text import cell_text, format_report, t50_text
from flosssweep.tracking.store import TrackingStore
from flosssweep.tracking.summary import log_summary


@dataclass
class FromStore:
    """Records in a tracking store: of one launch, `run_id` (a parent run); else of every launch of
    `experiment`, else of every launch of the experiment of the latest launch in the store (an
    --extend launch adds to the earlier ones; a realization several launches ran is counted once)."""

    store: TrackingStore
    experiment: str | None = None
    run_id: str | None = None


@dataclass
class FromParquet:
    """Record files, or directories of them."""

    paths: list[str]


@dataclass
class ReportSettings:
    """What a report computes, prints and writes. The command line's flags, one field each."""

    x: str | None = None  # column scanned for the success curve and T50; None: delay, or tau for chaotic data
    by: list[str] | None = None  # grouping columns; None: every configuration column that varies
    threshold: float = DEFAULT_THRESHOLD  # success rate T50 is measured at
    n_draws: int = DEFAULT_N_DRAWS  # posterior draws for the T50 interval; 0 turns it off
    seed: int = 0  # seed of those draws
    fit: str | None = None  # 'logistic': a fitted T50 beside the interpolated one (report/fit.py)
    outcome: str | None = None  # a numeric record column also summarized against x
    thresholds: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0])  # ... and its thresholds
    format: str | None = "table"  # what is printed on stdout (table, markdown, csv, json); None: nothing
    out: Path | None = None  # directory of the Parquet tables, report.md and figures
    figure_formats: list[str] = field(default_factory=lambda: list(style.FORMATS))
    figure_size: str = "auto"
    horizon_axis: str | None = None  # grouping column on the horizontal axis of the horizon figure
    marker: float | None = None  # a vertical line in the success-curve figure
    marker_label: str | None = None
    map: tuple[str, str] | None = None  # two columns whose tested pairs are drawn as a map
    spectrum_at: float | None = None  # the x whose realizations the spectrum figure draws; None: all, pooled
    log: bool = False  # log the outputs and the summary onto the parent run (records from MLflow only)


@dataclass
class Report:
    """What `make_report` made: the aggregate, the files written (in `settings.out`, or a temporary
    folder that is gone once they are logged), the parent run they were logged to, and why logging
    failed, if it did."""

    aggregate: Aggregate
    source: str
    written: list[Path]
    logged_to: str | None = None
    log_error: str | None = None


def make_report(source: FromStore | FromParquet | pa.Table, settings: ReportSettings) -> Report:
    s = settings
    if not 0.0 < s.threshold <= 1.0:
        raise ReportError(f"--threshold must be in (0, 1], got {s.threshold}")
    if not 0 <= s.n_draws <= MAX_N_DRAWS:
        raise ReportError(f"--n-draws must be in 0..{MAX_N_DRAWS}, got {s.n_draws}")
    if not 0 <= s.seed <= MAX_SEED:
        raise ReportError(f"--seed must be in 0..{MAX_SEED}, got {s.seed}")
    check_fit(s.fit, s.threshold)
    if s.marker is not None and not math.isfinite(s.marker):
        raise ReportError(f"--marker must be a finite number, got {s.marker}")
    formats = style.parse_formats(",".join(s.figure_formats))  # refused before the records are read
    if s.out is not None:
        try:
            writable_directory(s.out, "--out")
        except Unwritable as exc:
            raise ReportError(str(exc)) from None
    store = parent = None
    if isinstance(source, FromStore):
        store = open_store(source.store, write=s.log)
        parent, experiment = find_parent_run(store, source.experiment, source.run_id)
        every_launch = source.run_id is None
        table = read_mlflow_records(store, parent, experiment, x=s.x, every_launch=every_launch)
        where = f"experiment {experiment!r}" if every_launch else f"parent run {parent.info.run_id}"
    elif isinstance(source, FromParquet):
        table, where = read_parquet_records(source.paths, x=s.x), ", ".join(source.paths)
    else:
        table, where = source, "a records table"
    if table.num_rows == 0:
        raise ReportError(f"no records found in {where}")
    x = s.x or default_x(table.column_names)
    check_finite_x(table, x)
    spectrum_records = _at_x(table, x, s.spectrum_at)
    unknown = [c for c in s.by or [] if c not in table.column_names]
    if unknown:
        raise ReportError(f"unknown --by column(s): {', '.join(unknown)} (columns: {', '.join(table.column_names)})")
    cells = success_map(table, *s.map, threshold=s.threshold) if s.map else None
    print(f"aggregating {table.num_rows} record row(s) from {where}", file=sys.stderr)
    aggregated = aggregate(table, x=x, by=s.by, threshold=s.threshold, n_draws=s.n_draws, seed=s.seed, fit=s.fit)
    by = aggregated.settings.by
    if s.horizon_axis and s.horizon_axis not in by:
        raise ReportError(f"--horizon-axis {s.horizon_axis!r} is not a grouping column ({', '.join(by) or 'none'})")
    if s.format:
        print(format_report(aggregated, s.format))
    spread = seed_spread(table, aggregated)
    if spread is not None and s.format in ("table", "markdown"):
        print("\n" + format_seed_spread(spread, markdown=s.format == "markdown"))
    outcomes = None
    if s.outcome:
        outcomes = outcome_summary(table, s.outcome, x=x, by=by, thresholds=s.thresholds)
        if s.format:
            print("\n" + format_outcomes(outcomes, s.outcome, x, s.thresholds))
    marker = _markers(table, s, x)
    report = Report(aggregated, where, [])
    log = s.log and parent is not None
    if s.out is None and not log:
        return report
    with tempfile.TemporaryDirectory(prefix="flosssweep-report-") as tmp:
        out_dir = Path(s.out) if s.out is not None else Path(tmp)
        report.written = write_outputs(
            aggregated,
            out_dir,
            marker=marker,
            marker_label=s.marker_label,
            horizon_axis=s.horizon_axis,
            formats=formats,
            size=s.figure_size,
        )
        if outcomes is not None:
            report.written += _write_outcome(outcomes, s, x, out_dir, marker, series_looks(aggregated)[1])
        if cells is not None:
            report.written += _write_map(cells, s, out_dir, formats)
        if spread is not None:
            report.written += _write_seeds(spread, out_dir)
        diagnostics = (
            read_mlflow_diagnostics(store, parent)
            if isinstance(source, FromStore)
            else read_parquet_diagnostics(source.paths)
            if isinstance(source, FromParquet)
            else None
        )
        if diagnostics is not None:
            which = f"at {x} = {s.spectrum_at:g}" if s.spectrum_at is not None else f"pooled over every {x} tested"
            report.written += _write_spectra(diagnostics, spectrum_records, by, which, out_dir, formats)
            report.written += _write_retention(diagnostics, table, by, x, out_dir, s.format)
        report.written.append(write_html(out_dir / "report.md", f"flosssweep report: {where}"))
        if s.out is not None:
            print(f"wrote {', '.join(str(w) for w in report.written)}", file=sys.stderr)
        if log:
            _log(store, parent.info.run_id, report)
    return report


def _markers(table: pa.Table, s: ReportSettings, x: str):
    """The vertical lines of the success-curve figure: the given one, else, on a tau axis of
    chaotic-data records, the forcing interval the data predict (ln 2 / lambda_max per step)."""
    if s.marker is not None or x != "tau" or "lambda_max_data" not in table.column_names:
        return s.marker
    lambdas = sorted({v for v in table["lambda_max_data"].to_pylist() if v is not None and v > 0})
    return [(np.log(2.0) / v, rf"$\ln 2/\lambda_\max$ = {np.log(2.0) / v:.1f}") for v in lambdas] or None


def _write_outcome(outcomes: pa.Table, s: ReportSettings, x: str, out_dir: Path, marker, looks) -> list[Path]:
    table_path, figure_path = out_dir / f"outcome_{s.outcome}.parquet", out_dir / f"{s.outcome}_vs_{x}.png"
    pq.write_table(outcomes, table_path)
    if isinstance(marker, float):
        marker = [(marker, s.marker_label or f"x = {marker:g}")]
    plot_outcome(outcomes, s.outcome, x, figure_path, marker=marker, looks=looks, thresholds=s.thresholds)
    return [table_path, figure_path]


def _write_map(cells: pa.Table, s: ReportSettings, out_dir: Path, formats: list[str]) -> list[Path]:
    x_map, y_map = s.map
    stem = out_dir / f"map_{x_map}_{y_map}"
    written = plot_success_map(cells, x_map, y_map, stem, formats)
    with open(out_dir / "report.md", "a") as report_md:
        report_md.write(f"\n![Map]({stem.name}.{formats[0]})\n\n**Map.** {map_caption(cells, x_map, y_map)}\n")
    return written


def _at_x(table: pa.Table, x: str, value: float | None) -> pa.Table:
    """The records at x = value (all where value is None), refused where none is there."""
    if value is None:
        return table
    if not pa.types.is_integer(table[x].type) and not pa.types.is_floating(table[x].type):
        raise ReportError(f"--spectrum-at: {x} is not a numeric column")
    at = table.filter(pc.equal(table[x], value))
    if at.num_rows == 0:
        tested = ", ".join(f"{v:g}" for v in sorted(set(pc.drop_null(table[x]).to_pylist())))
        raise ReportError(f"--spectrum-at {value:g}: no records at {x} = {value:g} (tested: {tested})")
    return at


def _write_spectra(diagnostics: pa.Table, records: pa.Table, by, which: str, out_dir: Path, formats) -> list[Path]:
    """The spectrum over training per group (flosssweep.report.spectra), when the trials kept one;
    `records` are those whose trials are drawn, `which` says which they are."""
    evolution = spectrum_evolution(diagnostics, records, [c for c in by if c in records.column_names])
    if evolution.num_rows == 0:
        return []
    table_path = out_dir / "spectrum_evolution.parquet"
    pq.write_table(evolution, table_path)
    figures = plot_spectrum_evolution(evolution, out_dir / "spectrum_evolution", formats)
    with open(out_dir / "report.md", "a") as report_md:
        report_md.write(
            f"\n![Spectrum over training]({figures[0].name})\n\n**Spectrum.** {spectrum_caption(evolution, which)}\n"
        )
    return [table_path, *figures]


def _write_retention(diagnostics: pa.Table, records: pa.Table, by, x: str, out_dir: Path, fmt) -> list[Path]:
    """The retention gate per group, x and stage (flosssweep.report.gates), when gated trials kept one;
    printed with the other tables."""
    gates = retention_by_stage(diagnostics, records, [c for c in by if c in records.column_names], x)
    if gates.num_rows == 0:
        return []
    if fmt in ("table", "markdown"):
        print("\n" + format_retention(gates, x, markdown=fmt == "markdown"))
    path = out_dir / "retention_gate.parquet"
    pq.write_table(gates, path)
    with open(out_dir / "report.md", "a") as report_md:
        report_md.write("\n" + format_retention(gates, x, markdown=True) + "\n")
    return [path]


def _write_seeds(spread: pa.Table, out_dir: Path) -> list[Path]:
    path = out_dir / "seeds.parquet"
    pq.write_table(spread, path)
    with open(out_dir / "report.md", "a") as report_md:
        report_md.write("\n" + format_seed_spread(spread, markdown=True) + "\n")
    return [path]


def _description(aggregated: Aggregate) -> str:
    """The parent run's description, which MLflow's run page shows first and cuts after a few lines:
    the answer (T50 per group) on the first line, then the table in a code block (MLflow's renderer
    draws markdown tables without cell borders or padding, so their header cells run together)."""
    settings = aggregated.settings
    sweeps = split_by_sweep(aggregated.horizon.to_pylist(), settings)
    answers = []
    for sweep, rows in sweeps.items():
        for r in rows:
            name = ", ".join(cell_text(r[c]) for c in settings.by) or "all"
            prefix = f"{sweep} " if len(sweeps) > 1 else ""
            answers.append(f"**{prefix}{name}** {t50_text(r, settings.n_draws > 0)}")
    interval = " (95% interval)" if settings.n_draws else ""
    head = (
        f"**T50**, the {style.label(settings.x)} where the success rate falls below {settings.threshold:g}"
        f"{interval}: " + " · ".join(answers)
    )
    return (
        f"{head}\n\n```\n{format_report(aggregated, 'table')}\n```\n\n"
        f"Figures inline: `{REPORT_ARTIFACT_DIR}/report.html`; also report.md, success_vs_*, horizon.*, "
        f"{TABLE_ARTIFACT} under `{REPORT_ARTIFACT_DIR}/`."
    )


def _log(store: TrackingStore, run_id: str, report: Report) -> None:
    try:
        for path in report.written:
            store.client.log_artifact(run_id, str(path), REPORT_ARTIFACT_DIR)
        log_summary(
            store.client,
            run_id,
            summary_table(report.aggregate),
            summary_metrics(report.aggregate),
            _description(report.aggregate),
            TABLE_ARTIFACT,
            tags=summary_tags(report.aggregate),
            headline=headline(report.aggregate),
        )
    except Exception as exc:  # noqa: BLE001 - the report itself is done; say why logging failed
        report.log_error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return
    report.logged_to = run_id
