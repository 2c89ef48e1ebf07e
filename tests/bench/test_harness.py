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
    assert {(r["arch"], r["ensemble"], r["flossing"]) for r in results["trainer"]} == {
        (arch, R, flossing) for arch in ("rnn", "lstm", "gru") for R in (1, 4) for flossing in (False, True)
    }
    if results["machine"]["cores"] >= 2:
        assert {(r["arch"], r["ensemble"], r["threads"]) for r in results["threads"]} == {
            (arch, 4, 2) for arch in ("rnn", "lstm", "gru")
        }
        assert "## One trial on two threads" in (tmp_path / "bench.md").read_text()
    assert torch.get_num_threads() == 1
    assert [r["arch"] for r in results["torch"]] == ["rnn", "lstm", "gru"]
    assert all(r["rate"] > 0 for r in results["trainer"] + results["baseline"] + results["torch"])
    assert results["peak"]["size"] == 128 and results["peak"]["gflops"] > 0
    floor, step = results["floor"], results["floor"]["per_step_seconds"]
    by_hand = 30 * (2 * step["product"] + step["tanh"] + step["multiply_add"]) + floor["weight_gradient_seconds"]
    assert floor["ensemble"] == 4 and floor["epoch_seconds"] == pytest.approx(by_hand)
    assert floor["gflops"] == pytest.approx(4 * 3 * 2 * 30 * 4 * 12 * 12 / by_hand / 1e9)
    assert {(r["arch"], r["k"], r["tangent"]) for r in results["floss"]} == {
        (arch, k, tangent)
        for arch, k in (("rnn", 1), ("rnn", 2), ("lstm", 2), ("gru", 2))
        for tangent in ("analytic", "generic")
    }
    assert [r["name"].split()[0] for r in results["ratios"]] == ["rnn", "lstm", "gru", "lstm"]
    assert all(r["value"] > 0 for r in results["ratios"])
    assert [r["rows"] for r in results["report"]] == [1000, 10000]
    assert "ray" not in results
    table = (tmp_path / "bench.md").read_text()
    for heading in ("## Trainer", "## One flossing step", "## Ratios", "## Report aggregation"):
        assert heading in table
    assert "| no | naive |" in table and "x naive" in table
    assert table.strip() in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_is_one_line_and_exit_2(tmp_path, capsys):
    assert bench.main(["--quick", "--device", "cuda", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "CUDA is not available" in err
    assert not (tmp_path / "bench.json").exists()


def test_ratios_by_hand():
    from flosssweep.bench import references
    from flosssweep.bench.harness import FULL

    assert references.epoch_flops("rnn", FULL) == 184_320_000  # 3 products of (16 x 80) @ (80 x 80) per step
    assert references.epoch_flops("lstm", FULL) == 4 * references.epoch_flops("rnn", FULL)
    trainer = [
        {"arch": a, "ensemble": 16, "flossing": False, "rate": rate, "rate_cpu": 2 * rate}
        for a, rate in (("rnn", 500.0), ("lstm", 150.0), ("gru", 100.0))
    ]
    peak_cpu = 2 * 1024**3 / 184.32e9  # seconds of one product at 184.32 GFLOP/s
    results = {
        "sizes": FULL,
        "trainer": trainer,
        "peak": {"size": 1024, "gflops": 184.32, "cpu_best": peak_cpu},
        "torch": [{"arch": "lstm", "rate": 100.0, "rate_cpu": 100.0}, {"arch": "gru", "rate": 25.0, "rate_cpu": 50.0}],
        "floss": [
            {"arch": "rnn", "k": 16, "tangent": "analytic", "wall_best": 0.005, "cpu_best": 0.004},
            {"arch": "lstm", "k": 16, "tangent": "analytic", "wall_best": 0.02, "cpu_best": 0.012},
        ],
    }
    got = {
        r["name"].split()[0] + str(i): (round(r["value"], 12), round(r["value_cpu"], 12), r["ok"])
        for i, r in enumerate(references.ratios(results))
    }
    assert got == {
        "rnn0": (0.5, 1.0, False),
        "lstm1": (1.5, 3.0, False),
        "gru2": (4.0, 4.0, True),
        "lstm3": (4.0, 3.0, False),
    }


def test_gpu_section_runs_on_the_cpu_at_quick_sizes(tmp_path, capsys):
    # the prepared GPU run (--device cuda --section gpu) with the CPU as its device: every figure is
    # measured (none is an error row) and the targets are computed from them
    assert bench.main(["--device", "cpu", "--quick", "--section", "gpu", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "gpu.json").read_text())
    assert results["section"] == "gpu" and results["device"] == "cpu" and not (tmp_path / "bench.json").exists()
    assert {(r["arch"], r["ensemble"], r["mode"]) for r in results["epochs"]} == {
        (arch, R, mode) for arch in ("rnn", "lstm", "gru") for R in (1, 4) for mode in ("eager", "graph")
    }
    assert all("error" not in r and r["rate"] > 0 for r in results["epochs"])
    assert {(f["k"], f["ensemble"]) for f in results["floss"]} == {(k, R) for k in (2, 8) for R in (1, 2)}
    assert all(f["wall_best"] > 0 for f in results["floss"])
    packing = results["packing"]
    assert (packing["trials"], packing["ensemble"]) == (4, 2) and packing["packed_rate"] > 0
    assert [r["arch"] for r in results["torch"]] == ["rnn", "lstm", "gru"]
    assert set(results["targets"]) == {
        "rnn_epoch_R4_over_R1_eager",
        "rnn_epoch_R4_over_R1_graph",
        "rnn_best_over_nn_rnn",
        "paper_delay_scan_minutes",
    }
    assert all(value > 0 for value in results["targets"].values())
    # on a CPU the graphed structure runs eagerly; only its masked Adam step rounds differently (float32)
    checks = results["checks"]
    assert checks.pop("streams_equal_cpu") is True
    assert set(checks) == {
        f"{arch}_graph_max_{what}_difference" for arch in ("rnn", "lstm") for what in ("param", "loss")
    }
    assert all(0 <= value < 1e-6 for value in checks.values())
    table = (tmp_path / "gpu.md").read_text()
    for heading in ("## Epochs", "## One flossing step", "## Packing", "## torch.nn", "## Checks", "## Targets"):
        assert heading in table
    assert table.strip() in capsys.readouterr().out
    assert torch.get_num_threads() == 1


def test_paper_scan_projection_by_hand():
    from flosssweep.bench import gpu

    results = {
        "sizes": {"floss_ensembles": [1, 16]},
        "packing": {"packed_rate": 2880.0},
        "floss": [
            {"k": 16, "ensemble": 16, "wall_best": 0.01},
            {"k": 75, "ensemble": 16, "wall_best": 0.02},
            {"k": 75, "ensemble": 1, "wall_best": 99.0},  # another ensemble size: not the paper's
        ],
    }
    # 60 x 16 x 3000 realization-epochs at 2880/s = 1000 s; 20 x 500 + 20 x 1500 flossing steps and
    # 60 x 3000 / 50 spectrum estimates at 0.02 s = 872 s
    assert gpu.projection(results) == pytest.approx((1000 + 872) / 60)


def test_diagnostics_section_runs_at_quick_sizes_and_its_overhead_by_hand(tmp_path, capsys):
    assert bench.main(["--quick", "--section", "diagnostics", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "diagnostics.json").read_text())
    assert not (tmp_path / "bench.json").exists()
    t, every, epochs = results["timings"], results["report_every"], results["epochs"]
    by_hand = (t["report"]["wall_best"] / every + 3 * t["stage"]["wall_best"] / epochs) / t["epoch"]["wall_best"]
    assert results["overhead"] == pytest.approx(by_hand)
    assert every == 50 and "Overhead per epoch at report_every = 50" in capsys.readouterr().out
