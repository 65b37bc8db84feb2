"""Each target's latest decision, and the log of actions orchestrators poll and acknowledge."""

from __future__ import annotations

import types
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.store.db import Store
from service.store.errors import NotFoundError
from service.store.tables import ActionRecord, DecisionRecord, Target


def target_and_decision(session: Session, name: str) -> tuple[Any, Any]:
    """Read a target and its latest decision (None before the first) in one query.

    The hot path of recommendation reads: plain columns (no ORM objects, and not the
    policy's memory blob, which can be large), returned as attribute namespaces.

    Raises:
        NotFoundError: no such target.

    """
    D = DecisionRecord
    row = session.execute(
        select(Target.name, Target.kind, Target.policy, D.target_id, D.computed_at,
               D.policy, D.valid, D.fallback, D.why, D.action, D.details, D.desired)
        .outerjoin(D, D.target_id == Target.id)
        .where(Target.name == name)
    ).first()
    if row is None:
        raise NotFoundError(f"no target named {name!r}; see GET /v1/targets")
    target = types.SimpleNamespace(name=row[0], kind=row[1], policy=row[2])
    if row[3] is None:
        return target, None
    keys = ("computed_at", "policy", "valid", "fallback", "why", "action", "details", "desired")
    return target, types.SimpleNamespace(**dict(zip(keys, row[4:], strict=True)))


def latest_decision(session: Session, target_id: int) -> DecisionRecord | None:
    """Return the latest decision of a target, or None before the first one."""
    return session.get(DecisionRecord, target_id)


def save_decision(
    store: Store, target: Target, record: dict[str, Any], now: int, changed: bool,
    previous: dict[str, Any] | None,
) -> int | None:
    """Store the latest decision of ``target``; log an action when the setting changed.

    Both happen in one transaction, so an action is never logged for a decision that was not
    stored (or the reverse). Returns the new action's id, or None.
    """
    with store.write_sessions() as session, session.begin():
        if session.get(Target, target.id) is None:  # deleted meanwhile: nothing to record
            return None
        row = session.get(DecisionRecord, target.id)
        if row is None:
            session.add(DecisionRecord(target_id=target.id, **record))
        else:
            for k, v in record.items():
                setattr(row, k, v)
        if not changed:
            return None
        action = ActionRecord(
            target=target.name, kind=target.kind, created_at=now, desired=record["desired"],
            previous=previous, why=record["why"],
        )
        session.add(action)
        session.flush()
        return int(action.id)


def list_actions(
    session: Session, since: int | None = None, target: str | None = None,
    pending: bool = False, limit: int = 1000,
) -> list[ActionRecord]:
    """List actions (oldest first) created at/after ``since``; unacknowledged with ``pending``."""
    q = select(ActionRecord).order_by(ActionRecord.id).limit(limit)
    if since is not None:
        q = q.where(ActionRecord.created_at >= since)
    if target is not None:
        q = q.where(ActionRecord.target == target)
    if pending:
        q = q.where(ActionRecord.acked_at.is_(None))
    return list(session.scalars(q))


def ack_action(store: Store, action_id: int, by: str, now: int) -> ActionRecord:
    """Mark an action done; acknowledging twice keeps the first time (idempotent).

    Raises:
        NotFoundError: no action with this id.

    """
    with store.write_sessions() as session, session.begin():
        row = session.get(ActionRecord, action_id)
        if row is None:
            raise NotFoundError(f"no action with id {action_id}; see GET /v1/actions")
        if row.acked_at is None:
            row.acked_at, row.acked_by = now, by
        return row
