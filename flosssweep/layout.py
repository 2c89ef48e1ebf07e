"""Where a sweep's records live in MLflow (DESIGN 9): the contract between the writer
(`tracking`, in the Ray driver) and the reader (`report`), kept free of Ray and MLflow imports."""

from __future__ import annotations

import os
from pathlib import Path

ROLE, SWEEP, TRIAL_ID, PARENT = "flosssweep.role", "flosssweep.sweep", "flosssweep.trial_id", "mlflow.parentRunId"
RECORDS_ARTIFACT = "records.parquet"  # per-member records, at each child run's artifact root


def default_uri(launch_dir: str | Path) -> str:
    return "sqlite:///" + str(Path(launch_dir).resolve() / "mlflow.db")


def resolve_uri(flag: str | None, launch_dir: str | Path) -> str:
    """`--tracking-uri`, else MLFLOW_TRACKING_URI, else SQLite in the launch directory; local paths
    made absolute (Ray trials run in directories of their own)."""
    uri = flag or os.environ.get("MLFLOW_TRACKING_URI") or default_uri(launch_dir)
    return absolute_uri(uri, launch_dir)


def absolute_uri(uri: str, launch_dir: str | Path) -> str:
    base = Path(launch_dir).resolve()
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if path and path != ":memory:" and not path.startswith("/"):
            return "sqlite:///" + str(base / path)
        return uri
    if uri.startswith("file:"):
        path = uri[len("file:"):].removeprefix("//")
        return Path(base, path).resolve().as_uri() if not path.startswith("/") else uri
    if "://" not in uri and ":" not in uri.split("/")[0]:
        return Path(base, uri).resolve().as_uri()  # a bare directory: MLflow's file store
    return uri
