"""The report's figures as files a paper can use: every format opens, sizes and fonts, labels, styles, legends."""

import re
import xml.etree.ElementTree as ET

import pytest

from flosssweep import records, report
from flosssweep.report import style

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sweep_records(groups: dict[str, list[int]], delays=(8, 16, 24), n=8):
    """Rows of one sweep over floss_mode: ``groups`` maps a mode to its successes per delay out of n."""
    rows = []
    for mode, ks in groups.items():
        for delay, k in zip(delays, ks):
            rows += [
                {
                    "sweep": "figs",
                    "trial_id": f"{mode}-{delay}",
                    "member": i,
                    "seed": 0,
                    "config_key": f"{mode}-{delay}",
                    "arch": "rnn",
                    "hidden": 32,
                    "task": "parity",
                    "bits": 2,
                    "delay": delay,
                    "floss_mode": mode,
                    "floss_k": 1,
                    "floss_strength": 0.0,
                    "success": i < k,
                    "final_accuracy": 1.0,
                    "final_loss": 0.0,
                    "epochs_to_success": None,
                    "lambda_1": 0.0,
                    "lambda_k": 0.0,
                    "status": "ok",
                }
                for i in range(n)
            ]
    return records.to_table(rows)


@pytest.fixture(scope="module")
def two_groups():
    # none: T50 between 8 and 16; pre: never below 0.5 -> censored '>= 24'
    return report.aggregate(sweep_records({"none": [8, 1, 0], "pre": [8, 8, 7]}), n_draws=100, seed=0)


def svg_text(path) -> str:
    text = path.read_text()
    ET.fromstring(text)  # well-formed XML
    return text


def test_every_format_is_written_and_opens(tmp_path, two_groups):
    import matplotlib.image

    written = report.write_outputs(two_groups, tmp_path)
    names = {p.name for p in written}
    for stem in ("success_vs_delay", "horizon"):
        assert {f"{stem}.png", f"{stem}.pdf", f"{stem}.svg"} <= names
        assert (tmp_path / f"{stem}.png").read_bytes()[:8] == PNG_MAGIC
        assert (tmp_path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
        assert ET.fromstring((tmp_path / f"{stem}.svg").read_text()).tag.endswith("svg")
        pixels = matplotlib.image.imread(tmp_path / f"{stem}.png")
        assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
        # single column: 3.4 in at 300 dpi, give or take the tight bounding box
        assert 3.0 * style.DPI <= pixels.shape[1] <= 3.5 * style.DPI
    assert all(p.exists() for p in written)


def test_only_the_asked_formats_are_written(tmp_path, two_groups):
    written = report.write_outputs(two_groups, tmp_path, formats=["svg"])
    assert {p.suffix for p in written if "parquet" not in p.name and p.suffix != ".md"} == {".svg"}
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob("*.pdf"))


def test_double_column_size(tmp_path, two_groups):
    import matplotlib.image

    path = report.plot_success_curves(two_groups, tmp_path / "wide.png", size="double")
    assert 6.5 * style.DPI <= matplotlib.image.imread(path).shape[1] <= 7.1 * style.DPI


def test_no_title_labels_from_the_schema_fonts_at_least_8_pt(tmp_path, two_groups):
    report.write_outputs(two_groups, tmp_path, formats=["svg"])
    for name in ("success_vs_delay.svg", "horizon.svg"):
        text = svg_text(tmp_path / name)
        sizes = [float(s) for s in re.findall(r"font-size: ([0-9.]+)px", text)]  # SVG user unit = 1 pt
        assert sizes and min(sizes) >= 8.0
        assert "flossing schedule" in text and "floss_mode" not in text
        assert "longest lag" in text and "(steps)" in text
        assert "sweep figs" not in text and "Wilson" not in text  # that is the caption's job
    md = (tmp_path / "report.md").read_text()
    assert "![Figure 1](success_vs_delay.svg)" in md and "**Figure 2.** T50" in md
    assert "Wilson 95% intervals" in md and "Sweep figs" in md
    assert "censored" in md and "recovers" not in md  # captions explain only what is drawn


