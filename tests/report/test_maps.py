"""The success map of two swept axes: counts by hand, the figure and its refusals."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flosssweep import report
from flosssweep.report import style
from flosssweep.report.common import ReportError
from flosssweep.report.maps import success_map


def records() -> pa.Table:
    """Three (strength, k) trials of 4 realizations, plus one realization that errored."""
    outcomes = {(0.001, 10): [0, 0, 1, 0], (0.1, 40): [1, 1, 1, 0], (0.8, 40): [1, 1, 1, 1]}
    rows = [
        {"sweep": "s", "delay": 40, "floss_strength": b, "floss_k": k, "member": j, "success": bool(v), "status": "ok"}
        for (b, k), values in outcomes.items()
        for j, v in enumerate(values)
    ]
    rows.append({**rows[0], "member": 4, "success": False, "status": "error"})
    return pa.Table.from_pylist(rows)


def test_counts_per_pair_by_hand_without_the_errored_realization():
    cells = success_map(records(), "floss_strength", "floss_k", threshold=0.5)
    got = {(r["floss_strength"], r["floss_k"]): (r["k"], r["n"]) for r in cells.to_pylist()}
    assert got == {(0.001, 10): (1, 4), (0.1, 40): (3, 4), (0.8, 40): (4, 4)}


def test_log_axis_only_for_positive_values_spanning_decades():
    assert style.log_scale([1e-4, 0.5]) and style.log_scale([1, 4, 16, 80])
    assert not style.log_scale([10.0, 80.0]) and not style.log_scale([8, 16, 24])
    assert not style.log_scale([0.0, 1.0, 1000.0])


@pytest.mark.parametrize(
    "columns, words", [(("floss_strength", "nope"), "unknown column 'nope'"), (("floss_k", "floss_k"), "twice")]
)
def test_bad_columns_are_one_clear_error(columns, words):
    with pytest.raises(ReportError, match=words):
        success_map(records(), *columns, threshold=0.5)


def test_report_cli_writes_the_map_and_its_caption(tmp_path, capsys):
    pq.write_table(records(), tmp_path / "r.parquet")
    argv = ["--from-parquet", str(tmp_path / "r.parquet"), "--n-draws", "0", "--figure-format", "png"]
    assert report.main([*argv, "--out", str(tmp_path / "out"), "--map", "floss_strength,floss_k"]) == 0
    assert (tmp_path / "out" / "map_floss_strength_floss_k.png").stat().st_size > 0
    assert "**Map.** Success rate of each tested pair" in (tmp_path / "out" / "report.md").read_text()
    assert report.main([*argv, "--map", "floss_k"]) == 2
    assert "--map: expected two columns X,Y, got 'floss_k'" in capsys.readouterr().err
