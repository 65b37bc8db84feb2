"""History read from a Prometheus-compatible store through its HTTP query API.

A scaling target may name a ``source`` (the fields of KEDA's ``prometheus`` scaler:
``serverAddress``, ``query``, ``authModes``): its demand history is then read with
``GET <serverAddress>/api/v1/query_range`` instead of from the samples pushed into Tidewise.
Prometheus, VictoriaMetrics (single node, or ``.../select/<tenant>/prometheus`` of its
cluster), Thanos Query and Mimir serve that API.

How a query becomes the buckets the forecast and the decision read
(:meth:`service.forecasting.History.buckets`, the one door both go through):

* the step is the bucket width (``TIDEWISE_FORECAST_STEP_S``); bucket ``[b, b + step)`` is
  the query's value evaluated at ``b + step - 0.001`` s, its last millisecond, so a range
  selector of one step (``avg_over_time(x[15s])``) covers exactly the samples of the bucket
  (``(e - 15 s, e]`` on Prometheus 3 and VictoriaMetrics, ``[e - 15 s, e]`` on Prometheus 2:
  the same whole-second samples either way); ``aggregate: avg`` writes that wrapper for a
  plain series selector;
* a bucket the query has no value for is NaN (a gap, exactly as a bucket without pushed
  samples), and so is a non-finite value (``NaN``, ``±Inf``);
* the query must give one series (or none: every bucket a gap); several are refused with
  the count, so it can be aggregated (``sum(...)``) rather than one picked at random;
* a range longer than :data:`MAX_POINTS` evaluations is asked for in consecutive chunks
  (Prometheus refuses more than 11,000 points per series in one answer).

Every failure raises :class:`SourceError` naming the URL, the query and what went wrong (the
status and the server's own ``error`` text, a timeout, a refused connection), never the
credentials; the forecast refresh records it per series and the decision becomes an invalid
fallback that keeps the setting, with that sentence as its ``why``.

Credentials are never stored: a target names the environment variable (``TIDEWISE_SOURCE_``
prefix only, so a target cannot send the daemon's own secrets anywhere) or the file (under
``TIDEWISE_SOURCE_SECRETS_DIR`` only) that holds them, and they are read at every request,
so a rotated secret is picked up without a restart.
"""

from __future__ import annotations

import base64
import math
import os
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from common.errors import TidewiseError

#: Most evaluations asked for in one request (Prometheus refuses more than 11,000 per series).
MAX_POINTS = 10_000
#: Environment variables a source may read a secret from start with this.
ENV_PREFIX = "TIDEWISE_SOURCE_"
#: The bucket ``[b, b + step)`` is evaluated this many seconds before its end.
EVAL_BEFORE_END_S = 0.001
#: Server text quoted in an error (characters).
QUOTED = 300

_ENV_NAME = rf"^{ENV_PREFIX}[A-Z0-9_]+$"


class SourceError(TidewiseError):
    """A Prometheus-compatible source could not give a series' history (says why)."""


