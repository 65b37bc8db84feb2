"""Bearer-token authentication with scopes for the HTTP API.

Tokens come from one setting, ``TIDEWISE_TOKENS`` (:attr:`service.config.Settings.tokens`),
in either of two forms:

* compact: ``NAME:TOKEN:SCOPE+SCOPE,NAME:TOKEN:SCOPE`` — e.g.
  ``prom:s3cr3t-1:ingest,keda:s3cr3t-2:read,ops:s3cr3t-3:read+act``;
* JSON: ``[{"name": "prom", "token": "s3cr3t-1", "scopes": ["ingest"]}, ...]``.

Scopes (:data:`SCOPES`) are independent — ``act`` does not imply ``read``:

* ``ingest``: send samples (``POST /v1/metrics``, Prometheus remote-write);
* ``read``: read series, forecasts, recommendations, actions, KEDA / External Metrics, /metrics;
* ``act``: change what the daemon manages or record that it was done (targets, action acks).

A request names its token as ``Authorization: Bearer TOKEN``. No or an unknown token: 401 with
``WWW-Authenticate: Bearer``; a known token without the scope: 403. Both answers are JSON
naming the scope needed and never echo the token.

With no tokens configured the API is open — allowed only when ``TIDEWISE_ENVIRONMENT`` is
``development`` (the default), with a warning at start-up; in ``production``
:func:`check_startup` refuses to start.

Tokens are compared with :func:`hmac.compare_digest` against every configured token (no early
exit, so the time taken does not reveal which prefix matched) and never logged: only the
token's *name* appears in logs and on ``request.state.principal``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from common.errors import ConfigError, TidewiseError

log = logging.getLogger("tidewise.auth")

#: Every scope a token may carry.
SCOPES = ("ingest", "read", "act")


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who made a request: the token's name and scopes (never the token itself)."""

    name: str
    scopes: frozenset[str]

    def __repr__(self) -> str:
        return f"Principal(name={self.name!r}, scopes={sorted(self.scopes)})"


@dataclasses.dataclass(frozen=True)
class _Token:
    principal: Principal
    digest: bytes = dataclasses.field(repr=False)  # sha256 of the token: fixed length


#: The principal of every request when no tokens are configured (development only).
ANONYMOUS = Principal("anonymous", frozenset(SCOPES))


class AuthError(TidewiseError):
    """A request lacks a valid token (401) or the scope it needs (403)."""

    def __init__(self, message: str, status_code: int, scope: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.scope = scope


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_tokens(raw: str | None) -> list[Principal]:
    """Parse ``TIDEWISE_TOKENS`` and return the principals (tokens checked, not returned).

    Raises:
        ConfigError: naming the entry (by position and name, never by token) that is wrong.

    """
    return [t.principal for t in _parse(raw)]


def _parse(raw: str | None) -> list[_Token]:
    if raw is None or not raw.strip():
        return []
    text = raw.strip()
    entries: list[tuple[str, str, list[str]]] = []
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"TIDEWISE_TOKENS: not valid JSON at character {exc.pos}: {exc.msg}"
            ) from None
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not {"name", "token", "scopes"} <= set(item):
                raise ConfigError(
                    f"TIDEWISE_TOKENS[{i}]: give an object with name, token and scopes"
                )
            scopes = item["scopes"]
            if isinstance(scopes, str):
                scopes = scopes.replace("+", " ").replace(",", " ").split()
            if not isinstance(scopes, list):
                raise ConfigError(f"TIDEWISE_TOKENS[{i}].scopes: give a list of scopes")
            entries.append((str(item["name"]), str(item["token"]), [str(s) for s in scopes]))
    else:
        for i, part in enumerate(text.split(",")):
            fields = part.strip().split(":")
            if len(fields) != 3:
                raise ConfigError(
                    f"TIDEWISE_TOKENS entry {i + 1}: write NAME:TOKEN:SCOPE[+SCOPE...] "
                    f"(found {len(fields)} ':'-separated fields)"
                )
            name, token, scopes = (f.strip() for f in fields)
            entries.append((name, token, [s for s in scopes.split("+") if s]))
    tokens: list[_Token] = []
    seen_names: set[str] = set()
    seen_digests: set[bytes] = set()
    for i, (name, token, scopes) in enumerate(entries):
        where = f"TIDEWISE_TOKENS entry {i + 1} ({name!r})"
        if not name or not name.replace("-", "_").replace(".", "_").isidentifier():
            raise ConfigError(f"{where}: name must be letters, digits, '-', '_' or '.'")
        if name in seen_names:
            raise ConfigError(f"{where}: the name is used twice")
        if len(token) < 16:
            raise ConfigError(f"{where}: the token is shorter than 16 characters")
        if any(c.isspace() or c in ":," for c in token):
            raise ConfigError(f"{where}: the token must not hold spaces, ':' or ','")
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise ConfigError(
                f"{where}: unknown scope(s) {unknown} — use some of {list(SCOPES)}"
                if unknown
                else f"{where}: give at least one scope of {list(SCOPES)}"
            )
        digest = _digest(token)
        if digest in seen_digests:
            raise ConfigError(f"{where}: the same token is given twice")
        seen_names.add(name)
        seen_digests.add(digest)
        tokens.append(_Token(Principal(name, frozenset(scopes)), digest))
    return tokens


