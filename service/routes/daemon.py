"""Routes for orchestrators: targets, forecasts, recommendations, actions, KEDA, HPA.

Thin handlers: parse, call a store (:mod:`service.store`) or service function, shape the
answer. Every read is a cheap lookup of what the scheduled jobs stored (the latest forecast or
decision); nothing is recomputed per request. Scopes: ``read`` for reads, ``act`` to
declare/delete targets and to acknowledge actions (:mod:`service.auth`).
"""

from __future__ import annotations

import functools
import math
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from common.errors import InputError, TidewiseError
from service import actions as actions_view
from service import forecasting, targets
from service.auth import ActAuth, ReadAuth
from service.deps import SessionDep, SettingsDep
from service.openapi import ErrorOut, errors
from service.store import decisions as decision_store
from service.store import forecasts as forecast_store
from service.store import samples as sample_store
from service.store import targets as target_store
from service.store.errors import NotFoundError, QueryError

router = APIRouter()


class UnusableDecisionError(TidewiseError):
    """A decision is stale or a refused fallback (HTTP 503); ``error`` says which."""

    status_code = 503

    def __init__(self, message: str, error: str) -> None:
        super().__init__(message)
        self.error = error


TargetName = Annotated[str, Path(min_length=1, max_length=255)]


# --------------------------------------------------------------------------- schemas


class TargetDeclared(BaseModel):
    """Answer of POST /v1/targets."""

    name: str
    created: bool


class ForecastOut(BaseModel):
    """A stored forecast: per step its time, mean and quantiles."""

    entity: str
    metric: str
    indicators: list[str] = Field(
        description="the metrics of this entity forecast jointly with this one, by the same "
        "model call (sample paths shared); just this metric when forecast alone")
    model: str
    fallback: bool
    reason: str | None = Field(
        None, description="why the fallback answered (no data, a model failure, ...); null "
        "for a model forecast")
    computed_at: str
    step_s: float
    horizon: int
    steps: list[dict[str, float]] = Field(
        description="per step: ts (unix s of the step's start), mean, lo-90 … hi-90, median"
    )
    input_last_ts: int | None = Field(
        description="unix s of the series' newest raw sample (null: none kept); for a series "
        "read from a target's source, at least the last second of its newest bucket with a "
        "value")
    input_age_s: float | None = Field(
        description="seconds since that sample, when answered (null: none kept)")
    input_stale: bool = Field(
        description="the input is stale: no raw sample for more than stale_after_s seconds "
        "(or none kept); the forecast and the decisions on it rest on old data")
    stale_after_s: float = Field(
        description="3 x max(TIDEWISE_FORECAST_INTERVAL_S, TIDEWISE_FORECAST_STEP_S) (seconds)")


#: Largest replica count an acknowledgement may report (the bound of ``max_replicas``).
MAX_REPLICAS = 100_000

Replicas = Annotated[int, Field(strict=True, ge=0, le=MAX_REPLICAS)]


