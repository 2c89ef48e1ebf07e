"""The retention gate per group, delay and stage: means and saturated shares by hand, and in the report."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flosssweep.records import write
from flosssweep.report.gates import format_retention, retention_by_stage
from flosssweep.report.make import FromParquet, ReportSettings, make_report


def gates(config_key: str, by_stage: dict[str, list[float]], members: int = 2) -> pa.Table:
    """Every member of the trial has the listed unit gates at each stage (unit i at index i)."""
    rows = [
        {
            "config_key": config_key,
            "seed": 0,
            "epoch": 0 if stage != "final" else 30,
            "stage": stage,
            "member": m,
            "quantity": "retention_gate",
            "index": i,
            "value": value,
        }
        for stage, values in by_stage.items()
        for m in range(members)
        for i, value in enumerate(values)
    ]
    rows.append({**rows[0], "quantity": "lyapunov", "value": 5.0})  # another quantity: not counted
    return pa.Table.from_pylist(rows)


RECORDS = [
    {"config_key": key, "floss_mode": mode, "floss_pre_steps": 500, "delay": delay, "member": m, "seed": seed}
    | {"success": True}
    for key, mode, delay, seed in (("a", "none", 10, 0), ("b", "pre", 10, 0), ("c", "pre", 20, 0), ("d", "pre", 20, 1))
    for m in range(2)
]


def diagnostics() -> pa.Table:
    return pa.concat_tables(
        [
            # stages out of order on purpose; the unflossed trial's 'pre' repeats 'initial' and is left out
            gates("a", {"final": [0.2, 0.4], "pre": [0.5, 0.5], "initial": [0.5, 0.5]}),
            gates("b", {"initial": [0.5, 0.5], "pre": [0.95, 0.99], "final": [0.85, 0.95]}),
            gates("c", {"final": [0.9, 0.2]}),  # exactly 0.9 is not above it
            gates("d", {"final": [0.92, float("nan")]}),  # a second trial in c's cell; NaN: a diverged unit
            gates("b", {"final": [0.85, 0.95]}),  # b's final read twice: counted once
            gates("running", {"final": [1.0, 1.0]}),  # no records yet: left out
        ]
    )


def test_mean_and_saturated_share_per_group_delay_and_stage_by_hand():
    rows = retention_by_stage(diagnostics(), pa.Table.from_pylist(RECORDS), ["floss_mode"], "delay").to_pylist()
    got = [(r["group"], r["delay"], r["stage"], r["members"], r["units"]) for r in rows]
    assert got == [
        ("floss_mode=none", 10, "initial", 2, 4),
        ("floss_mode=none", 10, "final", 2, 4),
        ("floss_mode=pre", 10, "initial", 2, 4),
        ("floss_mode=pre", 10, "pre", 2, 4),
        ("floss_mode=pre", 10, "final", 2, 4),
        ("floss_mode=pre", 20, "final", 4, 8),  # trials c (seed 0) and d (seed 1): 4 members
    ]
    by_cell = {(r["group"], r["delay"], r["stage"]): r for r in rows}
    assert by_cell["floss_mode=none", 10, "final"]["mean_gate"] == pytest.approx(0.3)
    assert by_cell["floss_mode=pre", 10, "pre"]["share_saturated"] == 1.0
    assert by_cell["floss_mode=pre", 10, "final"]["mean_gate"] == pytest.approx(0.9)
    assert by_cell["floss_mode=pre", 10, "final"]["share_saturated"] == 0.5
    # c: 0.9, 0.2 per member; d: 0.92 and NaN per member -> finite 0.9, 0.2, 0.9, 0.2, 0.92, 0.92
    assert by_cell["floss_mode=pre", 20, "final"]["mean_gate"] == pytest.approx((2 * 1.1 + 2 * 0.92) / 6)
    assert by_cell["floss_mode=pre", 20, "final"]["share_saturated"] == pytest.approx(2 / 6)
    text = format_retention(pa.Table.from_pylist(rows), "delay")
    assert "floss_mode=pre 10 final 2 4 0.900 50.0%" in [" ".join(line.split()) for line in text.splitlines()]


def test_the_spacing_axis_is_computed_for_the_gates_too():
    records = pa.Table.from_pylist([{**r, "bits": 2} for r in RECORDS])
    rows = retention_by_stage(diagnostics(), records, ["floss_mode"], "spacing").to_pylist()
    assert {r["spacing"] for r in rows} == {5.0, 10.0}


def test_no_gated_trial_gives_no_table():
    only_spectra = diagnostics().filter(pa.compute.equal(diagnostics()["quantity"], "lyapunov"))
    assert retention_by_stage(only_spectra, pa.Table.from_pylist(RECORDS), ["floss_mode"], "delay").num_rows == 0


def test_the_report_prints_and_writes_the_gate_table(tmp_path, capsys):
    write(RECORDS, tmp_path / "in" / "records.parquet")
    pq.write_table(diagnostics(), tmp_path / "in" / "all-diagnostics.parquet")
    make_report(FromParquet([str(tmp_path / "in")]), ReportSettings(n_draws=0, out=tmp_path / "out"))
    assert "Retention gate" in capsys.readouterr().out
    assert pq.read_table(tmp_path / "out" / "retention_gate.parquet").num_rows == 6
    make_report(FromParquet([str(tmp_path / "in")]), ReportSettings(n_draws=0))
    assert "Retention gate" not in capsys.readouterr().out  # without --out the diagnostics are not read
    assert "| floss_mode=pre" in (tmp_path / "out" / "report.md").read_text()
