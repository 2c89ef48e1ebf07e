"""Keep a cluster's SQLite MLflow store in its bucket, so that the sweeps outlive `ray down`.

    python -m flosssweep.tracking.backup restore ~/mlflow.db s3://BUCKET/mlflow/mlflow.db   # head start
    python -m flosssweep.tracking.backup save    ~/mlflow.db s3://BUCKET/mlflow/mlflow.db   # before ray down
    python -m flosssweep.tracking.backup every 60 ~/mlflow.db s3://BUCKET/mlflow/mlflow.db  # in the background

The MLflow server keeps writing while a copy is taken, so `save` goes through SQLite's online
backup (a consistent snapshot), then uploads it whole and renames nothing: an object store has no
half-written objects. `restore` leaves an existing database alone, and does nothing when the bucket
has no copy yet (a first cluster). The destination is anything pyarrow opens: s3://, gs://, a path.
Artifacts need none of this: the server writes them to the bucket itself (--artifacts-destination).
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

EXIT_INVALID, EXIT_UNAVAILABLE = 2, 3


def _filesystem(destination: str):
    import pyarrow.fs

    if "://" in destination:
        return pyarrow.fs.FileSystem.from_uri(destination)
    path = str(Path(destination).expanduser().resolve())
    return pyarrow.fs.LocalFileSystem(), path


def save(database: Path, destination: str) -> int:
    """Upload a consistent snapshot of `database`; returns its size in bytes."""
    import pyarrow.fs

    if not database.is_file():
        raise FileNotFoundError(f"{database}: no MLflow database there")
    fs, path = _filesystem(destination)
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = Path(tmp, "mlflow.db")
        source, target = sqlite3.connect(database), sqlite3.connect(snapshot)
        try:
            source.backup(target)
        finally:
            source.close()
            target.close()
        parent = path.rsplit("/", 1)[0]
        if parent and parent != path:
            fs.create_dir(parent, recursive=True)
        pyarrow.fs.copy_files(str(snapshot), path, destination_filesystem=fs)
        return snapshot.stat().st_size


def restore(database: Path, source: str) -> bool:
    """Download the saved copy into `database` unless that exists already; whether it did."""
    import pyarrow.fs

    if database.exists():
        return False
    fs, path = _filesystem(source)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        return False
    database.parent.mkdir(parents=True, exist_ok=True)
    partial = database.with_name(database.name + ".restoring")
    pyarrow.fs.copy_files(path, str(partial), source_filesystem=fs)
    partial.rename(database)  # a server started meanwhile never sees half a file
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flosssweep.tracking.backup",
        description="Save a SQLite MLflow store to a bucket, or restore it from there.",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("save", "restore"):
        one = sub.add_parser(action)
        one.add_argument("database", type=Path, help="the MLflow SQLite file (sqlite:///<this path>)")
        one.add_argument("copy", help="where the copy lives: s3://BUCKET/mlflow/mlflow.db, gs://..., or a path")
    every = sub.add_parser("every", help="save every N seconds, for as long as it runs")
    every.add_argument("seconds", type=float)
    every.add_argument("database", type=Path)
    every.add_argument("copy")
    args = parser.parse_args(argv)
    database = args.database.expanduser().resolve()
    try:
        if args.action == "restore":
            done = restore(database, args.copy)
            print(
                f"restored {database} from {args.copy}"
                if done
                else f"kept {database}"
                if database.exists()
                else f"no copy at {args.copy}: a new store",
                flush=True,
            )
            return 0
        if args.action == "save":
            print(f"saved {database} to {args.copy} ({save(database, args.copy)} bytes)", flush=True)
            return 0
        if args.seconds <= 0:
            print(f"backup: seconds: expected a number > 0, got {args.seconds:g}", file=sys.stderr)
            return EXIT_INVALID
        while True:
            time.sleep(args.seconds)
            try:
                if database.is_file():
                    save(database, args.copy)
            except (OSError, sqlite3.Error) as err:  # keep trying: the next save may go through
                print(f"backup: saving {database} failed: {err}", file=sys.stderr, flush=True)
    except FileNotFoundError as err:
        print(f"backup: {err.args[0] if err.args else err}", file=sys.stderr)
        return EXIT_INVALID
    except (OSError, sqlite3.Error) as err:
        print(f"backup: {args.action} {database} <-> {args.copy} failed: {str(err).splitlines()[0]}", file=sys.stderr)
        return EXIT_UNAVAILABLE


if __name__ == "__main__":
    sys.exit(main())
