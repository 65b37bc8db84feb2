"""One exception hierarchy for Tidewise.

Every error a user can cause carries a message that says what is wrong, where
(file, row, column, request item, field) and how to fix it. Entry points (HTTP,
CLI, trace loaders) catch :class:`TidewiseError` and show the message without a
traceback.
"""

from __future__ import annotations


class TidewiseError(Exception):
    """Base class of every error Tidewise raises on purpose."""


class ConfigError(TidewiseError):
    """A setting or configuration file is invalid."""


class InputError(TidewiseError):
    """Malformed user input: a request body, a CLI argument, a trace file.

    ``where`` names the place (``"samples[3].value"``, ``"trace.csv row 17, column value"``).
    """

    def __init__(self, message: str, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class TraceFormatError(InputError):
    """A trace file does not match the format it was read as."""


class NoDataError(TidewiseError):
    """Not enough data to do the requested thing (a typed outcome, not a crash)."""


class ModelError(TidewiseError):
    """A forecasting model failed to fit, load or predict."""
