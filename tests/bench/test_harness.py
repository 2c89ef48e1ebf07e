"""The benchmark harness runs and writes its outputs (it times things; its tests never do)."""


import json

import pytest
import torch

from flosssweep import bench

torch.set_num_threads(1)
f64 = torch.float64



@pytest.mark.slow  # its Ray section starts a local cluster
def test_quick_benchmark_writes_json_and_markdown(tmp_path, capsys):
    assert bench.main(["--quick", "--skip", "ray", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "bench.json").read_text())
    assert results["quick"] and results["machine"]["cores"] >= 1
    assert {(r["ensemble"], r["flossing"]) for r in results["trainer"]} == {(1, False), (4, False),
                                                                           (1, True), (4, True)}
    assert all(r["rate"] > 0 for r in results["trainer"] + results["baseline"])
    assert {(r["k"], r["tangent"]) for r in results["floss"]} == {(1, "analytic"), (1, "generic"),
                                                                  (4, "analytic"), (4, "generic")}
    assert [r["rows"] for r in results["report"]] == [1000, 10000]
    assert "ray" not in results
    table = (tmp_path / "bench.md").read_text()
    for heading in ("## Trainer", "## One flossing step", "## Report aggregation"):
        assert heading in table
    assert "| no | naive |" in table and "x naive" in table
    assert table.strip() in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_is_one_line_and_exit_2(tmp_path, capsys):
    assert bench.main(["--quick", "--device", "cuda", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CUDA is not available" in err
    assert not (tmp_path / "bench.json").exists()
