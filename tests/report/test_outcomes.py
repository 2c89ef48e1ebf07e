"""Quartiles and threshold rates of a continuous outcome, against values worked out by hand."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from flosssweep.report.common import ReportError
from flosssweep.report.outcomes import format_outcomes, outcome_summary


def records(cells: dict[int, list[float]], statuses: dict[tuple[int, int], str] | None = None) -> pa.Table:
    rows = []
    for tau, values in cells.items():
        for j, v in enumerate(values):
            rows.append(
                {
                    "sweep": "s",
                    "tau": tau,
                    "arch": "plrnn",
                    "member": j,
                    "dstsp": v,
                    "status": (statuses or {}).get((tau, j), "ok"),
                    "success": v < 2,
                }
            )
    return pa.Table.from_pylist(rows)


def test_median_quartiles_and_counts_below_each_threshold_by_hand():
    table = records({5: [0.5, 1.5, 2.5, 3.5], 10: [0.2, 0.4, 0.6, 5.0, 9.0]})
    summary = outcome_summary(table, "dstsp", x="tau", by=[], thresholds=(1, 2, 3)).to_pylist()
    five, ten = summary
    # numpy's linear quantiles of 0.5, 1.5, 2.5, 3.5: 25% at 1.25, median 2, 75% at 2.75
    assert (five["n"], five["median"], five["q25"], five["q75"]) == (4, 2.0, 1.25, 2.75)
    assert (five["below_1"], five["below_2"], five["below_3"]) == (1, 2, 3)
    assert (ten["median"], ten["q25"], ten["q75"]) == (0.6, 0.4, 5.0)
    assert (ten["below_1"], ten["below_2"], ten["below_3"]) == (3, 3, 3)
    assert 0 < five["below_2_lo"] < 0.5 < five["below_2_hi"] < 1


def test_diverged_count_as_failures_and_errors_are_left_out():
    table = records({5: [0.5, 0.5, 0.5, 0.5]}, statuses={(5, 0): "diverged", (5, 1): "error"})
    (row,) = outcome_summary(table, "dstsp", x="tau", by=[], thresholds=(2,)).to_pylist()
    assert row["n"] == 3 and row["below_2"] == 2 and row["q75"] == pytest.approx(math.inf)


def test_a_missing_or_non_numeric_column_is_one_clear_error():
    table = records({5: [1.0]})
    with pytest.raises(ReportError, match="no column 'dh'"):
        outcome_summary(table, "dh", x="tau")
    with pytest.raises(ReportError, match="'arch' is not numeric"):
        outcome_summary(table, "arch", x="tau")


def test_text_table_shows_quartiles_and_counts():
    table = records({5: [0.5, 1.5, 2.5, 3.5]})
    text = format_outcomes(outcome_summary(table, "dstsp", x="tau", by=[], thresholds=(2,)), "dstsp", "tau", (2,))
    assert "D_stsp median [q25, q75]" in text and "2.00 [1.25, 2.75]" in text and "2/4" in text


def test_report_cli_prints_and_writes_the_outcome_summary(tmp_path, capsys):
    import pyarrow.parquet as pq

    from flosssweep import report

    table = records({5: [0.5, 1.5, 2.5, 3.5], 10: [0.2, 0.4, 0.6, 5.0]})
    pq.write_table(table, tmp_path / "r.parquet")
    assert (
        report.main(
            [
                "--from-parquet",
                str(tmp_path / "r.parquet"),
                "--x",
                "tau",
                "--outcome",
                "dstsp",
                "--thresholds",
                "2",
                "--n-draws",
                "0",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "D_stsp median [q25, q75]" in out and "2/4" in out and "3/4" in out
    assert pq.read_table(tmp_path / "out" / "outcome_dstsp.parquet").num_rows == 2
    assert (tmp_path / "out" / "dstsp_vs_tau.png").stat().st_size > 1000
    assert report.main(["--from-parquet", str(tmp_path / "r.parquet"), "--x", "tau", "--outcome", "dh"]) == 2


def test_a_categorical_x_is_drawn_at_positions_labelled_by_its_values(tmp_path):
    from flosssweep.report.outcomes import plot_outcome

    table = pa.Table.from_pylist(
        [
            {"sweep": "s", "arch": a, "member": j, "final_accuracy": v, "status": "ok", "success": v > 0.9}
            for a, values in {"lstm": [0.5, 0.6], "gru": [0.7, 0.95]}.items()
            for j, v in enumerate(values)
        ]
    )
    summary = outcome_summary(table, "final_accuracy", x="arch", by=[], thresholds=[0.9])
    plot_outcome(summary, "final_accuracy", "arch", tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0