class AckIn(BaseModel):
    """Optional body of an acknowledgement: what the actuator sees now (scaling actions)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"applied": 8, "ready": 5}
    ]})

    applied: Replicas | None = Field(
        None,
        description="replicas the actuator applied, i.e. requested now (e.g. the Deployment's "
        "spec.replicas); an integer 0-100000",
    )
    ready: Replicas | None = Field(
        None,
        description="replicas ready now (e.g. status.availableReplicas); an integer 0-100000",
    )


# --------------------------------------------------------------------------- targets


@router.post(
    "/v1/targets",
    response_model=TargetDeclared,
    responses={
        201: {"model": TargetDeclared, "description": "Created"},
        200: {"description": "Replaced"},
        **errors(400, 401, 403, 413, 422, 503),
    },
    summary="Declare (or replace) a target: scaling, serverless or power",
    tags=["targets"],
)
def post_target(
    request: Request,
    _who: ActAuth,
    target: Annotated[targets.TargetIn, Body()],
) -> JSONResponse:
    """Declare or replace a target."""
    created = targets.declare(request.app.state.store, target)
    status = 201 if created else 200
    return JSONResponse({"name": target.name, "created": created}, status_code=status)


@router.get(
    "/v1/targets",
    summary="Every declared target",
    tags=["targets"],
    responses=errors(401, 403, 503),
)
def get_targets(session: SessionDep, _who: ReadAuth) -> dict[str, Any]:
    """List every declared target."""
    return {"targets": [targets.describe(t) for t in target_store.list_targets(session)]}


@router.get(
    "/v1/targets/{name}",
    summary="One declared target",
    tags=["targets"],
    responses=errors(401, 403, 404, 422, 503),
)
def get_target(name: TargetName, session: SessionDep, _who: ReadAuth) -> dict[str, Any]:
    """Describe one declared target."""
    return targets.describe(target_store.get_target(session, name))


@router.delete(
    "/v1/targets/{name}",
    status_code=204,
    responses=errors(401, 403, 404, 422, 503),
    summary="Forget a target (its actions stay logged)",
    tags=["targets"],
)
def delete_target(request: Request, name: TargetName, _who: ActAuth) -> Response:
    """Forget a target."""
    target_store.delete_target(request.app.state.store, name)
    return Response(status_code=204)


# --------------------------------------------------------------------------- forecasts


@router.get(
    "/v1/forecasts/{entity}",
    response_model=ForecastOut,
    responses=errors(401, 403, 404, 422, 503),
    summary="The latest forecast of one series: mean and quantiles per step",
    tags=["forecasts"],
)
def get_forecast(
    entity: Annotated[str, Path(min_length=1, max_length=255)],
    session: SessionDep,
    cfg: SettingsDep,
    _who: ReadAuth,
    metric: Annotated[str, Query(min_length=1, max_length=128)],
    horizon: Annotated[
        int | None, Query(ge=1, le=10_000, description="steps to return (default: all stored)")
    ] = None,
) -> dict[str, Any]:
    """Serve the latest stored forecast of one series, with the age of its newest sample."""
    rec = forecast_store.latest_forecast(session, entity, metric)
    p = rec.payload
    n = len(p["times"]) if horizon is None else min(horizon, len(p["times"]))
    cols = ["mean", *forecasting.QUANTILES]
    steps = [{"ts": p["times"][h], **{c: p[c][h] for c in cols}} for h in range(n)]
    last = sample_store.last_sample_ts(session, rec.series_id)
    sourced = (p.get("info") or {}).get("source_last_ts")  # read from a target's source
    if isinstance(sourced, int):
        last = sourced if last is None else max(last, sourced)
    age = None if last is None else max(0.0, time.time() - last)
    stale_after = forecasting.input_stale_after_s(cfg)
    return {
        "entity": entity,
        "metric": metric,
        "indicators": list(p.get("indicators") or [metric]),  # older records lack the list
        "model": rec.model,
        "fallback": rec.fallback,
        "reason": (p.get("info") or {}).get("reason") if rec.fallback else None,
        "computed_at": actions_view.iso(rec.computed_at),
        "step_s": rec.step,
        "horizon": n,
        "steps": steps,
        "input_last_ts": last,
        "input_age_s": age,
        "input_stale": age is None or age > stale_after,
        "stale_after_s": stale_after,
    }


# --------------------------------------------------------------------------- recommendations


def _recommendation(request: Request, name: str) -> dict[str, Any]:
    # One primary-key read of two small rows. The hot path of orchestrators polling, so it
    # runs on the event loop: well under a millisecond, cheaper than a worker-thread hop.
    with request.app.state.store.sessions() as session:
        target, rec = decision_store.target_and_decision(session, name)
    return actions_view.describe_recommendation(
        target, rec, request.app.state.settings.forecast_interval_s, time.time()
    )


@router.get(
    "/v1/recommendations/{target}",
    responses=errors(401, 403, 404, 422, 503),
    summary="The latest decision for a target: desired setting and its explanation",
    tags=["recommendations"],
)
async def get_recommendation(request: Request, target: TargetName, _who: ReadAuth) -> Response:
    """Serve the latest stored decision of a target."""
    return _json(_recommendation(request, target))


def _json(body: dict[str, Any]) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


# --------------------------------------------------------------------------- actions


def _since(raw: str | None) -> int | None:
    if raw is None:
        return None
    from service.ingest import parse_ts

    try:
        return parse_ts(float(raw)) if _number(raw) else parse_ts(raw)
    except ValueError as exc:
        raise QueryError(str(exc), where="since") from None


def _number(raw: str) -> bool:
    try:
        return math.isfinite(float(raw))
    except ValueError:
        return False


@router.get(
    "/v1/actions",
    summary="The action log, oldest first",
    tags=["actions"],
    responses=errors(401, 403, 422, 503),
)
def get_actions(
    session: SessionDep,
    _who: ReadAuth,
    since: Annotated[str | None, Query(description="unix s or RFC 3339; created at/after")] = None,
    target: Annotated[str | None, Query(max_length=255)] = None,
    pending: Annotated[bool, Query(description="only actions not acknowledged yet")] = False,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    """List the action log."""
    rows = decision_store.list_actions(session, _since(since), target, pending, limit)
    return {"actions": [actions_view.describe_action(r) for r in rows]}


@router.post(
    "/v1/actions/{action_id}/ack",
    responses=errors(401, 403, 404, 413, 422, 503),
    summary="Acknowledge that an action was carried out (idempotent), optionally with the "
    "replica counts applied and ready",
    tags=["actions"],
)
def ack_action(
    request: Request,
    action_id: Annotated[int, Path(ge=1, le=2**62)],
    who: ActAuth,
    body: Annotated[AckIn | None, Body()] = None,
) -> dict[str, Any]:
    """Acknowledge an action; the first acknowledgement's time and token name are kept.

    A scaling action's acknowledgement may carry ``applied`` (replicas requested) and
    ``ready`` (replicas ready): the daemon's next decisions read them as the cluster's state
    while they are at most 600 s old, unless the target's ``ready_metric`` /
    ``requested_metric`` has a sample as recent (the metric wins). Without either it assumes
    its last recommendation. Acknowledge again with new counts to report progress (each
    acknowledgement with counts replaces both). Counts on a serverless or power action: 422.
    """
    counts = body or AckIn()
    row = decision_store.ack_action(
        request.app.state.store, action_id, who.name, int(time.time()),
        applied=counts.applied, ready=counts.ready,
    )
    return actions_view.describe_action(row)


# --------------------------------------------------------------------------- KEDA / HPA


def _desired_replicas(rec: dict[str, Any]) -> int:
    desired = rec.get("desired") or {}
    if rec["kind"] == "serverless" and "warm" in desired:
        return int(desired["warm"])
    if rec["kind"] == "power":
        raise InputError(
            f"target {rec['target']!r} is a {rec['kind']} target; KEDA and the HPA scale "
            "scaling or serverless targets",
            where="target",
        )
    if "replicas" not in desired:
        raise NotFoundError(
            f"target {rec['target']!r} has no valid decision yet (no data?); one follows "
            "each forecast refresh"
        )
    return int(desired["replicas"])


class KedaOut(BaseModel):
    """Answer of GET /v1/keda/{target} (KEDA's metrics-api scaler reads desiredReplicas)."""

    desiredReplicas: int  # noqa: N815 - the JSON path KEDA's valueLocation names
    target: str
    valid: bool
    fallback: bool
    stale: bool
    computedAt: str | None  # noqa: N815


class KedaUnavailable(KedaOut):
    """503 of GET /v1/keda/{target}: the decision must not drive scaling (KEDA's fallback)."""

    error: str = Field(description="StaleDecision or FallbackDecision")
    detail: str


@functools.lru_cache(maxsize=256)
def _reads_forecast(policy: str, scenario: str) -> bool:
    from policies import registry

    try:
        return bool(registry.get(policy, scenario).needs_forecast)
    except KeyError:
        return False


def unusable(request: Request, session: Any, name: str, rec: Any) -> tuple[str, str] | None:  # noqa: ANN401
    """Say why a stored decision must not drive an orchestrator, as (error, detail), or None.

    * stale (always): older than three forecast periods, i.e. the jobs are not running;
    * from a fallback (when ``TIDEWISE_REFUSE_FALLBACK_DECISIONS``): the policy fell back
      (``fallback`` on the decision), or a scaling target with ``forecaster: stored`` decided
      on the refresh's fallback forecast (the stored forecast it read was ``fallback:…``).
    """
    cfg = request.app.state.settings
    period = cfg.forecast_interval_s
    age = max(0.0, time.time() - rec.computed_at)
    if age > 3 * period:
        return "StaleDecision", (
            f"the decision for target {name!r} is {age:.0f} s old, more than three forecast "
            f"periods ({3 * period:g} s): the daemon's jobs are not running (see /readyz); "
            "answered 503 so the orchestrator's own fallback applies"
        )
    if not cfg.refuse_fallback_decisions:
        return None
    if rec.fallback:
        return "FallbackDecision", (
            f"the decision for target {name!r} is a fallback ({rec.why}); "
            "TIDEWISE_REFUSE_FALLBACK_DECISIONS=true answers 503 so the orchestrator's own "
            "fallback applies"
        )
    target = target_store.get_target(session, name)
    if (target.kind == "vm" and target.spec.get("forecaster") == "stored"
            and _reads_forecast(target.policy, target.kind)):
        try:
            spec = target.spec
            fc = forecast_store.latest_forecast(session, spec["entity"], spec["metric"])
        except NotFoundError:
            return None
        # the decision read the stored forecast only when it was at most 3 periods old
        if fc.fallback and 0 <= rec.computed_at - fc.computed_at <= 3 * period:
            return "FallbackDecision", (
                f"the decision for target {name!r} was made on the fallback forecast "
                f"{fc.model!r} of {target.spec['entity']}/{target.spec['metric']}; "
                "TIDEWISE_REFUSE_FALLBACK_DECISIONS=true answers 503 so the orchestrator's own "
                "fallback applies"
            )
    return None


@router.get(
    "/v1/keda/{target}",
    summary="KEDA metrics-api trigger: desiredReplicas at a stable JSON path",
    tags=["orchestrators"],
    response_model=KedaOut,
    responses=errors(
        401,
        403,
        404,
        422,
        s503={
            "model": KedaUnavailable | ErrorOut,
            "description": "stale decision, or one from a fallback with "
            "TIDEWISE_REFUSE_FALLBACK_DECISIONS (the KEDA body plus error and detail: KEDA's "
            "fallback applies); or the store is busy",
        },
    ),
)
async def get_keda(request: Request, target: TargetName, _who: ReadAuth) -> Response:
    """Serve the desired replicas in the KEDA metrics-api shape (503 when it must not be used)."""
    store = request.app.state.store
    with store.sessions() as session:
        t, row = decision_store.target_and_decision(session, target)
        rec = actions_view.describe_recommendation(
            t, row, request.app.state.settings.forecast_interval_s, time.time()
        )
        body: dict[str, Any] = {
            "desiredReplicas": _desired_replicas(rec),
            "target": rec["target"],
            "valid": rec["valid"],
            "fallback": rec["fallback"],
            "stale": rec["stale"],
            "computedAt": rec["computed_at"],
        }
        refused = unusable(request, session, target, row)
    if refused is None:
        return _json(body)
    error, detail = refused
    return Response(
        orjson.dumps({**body, "error": error, "detail": detail}),
        status_code=503,
        media_type="application/json",
    )


EXTERNAL_GROUP = "external.metrics.k8s.io/v1beta1"
#: External metric names served, and what each reads.
EXTERNAL_METRICS = {"tidewise-desired-replicas": "replicas", "tidewise-desired-warm": "warm"}


def quantity(value: float) -> str:
    """Format ``value`` as a Kubernetes quantity: whole numbers plain, else milli (``2500m``)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"


@router.get(
    "/apis/external.metrics.k8s.io/v1beta1",
    responses=errors(401, 403),
    summary="Discovery of the external metrics served (APIResourceList)",
    tags=["orchestrators"],
)
def external_discovery(_who: ReadAuth) -> dict[str, Any]:
    """List the external metrics served."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": EXTERNAL_GROUP,
        "resources": [
            {
                "name": m,
                "singularName": "",
                "namespaced": True,
                "kind": "ExternalMetricValueList",
                "verbs": ["get"],
            }
            for m in EXTERNAL_METRICS
        ],
    }


