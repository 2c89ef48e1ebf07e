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
        assert "longest lag d (steps)" in text
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
    assert {p.suffix for p in (tmp_path / "o").iterdir()} == {".parquet", ".md", ".pdf"}
