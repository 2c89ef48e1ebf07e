"""What Ray may print and write during a sweep: the project's lines, Ray's warnings that matter, no duplicate logs.

Every trial is already in MLflow, so Ray's per-trial loggers (TensorBoard events, progress.csv,
result.json) only duplicate it: they are always off. Ray's own terminal output (its configuration
box, "View detailed results here", the TensorBoard hint, INFO lines, the token notice of a local
instance) is off unless `--verbose`; its warnings and errors stay.
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
QUIET_LOGGERS = {"ray._private.authentication.authentication_token_setup": logging.ERROR, "optuna": logging.WARNING}


def configure(verbose: bool) -> dict:
    """Set the environment and loggers of the driver; returns the keyword arguments for `ray.init`."""
    os.environ.update(NO_DUPLICATE_LOGGERS)
    if verbose:
        return {}
    os.environ.update(QUIET_OUTPUT)
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    return {"logging_level": logging.WARNING}
