"""The Lyapunov spectrum over training, per group: median and quartiles of lambda_i against the epoch.

Reads the diagnostics over training of child runs (`names.DIAGNOSTICS_ARTIFACT`, one long table per
trial: flosssweep.train.diagnostics), labels every trial by its records' grouping columns (joined on
config_key), and pools the members (and seeds) of each group. Three exponents are drawn: the first,
the middle and the last of the k kept, so a figure shows how the top of the spectrum, its bulk and
its tail move under each schedule.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flosssweep.report import style

LYAPUNOV = "lyapunov"


def spectrum_evolution(diagnostics: pa.Table, records: pa.Table, by: Sequence[str]) -> pa.Table:
    """One row per (group, exponent index i, epoch): group label, i, epoch, q25, median, q75 of
    lambda_i over the group's members, for i = 1, the middle and the last index k. Stages at one
    epoch (before training and after pre-flossing, both at epoch 0) keep the later one."""
    spectra = diagnostics.filter(pc.equal(diagnostics["quantity"], LYAPUNOV))
    keys = records.select(["config_key", *by]).to_pylist()
    label_of = {r["config_key"]: ", ".join(f"{c}={r[c]}" for c in by) or "all" for r in keys}
    rows = spectra.select(["config_key", "seed", "epoch", "stage", "member", "index", "value"]).to_pylist()
    latest: dict[tuple, tuple[str, float]] = {}
    for r in rows:
        key = (label_of.get(r["config_key"], r["config_key"]), r["config_key"], r["seed"], r["member"], r["index"])
        slot = latest.setdefault(key, {})
        if r["epoch"] not in slot or r["stage"] != "initial":  # "pre" after "initial" at epoch 0
            slot[r["epoch"]] = r["value"]
    by_group: dict[tuple, list[float]] = {}
    k_of: dict[str, int] = {}
    for (label, _, _, _, index), epochs in latest.items():
        k_of[label] = max(k_of.get(label, 0), index)
        for epoch, value in epochs.items():
            by_group.setdefault((label, index, epoch), []).append(value)
    out = []
    for (label, index, epoch), values in sorted(by_group.items()):
        k = k_of[label]
        if index not in {1, (k + 1) // 2, k}:
            continue
        q25, median, q75 = np.nanpercentile(values, [25, 50, 75])
        out.append({"group": label, "i": index, "k": k, "epoch": epoch, "q25": q25, "median": median, "q75": q75})
    return pa.Table.from_pylist(out)


def plot_spectrum_evolution(evolution: pa.Table, stem: Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """One panel per group: lambda_i (median line, quartile band) against the epoch for the first,
    middle and last i. Returns the files written."""
    rows = evolution.to_pylist()
    groups = list(dict.fromkeys(r["group"] for r in rows))
    if not groups:
        return []
    with style.paper_style() as plt:
        fig, axes = plt.subplots(
            1, len(groups), figsize=(min(7.0, 2.4 * len(groups) + 0.6), 2.6), sharey=True, squeeze=False
        )
        for ax, group in zip(axes[0], groups):
            mine = [r for r in rows if r["group"] == group]
            for n, index in enumerate(sorted({r["i"] for r in mine})):
                color = style.series_style(n)["color"]
                line = sorted((r for r in mine if r["i"] == index), key=lambda r: r["epoch"])
                epochs = [r["epoch"] for r in line]
                ax.fill_between(
                    epochs, [r["q25"] for r in line], [r["q75"] for r in line], color=color, alpha=0.25, lw=0
                )
                ax.plot(epochs, [r["median"] for r in line], color=color, lw=1.4, label=f"i = {index}")
            ax.axhline(0.0, color="0.5", lw=0.8, ls=":")
            ax.set_title(_title(group), fontsize="medium")
            ax.set_xlabel("epoch")
        axes[0][0].set_ylabel(r"$\lambda_i$ per step")
        axes[0][-1].legend(title=f"of k = {rows[0]['k']}", loc="best")
        written = style.save(fig, stem, formats)
        plt.close(fig)
    return written


def spectrum_caption(evolution: pa.Table) -> str:
    groups = sorted(set(evolution["group"].to_pylist()))
    return (
        "Lyapunov spectrum over training: median (line) and quartiles (band) over the realizations of each "
        f"group ({', '.join(groups)}) of the first, middle and last of the k exponents kept at every report; "
        "epoch 0 is after pre-flossing."
    )


def _title(group: str) -> str:
    """A group ('floss_mode=pre, arch=rnn') as the other figures label it ('flossing schedule = pre, ...')."""
    parts = [part.partition("=") for part in group.split(", ")]
    return ", ".join(f"{style.label(c)} = {v}" if sep else c for c, sep, v in parts)
