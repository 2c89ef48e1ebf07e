"""Between-seed spread: T50 per seed against the pooled group, on records whose answers are known."""

import pyarrow as pa
import pytest

from flosssweep.records import write
from flosssweep.report import aggregate
from flosssweep.report.make import FromParquet, ReportSettings, make_report
from flosssweep.report.seeds import format_seed_spread, inside, seed_spread


def records(successes: dict) -> list[dict]:
    """Rows of 8 members per (mode, seed, delay) cell, the first k of them successful."""
    rows = []
    for (mode, seed, delay), k in successes.items():
        rows += [
            {
                "floss_mode": mode,
                "seed": seed,
                "delay": delay,
                "member": j,
                "config_key": f"{mode}{delay}",
                "success": j < k,
                "status": "ok",
            }
            for j in range(8)
        ]
    return rows


# seed 0 succeeds 8/8 up to d = 20 and fails at 30: its T50 = 25 (rate 1 -> 0 between 20 and 30);
# seed 1 fails from d = 20 on: T50 = 15. Pooled: 16/16, 8/16, 0/16, so the rate 0.5 at d = 20 is not
# below the threshold and T50 = 20 + 10 * (0.5 - 0.5) / (0.5 - 0) = 20.
CELLS = {
    **{("pre", 0, d): k for d, k in ((10, 8), (20, 8), (30, 0))},
    **{("pre", 1, d): k for d, k in ((10, 8), (20, 0), (30, 0))},
    **{("none", 0, d): k for d, k in ((10, 0), (20, 0), (30, 0))},
    **{("none", 1, d): k for d, k in ((10, 0), (20, 0), (30, 0))},
}


def test_t50_per_seed_next_to_the_pooled_group():
    table = pa.Table.from_pylist(records(CELLS))
    pooled = aggregate(table, n_draws=200)
    assert pooled.settings.by == ["floss_mode"]  # the seed is not a grouping column
    t50 = {r["group"]: (r["t50"], r["t50_relation"]) for r in pooled.horizon.to_pylist()}
    assert t50["floss_mode=pre"] == (20.0, "=")
    spread = {(r["group"], r["seed"]): r for r in seed_spread(table, pooled).to_pylist()}
    assert spread["floss_mode=pre", 0]["t50"] == "25.0" and spread["floss_mode=pre", 1]["t50"] == "15.0"
    assert spread["floss_mode=none", 0]["t50"] == "< 10" and spread["floss_mode=pre", 0]["n"] == 24
    # both unflossed seeds fail everywhere: each censored T50 lies in the other's censored interval
    assert spread["floss_mode=none", 0]["inside_others"] == "1/1"
    text = format_seed_spread(seed_spread(table, pooled))
    assert "T50 per seed" in text and "floss_mode=pre" in text


def test_a_seed_at_one_x_is_no_replicate():
    """An adaptive sweep that places delay 20 a second time gives that trial seed 1: one point, no
    curve of its own, so no per-seed table (before: it showed seed 1 as 'T50 >= 20' beside seed 0)."""
    cells = {**{("pre", 0, d): k for d, k in ((10, 8), (20, 4), (30, 0))}, ("pre", 1, 20): 5}
    table = pa.Table.from_pylist(records(cells))
    assert seed_spread(table, aggregate(table, n_draws=50)) is None
    both = pa.Table.from_pylist(records({**cells, ("pre", 1, 30): 0}))  # seed 1 at two delays: compared
    assert [r["seed"] for r in seed_spread(both, aggregate(both, n_draws=50)).to_pylist()] == [0, 1]


def test_no_seed_with_a_curve_of_its_own_gives_no_table():
    """One trial, one delay: the filter leaves no row, which must read as 'nothing to compare' (it
    once raised a TypeError at the end of every one-delay sweep, in the driver's closing report)."""
    one = pa.Table.from_pylist(records({("pre", 0, 20): 4}))
    named = one.append_column("sweep", pa.array(["one-delay"] * one.num_rows))  # a group key, as a launch has
    for table in (one, named):
        assert seed_spread(table, aggregate(table, n_draws=50)) is None


def test_inside_on_an_extended_line():
    inf = float("inf")
    assert inside(25.0, 21.0, 29.0) and not inside(15.0, 21.0, 29.0)
    assert inside(inf, 60.0, inf) and not inside(inf, 60.0, 69.0)  # '>= x_max' within '[60, >= x_max]'
    assert inside(-inf, -inf, 12.0)
    assert inside(float("nan"), 1.0, 2.0) is None


def test_one_seed_gives_no_spread_table():
    one = {key: k for key, k in CELLS.items() if key[1] == 0}
    table = pa.Table.from_pylist(records(one))
    assert seed_spread(table, aggregate(table, n_draws=50)) is None


def test_the_report_prints_and_writes_the_spread(tmp_path, capsys):
    path = write(records(CELLS), tmp_path / "r.parquet")
    make_report(FromParquet([str(path)]), ReportSettings(n_draws=200, out=tmp_path / "out", figure_formats=["png"]))
    printed = capsys.readouterr().out
    assert "T50 per seed" in printed
    assert (tmp_path / "out" / "seeds.parquet").is_file()
    assert "T50 per seed" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_machine_readable_output_stays_one_document(tmp_path, capsys, fmt):
    path = write(records(CELLS), tmp_path / "r.parquet")
    make_report(FromParquet([str(path)]), ReportSettings(n_draws=50, format=fmt))
    assert "T50 per seed" not in capsys.readouterr().out
