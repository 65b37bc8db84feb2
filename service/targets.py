"""What the daemon manages: declared targets, their request models and validation.

Three kinds, each mapped to the replay scenario whose typed ``Spec`` and ``Observation``
the daemon builds for it (:mod:`service.decisions`):

* ``scaling`` (scenario ``vm``): replicas of a service whose demand is one metric of one
  entity; one replica serves ``capacity`` demand units. The ready and requested replicas
  are read from ``ready_metric`` / ``requested_metric`` when named (what the cluster
  reports), else from the counts of the actuator's latest acknowledgement, else assumed to
  be the last recommendation (:func:`service.decisions.collect_vm`). With a ``source`` the
  demand history is read from a Prometheus-compatible API (:mod:`service.promsource`).
* ``serverless`` (scenario ``serverless``): warm instances of one function, from its
  ``invocations`` per minute, mean duration and memory.
* ``power`` (scenario ``power``): per-server power caps of a row under a budget.

A target names its policy (``policies.registry``, default ``bayes``) and the policy's
parameters; both are checked when the target is declared, so a typo is a 422 naming the
field, not a failing job later. Policies that read the future (``oracle``, ``static-peak``
of vm/serverless) exist for replay only and are refused.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.promsource import PromSource
from service.store import targets as target_store
from service.store.db import Store

#: Target kind -> replay scenario.
SCENARIO = {"scaling": "vm", "serverless": "serverless", "power": "power"}

Name = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        description="letters, digits, '.', '_', ':' or '-' (starts with a letter or digit)",
    ),
]


class _TargetBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    policy: str = Field("bayes", max_length=64, description="policy name for this scenario")
    params: dict[str, Any] = Field(
        default_factory=dict, description="policy parameters (see its defaults)"
    )

    def policy_params(self) -> dict[str, Any]:
        """Parameters handed to the policy (declared fields mapped in, then ``params``)."""
        return dict(self.params)

    @model_validator(mode="after")
    def _check_policy(self) -> _TargetBase:
        from policies import registry

        scenario = SCENARIO[self.kind]  # type: ignore[attr-defined]
        try:
            cls = registry.get(self.policy, scenario)
        except KeyError as exc:
            raise ValueError("policy: " + str(exc).strip("'\"")) from None
        if getattr(cls, "reads_future", False):
            raise ValueError(
                f"policy: {self.policy!r} reads the future (a replay bound); it cannot run live"
            )
        try:
            cls(**self.policy_params())
        except (TypeError, ValueError) as exc:
            raise ValueError(f"params: {exc}") from None
        return self


class ScalingTarget(_TargetBase):
    """Replicas of a service (scenario ``vm``)."""

    kind: Literal["scaling"]
    entity: str = Field(min_length=1, max_length=255, description="entity whose metric is demand")
    metric: str = Field(min_length=1, max_length=128, description="demand metric, e.g. cpu_cores")
    capacity: float = Field(gt=0, allow_inf_nan=False, description="demand units per replica")
    min_replicas: int = Field(1, ge=0, le=100_000)
    max_replicas: int = Field(1000, ge=1, le=100_000)
    target_violation: float = Field(
        0.01, gt=0, lt=1, description="SLA: share of time demand may exceed ready capacity"
    )
    boot_s: float = Field(60.0, ge=0, le=86_400, description="seconds from request to ready")
    ready_metric: str | None = Field(
        None, min_length=1, max_length=128,
        description="metric reporting the replicas ready now (e.g. "
        "kube_deployment_status_replicas_available); unset or no sample in the last 600 s: the "
        "acknowledged `ready` count, else the last recommendation",
    )
    requested_metric: str | None = Field(
        None, min_length=1, max_length=128,
        description="metric reporting the replicas requested now (e.g. "
        "kube_deployment_spec_replicas); unset or no sample in the last 600 s: the "
        "acknowledged `applied` count, else the last recommendation",
    )
    replicas_entity: str | None = Field(
        None, min_length=1, max_length=255,
        description="entity of ready_metric / requested_metric (default: entity)",
    )
    indicators: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        None, min_length=2, max_length=64,
        description="metrics of the entity forecast jointly with the demand metric (which "
        "must be one of them), as the indicators of one model, e.g. [requests, cpu_cores, "
        "mem_gb]; unset: the entity's metrics, TIDEWISE_FORECAST_MAX_INDICATORS at most",
    )
    source: PromSource | None = Field(
        None,
        description="read the demand history from a Prometheus-compatible query API "
        "(Prometheus, VictoriaMetrics, Thanos, Mimir) instead of from pushed samples: "
        "KEDA's prometheus scaler fields (serverAddress, query, authModes, ...); see "
        "docs/prometheus-source.md. ready_metric / requested_metric are still read from "
        "the store",
    )
    forecaster: Literal["auto", "online", "stored"] = Field(
        "auto",
        description="what a forecast-reading policy decides on: `auto`, the candidate of "
        "TIDEWISE_FORECASTER_CANDIDATES that did best on this target's own history (the "
        "`choose` job backtests them; the online forecaster until then); `online`, the "
        "scenario's online forecaster over the demand history (what `tidewise replay` and "
        "`backtest` measure by default); `stored`, the forecast refresh's joint forecast of "
        "the entity (the registered model, else TIDEWISE_FORECAST_MODEL), demand first",
    )

    @model_validator(mode="after")
    def _check_indicators(self) -> ScalingTarget:
        if self.indicators is not None:
            dup = sorted({m for m in self.indicators if self.indicators.count(m) > 1})
            if dup:
                raise ValueError(f"indicators: listed twice: {dup}")
            if self.metric not in self.indicators:
                raise ValueError(f"indicators: must include the demand metric {self.metric!r}")
        return self

    @model_validator(mode="before")
    @classmethod
    def _check_range(cls, data: Any) -> Any:  # noqa: ANN401 - raw request body
        if isinstance(data, dict):
            lo, hi = data.get("min_replicas", 1), data.get("max_replicas", 1000)
            if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
                raise ValueError(f"min_replicas: {lo} must not exceed max_replicas ({hi})")
        return data

    def policy_params(self) -> dict[str, Any]:  # noqa: D102
        p = dict(self.params)
        if self.policy == "bayes":
            p.setdefault("target_violation", self.target_violation)
        return p


class ServerlessTarget(_TargetBase):
    """Warm instances of one function (scenario ``serverless``, one-minute steps)."""

    kind: Literal["serverless"]
    entity: str = Field(min_length=1, max_length=255, description="the function's entity")
    metric: str = Field("invocations", max_length=128, description="invocation count metric")
    memory_mb: float = Field(gt=0, le=1_048_576, allow_inf_nan=False, description="MB/instance")
    duration_ms: float = Field(gt=0, le=86_400_000, allow_inf_nan=False, description="mean ms")
    cold_start_gb_s: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="price ratio: one cold start costs as much as this many GB·s of idle "
        "memory (unset: the policy's default, 400 for bayes, as in the replay)",
    )

    def policy_params(self) -> dict[str, Any]:  # noqa: D102
        p = dict(self.params)
        if self.policy == "bayes" and self.cold_start_gb_s is not None:
            p.setdefault("cold_start_gb_s", self.cold_start_gb_s)
        return p


class PowerTarget(_TargetBase):
    """Power caps of a row of servers (scenario ``power``)."""

    kind: Literal["power"]
    servers: list[Annotated[str, Field(min_length=1, max_length=255)]] = Field(
        min_length=1, max_length=10_000, description="server entities (metric power_w)"
    )
    metric: str = Field("power_w", max_length=128)
    budget_w: float = Field(gt=0, allow_inf_nan=False, description="row budget (W)")
    p_max_w: float = Field(gt=0, allow_inf_nan=False, description="nameplate per server (W)")
    p_idle_w: float = Field(100.0, ge=0, allow_inf_nan=False, description="idle per server (W)")
    delay_s: float = Field(40.0, ge=0, le=3600, description="cap actuation delay (s)")
    priorities: dict[str, Literal["low", "high"]] = Field(
        default_factory=dict, description="server -> low|high (default high); low is capped first"
    )

    @model_validator(mode="after")
    def _check_servers(self) -> PowerTarget:
        dup = sorted({s for s in self.servers if self.servers.count(s) > 1})
        if dup:
            raise ValueError(f"servers: listed twice: {dup}")
        unknown = sorted(set(self.priorities) - set(self.servers))
        if unknown:
            raise ValueError(f"priorities: not in servers: {unknown}")
        if self.p_idle_w >= self.p_max_w:
            raise ValueError(f"p_idle_w: {self.p_idle_w} must be below p_max_w ({self.p_max_w})")
        return self


TargetIn = Annotated[
    ScalingTarget | ServerlessTarget | PowerTarget, Field(discriminator="kind")
]


def declare(store: Store, target: ScalingTarget | ServerlessTarget | PowerTarget) -> bool:
    """Store ``target`` (create or replace); True when created."""
    spec = target.model_dump(exclude={"name", "policy", "params", "kind"})
    return target_store.upsert_target(
        store,
        target.name,
        SCENARIO[target.kind],
        target.policy,
        spec,
        target.policy_params(),
        int(time.time()),
    )


KIND_OF_SCENARIO = {v: k for k, v in SCENARIO.items()}


def describe(row: Any) -> dict[str, Any]:  # noqa: ANN401 - a tables.Target
    """Describe a stored target (as declared, plus timestamps)."""
    return {
        "name": row.name,
        "kind": KIND_OF_SCENARIO.get(row.kind, row.kind),
        "policy": row.policy,
        "params": row.params,
        **row.spec,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }

