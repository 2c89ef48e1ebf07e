"""Success-rate curves and the largest bridgeable time horizon (T50) of a sweep.

Reads the per-realization trial records (docs/DESIGN.md, "Records") from the sweep's MLflow runs or from Parquet
files, and reports, per configuration group and per delay (or another x column), how many
realizations succeeded, with a Wilson 95% interval, and the group's T50 with a 95%
interval from posterior draws (docs/DESIGN.md, "Statistics").

Groups. Rows are grouped by the --by columns. The default is every configuration column (a key
of the config schema) that varies across the records and is constant within each config_key,
other than the x column: identity columns (seed, member, trial_id), operational keys (ensemble,
device, threads) and outcomes (success, final_*, lambda_*, status, train_seconds, ...) are never
axes. Columns left out of --by are pooled. Records of different sweeps are never pooled: each
sweep gets its own table.

Counting. Rows with status 'error' are excluded from n and counted separately (column 'errors');
rows with status 'diverged' count as failures whatever their success flag says.

T50. Scanning x in increasing order, the first x whose success rate is below the threshold ends
the bridgeable range; T50 is interpolated linearly between it and the previous x. If the smallest x
is already below the threshold, T50 is reported as '< x_min'; if no x is below it, '>= x_max'.
Non-monotone curves: the first crossing wins, and a rate that climbs back above the threshold at a
larger x does not extend T50, because T50 is meant as the horizon the method reliably bridges
(every x up to it succeeded). Such groups are marked with '*'. T50 needs a numeric x column; for a
categorical one (strings such as 'none') the table still shows the success counts and T50 is 'n/a'.

Interval of T50. Each posterior draw takes every (group, x) cell's success rate from its Jeffreys
posterior Beta(k + 1/2, n - k + 1/2) and recomputes T50; the 2.5th and 97.5th percentiles form the
interval. Unlike resampling the realizations, this keeps a cell where every realization agreed
(k = 0 or k = n) uncertain, so the interval does not shrink to a point when 8 of 8 succeeded
(`stats` has the coverage measured on simulated sweeps). Draws with a censored T50 are kept,
ordered below every x ('< x_min') or above it ('>= x_max'); an interval end that falls on one is
reported censored. The draw is seeded (--seed), so a report is reproducible for the same records.

The package, in the order the data flows: `sources` (Parquet or MLflow -> one records table),
`curves` (records -> curves and horizon tables, using `stats`), `text` and `figures` (tables ->
what a person reads), `make` (the report as a function: `make_report(source, settings)`), `cli`
(`python -m flosssweep.report`, a thin front of `make_report`); `synthetic` makes a realistic table
for benchmarks.
"""

from __future__ import annotations

from flosssweep.report.cli import main
from flosssweep.report.common import ReportError
from flosssweep.report.curves import aggregate, default_by, pool
from flosssweep.report.figures import plot_horizon, plot_success_curves, write_outputs
from flosssweep.report.sources import read_parquet_records
from flosssweep.report.synthetic import synthetic_records
from flosssweep.report.text import format_report

__all__ = [
    "ReportError",
    "aggregate",
    "pool",
    "default_by",
    "synthetic_records",
    "read_parquet_records",
    "format_report",
    "plot_success_curves",
    "plot_horizon",
    "write_outputs",
    "main",
]
