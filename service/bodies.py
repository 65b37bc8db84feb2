"""Request bodies: the token first, then a bounded read, under one memory budget.

:class:`BodyGuard` is a pure ASGI middleware in front of every route. For a request that
carries a body (``Content-Length`` above 0 or ``Transfer-Encoding``) to a route that takes one:

1. **Token first.** The bearer token and the route's scope (:func:`service.auth.route_scope`)
   are checked from the headers alone: no or an unknown token gets 401, a token without the
   scope 403, at once and without reading a byte of the body (with ``Expect: 100-continue``
   the client never even sends it).
2. **Bounded size.** A declared ``Content-Length`` over the route's limit gets 413 at once; a
   chunked body is counted while it streams and refused (413) the moment it passes the limit.
   Limits: ``TIDEWISE_MAX_BODY_BYTES`` for the routes that read their body as a stream
   (``POST /v1/metrics``, remote-write), ``TIDEWISE_MAX_JSON_BODY_BYTES`` for the routes whose
   body is one small JSON object (``POST /v1/targets``).
3. **Bounded memory.** All bodies being read or held by their handlers share one budget,
   ``TIDEWISE_MAX_BUFFERED_BYTES``. A request reserves its declared length before reading
   (a chunked one: each chunk as it arrives) and keeps it until its answer is sent. A request
   that finds no room waits up to ``TIDEWISE_BODY_WAIT_S`` for other bodies to be released,
   then gets 503 with ``Retry-After``: a burst is smoothed, a sustained overload is refused
   fast instead of queuing sockets and memory (Prometheus remote-write retries a 5xx; other
   clients should honour ``Retry-After``).

The early answers (401, 403, 413, 503) carry ``Connection: close``, so the server does not
spend its time draining a body it refused. Routes that take no body never read one; their
token is checked by the route's own dependency, as everywhere else.

The body is read whole here and handed to the route as one chunk, so the route's own reading
(``request.stream()``, FastAPI's body parsing) sees exactly what it would have seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from starlette.responses import JSONResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.errors import TidewiseError
from service.auth import AuthError, auth_error_body, route_scope
from service.ingest import BodyTooLargeError

#: What the early answers say about the connection (see the module docstring).
_CLOSE = {"Connection": "close"}


class ServerBusyError(TidewiseError):
    """No room for one more request body under ``TIDEWISE_MAX_BUFFERED_BYTES`` (HTTP 503)."""

    status_code = 503

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BodyBudget:
    """Bytes of request bodies held in memory, all requests together (one event loop)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._room = asyncio.Condition()

    async def acquire(self, n: int, wait_s: float) -> bool:
        """Reserve ``n`` bytes, waiting up to ``wait_s`` seconds for room; False if none came."""
        if self.used + n <= self.limit:
            self.used += n
            return True
        if wait_s <= 0 or n > self.limit:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        async with self._room:
            while self.used + n > self.limit:
                left = deadline - loop.time()
                if left <= 0:
                    return False
                try:
                    await asyncio.wait_for(self._room.wait(), left)
                except TimeoutError:
                    return False
            self.used += n
            return True

    async def release(self, n: int) -> None:
        """Give back ``n`` reserved bytes and wake the requests waiting for room."""
        if n <= 0:
            return
        self.used -= n
        async with self._room:
            self._room.notify_all()


#: How a route reads its body: a stream of samples, or one small JSON object.
BULK, JSON = "bulk", "json"


def body_kind(route: APIRoute) -> str | None:
    """Say how ``route`` reads a body: :data:`BULK`, :data:`JSON`, or None (it reads none).

    A route whose body FastAPI parses into a model has a ``body_field``; a route that reads
    the raw stream itself documents its body in ``openapi_extra["requestBody"]``.
    """
    if "requestBody" in (route.openapi_extra or {}):
        return BULK
    if route.body_field is not None:
        return JSON
    return None


