"""The action log and the recommendation views orchestrators read.

An action is recorded (with the decision, in one transaction) whenever a target's desired
setting changes: replicas, warm instances, or power caps. Orchestrators poll
``GET /v1/actions?since=…&pending=true``, carry the action out and acknowledge it with
``POST /v1/actions/{id}/ack``; acknowledging twice is harmless (the first time is kept). A
scaling action's acknowledgement may carry the replicas ``applied`` and ``ready``, which the
daemon's next decisions read as the cluster's state (:func:`service.decisions.collect_vm`).

For power rows an action also lists what changed: ``cap`` (server -> new cap in W, for
servers newly capped or re-capped) and ``uncap`` (servers whose cap is lifted).
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def iso(ts: float | None) -> str | None:
    """RFC 3339 UTC of unix seconds."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(float(ts), tz=dt.UTC).isoformat().replace("+00:00", "Z")


def changes(kind: str, desired: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, Any]:
    """Say what an action changes, in the terms an actuator applies."""
    if kind == "power":
        new = dict(desired.get("caps", {}))
        old = dict((previous or {}).get("caps", {}))
        return {
            "cap": {k: v for k, v in sorted(new.items()) if old.get(k) != v},
            "uncap": sorted(set(old) - set(new)),
        }
    key = "replicas" if kind == "vm" else "warm"
    return {key: {"from": (previous or {}).get(key), "to": desired.get(key)}}


def describe_action(row: Any) -> dict[str, Any]:  # noqa: ANN401 - a tables.ActionRecord
    """Describe one action for the API."""
    return {
        "id": row.id,
        "target": row.target,
        "kind": {"vm": "scaling"}.get(row.kind, row.kind),
        "created_at": iso(row.created_at),
        "created_at_unix": row.created_at,
        "desired": row.desired,
        "previous": row.previous,
        "changes": changes(row.kind, row.desired, row.previous),
        "why": row.why,
        "acked": row.acked_at is not None,
        "acked_at": iso(row.acked_at),
        "acked_by": row.acked_by,
        # replica counts reported with the acknowledgement (scaling actions; null: none)
        "applied": row.applied,
        "ready": row.ready,
        "counts_at": iso(row.counts_at),
        "counts_at_unix": row.counts_at,
    }


def describe_recommendation(target: Any, rec: Any, interval_s: float, now: float) -> dict[str, Any]:  # noqa: ANN401, E501
    """Describe a target's latest decision (``rec`` None: not decided yet)."""
    from service.targets import KIND_OF_SCENARIO

    if rec is None:
        return {
            "target": target.name, "kind": KIND_OF_SCENARIO[target.kind], "policy": target.policy,
            "ready": False, "desired": None, "valid": False, "fallback": False,
            "why": "no decision yet; one follows each forecast refresh", "details": {},
            "computed_at": None, "computed_at_unix": None, "age_s": None, "stale": True,
        }
    age = max(0.0, now - rec.computed_at)
    return {
        "target": target.name,
        "kind": KIND_OF_SCENARIO[target.kind],
        "policy": rec.policy,
        "ready": True,
        "desired": rec.desired,
        "valid": rec.valid,
        "fallback": rec.fallback,
        "why": rec.why,
        "details": rec.details,
        "action": rec.action,
        "computed_at": iso(rec.computed_at),
        "computed_at_unix": rec.computed_at,
        "age_s": age,
        # three missed refreshes: the daemon's jobs are not running
        "stale": age > 3 * interval_s,
    }
