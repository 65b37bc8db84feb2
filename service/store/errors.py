"""The store's errors, which the API maps to HTTP codes (404, 422)."""

from __future__ import annotations

from common.errors import InputError, TidewiseError


class NotFoundError(TidewiseError):
    """The requested entity or series does not exist (HTTP 404)."""


class QueryError(InputError):
    """A query asks for something the store will not answer (HTTP 422)."""