class BodyGuard:
    """ASGI middleware applying the three rules of the module docstring."""

    def __init__(self, app: ASGIApp, error_response: Callable[[Exception], JSONResponse]) -> None:
        self.app = app
        self.error_response = error_response
        self._rules: list[tuple[Any, str | None, str | None]] | None = None

    def _rule(self, scope: Scope) -> tuple[str | None, str | None]:
        """Return (scope needed, body kind) of the route that will serve the request."""
        if self._rules is None:
            self._rules = [
                (r, route_scope(r.dependant), body_kind(r))
                for r in _api_routes(scope["app"].router.routes)
            ]
        for route, needed, kind in self._rules:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return needed, kind
        return None, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: D102
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        length = headers.get("content-length")
        if (length is None or length.strip() == "0") and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        needed, kind = self._rule(scope)
        if kind is None:  # the route reads no body (or there is no such route)
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        settings = state.settings
        if kind == BULK:
            limit, variable = settings.max_body_bytes, "TIDEWISE_MAX_BODY_BYTES"
        else:
            limit = min(settings.max_json_body_bytes, settings.max_body_bytes)
            variable = "TIDEWISE_MAX_JSON_BODY_BYTES"

        if needed is not None:
            scheme, token = get_authorization_scheme_param(headers.get("authorization"))
            try:
                state.tokens.authorize(scheme or None, token or None, needed)
            except AuthError as exc:
                body, status, extra = auth_error_body(exc)
                await _answer(JSONResponse(body, status, {**extra, **_CLOSE}), scope, send)
                return

        declared = int(length) if length is not None and length.strip().isdigit() else None
        if declared is not None and declared > limit:
            await self._too_large(
                f"body of {declared} bytes exceeds the limit of {limit} bytes ({variable}); "
                "send smaller requests",
                scope,
                send,
            )
            return
        budget: BodyBudget = state.body_budget
        held = 0
        try:
            if not await budget.acquire(declared or 0, settings.body_wait_s):
                await self._busy(budget, settings.body_wait_s, scope, send)
                return
            held = declared or 0
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client left: nobody to answer
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    await self._too_large(
                        f"body exceeds the limit of {limit} bytes ({variable}); send smaller "
                        "requests",
                        scope,
                        send,
                    )
                    return
                if size > held:  # chunked: reserve as it arrives
                    if not await budget.acquire(size - held, settings.body_wait_s):
                        await self._busy(budget, settings.body_wait_s, scope, send)
                        return
                    held = size
                if chunk:
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            await self.app(scope, _replay(b"".join(chunks), receive), send)
        finally:
            await budget.release(held)

    async def _too_large(self, message: str, scope: Scope, send: Send) -> None:
        response = self.error_response(BodyTooLargeError(message, where="body"))
        response.headers.update(_CLOSE)
        await _answer(response, scope, send)

    async def _busy(self, budget: BodyBudget, wait_s: float, scope: Scope, send: Send) -> None:
        retry = max(1, round(wait_s))
        exc = ServerBusyError(
            f"request bodies being read already hold {budget.used} of the "
            f"{budget.limit} bytes allowed (TIDEWISE_MAX_BUFFERED_BYTES) and none was released "
            f"within {wait_s:g} s; retry after {retry} s",
            retry,
        )
        response = self.error_response(exc)
        response.headers.update({**_CLOSE, "Retry-After": str(retry)})
        await _answer(response, scope, send)


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every APIRoute, in matching order, including those of included routers.

    FastAPI >= 0.16x keeps an included router as one entry (``original_router``) instead of
    copying its routes; the app includes its routers without a prefix, so their routes match
    as they are.
    """
    for r in routes:
        if isinstance(r, APIRoute):
            yield r
        elif getattr(r, "original_router", None) is not None:
            yield from _api_routes(r.original_router.routes)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _replay(body: bytes, receive: Receive) -> Receive:
    """Wrap ``receive``: first ``body`` as one message, then what the client sends next."""
    pending: list[bytes] = [body]

    async def replay() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replay


async def _answer(response: Response, scope: Scope, send: Send) -> None:
    async def nothing() -> Message:  # an early answer reads nothing
        return {"type": "http.disconnect"}

    await response(scope, nothing, send)
