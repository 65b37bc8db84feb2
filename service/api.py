"""The HTTP API (FastAPI): ingest, entities, series, health.

Routes are thin: they parse the request, call one service function (:mod:`service.ingest`,
:mod:`service.store.samples`) and map domain errors to HTTP status codes in one place
(:func:`_error_response`). Every error answer is JSON::

    {"error": "BatchError", "detail": "samples[3].value: must be finite, got NaN",
     "problems": [{"where": "samples[3].value", "item": 3, "field": "value",
                   "message": "must be finite, got NaN"}]}
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Annotated, Any, Literal

import orjson
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.errors import InputError, TidewiseError
from service import dashboard, intake, migrate, remote_write
from service import ingest as ingest_service
from service.auth import AuthError, IngestAuth, ReadAuth, auth_error_body, check_startup
from service.bodies import BodyBudget, BodyGuard
from service.config import Settings, get_settings
from service.deps import SessionDep, SettingsDep, StoreDep
from service.ingest import BatchError, Problem
from service.openapi import errors
from service.promexport import CONTENT_TYPE_LATEST, Telemetry
from service.store import samples as sample_store
from service.store.db import Store
from service.store.errors import NotFoundError, QueryError

log = logging.getLogger("tidewise.api")


# --------------------------------------------------------------------------- schemas


class IngestResult(BaseModel):
    """Answer of POST /v1/metrics."""

    stored: int


class MetricOut(BaseModel):
    """One series of an entity."""

    metric: str
    unit: str


class EntityOut(BaseModel):
    """One entity."""

    name: str
    kind: str
    labels: dict[str, Any]
    metrics: list[MetricOut]


class EntitiesOut(BaseModel):
    """Answer of GET /v1/entities."""

    entities: list[EntityOut]


class ReadyOut(BaseModel):
    """Answer of GET /readyz (200 ready, 503 not ready)."""

    status: Literal["ok", "unavailable"]
    detail: str | None = Field(None, description="why not ready")
    revision: list[str] | None = Field(None, description="the store's migration revision")
    current: list[str] | None = None
    head: list[str] | None = None
    jobs: dict[str, Any] | None = Field(
        None,
        description="running (the scheduler), problems, and per job: period_s, "
        "last_success_unix, last_run_unix, last_outcome",
    )


class SeriesOut(BaseModel):
    """Answer of GET /v1/series/{entity}/{metric}."""

    entity: str
    metric: str
    unit: str
    start: int
    end: int
    step: int
    agg: str | None
    source: Literal["raw", "rollup"]
    points: list[tuple[int, float]]


_SAMPLE_EXAMPLE = {
    "entity": "vm-17",
    "kind": "vm",
    "metric": "cpu_util",
    "ts": "2024-05-01T12:00:00Z",
    "value": 41.5,
    "labels": {"region": "eu-west"},
}
_INGEST_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["samples"],
                    "properties": {
                        "samples": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["entity", "kind", "metric", "ts", "value"],
                                "properties": {
                                    "entity": {"type": "string", "maxLength": 255},
                                    "kind": {
                                        "type": "string",
                                        "enum": ["vm", "function", "server"],
                                    },
                                    "metric": {"type": "string", "maxLength": 128},
                                    "ts": {
                                        "description": "unix seconds or RFC 3339 with offset",
                                        "oneOf": [{"type": "number"}, {"type": "string"}],
                                    },
                                    "value": {"type": "number"},
                                    "labels": {"type": "object"},
                                    "unit": {"type": "string", "maxLength": 64},
                                },
                            },
                        }
                    },
                },
                "example": {"samples": [_SAMPLE_EXAMPLE]},
            },
            "application/x-ndjson": {
                "schema": {"type": "string", "description": "one sample object per line"},
            },
        },
    }
}


# --------------------------------------------------------------------------- errors


def _error_response(exc: Exception) -> JSONResponse:
    """Map a domain error to its HTTP answer (the only place that knows status codes)."""
    if isinstance(exc, BatchError):
        problems = exc.problems
    elif isinstance(exc, InputError):
        problems = [Problem(str(exc).removeprefix(f"{exc.where}: "), field=exc.where)]
    else:
        problems = []
    if isinstance(exc, NotFoundError):
        status = 404
    elif isinstance(exc, InputError):
        status = getattr(exc, "status_code", 422)
    elif isinstance(exc, OperationalError):
        status = 503
    else:  # e.g. ServerBusyError, UnusableDecisionError: 503
        status = getattr(exc, "status_code", 500)
    name = getattr(exc, "error", None) or type(exc).__name__
    body: dict[str, Any] = {"error": name, "detail": str(exc)}
    if isinstance(exc, OperationalError):
        body["detail"] = "the store is unavailable or busy; retry the request"
    if problems:
        body["problems"] = [p.as_dict() for p in problems]
    return JSONResponse(body, status_code=status)


# --------------------------------------------------------------------------- app


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """Build the API around ``settings`` (default: from the environment).

    Args:
        settings: configuration; tests pass their own instead of touching the environment.
        store: an already open store to serve (the caller closes it); opened from
            ``settings`` otherwise. The scheduler runs when ``settings.scheduler_enabled``.

    """
    settings = settings or (store.settings if store else get_settings())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = store is None
        app.state.store = store or Store(settings)
        app.state.heads = migrate.head_revisions()
        sched = None
        if settings.scheduler_enabled:
            from service.forecasting import warm_up
            from service.scheduler import JobHealth, make_scheduler, periods

            await run_in_threadpool(warm_up)
            app.state.job_health = JobHealth(periods(app.state.store))
            sched = make_scheduler(
                app.state.store, app.state.telemetry, health=app.state.job_health
            )
            sched.start()
            app.state.job_health.start(time.time())
        app.state.scheduler = sched
        try:
            yield
        finally:
            if sched is not None:
                from service.scheduler import forget

                if sched.running:  # an operator (or a test) may have stopped it already
                    sched.shutdown(wait=True)
                forget(app.state.store)
            if own:
                app.state.store.close()

    app = FastAPI(
        title="Tidewise",
        summary="Per-second metric ingest and query for cloud resource forecasting.",
        version="0.1.0",
        lifespan=lifespan,
        # /docs is served from vendored files (service/dashboard.py), never from a CDN;
        # ReDoc and the OAuth2 redirect page would load from one, and are not needed.
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.settings = settings
    # Refuses an open API outside development before anything is served.
    app.state.tokens = check_startup(settings)
    app.state.telemetry = Telemetry()
    app.state.body_budget = BodyBudget(settings.max_buffered_bytes)
    # Token, size and memory checks before any body is read (service/bodies.py).
    app.add_middleware(BodyGuard, error_response=_error_response)

    @app.exception_handler(AuthError)
    async def _auth_error(_request: Request, exc: AuthError) -> JSONResponse:
        body, status, headers = auth_error_body(exc)
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(TidewiseError)
    async def _domain_error(_request: Request, exc: TidewiseError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _param_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Query/path parameter errors in the same shape as every other error answer.
        problems = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ())]
            field = ".".join(loc[1:]) if len(loc) > 1 else ".".join(loc) or None
            problems.append(Problem(err.get("msg", "invalid"), field=field))
        body = {
            "error": "RequestValidationError",
            "detail": f"{problems[0].where}: {problems[0].message}" if problems else "invalid",
            "problems": [p.as_dict() for p in problems],
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # No such route (404), method not allowed (405): in the one error shape too.
        try:
            name = HTTPStatus(exc.status_code).phrase.replace(" ", "")
        except ValueError:
            name = "HTTPError"
        return JSONResponse(
            {"error": name, "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(OperationalError)
    async def _db_error(_request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("store error: %s", exc)
        return _error_response(exc)

    @app.post(
        "/v1/metrics",
        response_model=IngestResult,
        responses=errors(400, 401, 403, 409, 413, 415, 422, 503),
        openapi_extra=_INGEST_OPENAPI,
        summary="Ingest samples (JSON or NDJSON); the batch is stored whole or not at all",
    )
    async def post_metrics(
        request: Request, store: StoreDep, cfg: SettingsDep, _who: IngestAuth
    ) -> IngestResult:
        try:
            media = ingest_service.media_type(request.headers.get("content-type"))
            encoding = intake.check_encoding(request.headers.get("content-encoding"))
            body = await intake.read_body(request, cfg.max_body_bytes)
            # Parsing, validation and the commit run in a worker thread: the event loop
            # keeps serving health checks and receiving the next bodies meanwhile.
            stored = await run_in_threadpool(
                intake.store_body, store, cfg, body, media, encoding, int(time.time())
            )
        except Exception:  # counted for /metrics, answered by the error handlers
            request.app.state.telemetry.ingest_refused()
            raise
        request.app.state.telemetry.ingested(stored)
        return IngestResult(stored=stored)

    @app.get(
        "/v1/entities",
        response_model=EntitiesOut,
        responses=errors(401, 403, 422, 503),
        summary="Entities and their series",
    )
    def get_entities(
        session: SessionDep,
        _who: ReadAuth,
        kind: Annotated[Literal["vm", "function", "server"] | None, Query()] = None,
    ) -> dict[str, Any]:
        return {"entities": sample_store.list_entities(session, kind)}

    @app.get(
        "/v1/series/{entity}/{metric}",
        responses={200: {"model": SeriesOut}, **errors(401, 403, 404, 422, 503)},
        summary="Points of one series, raw or aggregated by step",
    )
    @app.get(
        "/v1/series",
        responses={200: {"model": SeriesOut}, **errors(401, 403, 404, 422, 503)},
        summary="The same, entity and metric as query parameters (for names holding '/')",
    )
    def get_series(
        entity: str,
        metric: str,
        session: SessionDep,
        cfg: SettingsDep,
        _who: ReadAuth,
        start: Annotated[
            str | None, Query(description="unix s or RFC 3339; default end - 3600")
        ] = None,
        end: Annotated[str | None, Query(description="unix s or RFC 3339; default now")] = None,
        step: Annotated[
            int | None, Query(ge=1, description="bucket width (s); omit for raw samples")
        ] = None,
        agg: Annotated[
            Literal["mean", "min", "max", "sum", "count"], Query(description="per bucket")
        ] = "mean",
    ) -> Response:
        t_end = _query_ts(end, "end") if end is not None else int(time.time())
        t_start = _query_ts(start, "start") if start is not None else t_end - 3600
        res = sample_store.query_series(
            session, entity, metric, t_start, t_end, step, agg, cfg.max_query_points
        )
        return Response(orjson.dumps(res.__dict__), media_type="application/json")

    from service.routes.daemon import router as daemon_router

    app.include_router(daemon_router)

    @app.get(
        "/metrics",
        summary="The daemon's health, forecasts and decisions in the Prometheus text format",
        description="The daemon's own counters, and the latest stored forecasts (quantiles at "
        "a few horizons), desired settings and input/decision ages, at most "
        "TIDEWISE_EXPORT_MAX_SERIES of those series (see service/promexport.py).",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **errors(401, 403)},
    )
    def metrics(request: Request, _who: ReadAuth) -> Response:
        state = request.app.state
        body = state.telemetry.render(getattr(state, "store", None))
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="The store is reachable and migrated, and the scheduled jobs are running",
        responses={
            200: {"model": ReadyOut},
            503: {"model": ReadyOut, "description": "not ready: detail says why"},
        },
    )
    def readyz(request: Request, store: StoreDep) -> JSONResponse:
        heads = request.app.state.heads
        try:
            with store.engine.connect() as conn:
                current = migrate.current_revisions(conn)
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            return JSONResponse(
                {"status": "unavailable", "detail": f"store unreachable: {type(exc).__name__}"},
                status_code=503,
            )
        if current != heads:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "detail": "database is not at the newest migration; run `tidewise db upgrade`",
                    "current": list(current),
                    "head": list(heads),
                },
                status_code=503,
            )
        jobs_ok, jobs = _jobs_health(request.app)
        if not jobs_ok:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "detail": "; ".join(jobs["problems"]),
                    "revision": list(current),
                    "jobs": jobs,
                },
                status_code=503,
            )
        return JSONResponse({"status": "ok", "revision": list(current), "jobs": jobs})

    # POST /api/v1/write (Prometheus); its errors documented here, with those of every route
    app.include_router(
        remote_write.router, responses=errors(400, 401, 403, 409, 413, 415, 422, 503)
    )
    app.include_router(dashboard.router)  # GET /dashboard/, GET /v1/replay/report
    return app


def _jobs_health(app: FastAPI) -> tuple[bool, dict[str, Any]]:
    """Health of this daemon's scheduled jobs for /readyz.

    See :class:`service.scheduler.JobHealth`.
    """
    settings: Settings = app.state.settings
    sched = getattr(app.state, "scheduler", None)
    health = getattr(app.state, "job_health", None)
    if not settings.scheduler_enabled or health is None:
        return True, {"running": False, "problems": [], "jobs": {}, "disabled": True}
    from apscheduler.schedulers.base import STATE_RUNNING

    running = sched is not None and sched.state == STATE_RUNNING
    return health.report(time.time(), running, settings.ready_job_periods)


def _query_ts(raw: str, name: str) -> int:
    try:
        return ingest_service.parse_ts(float(raw) if _is_number(raw) else raw)
    except ValueError as exc:
        raise QueryError(str(exc), where=name) from None


def _is_number(raw: str) -> bool:
    try:
        float(raw)
    except ValueError:
        return False
    return True