class PromSource(BaseModel):
    """Where a target's demand history lives: a Prometheus-compatible query API.

    Field names follow KEDA's ``prometheus`` scaler, so its trigger metadata moves over as is
    (secrets excepted: they are named by environment variable or file, never given inline).
    """

    model_config = ConfigDict(extra="forbid")

    serverAddress: str = Field(
        min_length=1, max_length=2048, pattern=r"^https?://[^\s]+$",
        description="base URL of the Prometheus-compatible API, e.g. http://prometheus:9090 "
        "(Tidewise appends /api/v1/query_range)",
    )
    query: str = Field(
        min_length=1, max_length=8192,
        description="PromQL giving one series: the demand, in the target's units; "
        "evaluated at the last millisecond of each bucket (see aggregate)",
    )
    aggregate: Literal["avg", "sum", "min", "max", "last"] | None = Field(
        None,
        description="when set, `query` must be a series selector and Tidewise reads "
        "`<aggregate>_over_time(<query>[<step>s])`: per bucket, the aggregate of exactly the "
        "samples in it (`avg` is what pushed samples give); unset: the query as written",
    )
    authModes: Literal["bearer", "basic"] | None = Field(
        None, description="`bearer` (Authorization: Bearer) or `basic`; unset: no credentials",
    )
    bearerTokenEnv: str | None = Field(
        None, pattern=_ENV_NAME, max_length=128,
        description=f"environment variable holding the bearer token ({ENV_PREFIX}* only)",
    )
    bearerTokenFile: str | None = Field(
        None, min_length=1, max_length=4096,
        description="file holding the bearer token (under TIDEWISE_SOURCE_SECRETS_DIR)",
    )
    username: str | None = Field(None, min_length=1, max_length=256,
                                 description="basic auth user name (not a secret)")
    passwordEnv: str | None = Field(
        None, pattern=_ENV_NAME, max_length=128,
        description=f"environment variable holding the basic auth password ({ENV_PREFIX}* only)",
    )
    passwordFile: str | None = Field(
        None, min_length=1, max_length=4096,
        description="file holding the basic auth password (under TIDEWISE_SOURCE_SECRETS_DIR)",
    )
    customHeaders: dict[str, str] = Field(
        default_factory=dict, max_length=16,
        description="extra request headers, e.g. {X-Scope-OrgID: team-a} for Mimir/Cortex "
        "tenants (not for secrets: they are shown back)",
    )
    timeoutSeconds: float = Field(10.0, gt=0, le=120, allow_inf_nan=False,
                                  description="timeout of one HTTP request (seconds)")

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secret(cls, data: Any) -> Any:  # noqa: ANN401 - raw request body
        if isinstance(data, dict):
            for key, env, file in (("bearerToken", "bearerTokenEnv", "bearerTokenFile"),
                                   ("password", "passwordEnv", "passwordFile")):
                if key in data:
                    raise ValueError(
                        f"{key}: secrets are not accepted inline (they would be stored and "
                        f"shown back); put it in an environment variable named {ENV_PREFIX}... "
                        f"and give {env}, or in a file and give {file}")
        return data

    @model_validator(mode="after")
    def _check_auth(self) -> PromSource:
        bearer = (self.bearerTokenEnv, self.bearerTokenFile)
        basic = (self.username, self.passwordEnv, self.passwordFile)
        if self.authModes == "bearer":
            if sum(x is not None for x in bearer) != 1:
                raise ValueError("authModes bearer: give exactly one of bearerTokenEnv, "
                                 "bearerTokenFile")
            if any(x is not None for x in basic):
                raise ValueError("authModes bearer: username/passwordEnv/passwordFile are for "
                                 "authModes basic")
        elif self.authModes == "basic":
            if self.username is None or sum(x is not None for x in basic[1:]) != 1:
                raise ValueError("authModes basic: give username and exactly one of "
                                 "passwordEnv, passwordFile")
            if any(x is not None for x in bearer):
                raise ValueError("authModes basic: bearerTokenEnv/bearerTokenFile are for "
                                 "authModes bearer")
        elif any(x is not None for x in (*bearer, *basic)):
            raise ValueError("credentials given without authModes (bearer or basic)")
        bad = [k for k in self.customHeaders if k.lower() in ("authorization", "host")
               or not k or not k.isascii() or not k.isprintable()
               or any(c in k for c in " :")]
        if bad:
            raise ValueError(f"customHeaders: {bad} not allowed (use authModes for "
                             "credentials; header names without spaces or ':')")
        if not all(v.isascii() and v.isprintable() for v in self.customHeaders.values()):
            raise ValueError("customHeaders: values must be printable ASCII")
        return self

    @property
    def url(self) -> str:
        """The query_range endpoint."""
        return self.serverAddress.rstrip("/") + "/api/v1/query_range"

    def promql(self, step: int) -> str:
        """Return the PromQL evaluated for buckets of ``step`` seconds."""
        if self.aggregate is None:
            return self.query
        return f"{self.aggregate}_over_time({self.query}[{int(step)}s])"


def _secret(env: str | None, file: str | None, secrets_dir: str | None, what: str) -> str:
    """Read one secret from its environment variable or file (never logged nor returned)."""
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise SourceError(f"{what}: environment variable {env} is not set in the daemon")
        return value.strip()
    assert file is not None
    if not secrets_dir:
        raise SourceError(f"{what}: {file} cannot be read: set TIDEWISE_SOURCE_SECRETS_DIR to "
                          "the folder that holds the source secrets")
    root = Path(secrets_dir).resolve()
    path = (root / file).resolve()
    if not path.is_relative_to(root):
        raise SourceError(f"{what}: {file} is outside TIDEWISE_SOURCE_SECRETS_DIR ({root})")
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise SourceError(f"{what}: {path} cannot be read ({exc.strerror})") from None
    if not value:
        raise SourceError(f"{what}: {path} is empty")
    return value


def _auth(src: PromSource, secrets_dir: str | None) -> tuple[httpx.Auth | None, list[str]]:
    """Return the request's auth and every form of its secret (scrubbed from server text)."""
    if src.authModes == "bearer":
        token = _secret(src.bearerTokenEnv, src.bearerTokenFile, secrets_dir, "bearer token")
        return _Bearer(token), [token]
    if src.authModes == "basic":
        pw = _secret(src.passwordEnv, src.passwordFile, secrets_dir, "basic auth password")
        pair = base64.b64encode(f"{src.username}:{pw}".encode()).decode()
        return httpx.BasicAuth(src.username or "", pw), [pw, pair]
    return None, []


