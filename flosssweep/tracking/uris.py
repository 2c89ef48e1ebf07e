"""Tracking URIs before MLflow sees them: bad ones refused as bad input, credentials kept to themselves.
The only module that reads or writes the `sqlite:///` form of a URI (a test fails on any other).

MLflow's client retries a store it cannot open for minutes and then says little; what can be told
from the URI and the file system alone is told here, at once: a malformed address or port, an
in-memory database (every record lost when the driver exits), a database path that is a directory,
in a directory that does not exist or cannot be written, a file that is not an MLflow store. The
report reads stores, so it opens a database only when it already holds MLflow's tables: MLflow
would otherwise create them in any SQLite file it is pointed at.

`user:password@` in a URI is what MLflow's client takes for basic authentication: it is sent to
the health probe as a header and shown as `user:***@` wherever a URI is printed or stored.
"""

from __future__ import annotations

import base64
import contextlib
import sqlite3
import urllib.parse
import urllib.request
from pathlib import Path

from flosssweep.checks import Unwritable, redact, writable_directory

SQLITE = "sqlite:///"
SQLITE_MAGIC = b"SQLite format 3\0"
MLFLOW_TABLES = {"experiments", "runs", "alembic_version"}


class URIProblem(ValueError):
    """A tracking URI that cannot be used whatever the store does; the message names it."""


def sqlite_path(uri: str) -> Path | None:
    return Path(uri[len(SQLITE) :].split("?", 1)[0]) if uri.startswith(SQLITE) else None


def sqlite_uri(database: str | Path) -> str:
    """The SQLAlchemy URL of a SQLite file (MLflow's store, or an Optuna study)."""
    return SQLITE + str(database)


def absolute(uri: str, base: Path) -> str:
    """`uri` with a relative local path made absolute against `base` (Ray trials run in directories
    of their own); a bare directory is MLflow's file store."""
    if uri.startswith(SQLITE):
        path = uri[len(SQLITE) :]
        if path and path != ":memory:" and not path.startswith("/"):
            return sqlite_uri(base / path)
        return uri
    if uri.startswith("file:"):
        path = uri[len("file:") :].removeprefix("//")
        return Path(base, path).resolve().as_uri() if not path.startswith("/") else uri
    if "://" not in uri and ":" not in uri.split("/")[0]:
        return Path(base, uri).resolve().as_uri()
    return uri


def check(uri: str, write: bool = True) -> None:
    """URIProblem for a tracking URI that is malformed or names an unusable place (`write`: the
    caller will write there)."""
    shown = redact(uri)
    if uri.startswith(("http://", "https://")):
        try:
            parts = urllib.parse.urlsplit(uri)
            parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
        except ValueError as err:
            raise URIProblem(f"tracking URI {shown}: malformed ({err})") from None
        if not parts.hostname:
            raise URIProblem(f"tracking URI {shown}: expected a host name after {parts.scheme}://")
        return
    path = sqlite_path(uri)
    if path is None:
        return
    if str(path) in ("", ":memory:") or "mode=memory" in uri:
        raise URIProblem(
            f"tracking URI {shown}: an in-memory database loses every record when the driver exits "
            "(expected sqlite:///<path of a file>)"
        )
    if path.is_dir():
        raise URIProblem(f"tracking URI {shown}: {path} is a directory, expected the path of a database file")
    if not path.parent.is_dir():
        raise URIProblem(f"tracking URI {shown}: directory {path.parent} does not exist (create it first)")
    if write:
        try:
            writable_directory(path.parent, f"tracking URI {shown}")
        except Unwritable as err:
            raise URIProblem(str(err)) from None
    if path.is_file():
        with open(path, "rb") as stream:
            head = stream.read(len(SQLITE_MAGIC))
        if head and head != SQLITE_MAGIC:
            raise URIProblem(f"{path} is not an SQLite database (tracking URI {shown})")


def check_readable_store(uri: str) -> None:
    """URIProblem unless an SQLite URI names an existing MLflow database; it is opened read-only,
    so nothing is created or migrated (other stores are the server's to vouch for)."""
    check(uri, write=False)
    path = sqlite_path(uri)
    if path is None:
        return
    if not path.is_file():
        raise URIProblem(f"no MLflow tracking store at {path} (pass --tracking-uri, or --from-parquet)")
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as err:
        raise URIProblem(f"tracking URI {redact(uri)}: {path} cannot be read as SQLite ({err})") from None
    if not MLFLOW_TABLES <= tables:
        raise URIProblem(f"tracking URI {redact(uri)}: {path} is an SQLite database but not an MLflow tracking store")


def health_request(uri: str) -> urllib.request.Request:
    """The GET of the server's /health, with the URI's user:password (if any) as basic authentication
    (urllib itself does not take credentials from the URL)."""
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.hostname if ":" not in (parts.hostname or "") else f"[{parts.hostname}]"
    netloc += f":{parts.port}" if parts.port else ""
    url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/") + "/health", "", ""))
    request = urllib.request.Request(url)
    if parts.username is not None:
        pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        request.add_header("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
    return request