def test_legends_only_for_what_is_drawn(tmp_path, two_groups):
    report.plot_success_curves(two_groups, tmp_path / "c.svg")
    report.plot_horizon(two_groups, tmp_path / "h.svg")
    curve_svg, horizon_svg = svg_text(tmp_path / "c.svg"), svg_text(tmp_path / "h.svg")
    assert 'id="legend_1"' in curve_svg and "threshold" not in curve_svg
    assert 'id="legend_1"' not in horizon_svg  # one series on the floss_mode axis: nothing to tell apart


def test_every_group_has_its_own_colour_marker_and_line_style():
    looks = [style.series_style(i) for i in range(len(style.PALETTE) * len(style.MARKERS))]
    assert len({(s["color"], s["marker"]) for s in looks}) == len(looks)
    for a, b in zip(looks, looks[1:]):
        assert a["color"] != b["color"] and a["marker"] != b["marker"] and a["linestyle"] != b["linestyle"]


def test_labels_come_from_the_config_schema():
    assert style.label("floss_mode") == "flossing schedule"
    assert style.label("model_g") == "gain of the recurrent weights"
    assert style.label("arch") == "network"
    assert style.label("not_a_column") == "not_a_column"


def test_bad_figure_format_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "r.parquet"
    records.write(sweep_records({"none": [8, 1, 0]}).to_pylist(), path)
    assert report.main(["--from-parquet", str(path), "--out", str(tmp_path / "o"), "--figure-format", "png,jpg"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--figure-format" in err[0] and "jpg" in err[0]
    assert (
        report.main(
            ["--from-parquet", str(path), "--out", str(tmp_path / "o"), "--figure-format", "pdf", "--n-draws", "0"]
        )
        == 0
    )
    assert {p.suffix for p in (tmp_path / "o").iterdir()} == {".parquet", ".md", ".html", ".pdf"}


# --- the same look everywhere, categories as points, log axes, labels that do not collide -------------


@pytest.fixture
def drawn(monkeypatch):
    """Every figure a report function saves, kept open for inspection."""
    figs = []
    save = style.save

    def keep(fig, path, formats=None):
        figs.append(fig)
        return save(fig, path, formats)

    monkeypatch.setattr(style, "save", keep)
    return figs


def colour_of(artist) -> str:
    import matplotlib.colors

    return matplotlib.colors.to_hex(artist.get_color() if hasattr(artist, "get_color") else artist.get_facecolor())


def data_lines(ax):
    """Lines drawn from data (not the threshold or marker lines, which span the axes)."""
    return [line for line in ax.lines if line.get_transform() == ax.transData]


def test_a_group_has_one_colour_and_marker_in_every_figure(tmp_path, two_groups, drawn):
    from flosssweep.report.outcomes import outcome_summary, plot_outcome

    report.plot_success_curves(two_groups, tmp_path / "c.png")
    report.plot_horizon(two_groups, tmp_path / "h.png")
    table = sweep_records({"none": [8, 1, 0], "pre": [8, 8, 7]})
    looks = report.figures.series_looks(two_groups)[1]
    summary = outcome_summary(table, "final_accuracy", by=["floss_mode"])
    plot_outcome(summary, "final_accuracy", "delay", tmp_path / "o.png", looks=looks)
    curve, horizon, outcome = (fig.axes[0] for fig in drawn)
    # the success curve: none falls to 1/8 at d = 16, pre stays at 8/8
    by_rate = {round(line.get_ydata()[1], 3): (colour_of(line), line.get_marker()) for line in data_lines(curve)}
    none, pre = by_rate[0.125], by_rate[1.0]
    assert none != pre
    # the horizon: one marker per group at its tick (none at 0, pre at 1)
    points = [line for line in data_lines(horizon) if line.get_marker() not in ("None", "v", "^", "_")]  # not caps
    at = {round(line.get_xdata()[0]): (colour_of(line), line.get_marker()) for line in points}
    assert at[0] == none and at[1] == pre, "the horizon figure draws each group as the curve figure does"
    lines = [(colour_of(line), line.get_marker()) for line in data_lines(outcome)]
    assert lines == [none, pre]


def categorical_records():
    rows = sweep_records({"none": [4, 5], "pre": [6, 7]}, delays=(16, 16)).to_pylist()
    for r in rows:
        r["arch"] = "lstm" if r["trial_id"].endswith("0") or r["member"] % 2 else "gru"
    return records.to_table(rows)


def test_categorical_x_is_points_with_intervals_on_the_full_rate_axis(tmp_path, drawn):
    aggregated = report.aggregate(categorical_records(), x="arch", by=["floss_mode"], n_draws=0)
    report.plot_success_curves(aggregated, tmp_path / "c.png")
    ax = drawn[0].axes[0]
    for line in data_lines(ax):  # points and error bars only: nothing joins lstm to gru
        assert line.get_linestyle() == "None" or len(set(line.get_xdata())) == 1
    bottom, top = ax.get_ylim()
    assert bottom <= 0 and top >= 1
    assert 0.5 in [line.get_ydata()[0] for line in ax.lines if line not in data_lines(ax)]  # the threshold


def test_a_fraction_against_categories_shows_chance_and_thresholds(tmp_path, drawn):
    from flosssweep.report.outcomes import outcome_summary, plot_outcome

    summary = outcome_summary(categorical_records(), "final_accuracy", x="arch", by=["floss_mode"])
    plot_outcome(summary, "final_accuracy", "arch", tmp_path / "o.svg", thresholds=(0.6, 0.9))
    ax = drawn[0].axes[0]
    assert all(line.get_linestyle() == "None" or len(set(line.get_xdata())) == 1 for line in data_lines(ax))
    assert ax.get_ylim()[0] <= 0 and ax.get_ylim()[1] >= 1  # not a zoom onto noise around 0.5
    levels = sorted(line.get_ydata()[0] for line in ax.lines if line not in data_lines(ax))
    assert levels == [0.5, 0.6, 0.9]  # chance, then the thresholds
    svg = svg_text(tmp_path / "o.svg")
    assert "chance" in svg
    height = float(re.search(r'height="([0-9.]+)pt"', svg).group(1))
    assert height > 2.4 * 72, "the legend below the axes is inside the saved figure, not cut off"


@pytest.mark.parametrize("xs, scale", [((1, 4, 16, 80), "log"), ((8, 16, 24), "linear")])
def test_a_log_axis_where_x_spans_decades(tmp_path, drawn, xs, scale):
    rows = sweep_records({"none": [8, 6, 3, 1][: len(xs)]}, delays=xs).to_pylist()
    for r in rows:
        r["floss_k"] = r.pop("delay")
    aggregated = report.aggregate(records.to_table(rows), x="floss_k", by=[], n_draws=0)
    report.plot_success_curves(aggregated, tmp_path / "c.png")
    assert drawn[0].axes[0].get_xscale() == scale


def test_map_labels_never_overlap(tmp_path, drawn):
    from flosssweep.report.maps import plot_success_map, success_map

    rows = sweep_records({"none": [3] * 12}, delays=range(12), n=4).to_pylist()
    for r in rows:  # twelve pairs crowded into one corner of a log axis
        r["floss_strength"], r["floss_k"] = 0.01 * (1 + 0.05 * r["delay"]), 10 + r["delay"] % 3
    cells = success_map(records.to_table(rows), "floss_strength", "floss_k", threshold=0.5)
    plot_success_map(cells, "floss_strength", "floss_k", tmp_path / "m", ["png"])
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = drawn[0]
    renderer = FigureCanvasAgg(fig).get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.axes[0].texts]
    assert boxes, "some labels are placed"
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_symbols_in_figures_are_mathtext_and_plain_in_tables():
    assert style.label("dstsp", math=True) == r"$D_\mathrm{stsp}$" and style.label("dstsp") == "D_stsp"
    assert "$\\tau$" in style.label("tau", math=True)