class TokenBook:
    """The configured tokens of one app, checked in constant time per token."""

    def __init__(self, raw: str | None) -> None:
        self._tokens = _parse(raw)

    @property
    def open(self) -> bool:
        """True when no tokens are configured (every request is :data:`ANONYMOUS`)."""
        return not self._tokens

    def principals(self) -> list[Principal]:
        """Return the configured principals (names and scopes)."""
        return [t.principal for t in self._tokens]

    def lookup(self, token: str) -> Principal | None:
        """Return the principal holding ``token``, or None."""
        digest = _digest(token)
        found = None
        for t in self._tokens:  # no early exit: every token is compared
            if hmac.compare_digest(t.digest, digest):
                found = t.principal
        return found

    def authorize(self, scheme: str | None, token: str | None, scope: str) -> Principal:
        """Return who holds ``token`` when it carries ``scope``; the one place that decides.

        ``scheme`` and ``token`` are the two parts of the ``Authorization`` header (None when
        it is absent). Used by the route dependencies and, before any body is read, by
        :class:`service.bodies.BodyGuard`.

        Raises:
            AuthError: no bearer token or an unknown one (401), or one without ``scope`` (403).

        """
        if self.open:
            return ANONYMOUS
        if not token or scheme is None or scheme.lower() != "bearer":
            raise AuthError(
                f"this endpoint needs a bearer token with scope {scope!r} "
                "(header Authorization: Bearer TOKEN)",
                401,
                scope,
            )
        principal = self.lookup(token)
        if principal is None:
            raise AuthError(
                f"the bearer token is not valid; this endpoint needs scope {scope!r}",
                401,
                scope,
            )
        if scope not in principal.scopes:
            raise AuthError(
                f"token {principal.name!r} lacks scope {scope!r} needed by this endpoint "
                f"(it has {sorted(principal.scopes)})",
                403,
                scope,
            )
        return principal


def check_startup(settings: Any) -> TokenBook:  # noqa: ANN401 - Settings (no import cycle)
    """Build the app's :class:`TokenBook`, refusing an open API outside development.

    Raises:
        ConfigError: no tokens in production, or a malformed ``TIDEWISE_TOKENS``.

    """
    raw = settings.tokens.get_secret_value() if settings.tokens is not None else None
    book = TokenBook(raw)
    if book.open:
        if settings.environment != "development":
            raise ConfigError(
                "TIDEWISE_TOKENS is empty: in production every request needs a bearer token; "
                "set TIDEWISE_TOKENS=name:token:scope[+scope],... (see docs/daemon.md, tokens)"
            )
        log.warning(
            "no TIDEWISE_TOKENS configured: the API is open to anyone who can reach it "
            "(allowed in development only)"
        )
    else:
        log.info(
            "authentication on: %s",
            ", ".join(f"{p.name}[{'+'.join(sorted(p.scopes))}]" for p in book.principals()),
        )
    return book


_bearer = HTTPBearer(auto_error=False)


def require_scope(scope: str) -> Any:  # noqa: ANN401 - an Annotated dependency alias
    """Build an ``Annotated[Principal, Depends(...)]`` that admits tokens holding ``scope``.

    Use it as a parameter type: ``def handler(who: require_scope("read")) -> ...``.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; use one of {SCOPES}")

    # async: pure CPU work (a hash and a few compares), so no worker-thread hop per request
    async def dependency(
        request: Request,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Principal:
        book: TokenBook = request.app.state.tokens
        principal = book.authorize(
            creds.scheme if creds else None, creds.credentials if creds else None, scope
        )
        request.state.principal = principal
        return principal

    dependency.__name__ = f"require_{scope}"
    dependency.tidewise_scope = scope  # type: ignore[attr-defined] - read by route_scope
    return Annotated[Principal, Depends(dependency)]


def route_scope(dependant: Any) -> str | None:  # noqa: ANN401 - a fastapi Dependant
    """Return the scope a route's dependencies require (None: the route is open)."""
    for dep in dependant.dependencies:
        scope = getattr(dep.call, "tidewise_scope", None) or route_scope(dep)
        if scope:
            return scope
    return None


#: Ready-made aliases.
IngestAuth = require_scope("ingest")
ReadAuth = require_scope("read")
ActAuth = require_scope("act")


def auth_error_body(exc: AuthError) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Build the JSON body, status and headers of an :class:`AuthError` answer."""
    headers = {}
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = f'Bearer realm="tidewise", scope="{exc.scope}"'
    else:
        headers["WWW-Authenticate"] = (
            f'Bearer realm="tidewise", error="insufficient_scope", scope="{exc.scope}"'
        )
    body = {
        "error": "Unauthorized" if exc.status_code == 401 else "Forbidden",
        "detail": str(exc),
        "scope": exc.scope,
    }
    return body, exc.status_code, headers
