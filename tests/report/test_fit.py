"""`--fit logistic`: the fitted T50 beside the interpolated one in every output, and its interval's coverage
checked by simulation on curves the model does not contain."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_report import GROUPS, PNG_MAGIC, horizon_row, make_records

from flosssweep import report
from flosssweep.bench.adaptive import SHAPES
from flosssweep.report.common import ReportError
from flosssweep.report.fit import CURVE_POINTS, fit_groups
from flosssweep.report.text import format_report


@pytest.fixture(scope="module")
def fitted():
    return report.aggregate(make_records(GROUPS), n_draws=200, seed=0, fit="logistic")


def test_the_fit_sits_beside_the_interpolated_t50(fitted):
    rnn_none = horizon_row(fitted.horizon, "rnn", "none")  # 10, 8, 4, 0 of 10 at 10..40: interpolated 27.5
    assert rnn_none["t50"] == pytest.approx(27.5)
    assert rnn_none["fit_t50_relation"] == "="
    assert 24 < rnn_none["fit_t50"] < 31
    assert rnn_none["fit_t50_lo"] < rnn_none["fit_t50"] < rnn_none["fit_t50_hi"]
    # every realization up to 40 nearly always succeeds: both say the horizon lies past the tested range
    rnn_pre = horizon_row(fitted.horizon, "rnn", "pre")
    assert rnn_pre["t50_relation"] == ">=" and rnn_pre["fit_t50_relation"] == ">="
    assert rnn_pre["fit_t50"] == 40 and rnn_pre["fit_t50_hi_relation"] == ">="
    lstm_none = horizon_row(fitted.horizon, "lstm", "none")  # 4/10 at the first delay already
    assert lstm_none["fit_t50_relation"] == "<" and lstm_none["fit_t50_lo_relation"] == "<"


def test_the_fitted_curves_span_each_group_and_stay_rates(fitted):
    curves = fitted.fitted
    assert curves.num_rows == CURVE_POINTS * fitted.horizon.num_rows
    delay, rate = curves["delay"].to_numpy(), curves["rate"].to_numpy()
    assert delay.min() == 10 and delay.max() == 40
    assert ((0 <= rate) & (rate <= 1)).all()
    # the falling group's curve falls through the threshold where its fitted T50 says
    g = horizon_row(fitted.horizon, "rnn", "none")
    mine = curves["group_id"].to_numpy() == g["group_id"]
    crossing = np.interp(0.5, rate[mine][::-1], delay[mine][::-1])
    assert crossing == pytest.approx(g["fit_t50"], abs=3)


def test_an_adaptive_sweep_is_fitted_like_a_grid():
    # adaptive rounds leave each group its own x values, unevenly spaced and crowded near its T50
    rnn = make_records({("rnn", "none"): [10, 9, 6, 3, 0]}, delays=(10, 36, 40, 44, 90))
    gru = make_records({("gru", "none"): [10, 8, 5, 1]}, delays=(20, 58, 62, 66))
    fitted = report.aggregate(pa.concat_tables([rnn, gru]), by=["arch", "floss_mode"], n_draws=0, fit="logistic")
    for arch, inside in (("rnn", (36, 44)), ("gru", (58, 66))):
        row = horizon_row(fitted.horizon, arch, "none")
        assert row["fit_t50_relation"] == "=" and inside[0] < row["fit_t50"] < inside[1]
        mine = fitted.fitted["group_id"].to_numpy() == row["group_id"]
        assert fitted.fitted["delay"].to_numpy()[mine][[0, -1]].tolist() == [row["x_min"], row["x_max"]]


def test_without_fit_nothing_changes():
    plain = report.aggregate(make_records(GROUPS), n_draws=0)
    assert plain.fitted is None and "fit_t50" not in plain.horizon.column_names
    assert "fitted" not in format_report(plain, "table")


def test_every_text_format_carries_the_fit(fitted):
    assert "fitted T50 [95% CI]" in format_report(fitted, "table")
    assert "fit_t50_lo_relation" in format_report(fitted, "csv").splitlines()[0]
    doc = json.loads(format_report(fitted, "json"))
    assert doc["fit"] == "logistic"
    assert {"value", "relation", "lo", "lo_relation", "hi", "hi_relation"} == set(
        doc["sweeps"][0]["groups"][0]["fit_t50"]
    )


@pytest.mark.parametrize(
    "fit, threshold, expect", [("probit", 0.5, "--fit: expected one of logistic"), ("logistic", 1.0, "below 1")]
)
def test_a_fit_it_cannot_make_is_refused(fit, threshold, expect):
    with pytest.raises(ReportError, match=expect):
        report.aggregate(make_records(GROUPS), threshold=threshold, fit=fit)


def test_cli_fit_writes_the_fit_into_parquet_and_figures(tmp_path, capsys):
    source = tmp_path / "records.parquet"
    pq.write_table(make_records(GROUPS), source)
    out = tmp_path / "out"
    args = ["--from-parquet", str(source), "--out", str(out), "--figure-format", "png", "--fit", "logistic"]
    assert report.main(args) == 0
    assert "fitted T50" in capsys.readouterr().out
    horizon = pq.read_table(out / "horizon.parquet")
    assert {"fit_t50", "fit_t50_lo", "fit_t50_hi", "fit_t50_relation"} <= set(horizon.column_names)
    assert report.curves.Settings.of(horizon).fit == "logistic"
    assert pq.read_table(out / "fitted_curves.parquet").num_rows == CURVE_POINTS * horizon.num_rows
    for name in ("success_vs_delay.png", "horizon.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    text = (out / "report.md").read_text()
    assert "fitted logistic curve" in text and "Pale boxes: the fitted T50" in text
    with pytest.raises(SystemExit) as refused:
        report.main(["--from-parquet", str(source), "--fit", "probit"])
    assert refused.value.code == 2 and "invalid choice: 'probit'" in capsys.readouterr().err


# --- coverage --------------------------------------------------------------------------------------
# 8 delays, T50 uniform inside them, n realizations per delay; curves of three shapes the model only
# approximates or contains at its edge. 400 experiments per case put a 95% interval's coverage within
# about +-2% (one standard error 1.1%), so 93% separates it from one that is too narrow: the same
# experiments read with an 80% interval (coverage near 85%) must fail, which the last test checks.

DELAYS = np.linspace(10.0, 80.0, 8)
EXPERIMENTS = 400


def coverage(shape_name: str, n: int, confidence: float = 0.95) -> float:
    shape = next(s for s in SHAPES if s.name == shape_name)
    rng = np.random.default_rng(1)
    truths = rng.uniform(20, 70, EXPERIMENTS)
    spreads = rng.uniform(*shape.spreads, EXPERIMENTS)
    k = np.concatenate([rng.binomial(n, shape.rate(DELAYS, t, s)) for t, s in zip(truths, spreads)])
    starts = np.arange(EXPERIMENTS) * DELAYS.size
    fit = fit_groups(np.tile(DELAYS, EXPERIMENTS), k, np.full(k.size, n), starts, 0.5, confidence, with_curves=False)
    return float(np.mean((fit.lo <= truths) & (truths <= fit.hi)))


@pytest.mark.slow
@pytest.mark.parametrize("n", [4, 8])
@pytest.mark.parametrize("shape", ["lapse", "weibull", "asymmetric"])
def test_the_fitted_interval_covers_the_true_t50(shape, n):
    assert coverage(shape, n) >= 0.93


@pytest.mark.slow
def test_a_too_narrow_interval_fails_the_coverage_test():
    assert coverage("asymmetric", 8, confidence=0.8) < 0.93
