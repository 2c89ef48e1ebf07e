"""The error of bad configuration input, shared by the config, its readers and the sweep files."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration value that cannot be used; `key` is the dotted path of the offender."""

    def __init__(self, key: str, expected: str, got: Any = None, *, show_got: bool = True):
        self.key = key
        self.expected = expected
        message = f"{key}: expected {expected}"
        if show_got:
            message += f", got {got!r}"
        super().__init__(message)
