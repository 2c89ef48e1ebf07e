"""The adaptive section: its arithmetic by hand, its shapes crossing 0.5 where they say, and a quick run."""

import json
import math

import numpy as np
import pytest

from flosssweep.bench import adaptive


def test_needed_interpolates_in_log_realizations():
    spent = np.array([8.0, 16.0, 32.0, 64.0])
    widths = np.array([40.0, 30.0, 20.0, 10.0])
    assert adaptive.needed(spent, widths, 30.0) == pytest.approx(16.0)  # reached exactly at a budget
    # halfway from 30 to 20 lies halfway from log 16 to log 32: sqrt(16 * 32)
    assert adaptive.needed(spent, widths, 25.0) == pytest.approx(math.sqrt(16 * 32))
    assert adaptive.needed(spent, widths, 50.0) == 8.0  # narrower than asked from the first budget on
    assert adaptive.needed(spent, widths, 5.0) == math.inf  # never reached


@pytest.mark.parametrize("shape", adaptive.SHAPES, ids=lambda s: s.name)
def test_every_shape_falls_through_one_half_at_its_t50(shape):
    for t50, spread in ((30.0, shape.spreads[0]), (80.0, shape.spreads[1])):
        assert shape.rate(np.array([t50]), t50, spread)[0] == pytest.approx(0.5)
        rates = shape.rate(adaptive.CANDIDATES, t50, spread)
        assert (np.diff(rates) <= 1e-12).all()  # falls with x


def test_the_grid_delays_are_candidates():
    assert set(adaptive.GRID) <= set(adaptive.CANDIDATES) and adaptive.GRID.size == 8


@pytest.mark.slow  # tens of seconds: every shape, both designs
def test_quick_adaptive_section_writes_json_and_markdown(tmp_path):
    from flosssweep import bench  # the harness imports torch and Ray: only here

    assert bench.main(["--section", "adaptive", "--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "adaptive.json").read_text())
    assert [row["shape"] for row in results["shapes"]] == [s.name for s in adaptive.SHAPES]
    for row in results["shapes"]:
        assert [c["grid_budget"] for c in row["compared"]] == list(adaptive.REFERENCE_BUDGETS)
        assert all(c["ratio"] == c["adaptive"] / c["grid"] for c in row["compared"])
    assert "| median over shapes | adaptive / grid |" in (tmp_path / "adaptive.md").read_text()