@router.get(
    "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}",
    responses=errors(
        401,
        403,
        404,
        422,
        503,
        s503={
            "model": ErrorOut,
            "description": "a selected target's decision is stale (or "
            "a fallback, with TIDEWISE_REFUSE_FALLBACK_DECISIONS), or the store is busy",
        },
    ),
    summary="Kubernetes External Metrics API: desired replicas/warm per target",
    tags=["orchestrators"],
)
def external_metric(
    request: Request,
    namespace: Annotated[str, Path(min_length=1, max_length=253)],
    metric: Annotated[str, Path(min_length=1, max_length=253)],
    session: SessionDep,
    _who: ReadAuth,
    labelSelector: Annotated[  # noqa: N803 - the Kubernetes parameter name
        str | None, Query(max_length=1000, description="e.g. target=web")
    ] = None,
) -> dict[str, Any]:
    """Serve one external metric as an ExternalMetricValueList."""
    if metric not in EXTERNAL_METRICS:
        raise NotFoundError(
            f"no external metric {metric!r}; served: {sorted(EXTERNAL_METRICS)}"
        )
    wanted = _selector(labelSelector)
    key = EXTERNAL_METRICS[metric]
    items = []
    for t in target_store.list_targets(session):
        if "target" in wanted and t.name != wanted["target"]:
            continue
        rec = decision_store.latest_decision(session, t.id)
        if rec is None or key not in (rec.desired or {}):
            continue
        refused = unusable(request, session, t.name, rec)
        if refused is not None:  # the HPA keeps its current scale on an error
            raise UnusableDecisionError(refused[1], refused[0])
        items.append(
            {
                "metricName": metric,
                "metricLabels": {"target": t.name},
                "timestamp": actions_view.iso(rec.computed_at),
                "value": quantity(float(rec.desired[key])),
            }
        )
    return {
        "kind": "ExternalMetricValueList",
        "apiVersion": EXTERNAL_GROUP,
        "metadata": {},
        "items": items,
    }


def _selector(raw: str | None) -> dict[str, str]:
    """``k=v,k2=v2`` (equality only) as a dict; a clear 422 otherwise."""
    out: dict[str, str] = {}
    if not raw:
        return out
    for part in raw.split(","):
        k, sep, v = part.strip().partition("=")
        k, v = k.strip().rstrip("="), v.strip().lstrip("=")
        if not sep or not k or not v or "!" in k:
            raise QueryError(
                f"{part.strip()!r}: only equality selectors like target=web are supported",
                where="labelSelector",
            )
        out[k] = v
    unknown = sorted(set(out) - {"target"})
    if unknown:
        raise QueryError(
            f"unknown label(s) {unknown}; use target=NAME", where="labelSelector"
        )
    return out
