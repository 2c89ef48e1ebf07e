"""A realistic synthetic records table, for benchmarks and tests of the report at scale."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

# --------------------------------------------------------------------------------------------
# Synthetic records (benchmarks)
# --------------------------------------------------------------------------------------------


def synthetic_records(n_rows: int, seed: int = 0) -> pa.Table:
    """A records table shaped like a real parity sweep, for timing the report.

    Groups are configurations over arch, hidden, bits, floss_mode, floss_k, model_g and
    floss_pre_steps (as many as ``n_rows`` needs), each scanned over 6 delays with 16 realizations
    per delay (2 seeds x 8 ensemble members). Success is Bernoulli with a logistic fall-off around a
    per-group horizon; about 1% of rows diverge and 0.2% are errors. All record columns are
    present. The table has exactly ``n_rows`` rows.
    """
    rng = np.random.default_rng(seed)
    delays = np.array([10, 20, 30, 40, 60, 80], dtype=np.int64)
    seeds, members = 2, 8
    per_cell = seeds * members
    n_cells = -(-n_rows // per_cell)
    n_groups = -(-n_cells // delays.size)

    axes = {
        "arch": np.array(["rnn", "lstm", "gru"]),
        "hidden": np.array([32, 64, 80, 128]),
        "bits": np.array([1, 2, 3]),
        "floss_mode": np.array(["none", "pre", "during", "pre+during", "regularizer"]),
        "floss_k": np.array([1, 16, 32, 75]),
        "model_g": np.array([0.8, 1.0, 1.2, 1.5, 2.0]),
    }
    g = np.arange(n_groups)
    values = {}
    stride = 1
    for name, levels in axes.items():
        values[name] = levels[(g // stride) % levels.size]
        stride *= levels.size
    values["floss_pre_steps"] = 500 * (1 + g // stride)
    # Per-group horizon: flossing and smaller task complexity help, as in the paper.
    boost = np.where(values["floss_mode"] == "none", 0.0, 12.0 + 0.2 * values["floss_k"])
    horizon = 15.0 + boost + 20.0 / values["bits"] + rng.normal(0.0, 4.0, n_groups)

    cell = np.arange(n_rows) // per_cell
    grp = cell // delays.size
    delay = delays[cell % delays.size]
    within = np.arange(n_rows) % per_cell
    seed_col = within // members
    member = within % members

    p = 1.0 / (1.0 + np.exp((delay - horizon[grp]) / 4.0))
    success = rng.random(n_rows) < p
    roll = rng.random(n_rows)
    status_code = np.where(roll < 0.002, 2, np.where(roll < 0.012, 1, 0))
    success &= status_code == 0
    status = pa.DictionaryArray.from_arrays(
        pa.array(status_code.astype(np.int8)), pa.array(["ok", "diverged", "error"])
    ).cast(pa.string())

    cell_keys = pa.array([f"{c:012x}" for c in range(n_cells)])
    trial_keys = pa.array([f"trial_{t:07d}" for t in range(n_cells * seeds)])
    acc = np.where(success, rng.uniform(0.95, 1.0, n_rows), rng.uniform(0.5, 0.95, n_rows))
    ets = np.where(success, rng.integers(200, 3000, n_rows), -1)
    lam1 = rng.normal(-0.05, 0.05, n_rows)
    cols = {
        "sweep": pa.array(np.full(n_rows, "synthetic-parity")),
        "trial_id": trial_keys.take(pa.array(cell * seeds + seed_col)),
        "member": pa.array(member),
        "seed": pa.array(seed_col),
        "config_key": cell_keys.take(pa.array(cell)),
        "arch": pa.array(values["arch"][grp]),
        "hidden": pa.array(values["hidden"][grp]),
        "task": pa.array(np.full(n_rows, "parity")),
        "bits": pa.array(values["bits"][grp]),
        "delay": pa.array(delay),
        "floss_mode": pa.array(values["floss_mode"][grp]),
        "floss_k": pa.array(values["floss_k"][grp]),
        "floss_strength": pa.array(np.zeros(n_rows)),
        "success": pa.array(success),
        "final_accuracy": pa.array(acc),
        "final_loss": pa.array(-np.log(acc)),
        "epochs_to_success": pa.array(ets, mask=ets < 0),
        "lambda_1": pa.array(lam1),
        "lambda_k": pa.array(lam1 - rng.uniform(0.0, 0.5, n_rows)),
        "status": status,
        "train_epochs": pa.array(np.full(n_rows, 3000)),
        "model_g": pa.array(values["model_g"][grp]),
        "floss_pre_steps": pa.array(values["floss_pre_steps"][grp]),
        "ensemble": pa.array(np.full(n_rows, members)),
    }
    return pa.table(cols)
