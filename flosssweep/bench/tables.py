"""The benchmark's results as the markdown tables of bench.md (and of docs/PERFORMANCE.md)."""

from __future__ import annotations

import math


def _fmt(value: float, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"


def marginal_text(result: dict) -> str:
    """The marginal cost per trial as a table shows it: the median with its range over repeats, or,
    where the median is not above zero, that the two sweep sizes do not tell it from the timing noise."""
    value, repeats = result["marginal_per_trial"], result.get("repeats", 1)
    low, high = result.get("marginal_range", [value, value])
    if value <= 0:
        return f"below the timing noise ({repeats} repeat{'s' if repeats > 1 else ''}: {low:.2f} to {high:.2f})"
    if repeats < 2:
        return f"{value:.3f} (1 repeat: no spread)"
    return f"{value:.3f} ({low:.3f} to {high:.3f}, {repeats} repeats)"


def _table(heading: str, header: str, rule: str, rows: list[str]) -> list[str]:
    """A section of bench.md: its heading, a markdown table and the blank lines around them."""
    return [heading, "", header, rule, *rows, ""]


def markdown(results: dict) -> str:
    m = results["machine"]
    sizes = results["sizes"]
    lines = [
        f"# flosssweep benchmark ({'quick' if results['quick'] else 'full'})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, load average {m['load_at_start']:.2f} at start; "
        f"torch {m['torch']}, 1 thread, device {m['device']}; commit {m['commit'] or '?'}; {m['date']}.",
        "",
    ]
    trainer = results.get("trainer")
    if trainer:
        base = {b["flossing"]: b for b in results.get("baseline", []) if "rate" in b}
        nets = {r["arch"]: r for r in results.get("torch", [])}
        one = {(r["arch"], r["flossing"]): r["rate"] for r in trainer if r["ensemble"] == 1}
        lines += [
            f"## Trainer: realization-epochs per second (N={sizes['hidden']}, T={sizes['length']}, "
            f"B={sizes['batch']}; flossing = regularizer k={sizes['train_k']}, Tp={sizes['horizon']})",
            "",
            "| arch | flossing | R | epoch (ms) | real.-epochs/s | median | per CPU-s | x R=1 | x naive | x torch.nn |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in trainer:
            key = (r["arch"], r["flossing"])
            naive = base.get(r["flossing"]) if r["arch"] == "rnn" else None
            net = nets.get(r["arch"]) if not r["flossing"] else None
            lines.append(
                f"| {r['arch']} | {'yes' if r['flossing'] else 'no'} | {r['ensemble']} | "
                f"{_fmt(1e3 * r['wall_best'])} | {_fmt(r['rate'])} | {_fmt(r['rate_median'])} | "
                f"{_fmt(r['rate_cpu'])} | {_fmt(r['rate'] / one[key]) if key in one else '-'} | "
                f"{_fmt(r['rate'] / naive['rate']) if naive else '-'} | "
                f"{_fmt(r['rate'] / net['rate']) if net else '-'} |"
            )
        for flossing, b in sorted(base.items()):
            lines.append(
                f"| rnn | {'yes' if flossing else 'no'} | naive | {_fmt(1e3 * b['wall_best'])} | "
                f"{_fmt(b['rate'])} | {_fmt(b['rate_median'])} | {_fmt(b['rate_cpu'])} | - | 1 | - |"
            )
        for arch, r in nets.items():
            lines.append(
                f"| {arch} | no | torch.nn | {_fmt(1e3 * r['wall_best'])} | {_fmt(r['rate'])} | "
                f"{_fmt(r['rate_median'])} | {_fmt(r['rate_cpu'])} | - | - | 1 |"
            )
        lines.append("")
    two = results.get("threads")
    if two and trainer:
        single = {(r["arch"], r["ensemble"]): r for r in trainer if not r["flossing"]}
        rows = []
        for r in two:
            one_thread = single.get((r["arch"], r["ensemble"]))
            rows.append(
                f"| {r['arch']} | {r['ensemble']} | {_fmt(1e3 * r['wall_best'])} | {_fmt(1e3 * r['cpu_best'])} | "
                f"{_fmt(one_thread['wall_best'] / r['wall_best']) if one_thread else '-'} | "
                f"{_fmt(r['cpu_best'] / one_thread['cpu_best']) if one_thread else '-'} |"
            )
        lines += _table(
            "## One trial on two threads (for sweeps running fewer trials than cores: `resources: {cpu: 2}`)",
            "| arch | R | epoch (ms) | CPU ms | wall speed-up over 1 thread | CPU cost over 1 thread |",
            "|---|---:|---:|---:|---:|---:|",
            rows,
        )
    peak = results.get("peak")
    if peak:
        lines += [
            f"Float32 matmul peak ({peak['size']} x {peak['size']}, one thread): {peak['gflops']:.1f} GFLOP/s "
            f"(median {peak['gflops_median']:.1f}).",
            "",
        ]
    floor = results.get("floor")
    if floor and peak:
        R = floor["ensemble"]
        ours = next((r for r in trainer or [] if (r["arch"], r["ensemble"], r["flossing"]) == ("rnn", R, False)), None)
        peak_cpu = 2 * peak["size"] ** 3 / peak["cpu_best"] / 1e9
        step = floor["per_step_seconds"]
        lines += [
            f"Floor of an rnn R={R} epoch (CPU times of its unavoidable ops, each alone: per step "
            f"{1e6 * step['product']:.1f} us per batched product (two), {1e6 * step['tanh']:.1f} us tanh, "
            f"{1e6 * step['multiply_add']:.1f} us multiply-add; weight gradient "
            f"{1e3 * floor['weight_gradient_seconds']:.2f} ms): {1e3 * floor['epoch_seconds']:.1f} ms, "
            f"{floor['gflops']:.1f} GFLOP/s = {floor['gflops'] / peak_cpu:.2f} of the peak (CPU)"
            + (
                f"; the trainer's epoch takes {ours['cpu_best'] / floor['epoch_seconds']:.2f}x the floor."
                if ours
                else "."
            ),
            "",
        ]
    floss = results.get("floss")
    if floss:
        lines += _table(
            f"## One flossing step (N={sizes['hidden']}, Tp={sizes['horizon']}, R=1): forward + backward",
            "| arch | k | tangent | ms (best) | ms (median) | CPU ms |",
            "|---|---:|---|---:|---:|---:|",
            [
                f"| {r['arch']} | {r['k']} | {r['tangent']} | {_fmt(1e3 * r['wall_best'])} | "
                f"{_fmt(1e3 * r['wall_median'])} | {_fmt(1e3 * r['cpu_best'])} |"
                for r in floss
            ],
        )
    targets = results.get("ratios")
    if targets:
        lines += _table(
            "## Ratios (same run) against the targets",
            "| ratio | value | from CPU times | target | met | from |",
            "|---|---:|---:|---|---|---|",
            [
                f"| {r['name']} | {r['value']:.2f} | {r['value_cpu']:.2f} | {r['target']} | "
                f"{'yes' if r['ok'] else 'no'} | {r['detail']} |"
                for r in targets
            ],
        )
    ray = results.get("ray")
    if ray:
        lines += ["## Ray Tune overhead per trial", ""]
        if "skipped" in ray:
            lines += [f"skipped: {ray['skipped']}", ""]
        else:
            lines += [
                f"Sweeps of {' and '.join(map(str, ray['sizes']))} near-empty trials (1 epoch of a tiny "
                "network), 2 CPUs, reuse_actors; `ray.init` took "
                f"{ray['ray_init_seconds']:.1f} s (not included). Per trial = sweep wall time / "
                f"{ray['trials']} trials; fixed and marginal from the two sweep sizes.",
                "",
                "| trainable | s per trial (best) | median | fixed s per sweep | marginal s per trial |",
                "|---|---:|---:|---:|---:|",
            ]
            for name in ("minimal", "project"):
                r = ray.get(name, {})
                if "skipped" in r:
                    lines.append(f"| {name} | skipped: {r['skipped']} | | | |")
                elif r:
                    lines.append(
                        f"| {name} | {r['per_trial_best']:.3f} | {r['per_trial_median']:.3f} | "
                        f"{_fmt(r.get('fixed_per_sweep'))} | "
                        f"{marginal_text(r) if 'marginal_per_trial' in r else _fmt(None)} |"
                    )
            lines.append("")
    rep = results.get("report")
    if rep:
        lines += _table(
            "## Report aggregation (`report.aggregate`, default posterior draws)",
            "| rows | seconds (best) | median |",
            "|---:|---:|---:|",
            [f"| {r['rows']:,} | {r['seconds_best']:.3g} | {r['seconds_median']:.3g} |" for r in rep],
        )
    return "\n".join(lines)
