"""The report: aggregation of trial records, text and figures, the CLI and the MLflow layout."""

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import fresh_store

from flosssweep import records, report
from flosssweep.report import common, figures, style
from flosssweep.report.curves import Settings

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_records(groups, delays=(10, 20, 30, 40), sweep="delay-scan", n=10, statuses=None):
    """Rows of a sweep: ``groups`` maps (arch, floss_mode) to successes per delay out of ``n``.

    Realizations of a cell are seeds 0..1 x members 0..n/2-1; the first k succeed. ``statuses``
    maps (arch, floss_mode, delay, realization index) to a status other than 'ok'.
    """
    statuses = statuses or {}
    rows = []
    for (arch, mode), ks in groups.items():
        for delay, k in zip(delays, ks):
            for i in range(n):
                status = statuses.get((arch, mode, delay, i), "ok")
                ok = i < k
                rows.append(
                    {
                        "sweep": sweep,
                        "trial_id": f"{arch}-{mode}-{delay}-{i // (n // 2)}",
                        "member": i % (n // 2),
                        "seed": i // (n // 2),
                        "config_key": f"{arch}-{mode}-{delay}",
                        "arch": arch,
                        "hidden": 80,
                        "task": "parity",
                        "bits": 2,
                        "delay": delay,
                        "floss_mode": mode,
                        "floss_k": 1,
                        "floss_strength": 0.0,
                        "success": ok if status != "error" else None,
                        "final_accuracy": 0.99 if ok else 0.6,
                        "final_loss": 0.01 if ok else 0.6,
                        "epochs_to_success": 500 + i if ok else None,
                        "lambda_1": -0.01 * i,
                        "lambda_k": -0.1 * i,
                        "status": status,
                        "train_epochs": 3000,
                        "ensemble": n // 2,
                        "device": "cpu" if i % 2 else "cuda",
                    }
                )
    return records.to_table(rows)


GROUPS = {
    ("rnn", "none"): [10, 8, 4, 0],  # T50 = 27.5
    ("rnn", "pre"): [10, 10, 9, 6],  # >= 40
    ("lstm", "none"): [4, 2, 1, 0],  # < 10
    ("lstm", "pre"): [10, 3, 8, 2],  # non-monotone: 10 + 5/0.7 = 17.142857
}


def horizon_row(horizon, arch, mode):
    rows = [r for r in horizon.to_pylist() if r.get("arch", arch) == arch and r["floss_mode"] == mode]
    assert len(rows) == 1
    return rows[0]


@pytest.fixture(scope="module")
def aggregated():
    return report.aggregate(make_records(GROUPS), n_draws=400, seed=0)


# --- aggregation ---------------------------------------------------------------------------


def test_default_grouping_is_the_varied_config_columns(aggregated):
    curves, horizon = aggregated.curves, aggregated.horizon
    meta = aggregated.settings
    # seed, member, trial_id, config_key, delay, outcomes and 'device' (differs between the
    # realizations of one configuration) are not axes; constant columns are not either.
    assert meta.by == ["arch", "floss_mode"]
    assert meta.keys == ["sweep", "arch", "floss_mode"]
    assert horizon.num_rows == 4
    assert curves.num_rows == 16


def test_default_grouping_ignores_per_trial_outcomes_with_one_trial_per_config():
    # One trial (seed 0, an ensemble of 10) per configuration: a per-trial number such as the
    # trainer's train_seconds is then constant within config_key, yet it is not a config axis.
    t = make_records(GROUPS)
    t = t.set_column(t.schema.get_field_index("seed"), "seed", pa.array([0] * t.num_rows))
    per_trial = pc.cast(pc.binary_length(t["config_key"]), pa.float64())
    t = t.append_column("train_seconds", per_trial).append_column("nonfinite_steps", pc.cast(per_trial, pa.int64()))
    t = t.append_column("host", pc.binary_join_element_wise("node-", t["config_key"], ""))
    assert report.default_by(t) == ["arch", "floss_mode"]
    assert report.default_by(t, x="floss_mode") == ["arch", "delay"]


def test_curves_hold_counts_rates_and_wilson(aggregated):
    curves = aggregated.curves
    rows = [r for r in curves.to_pylist() if r["arch"] == "rnn" and r["floss_mode"] == "none"]
    assert [r["delay"] for r in rows] == [10, 20, 30, 40]
    assert [(r["k"], r["n"]) for r in rows] == [(10, 10), (8, 10), (4, 10), (0, 10)]
    assert rows[0]["wilson_lo"] == pytest.approx(0.722467, abs=1e-6)
    assert rows[3]["wilson_hi"] == pytest.approx(0.277533, abs=1e-6)
    assert rows[1]["rate"] == 0.8


def test_horizon_values_and_censoring(aggregated):
    horizon = aggregated.horizon
    r = horizon_row(horizon, "rnn", "none")
    assert (r["t50"], r["t50_relation"]) == (pytest.approx(27.5), "=")
    assert r["t50_lo"] <= 27.5 <= r["t50_hi"]
    assert r["group"] == "arch=rnn, floss_mode=none"
    r = horizon_row(horizon, "rnn", "pre")
    assert (r["t50"], r["t50_relation"]) == (40, ">=")
    assert r["t50_hi_relation"] == ">="
    r = horizon_row(horizon, "lstm", "none")
    assert (r["t50"], r["t50_relation"]) == (10, "<")
    assert r["t50_lo_relation"] == "<"


def test_non_monotone_group_uses_first_crossing(aggregated):
    horizon = aggregated.horizon
    r = horizon_row(horizon, "lstm", "pre")
    assert r["t50"] == pytest.approx(10 + 50 / 7)
    assert r["nonmonotone"] is True
    assert not horizon_row(horizon, "rnn", "none")["nonmonotone"]


def test_error_rows_are_excluded_and_counted_diverged_rows_fail():
    statuses = {
        ("rnn", "none", 20, 0): "error",  # a success that errored: not a realization
        ("rnn", "none", 20, 9): "error",
        ("rnn", "none", 30, 1): "diverged",  # marked success but diverged: a failure
    }
    table = make_records({("rnn", "none"): [10, 8, 4, 0], ("rnn", "pre"): [10] * 4}, statuses=statuses)
    # The trainer should not mark a diverged member successful, but the report must not trust it.
    table = table.set_column(
        table.schema.get_field_index("success"),
        "success",
        pc.if_else(pc.equal(table["status"], "diverged"), True, table["success"]),
    )
    aggregated = report.aggregate(table, n_draws=0)
    curves, horizon = aggregated.curves, aggregated.horizon
    rows = {r["delay"]: r for r in curves.to_pylist() if r["floss_mode"] == "none"}
    assert (rows[20]["k"], rows[20]["n"], rows[20]["n_error"]) == (7, 8, 2)
    assert (rows[30]["k"], rows[30]["n"], rows[30]["n_error"]) == (3, 10, 0)
    r = horizon_row(horizon, "rnn", "none")
    assert r["n_error"] == 2 and r["n"] == 38
    # 7/8 at 20, 3/10 at 30: 20 + (0.875 - 0.5) / (0.875 - 0.3) * 10
    assert r["t50"] == pytest.approx(20 + 0.375 / 0.575 * 10)
    text = report.format_report(aggregated)
    assert "2 row(s) with status 'error' excluded from n" in text
    assert "7/8" in text and "errors" in text


def test_explicit_by_pools_other_columns():
    aggregated = report.aggregate(make_records(GROUPS), by=["floss_mode"], n_draws=0)
    curves, horizon = aggregated.curves, aggregated.horizon
    assert horizon.num_rows == 2
    none = [r for r in curves.to_pylist() if r["floss_mode"] == "none"]
    assert [(r["k"], r["n"]) for r in none] == [(14, 20), (10, 20), (5, 20), (0, 20)]


def test_by_none_pools_everything_and_sweeps_stay_apart():
    t = pa.concat_tables([make_records(GROUPS, sweep="a"), make_records(GROUPS, sweep="b")])
    aggregated = report.aggregate(t, by=[], n_draws=0)
    curves, horizon = aggregated.curves, aggregated.horizon
    assert horizon["sweep"].to_pylist() == ["a", "b"]
    assert curves.filter(pc.equal(curves["sweep"], "a"))["n"].to_pylist() == [40] * 4
    text = report.format_report(aggregated)
    assert "sweep a:" in text and "sweep b:" in text


def test_x_column_is_a_parameter_and_categorical_x_does_not_crash():
    t = make_records(GROUPS)
    # A chaotic-data style sweep: tau as x, with 'none' among the values (no teacher forcing).
    tau = pc.cast(t["delay"], pa.string())
    tau = pc.if_else(pc.equal(tau, "40"), "none", tau)
    t = t.append_column("tau", tau).drop_columns(["delay"])
    t = t.set_column(
        t.schema.get_field_index("config_key"),
        "config_key",
        pc.binary_join_element_wise(t["arch"], t["floss_mode"], t["tau"], "-"),
    )
    aggregated = report.aggregate(t, x="tau", n_draws=50)
    curves, horizon = aggregated.curves, aggregated.horizon
    assert set(horizon["t50_relation"].to_pylist()) == {"n/a"}
    r = [c for c in curves.to_pylist() if c["arch"] == "rnn" and c["floss_mode"] == "none"]
    assert [c["tau"] for c in r] == ["10", "20", "30", "none"]  # numbers first, by value
    text = report.format_report(aggregated)
    assert "tau = none" in text and "not numeric" in text
    # Numeric tau works like delay.
    t2 = make_records(GROUPS).rename_columns(["tau" if c == "delay" else c for c in make_records(GROUPS).column_names])
    h2 = report.aggregate(t2, x="tau", n_draws=0).horizon
    assert horizon_row(h2, "rnn", "none")["t50"] == pytest.approx(27.5)


def parity_and_chaotic_records(n=4):
    """Copy (bits 1) and XOR (bits 2) on the same spacings 10..40, so XOR's delays are 20..80, and
    one chaotic-data trial, which has neither bits nor delay."""
    successes = {1: [4, 4, 3, 1], 2: [4, 3, 1, 0]}
    rows = []
    for bits, ks in successes.items():
        for spacing, k in zip((10, 20, 30, 40), ks):
            delay = bits * spacing
            rows += [
                {
                    "sweep": "s",
                    "trial_id": f"{bits}-{delay}",
                    "member": i,
                    "seed": 0,
                    "config_key": f"{bits}-{delay}",
                    "arch": "rnn",
                    "task": "parity",
                    "bits": bits,
                    "delay": delay,
                    "floss_mode": "pre",
                    "success": i < k,
                    "status": "ok",
                }
                for i in range(n)
            ]
    rows += [
        {
            "sweep": "s",
            "trial_id": "l",
            "member": i,
            "seed": 0,
            "config_key": "l",
            "arch": "rnn",
            "task": "lorenz63",
            "tau": 10,
            "floss_mode": "none",
            "success": True,
            "status": "ok",
        }
        for i in range(n)
    ]
    return records.to_table(rows)


def test_spacing_axis_is_delay_over_bits():
    aggregated = report.aggregate(parity_and_chaotic_records(), x="spacing", n_draws=0)
    curves, horizon, meta = aggregated.curves, aggregated.horizon, aggregated.settings
    # delay is what spacing replaces, not a grouping axis; the chaotic rows have no spacing
    assert meta.x == "spacing" and meta.by == ["bits"]
    assert curves["spacing"].to_pylist() == [10, 20, 30, 40] * 2
    assert curves["k"].to_pylist() == [4, 4, 3, 1, 4, 3, 1, 0]
    t50 = dict(zip(horizon["bits"].to_pylist(), horizon["t50"].to_pylist()))
    # copy: 0.75 at 30, 0.25 at 40: 30 + 0.25 / 0.5 * 10 = 35. XOR: 0.75 at 20, 0.25 at 30: 25
    # (in delay, 50 = 2 x 25).
    assert t50 == {1: pytest.approx(35.0), 2: pytest.approx(25.0)}
    by_delay = report.aggregate(parity_and_chaotic_records(), n_draws=0).horizon
    assert dict(zip(by_delay["bits"].to_pylist(), by_delay["t50"].to_pylist())) == {
        1: pytest.approx(35.0),
        2: pytest.approx(50.0),
    }
    assert style.label("delay") == "longest lag d (steps)"
    assert style.label("spacing") == "input spacing d / bits (steps)"


def test_spacing_needs_delay_and_bits(tmp_path, capsys):
    with pytest.raises(report.ReportError, match=r"bits \(--x spacing is computed from delay and bits\)"):
        report.aggregate(make_records(GROUPS).drop_columns(["bits"]), x="spacing")
    path = tmp_path / "r.parquet"
    pq.write_table(parity_and_chaotic_records(), path)
    out = tmp_path / "out"
    assert report.main(["--from-parquet", str(path), "--x", "spacing", "--n-draws", "50", "--out", str(out)]) == 0
    assert "d/bits = 10" in capsys.readouterr().out  # the table names x as the figure's label does
    assert (out / "success_vs_spacing.png").read_bytes()[:8] == PNG_MAGIC


def test_records_of_one_group_without_a_sweep_column():
    t = parity_and_chaotic_records().drop_columns(["sweep"]).filter(pc.equal(pc.field("bits"), 2))
    horizon = report.aggregate(t, n_draws=20).horizon
    assert horizon["group"].to_pylist() == ["all"] and horizon["t50"].to_pylist() == [pytest.approx(50.0)]


def test_missing_columns_and_bad_settings_raise_report_error():
    t = make_records(GROUPS).drop_columns(["success"])
    with pytest.raises(report.ReportError, match="success"):
        report.aggregate(t)
    with pytest.raises(report.ReportError, match="nope"):
        report.aggregate(make_records(GROUPS), by=["nope"])
    with pytest.raises(report.ReportError, match="threshold"):
        report.aggregate(make_records(GROUPS), threshold=1.5)


def test_aggregate_is_reproducible_for_a_seed():
    t = make_records(GROUPS)
    a = report.aggregate(t, n_draws=200, seed=3).horizon
    b = report.aggregate(t, n_draws=200, seed=3).horizon
    assert a.equals(b)


def test_synthetic_records_for_the_benchmark():
    t = report.synthetic_records(10_000, seed=1)
    assert t.num_rows == 10_000
    for c in records.RECORD_SCHEMA.names + ["train_epochs", "model_g", "floss_pre_steps", "ensemble"]:
        assert c in t.column_names
    aggregated = report.aggregate(t, n_draws=100)
    curves, horizon = aggregated.curves, aggregated.horizon
    assert curves["n"].to_numpy().max() <= 16
    assert horizon.num_rows == -(-10_000 // 96)
    assert "delay" not in aggregated.settings.by
    assert 0 < pc.sum(curves["n_error"]).as_py() < 100


# --- text formats ----------------------------------------------------------------------------


def test_table_format_shows_counts_and_censoring(aggregated):
    text = report.format_report(aggregated, fmt="table")
    lines = text.splitlines()
    assert lines[0].startswith("sweep delay-scan: 4 group(s), 160 realization(s)")
    header = lines[2]
    # the columns as the figures label them (style.label), not the record columns' names
    for col in ("network", "flossing schedule", "d = 10", "d = 40", "T50 [95% CI]"):
        assert col in header
    assert "floss_mode" not in header and "delay" not in header
    row = next(line for line in lines if line.startswith("rnn ") and " none " in line)
    assert "10/10" in row and "8/10" in row and "27.5 [" in row
    assert any(">= 40 [" in line for line in lines)
    assert any("< 10 [< 10" in line for line in lines)
    assert any("17.1* [" in line for line in lines)  # 17.142857 to three significant figures
    assert any(line.startswith("* success rate is back") for line in lines)
    # Known level order: none before pre.
    modes = [line.split()[1] for line in lines[4:8]]
    assert modes == ["none", "pre", "none", "pre"]


def test_markdown_csv_and_json_formats(aggregated):
    md = report.format_report(aggregated, fmt="markdown")
    assert "| network | flossing schedule |" in md.replace("  ", " ")
    assert md.splitlines()[3].startswith("| -")
    rows = list(csv.DictReader(io.StringIO(report.format_report(aggregated, fmt="csv"))))
    assert len(rows) == 4
    r = next(r for r in rows if r["arch"] == "rnn" and r["floss_mode"] == "none")
    assert r["delay 20"] == "8/10" and float(r["t50"]) == pytest.approx(27.5) and r["t50_relation"] == "="
    doc = json.loads(report.format_report(aggregated, fmt="json"))
    assert doc["x"] == "delay" and doc["threshold"] == 0.5
    g = next(g for g in doc["sweeps"][0]["groups"] if g["axes"] == {"arch": "lstm", "floss_mode": "none"})
    assert g["t50"]["relation"] == "<" and g["t50"]["value"] == 10
    assert [p["k"] for p in g["curve"]] == [4, 2, 1, 0]


# --- figures ---------------------------------------------------------------------------------


def test_figures_are_written(tmp_path, aggregated):
    p = report.plot_success_curves(aggregated, tmp_path / "c.png", marker=[(25.0, "predicted T50")])
    assert p.read_bytes()[:8] == PNG_MAGIC
    h = report.plot_horizon(aggregated, tmp_path / "h.png")
    assert h.read_bytes()[:8] == PNG_MAGIC
    assert figures.most_important_axis(aggregated) in ("arch", "floss_mode")


def test_crowded_curve_figure_is_split_into_panels(tmp_path):
    t = report.synthetic_records(96 * 24, seed=2)
    aggregated = report.aggregate(t, n_draws=50)
    assert report.plot_success_curves(aggregated, tmp_path / "c.png").stat().st_size > 10_000
    assert report.plot_horizon(aggregated, tmp_path / "h.png").stat().st_size > 10_000


def test_pool_equals_aggregating_with_fewer_axes(aggregated):
    t = make_records(GROUPS)
    pooled = report.pool(aggregated, ["floss_mode"])
    direct = report.aggregate(t, by=["floss_mode"], n_draws=400, seed=0)
    pooled_c, pooled_h, direct_c, direct_h = pooled.curves, pooled.horizon, direct.curves, direct.horizon
    for col in ("floss_mode", "delay", "n", "k", "n_error", "wilson_lo"):
        assert pooled_c[col].to_pylist() == direct_c[col].to_pylist()
    for col in ("t50", "t50_relation", "t50_lo", "t50_hi", "nonmonotone"):
        assert pooled_h[col].to_pylist() == direct_h[col].to_pylist()
    with pytest.raises(report.ReportError, match="hidden"):
        report.pool(aggregated, ["hidden"])


def test_figures_of_many_groups_pool_the_least_important_axes(tmp_path, capsys):
    t = report.synthetic_records(96 * 60, seed=4)  # 60 groups over arch, hidden, bits, floss_mode
    aggregated = report.aggregate(t, n_draws=50)
    shown = figures.figure_axes(aggregated)
    assert 0 < len(shown) < len(aggregated.settings.by)
    assert report.pool(aggregated, shown).horizon.num_rows <= common.FIGURE_GROUP_LIMIT
    written = report.write_outputs(aggregated, tmp_path)
    assert {p.name for p in written} >= {"success_vs_delay.png", "horizon.png", "horizon.parquet"}
    assert "figures pool over" in capsys.readouterr().err
    assert pq.read_table(tmp_path / "horizon.parquet").num_rows == 60  # tables are not pooled


def test_horizon_figure_skipped_for_categorical_x(tmp_path):
    t = make_records(GROUPS)
    t = t.append_column("tau", pc.cast(t["delay"], pa.string())).drop_columns(["delay"])
    aggregated = report.aggregate(t, x="tau", by=["arch", "floss_mode"], n_draws=0)
    assert report.plot_horizon(aggregated, tmp_path / "h.png") is None
    assert report.plot_success_curves(aggregated, tmp_path / "c.png").exists()


# --- command line: Parquet source and bad input ------------------------------------------------


@pytest.fixture
def records_file(tmp_path):
    path = tmp_path / "records.parquet"
    pq.write_table(make_records(GROUPS), path)
    return path


def test_cli_from_parquet_writes_all_outputs(tmp_path, records_file, capsys):
    out = tmp_path / "out"
    rc = report.main(["--from-parquet", str(records_file), "--out", str(out), "--n-draws", "200"])
    captured = capsys.readouterr()
    assert rc == 0
    assert "27.5 [" in captured.out
    assert "reading" in captured.err or "aggregating" in captured.err
    for name in ("success_curves.parquet", "horizon.parquet", "success_vs_delay.png", "horizon.png"):
        assert (out / name).exists(), name
    assert (out / "success_vs_delay.png").read_bytes()[:8] == PNG_MAGIC
    h = pq.read_table(out / "horizon.parquet")
    assert Settings.of(h).by == ["arch", "floss_mode"]
    assert pq.read_table(out / "success_curves.parquet").num_rows == 16


def test_cli_by_threshold_and_format(records_file, capsys):
    rc = report.main(
        [
            "--from-parquet",
            str(records_file),
            "--by",
            "arch,floss_mode",
            "--threshold",
            "0.8",
            "--format",
            "json",
            "--n-draws",
            "0",
        ]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    g = next(g for g in doc["sweeps"][0]["groups"] if g["axes"] == {"arch": "rnn", "floss_mode": "none"})
    # 1.0 at 10, 0.8 at 20 (>= 0.8), 0.4 at 30: T50 = 20 exactly.
    assert g["t50"]["value"] == pytest.approx(20.0)


@pytest.mark.parametrize(
    "make_bad, expect",
    [
        (
            lambda p: pq.write_table(make_records(GROUPS).drop_columns(["success", "delay"]), p),
            "missing required column(s): success, delay",
        ),
        (lambda p: p.write_text("not parquet"), "cannot read"),
        (lambda p: None, "no such file"),
        (lambda p: pq.write_table(make_records(GROUPS).slice(0, 0), p), "no records found"),
    ],
)
def test_cli_bad_parquet_input_one_line_exit_2(tmp_path, capsys, make_bad, expect):
    path = tmp_path / "bad.parquet"
    make_bad(path)
    rc = report.main(["--from-parquet", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("flosssweep.report: error: ")
    assert expect in err[-1]
    assert not any("Traceback" in line for line in err)


def test_cli_unknown_by_column(records_file, capsys):
    assert report.main(["--from-parquet", str(records_file), "--by", "arch,colour"]) == 2
    assert "unknown --by column(s): colour" in capsys.readouterr().err


def test_cli_process_level_bad_input_has_no_traceback(tmp_path):
    bad = tmp_path / "r.parquet"
    pq.write_table(pa.table({"delay": [10, 20]}), bad)
    proc = subprocess.run(
        [sys.executable, "-m", "flosssweep.report", "--from-parquet", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"flosssweep.report: error: {bad}: missing required column(s): success"]


def test_cli_help_explains_flags_and_the_rule():
    proc = subprocess.run(
        [sys.executable, "-m", "flosssweep.report", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0
    for flag in (
        "--experiment",
        "--run",
        "--tracking-uri",
        "--from-parquet",
        "--threshold",
        "--by",
        "--format",
        "--out",
        "--x",
        "--n-draws",
        "--seed",
        "--marker",
    ):
        assert flag in proc.stdout
    assert "first crossing" in proc.stdout.lower() or "first x whose" in proc.stdout


# --- MLflow layout (docs/DESIGN.md), real SQLite store --------------------------------------------------


def log_sweep(client, name, tables, artifact_root, with_records=True):
    """A sweep launch the way the runner records it: a parent run, one child run per trial with
    its records.parquet at the child's artifact root."""
    exp = client.get_experiment_by_name(name)
    eid = (
        exp.experiment_id if exp else client.create_experiment(name, artifact_location=(artifact_root / name).as_uri())
    )
    parent = client.create_run(eid, tags={"flosssweep.role": "parent"}, run_name=f"{name}-launch")
    for i, t in enumerate(tables):
        child = client.create_run(
            eid,
            tags={"flosssweep.role": "child", "mlflow.parentRunId": parent.info.run_id},
            run_name=f"trial-{i}",
        )
        if with_records:
            d = artifact_root / "staging" / child.info.run_id
            d.mkdir(parents=True)
            pq.write_table(t, d / "records.parquet")
            client.log_artifact(child.info.run_id, str(d / "records.parquet"))
        client.set_terminated(child.info.run_id)
    client.set_terminated(parent.info.run_id)
    return parent.info.run_id


def split_trials(table):
    keys = table["trial_id"].unique().to_pylist()
    return [table.filter(pc.equal(table["trial_id"], k)) for k in keys]


@pytest.fixture(scope="module")
def store(tmp_path_factory, migrated_store):
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = fresh_store(migrated_store, root / "mlflow.db")
    client = MlflowClient(tracking_uri=uri)
    older = log_sweep(
        client, "older-sweep", split_trials(make_records({("rnn", "none"): [9, 9, 9, 9]}, sweep="older-sweep")), root
    )
    main_id = log_sweep(client, "delay-scan", split_trials(make_records(GROUPS)), root)
    empty = log_sweep(client, "empty-sweep", [], root)
    # Created last, so it is the most recent sweep in the store.
    latest = log_sweep(
        client, "latest-sweep", split_trials(make_records({("gru", "pre"): [10, 10, 2, 0]}, sweep="latest-sweep")), root
    )
    return {
        "uri": uri,
        "client": client,
        "older": older,
        "main": main_id,
        "empty": empty,
        "latest": latest,
        "root": root,
    }


def test_mlflow_experiment_report_is_logged_to_parent(store, capsys):
    rc = report.main(["--tracking-uri", store["uri"], "--experiment", "delay-scan", "--n-draws", "100", "--log"])
    captured = capsys.readouterr()
    assert rc == 0
    assert "27.5 [" in captured.out
    assert "child run(s) of 1 launch(es) of experiment" in captured.err
    logged = {a.path for a in store["client"].list_artifacts(store["main"], "report")}
    for name in ("success_curves.parquet", "horizon.parquet", "success_vs_delay.png", "horizon.png"):
        assert f"report/{name}" in logged


def test_a_report_without_log_leaves_the_parent_run_as_the_sweep_left_it(store, capsys):
    """The sweep's own report is logged; an exploratory one with another --by must not replace the
    parent's description or add metrics to it."""
    client, parent = store["client"], store["main"]
    assert report.main(["--tracking-uri", store["uri"], "--run", parent, "--n-draws", "0", "--log"]) == 0
    logged = client.get_run(parent).data
    assert report.main(["--tracking-uri", store["uri"], "--run", parent, "--n-draws", "0", "--by", "none"]) == 0
    assert "1 group(s)" in capsys.readouterr().out, "the pooled table was printed"
    after = client.get_run(parent).data
    assert after.tags["mlflow.note.content"] == logged.tags["mlflow.note.content"]
    assert after.metrics == logged.metrics and not any(name.endswith("/all") for name in after.metrics)


def test_mlflow_default_is_most_recent_sweep_and_env_uri(store, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    assert report.main(["--no-log", "--n-draws", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sweep latest-sweep:")
    assert "10/10" in out and "2/10" in out


def test_mlflow_by_run_id(store, capsys, tmp_path):
    rc = report.main(
        ["--tracking-uri", store["uri"], "--run", store["older"], "--no-log", "--out", str(tmp_path), "--n-draws", "0"]
    )
    assert rc == 0
    assert capsys.readouterr().out.startswith("sweep older-sweep:")
    assert (tmp_path / "horizon.parquet").exists()
    assert not store["client"].list_artifacts(store["older"], "report")


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--experiment", "no-such-sweep"], "unknown experiment 'no-such-sweep'"),
        (["--experiment", "empty-sweep"], "no child runs found under the 1 parent run(s)"),
        (["--run", "0123456789abcdef"], "no run with id '0123456789abcdef'"),
    ],
)
def test_mlflow_bad_input_exit_2(store, capsys, args, expect):
    rc = report.main(["--tracking-uri", store["uri"], *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert expect in err[-1] and err[-1].startswith("flosssweep.report: error: ")


def test_mlflow_children_without_records(tmp_path, capsys, mlflow_uri):
    from mlflow.tracking import MlflowClient

    uri = mlflow_uri
    client = MlflowClient(tracking_uri=uri)
    # A store with no sweep at all.
    client.create_experiment("nothing", artifact_location=(tmp_path / "a").as_uri())
    assert report.main(["--tracking-uri", uri]) == 2
    assert "no sweep found" in capsys.readouterr().err
    log_sweep(client, "broken", split_trials(make_records(GROUPS))[:2], tmp_path, with_records=False)
    assert report.main(["--tracking-uri", uri, "--experiment", "broken"]) == 2
    assert "none of the 2 child run(s)" in capsys.readouterr().err


def test_default_tracking_uri_is_absolute_cwd_store(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert report.main([]) == 2
    assert f"no MLflow tracking store at {tmp_path.resolve() / 'mlflow.db'}" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()
