"""What flosssweep's speed is compared with: the core's float32 matmul peak, the single-realization
torch.nn networks a researcher would write instead, and the ratios of issue 12's targets.

Kept apart from the harness so that its timing loop is shared while the comparisons stay in one place.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

TORCH_NETS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # recurrent weight blocks of N x N per architecture


def epoch_flops(arch: str, sizes: dict) -> float:
    """Matmul FLOPs of one realization-epoch: the recurrent product h W^T of every step, once in
    the forward pass and twice in the backward (the state gradient and the weight gradient).
    Input and readout products (I = O = 1) are left out; they are under 2% of the total."""
    N = sizes["hidden"]
    return 3 * 2 * sizes["length"] * sizes["batch"] * N * GATES[arch] * N


def bench_peak(size: int, measure: Callable, calibrate: Callable, seconds: float, repeats: int) -> dict:
    """float32 GFLOP/s of one size x size matmul on one thread: the ceiling the trainer's small
    batched matmuls are judged against."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=gen), torch.randn(size, size, generator=gen)
    out = torch.empty(size, size)

    def product() -> None:
        torch.mm(a, b, out=out)

    timing = measure(product, calls=calibrate(product, seconds), repeats=repeats)
    return {
        "size": size,
        **timing,
        "gflops": 2 * size**3 / timing["wall_best"] / 1e9,
        "gflops_median": 2 * size**3 / timing["wall_median"] / 1e9,
    }


def bench_rnn_floor(sizes: dict, ensemble: int, measure: Callable, calibrate: Callable, repeats: int) -> dict:
    """The fastest an rnn ensemble epoch could be with the fused kernel's arithmetic and no overhead
    at all: every op it cannot avoid, timed alone on cache-resident operands, added up. Per step
    the forward needs tanh and one batched product h J^T, the backward one product a J and one
    multiply-add with tanh'; the weight gradient is one (N x TB) @ (TB x N) product per member.
    Against the peak this says how much of issue 12's 70% target the op costs leave."""
    gen = torch.Generator().manual_seed(0)
    R, N, T, B = ensemble, sizes["hidden"], sizes["length"], sizes["batch"]
    h, a, s = (torch.randn(R, B, N, generator=gen) for _ in range(3))
    J, out = torch.randn(R, N, N, generator=gen), torch.empty(R, B, N)
    rows, grad = torch.randn(R, T * B, N, generator=gen), torch.empty(R, N, N)

    def timed(op: Callable[[], object]) -> float:
        return measure(op, calls=calibrate(op, sizes["seconds"] / 4), repeats=repeats)["cpu_best"]

    per_step = {
        "product": timed(lambda: torch.bmm(h, J, out=out)),
        "tanh": timed(lambda: torch.tanh(h, out=out)),
        "multiply_add": timed(lambda: out.addcmul_(a, s)),
    }
    weight_gradient = timed(lambda: torch.bmm(rows.transpose(1, 2), rows, out=grad))
    seconds = T * (2 * per_step["product"] + per_step["tanh"] + per_step["multiply_add"]) + weight_gradient
    return {
        "ensemble": R,
        "per_step_seconds": per_step,
        "weight_gradient_seconds": weight_gradient,
        "epoch_seconds": seconds,
        "gflops": R * epoch_flops("rnn", sizes) / seconds / 1e9,
    }


def bench_torch_net(
    arch: str, sizes: dict, measure: Callable, calibrate: Callable, repeats: int, device: str = "cpu"
) -> dict:
    """Realization-epochs per second of one torch.nn.RNN / LSTM / GRU with a linear readout trained
    on the same delayed-copy batches: binary cross-entropy, torch.optim.Adam, one epoch = a fresh
    batch, forward, backward and step (what one would write without flosssweep)."""
    torch.manual_seed(0)
    N, T, B, d = sizes["hidden"], sizes["length"], sizes["batch"], sizes["delay"]
    net, readout = TORCH_NETS[arch](1, N).to(device), torch.nn.Linear(N, 1).to(device)
    optimizer = torch.optim.Adam(list(net.parameters()) + list(readout.parameters()), lr=1e-3)

    def epoch() -> None:
        bits = torch.randint(0, 2, (T, B, 1), device=device).float()
        logits = readout(net(bits)[0])[..., 0]
        loss = F.binary_cross_entropy_with_logits(logits[d:], bits[:-d, :, 0])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    timing = measure(epoch, calls=calibrate(epoch, sizes["seconds"], device), repeats=repeats, device=device)
    return {
        "arch": arch,
        **timing,
        "rate": 1 / timing["wall_best"],
        "rate_median": 1 / timing["wall_median"],
        "rate_cpu": 1 / timing["cpu_best"],
    }


def ratios(results: dict) -> list[dict]:
    """The ratios the targets are stated in, from figures of the same run (missing sections give none):
    `value` from wall times, `value_cpu` from the process's CPU times (less disturbed by other jobs)."""
    sizes, out = results["sizes"], []
    R = max(sizes["gated_ensembles"])
    trainer = {(r["arch"], r["ensemble"], r["flossing"]): r for r in results.get("trainer", [])}

    def ratio(
        name: str, target: float, larger: bool, wall: tuple[float, float], cpu: tuple[float, float], unit: str
    ) -> None:
        value = wall[0] / wall[1]
        out.append(
            {
                "name": name,
                "value": value,
                "value_cpu": cpu[0] / cpu[1],
                "target": f"{'>=' if larger else '<='} {target:g}",
                "ok": value >= target if larger else value <= target,
                "detail": f"{wall[0]:.3g} / {wall[1]:.3g} {unit}",
            }
        )

    peak, rnn = results.get("peak"), trainer.get(("rnn", R, False))
    if peak and rnn:
        flops = epoch_flops("rnn", sizes) / 1e9
        ratio(
            f"rnn R={R} matmul GFLOP/s / float32 peak",
            0.7,
            True,
            (rnn["rate"] * flops, peak["gflops"]),
            (rnn["rate_cpu"] * flops, 2 * peak["size"] ** 3 / peak["cpu_best"] / 1e9),
            "GFLOP/s",
        )
    nets = {r["arch"]: r for r in results.get("torch", [])}
    for arch in ("lstm", "gru"):
        ours = trainer.get((arch, R, False))
        if ours and arch in nets:
            ratio(
                f"{arch} R={R} / torch.nn.{arch.upper()} (realization-epochs/s)",
                2,
                True,
                (ours["rate"], nets[arch]["rate"]),
                (ours["rate_cpu"], nets[arch]["rate_cpu"]),
                "per s",
            )
    steps = {(r["arch"], r["k"], r["tangent"]): r for r in results.get("floss", [])}
    k = sizes["train_k"]
    lstm, base = steps.get(("lstm", k, "analytic")), steps.get(("rnn", k, "analytic"))
    if lstm and base:
        ratio(
            f"lstm flossing step k={k} / rnn's",
            3,
            False,
            (1e3 * lstm["wall_best"], 1e3 * base["wall_best"]),
            (lstm["cpu_best"], base["cpu_best"]),
            "ms",
        )
    return out