def _scrub(text: str, secrets: list[str]) -> str:
    # some servers quote the credentials they refused (vmauth 1.79 answers 400 `cannot find
    # the provided auth token "Bearer <token>"`): never pass them on into logs and decisions
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class _Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request):  # noqa: ANN201 - httpx's generator protocol
        request.headers["Authorization"] = self._header
        yield request


def _where(src: PromSource, promql: str) -> str:
    return f"{src.url} (query {promql!r})"


def _fetch(client: httpx.Client, src: PromSource, promql: str, start: float, end: float,
           step: int, secrets: list[str]) -> list[dict[str, Any]]:
    """One query_range call; its ``data.result`` list."""
    # nocache=1: VictoriaMetrics otherwise rounds start down to a multiple of step for ranges
    # of 50 points or more (its result cache), which moved every evaluation 14.999 s early
    # and shifted the buckets (seen on 1.79); Prometheus ignores the parameter
    params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step),
              "nocache": "1"}
    where = _where(src, promql)
    try:
        r = client.get(src.url, params=params)
    except httpx.TimeoutException:
        raise SourceError(f"{where}: no answer within {src.timeoutSeconds:g} s "
                          "(timeoutSeconds)") from None
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # ValueError: a bad URL
        raise SourceError(f"{where}: {type(exc).__name__}: {_scrub(str(exc), secrets)}"
                          ) from None
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.status_code != 200 or not isinstance(body, dict) or body.get("status") != "success":
        said = (body.get("error") if isinstance(body, dict) else None) or r.text
        said = _scrub(" ".join(str(said).split()), secrets)[:QUOTED]
        hint = ""
        if r.status_code in (401, 403) or "auth" in said.lower():
            hint = "; check authModes and the credentials the target names"
        said = f": {said!r}" if said else ""
        raise SourceError(f"{where}: HTTP {r.status_code} {r.reason_phrase}{said}{hint}")
    data = body.get("data") or {}
    if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
        raise SourceError(f"{where}: expected a matrix result, got "
                          f"{data.get('resultType')!r}; query a series, not a scalar")
    return data["result"]


def read_buckets(src: PromSource, now: int, step: int, n: int,
                 secrets_dir: str | None = None, max_points: int = MAX_POINTS,
                 transport: httpx.BaseTransport | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return the last ``n`` complete buckets of ``step`` seconds before ``now``.

    The same shape and meaning as :func:`service.forecasting.bucketed`: ``ts`` ``(n,)``
    bucket start times (unix s), ``values`` ``(n,)`` with NaN for buckets without a value.

    Raises:
        SourceError: the request failed, or the query gives several series or no matrix.

    """
    end = now - now % step  # first second of the bucket in progress (incomplete)
    start = end - n * step
    ts = start + step * np.arange(n, dtype=np.int64)
    values = np.full(n, np.nan)
    promql = src.promql(step)
    headers = {"Accept": "application/json", **src.customHeaders}
    seen: str | None = None
    auth, secrets = _auth(src, secrets_dir)
    with httpx.Client(timeout=src.timeoutSeconds, auth=auth, headers=headers,
                      transport=transport) as client:
        for lo in range(0, n, max(1, int(max_points))):
            hi = min(n, lo + int(max_points)) - 1
            first = float(ts[lo] + step) - EVAL_BEFORE_END_S
            last = float(ts[hi] + step) - EVAL_BEFORE_END_S
            result = _fetch(client, src, promql, first, last, step, secrets)
            if len(result) > 1:
                raise SourceError(
                    f"{_where(src, promql)}: gives {len(result)} series, one is needed; "
                    "aggregate them (e.g. sum(...)) or narrow the selector")
            for series in result:
                labels = str(sorted((series.get("metric") or {}).items()))
                if seen is not None and labels != seen:  # two chunks, two different series
                    raise SourceError(f"{_where(src, promql)}: gives different series over "
                                      "time, one is needed; aggregate them (e.g. sum(...))")
                seen = labels
                for point in series.get("values") or []:
                    try:
                        t, x = float(point[0]), float(point[1])
                    except (TypeError, ValueError, IndexError):
                        raise SourceError(f"{_where(src, promql)}: not a [time, value] pair: "
                                          f"{str(point)[:80]!r}") from None
                    i = round((t + EVAL_BEFORE_END_S - step - start) / step)
                    if 0 <= i < n and math.isfinite(x):
                        values[i] = x
    return ts, values
