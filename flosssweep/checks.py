"""Checks every command makes before work starts: one-line argument errors, writable output paths.

A result that cannot be written should be refused before the training that makes it, not after;
and `os.access` says yes to root everywhere, so writability is tried with a probe file of a
realistic size (a disk with a few free bytes takes an empty file), synced to the device.
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import tempfile
from pathlib import Path

EXIT_INVALID = 2
PROBE_BYTES = 1 << 20  # about a trial's records file, or a report's figures
# scheme://user:password@ (or scheme://token@): the part before @ is a credential
CREDENTIALS = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^/@\s:]*)(?P<password>:[^/@\s]*)?@")


def redact(text: str) -> str:
    """`text` with the password of every URI in it replaced by *** (a lone token: the token), so a
    URI can be printed or stored: scheme://user:***@host."""
    return CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@" if m["password"] else f"{m['scheme']}***@", text)


def one_line(text: str) -> str:
    """`text` fit for one line of a terminal: redacted, and every character that is not printable (a
    newline, an escape sequence, a C1 line break such as U+0085 in a key someone typed) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in redact(text))


def private_files() -> None:
    """Files and folders this process creates from now on are its user's alone (0600/0700): records,
    databases and launch files hold results and tracking URIs (docs/DESIGN.md, "Faults and refusals")."""
    os.umask(os.umask(0) | 0o077)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit status 2, like every other refusal
    (`--help` still shows the usage)."""

    def error(self, message: str):
        name = self.prog.split()[-1]  # "python -m flosssweep.run" -> flosssweep.run
        self.exit(EXIT_INVALID, f"{name}: error: {one_line(message)} (see --help)\n")


class Unwritable(ValueError):
    """An output path that cannot be written; the message names it and why."""


# How an error says that a disk, or the user's quota on it, is full: by its errno, or where only its
# text is left (pyarrow's errors, a Ray worker's error line, SQLite's SQLITE_FULL through MLflow) by words
NO_SPACE_WORDS = ("No space left on device", "rrno 28]", "database or disk is full")
NO_QUOTA_WORDS = ("Disk quota exceeded", "rrno 122]")


def no_space(err: BaseException | str) -> bool:
    """ENOSPC, in any of the forms above."""
    return getattr(err, "errno", None) == errno.ENOSPC or any(words in str(err) for words in NO_SPACE_WORDS)


def no_quota(err: BaseException | str) -> bool:
    """EDQUOT, in any of the forms above."""
    return getattr(err, "errno", None) == errno.EDQUOT or any(words in str(err) for words in NO_QUOTA_WORDS)


def disk_full(err: BaseException | str) -> bool:
    """A write failed for want of room: waiting does not help, making room does."""
    return no_space(err) or no_quota(err)


def os_problem(err: BaseException, path: str | os.PathLike | None = None) -> str:
    """Why a write failed, in words: a full disk named as such, with the path."""
    text = getattr(err, "strerror", None) or (str(err).splitlines() or [type(err).__name__])[0]
    where = f" ({path})" if path is not None else ""
    if no_space(err):
        return f"disk full: no space left on the device{where}"
    if no_quota(err):
        return f"disk quota exceeded{where}"
    return f"{text}{where}"


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def _check(path: Path, directory: Path, what: str) -> None:
    """`directory` (the nearest existing one) takes new files for `path`."""
    existing = _nearest_existing(directory)
    if not existing.is_dir():
        raise Unwritable(f"{what}: expected a directory, {existing} is a file")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".flosssweep-probe-") as probe:
            probe.write(b"\0" * PROBE_BYTES)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        raise Unwritable(f"{what}: cannot write {path} ({os_problem(err, existing)})") from None


def writable_directory(path: str | os.PathLike, what: str) -> Path:
    """`path` as a directory this process can create (if needed) and write into, or Unwritable."""
    path = Path(path).expanduser().absolute()
    _check(path, path, what)
    return path


def writable_file(path: str | os.PathLike, what: str) -> Path:
    """`path` as a file this process can create or replace, or Unwritable."""
    path = Path(path).expanduser().absolute()
    if path.is_dir():
        raise Unwritable(f"{what}: expected a file name, {path} is a directory")
    if path.exists() and not path.is_file():  # /dev/full, a pipe: the probe next to it says nothing
        raise Unwritable(f"{what}: expected a regular file, {path} is a device, pipe or socket")
    _check(path, path.parent, what)
    return path
