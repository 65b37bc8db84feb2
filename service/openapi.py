"""The error answers of the API, as documented in its OpenAPI.

Every error is JSON in one of two shapes, and every route lists the error statuses it can give
with :func:`errors` (``tests/daemon/test_schemathesis.py`` checks each answer's status and
body against the served spec):

* :class:`ErrorOut` — ``{"error": "BatchError", "detail": "…", "problems": [...]}``: bad input
  (400, 404, 409, 413, 415, 422), the store or the body budget busy (503);
* :class:`AuthErrorOut` — ``{"error": "Unauthorized", "detail": "…", "scope": "read"}``: no or
  an unknown token (401), a token without the scope (403), with ``WWW-Authenticate``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ProblemOut(BaseModel):
    """One thing wrong with a request: where (item or line, field) and what."""

    where: str = Field(description="e.g. samples[3].value, line 4, field ts, or body")
    message: str
    item: int | None = Field(None, description="index of the sample (JSON bodies)")
    line: int | None = Field(None, description="line number (NDJSON bodies)")
    field: str | None = None


class ErrorOut(BaseModel):
    """An error answer: its name, a message saying what is wrong and how to fix it."""

    error: str = Field(description="e.g. BatchError, NotFoundError, BodyTooLargeError")
    detail: str
    problems: list[ProblemOut] | None = Field(
        None, description="every problem found in the request (up to 20), where there are any"
    )


class AuthErrorOut(BaseModel):
    """A 401 or 403 answer, naming the scope the route needs (never the token)."""

    error: Literal["Unauthorized", "Forbidden"]
    detail: str
    scope: Literal["ingest", "read", "act"]


_AUTH_HEADER = {
    "WWW-Authenticate": {
        "description": 'Bearer realm="tidewise", scope="…", with error="insufficient_scope" on 403',
        "schema": {"type": "string"},
    }
}

#: What each status means, wherever it is given.
MEANING = {
    400: "Malformed body (not valid JSON, NDJSON, gzip, snappy or protobuf)",
    401: "No bearer token, or an unknown one",
    403: "The token lacks the scope this route needs",
    404: "No such entity, series, target, action or report (or no decision yet)",
    409: "The batch contradicts the store (an entity sent with another kind)",
    413: "Body over TIDEWISE_MAX_BODY_BYTES (TIDEWISE_MAX_JSON_BODY_BYTES for small JSON routes)",
    415: "Another Content-Type or Content-Encoding",
    422: "Invalid parameter or body; problems lists each",
    503: "The store is unavailable or busy, or the request bodies in flight fill "
    "TIDEWISE_MAX_BUFFERED_BYTES (with Retry-After); retry",
}


def errors(*codes: int, **override: Any) -> dict[int | str, dict[str, Any]]:  # noqa: ANN401
    """Build a route's ``responses`` for the error statuses ``codes``.

    ``override`` replaces the entry of one status, keyed ``s503=...`` (a dict as FastAPI's
    ``responses`` takes).
    """
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        if code in (401, 403):
            out[code] = {
                "model": AuthErrorOut,
                "description": MEANING[code],
                "headers": _AUTH_HEADER,
            }
        else:
            out[code] = {"model": ErrorOut, "description": MEANING[code]}
    for key, value in override.items():
        out[int(key.removeprefix("s"))] = value
    return out
