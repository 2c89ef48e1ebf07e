"""What a trial will hold in memory, estimated from its config before anything is allocated.

A trial whose tensors cannot fit is refused with its config, not found out by the kernel's OOM killer
hours later. The estimate counts the few tensors that grow with the config (weights and their
optimizer state, activations kept for backpropagation, the spectrum's tangent vectors, the per-epoch
history, and for chaotic data the trajectory, the free-running evaluations and the D_stsp histogram)
with generous factors; small overheads are left out, so it errs toward accepting.
"""

from __future__ import annotations

import os

GATES = {"rnn": 1, "plrnn": 1, "gru": 3, "lstm": 4}  # blocks of hidden units per step
FLOAT, DOUBLE = 4, 8
OBSERVED = 3  # dimensions of the chaotic data (Lorenz-63, Roessler)


def physical_memory() -> int:
    """Bytes of memory of this machine (0 where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def terms(config: dict, chaotic: bool) -> list[tuple[int, str, str]]:
    """(bytes, the key that scales it, what it is) for each tensor that grows with the config."""
    model, train, floss, task = config["model"], config["train"], config["floss"], config["task"]
    R, N = config["ensemble"], model["hidden"]
    units = GATES[model["arch"]] * N
    state = 2 * N if model["arch"] == "lstm" else N
    out = [
        # parameters, gradients, two Adam moments, and the flossing optimizer's copy
        (R * units * (N + 2) * FLOAT * 6, "model.hidden", "weights and optimizer state"),
        (R * train["batch"] * train["length"] * units * FLOAT * 3, "train.length", "activations kept for backprop"),
        (train["epochs"] * R * FLOAT * 4, "train.epochs", "per-epoch history"),
    ]
    if floss["mode"] != "none":
        out.append(
            (R * floss["horizon"] * state * (floss["k"] + units) * FLOAT * 3, "model.hidden", "spectrum tangents")
        )
    if chaotic:
        steps = task["train_steps"] + task["test_steps"]
        out += [
            (steps * OBSERVED * DOUBLE * 3, "task.train_steps", "the chaotic trajectory"),
            (
                R * train["eval_trajectories"] * train["eval_steps"] * OBSERVED * FLOAT * 3,
                "train.eval_steps",
                "free-running trajectories",
            ),
            (train["dstsp_bins"] ** OBSERVED * DOUBLE * 2, "train.dstsp_bins", "D_stsp histograms"),
        ]
    return out


def refusal(config: dict, chaotic: bool, available: int | None = None) -> tuple[str, str] | None:
    """(key, what was expected) when the trial's estimated bytes exceed this machine's memory, else None."""
    available = physical_memory() if available is None else available
    parts = terms(config, chaotic)
    total = sum(size for size, _, _ in parts)
    if not available or total <= available:
        return None
    size, key, what = max(parts)
    gib = 1 << 30
    return key, (
        f"a trial that fits in memory (about {total / gib:.1f} GiB, most of it {size / gib:.1f} GiB of {what}; "
        f"this machine has {available / gib:.1f} GiB)"
    )
