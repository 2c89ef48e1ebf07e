"""The spectrum over training per group: quartiles by hand, the stage at epoch 0, the report's figure."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flosssweep.records import write
from flosssweep.report.common import ReportError
from flosssweep.report.make import FromParquet, ReportSettings, make_report
from flosssweep.report.spectra import panel_grid, plot_spectrum_evolution, spectrum_evolution


def diagnostics(config_key: str, offset: float) -> pa.Table:
    """lambda_i of member m at epoch e: offset - i + m / 10 + e / 100; 'initial' at epoch 0 is 99 ('pre' wins)."""
    rows = []
    for stage, epoch in (("initial", 0), ("pre", 0), ("train", 10), ("final", 20)):
        for m in range(4):
            for i in (1, 2, 3):
                value = 99.0 if stage == "initial" else offset - i + m / 10 + epoch / 100
                rows.append(
                    {
                        "config_key": config_key,
                        "seed": 0,
                        "epoch": epoch,
                        "stage": stage,
                        "member": m,
                        "quantity": "lyapunov",
                        "index": i,
                        "value": value,
                    }
                )
    rows.append({**rows[-1], "quantity": "jacobian_log_sv", "value": -7.0})  # another quantity: not drawn
    return pa.Table.from_pylist(rows)


RECORDS = [
    {"config_key": key, "floss_mode": mode, "delay": 10, "member": m, "seed": 0, "success": True, "status": "ok"}
    for key, mode in (("a", "none"), ("b", "pre"))
    for m in range(4)
]


def test_median_and_quartiles_of_the_first_middle_and_last_exponent():
    table = pa.concat_tables([diagnostics("a", 0.0), diagnostics("b", 1.0)])
    rows = spectrum_evolution(table, pa.Table.from_pylist(RECORDS), ["floss_mode"]).to_pylist()
    got = {(r["group"], r["i"], r["epoch"]): r for r in rows}
    assert {i for _, i, _ in got} == {1, 2, 3} and {e for _, _, e in got} == {0, 10, 20}
    members = np.arange(4) / 10
    for group, offset in (("floss_mode=none", 0.0), ("floss_mode=pre", 1.0)):
        for i in (1, 2, 3):
            for epoch in (0, 10, 20):
                values = offset - i + members + epoch / 100
                r = got[group, i, epoch]
                assert (r["q25"], r["median"], r["q75"]) == pytest.approx(tuple(np.percentile(values, [25, 50, 75])))
    assert got["floss_mode=pre", 1, 0]["median"] == pytest.approx(1.0 - 1 + 0.15)  # 'pre', not 'initial' (99)


def test_the_report_draws_the_spectrum_from_diagnostics_files_next_to_the_records(tmp_path):
    write(RECORDS, tmp_path / "in" / "records.parquet")
    pq.write_table(diagnostics("a", 0.0), tmp_path / "in" / "a-diagnostics.parquet")
    pq.write_table(diagnostics("b", 1.0), tmp_path / "in" / "b-diagnostics.parquet")
    report = make_report(
        FromParquet([str(tmp_path / "in")]), ReportSettings(n_draws=50, out=tmp_path / "out", figure_formats=["png"])
    )
    assert report.aggregate.curves.num_rows == 2  # the diagnostics files are not read as records
    assert (tmp_path / "out" / "spectrum_evolution.png").stat().st_size > 0
    assert pq.read_table(tmp_path / "out" / "spectrum_evolution.parquet").num_rows == 2 * 3 * 3
    assert "Spectrum over training" in (tmp_path / "out" / "report.md").read_text()


def test_groups_come_in_reading_order_schedules_from_none_up_and_numbers_by_value():
    labels = {"a": ("pre+during", 16), "b": ("none", 16), "c": ("pre", 4), "d": ("pre", 16)}
    table = pa.concat_tables([diagnostics(key, 0.0) for key in labels])
    records = [
        {"config_key": key, "floss_mode": mode, "floss_k": k, "member": m, "seed": 0, "success": True}
        for key, (mode, k) in labels.items()
        for m in range(4)
    ]
    rows = spectrum_evolution(table, pa.Table.from_pylist(records), ["floss_mode", "floss_k"]).to_pylist()
    assert list(dict.fromkeys(r["group"] for r in rows)) == [
        "floss_mode=none, floss_k=16",
        "floss_mode=pre, floss_k=4",
        "floss_mode=pre, floss_k=16",
        "floss_mode=pre+during, floss_k=16",
    ]


def test_panels_take_a_row_per_level_of_the_first_columns_and_wrap_a_single_column():
    ragged = ["mode=none, k=16", "mode=pre, k=4", "mode=pre, k=16", "mode=pre+during, k=16"]
    assert panel_grid(ragged) == [
        ["mode=none, k=16", None],
        ["mode=pre, k=4", "mode=pre, k=16"],
        ["mode=pre+during, k=16", None],
    ]
    schedules = ["mode=none", "mode=pre", "mode=pre+during", "mode=regularizer"]
    assert panel_grid(schedules) == [["mode=none", "mode=pre", "mode=pre+during"], ["mode=regularizer", None, None]]
    wide = [f"bits=1, k={k}" for k in range(5)] + ["bits=2, k=0"]
    assert [len(row) for row in panel_grid(wide)] == [3, 3]  # five to a row would not fit: wrapped


@pytest.mark.parametrize("ks", [(1,), (2,), (1, 80)])
def test_the_figure_is_drawn_where_k_leaves_no_middle_or_no_smallest_exponent(tmp_path, ks):
    evolution = pa.Table.from_pylist(
        [
            {"group": f"floss_k={k}", "i": i, "k": k, "epoch": e, "q25": -1.0, "median": -0.5, "q75": 0.0}
            for k in ks
            for i in sorted({1, (k + 1) // 2, k})
            for e in (0, 10)
        ]
    )
    (path,) = plot_spectrum_evolution(evolution, tmp_path / "spectrum", ["png"])
    assert path.stat().st_size > 0


def test_the_spectrum_at_one_delay_draws_only_the_trials_there(tmp_path):
    # trial a at delay 10 and c at delay 20 are one group (floss_mode=none); c's exponents are 5 higher
    records = RECORDS + [{**r, "config_key": "c", "delay": 20} for r in RECORDS if r["config_key"] == "a"]
    write(records, tmp_path / "in" / "records.parquet")
    for key, offset in (("a", 0.0), ("b", 1.0), ("c", 5.0), ("running", 50.0)):
        pq.write_table(diagnostics(key, offset), tmp_path / "in" / f"{key}-diagnostics.parquet")

    def median_of_none(**settings) -> tuple[float, str]:
        out = tmp_path / f"out{len(settings)}"
        make_report(
            FromParquet([str(tmp_path / "in")]), ReportSettings(n_draws=0, out=out, figure_formats=["png"], **settings)
        )
        rows = pq.read_table(out / "spectrum_evolution.parquet").to_pylist()
        assert {r["group"] for r in rows} <= {"floss_mode=none", "floss_mode=pre"}, (
            "a trial without records is left out"
        )
        (row,) = [r for r in rows if r["group"] == "floss_mode=none" and r["i"] == 1 and r["epoch"] == 20]
        return row["median"], (out / "report.md").read_text()

    median, text = median_of_none(spectrum_at=20)
    assert median == pytest.approx(5.0 - 1 + 0.15 + 0.2) and "at delay = 20," in text
    pooled, text = median_of_none()
    assert pooled == pytest.approx(np.median([-1 + m / 10 + 0.2 + o for o in (0.0, 5.0) for m in range(4)]))
    assert "pooled over every delay tested" in text


def test_bad_input_a_spectrum_at_a_delay_never_tested_is_refused(tmp_path):
    write(RECORDS, tmp_path / "records.parquet")
    with pytest.raises(ReportError, match=r"^--spectrum-at 15: no records at delay = 15 \(tested: 10\)$"):
        make_report(FromParquet([str(tmp_path)]), ReportSettings(n_draws=0, spectrum_at=15))
