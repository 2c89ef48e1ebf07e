"""What Ray may print and write during a sweep: the project's lines, Ray's warnings that matter, no duplicate logs.

Every trial is already in MLflow, so Ray's per-trial loggers (TensorBoard events, progress.csv,
result.json) only duplicate it: they are always off. Ray's own terminal output (its configuration
box, "View detailed results here", the TensorBoard hint, INFO lines, the token notice of a local
instance) and what trial workers print are off unless `--verbose`; its warnings and errors stay, but
a traceback that Ray, MLflow or SQLAlchemy logs with them (a locked database, a lost worker, a store
that stops answering) is one summary line unless `--verbose`: the user's remedy is in the line, not
in the library's stack.
"""

from __future__ import annotations

import logging
import os

# Read by Ray Tune when `Tuner.fit` starts, so setting them in the driver before that is enough.
NO_DUPLICATE_LOGGERS = {"TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1"}
# The older output engine, which prints nothing at verbose=0 (the newer one still draws its
# configuration box and the two hints).
QUIET_OUTPUT = {"RAY_AIR_NEW_OUTPUT": "0"}
# Loggers and the level they keep: a local instance's token notice is a WARNING that is no news (the
# token is made and used on this machine alone); Optuna announces its study and every trial at INFO
# (the driver names the study itself).
# MLflow's SQL store logs every database error it then raises (the recorder names and handles those).
QUIET_LOGGERS = {
    "ray._private.authentication.authentication_token_setup": logging.ERROR,
    "optuna": logging.WARNING,
    "mlflow.store.db.utils": logging.CRITICAL,
}


# Libraries whose logged tracebacks become one line (their handlers, and Python's last-resort one that
# prints the records of loggers without a handler, such as SQLAlchemy's)
LIBRARY_LOGGERS = ("ray", "mlflow", "sqlalchemy", "alembic", "urllib3", "")


# Ray's error lines that the driver's own lines already say better (callbacks.TerminalProgress names
# the failed trial, its exception and its error log)
SAID_BY_THE_DRIVER = ("Trial task failed for trial",)


class OneLineTracebacks(logging.Filter):
    """A record with a traceback keeps its message and gains the exception's type and first line;
    the stack itself goes (a formatted 'Traceback (most recent call last)' in the text too). Records
    that the driver's own lines repeat go altogether."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith(SAID_BY_THE_DRIVER):
            return False
        summary = None
        if record.exc_info and record.exc_info[1] is not None:
            err = record.exc_info[1]
            summary = f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
        message = record.getMessage()
        if "Traceback (most recent call last)" in message:
            head, _, stack = message.partition("Traceback (most recent call last)")
            last = [line for line in stack.strip().splitlines() if line.strip()]
            message, summary = head.strip() or "error", summary or (last[-1].strip() if last else None)
        if summary is not None or record.exc_text:
            message = (message.strip().splitlines() or [""])[0]
            record.msg = f"{message} ({summary}; --verbose shows the traceback)" if summary else message
            record.args, record.exc_info, record.exc_text, record.stack_info = (), None, None, None
        return True


def one_line_tracebacks() -> None:
    """Install OneLineTracebacks on the library loggers' handlers (once)."""
    handlers = [h for name in LIBRARY_LOGGERS for h in logging.getLogger(name).handlers]
    for handler in [*handlers, logging.lastResort]:
        if handler is not None and not any(isinstance(f, OneLineTracebacks) for f in handler.filters):
            handler.addFilter(OneLineTracebacks())


def configure(verbose: bool) -> dict:
    """Set the environment and loggers of the driver; returns the keyword arguments for `ray.init`."""
    os.environ.update(NO_DUPLICATE_LOGGERS)
    if verbose:
        return {}
    os.environ.update(QUIET_OUTPUT)
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    one_line_tracebacks()
    # What trial workers print (Ray's restore notices, a dying worker's traceback, the raylet's "a
    # worker died" text) stays in Ray's worker logs: the driver names a failed trial and its error file.
    return {"logging_level": logging.WARNING, "log_to_driver": False}


def once_ray_is_imported() -> None:
    """What can only be quieted once `ray` is imported: its handler's tracebacks, and the raylet's
    notices (a worker that died, a task out of memory), which Ray prints to the driver's terminal
    whatever `log_to_driver` says. The trial's error log keeps the notice; the driver's line names it."""
    from ray._private import worker

    one_line_tracebacks()
    shown = worker.print_to_stdstream
    if getattr(shown, "quiet", False):
        return

    def shown_unless_raylet(data, ignore_prefix):
        if data.get("pid") != "raylet":
            shown(data, ignore_prefix)

    shown_unless_raylet.quiet = True
    worker.print_to_stdstream = shown_unless_raylet
