"""Each target's latest decision, and the log of actions orchestrators poll and acknowledge."""

from __future__ import annotations

import dataclasses
import types
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from common.errors import InputError
from service.store.db import Store
from service.store.errors import NotFoundError
from service.store.sql import chunks
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


def latest_decisions(session: Session, target_ids: list[int]) -> dict[int, DecisionRecord]:
    """Return the latest decision of each of ``target_ids`` that has one, by target id.

    One query per :data:`service.store.sql.CHUNK` targets instead of one per target (the
    forecast job decides every target of its shards each period).
    """
    out: dict[int, DecisionRecord] = {}
    for part in chunks(target_ids):
        q = select(DecisionRecord).where(DecisionRecord.target_id.in_(list(part)))
        out.update((rec.target_id, rec) for rec in session.scalars(q))
    return out


def save_decision(
    store: Store, target: Target, record: dict[str, Any], now: int, changed: bool,
    previous: dict[str, Any] | None,
) -> int | None:
    """Store the latest decision of ``target``; log an action when the setting changed.

    Both happen in one transaction, so an action is never logged for a decision that was not
    stored (or the reverse). Returns the new action's id, or None.
    """
    with store.write_sessions() as session, session.begin():
        return _save(session, target, record, now, changed, previous)


def save_decisions(
    store: Store, items: list[tuple[Target, dict[str, Any], int, bool, dict[str, Any] | None]],
) -> list[int | None]:
    """:func:`save_decision` for many (target, record, now, changed, previous), one transaction.

    The decisions of one forecast period: one write transaction instead of one per target
    (on SQLite each waits for the writer lock, which ingest holds batch after batch). Either
    every decision is stored or none. Returns each new action's id, or None, in order.
    """
    if not items:
        return []
    with store.write_sessions() as session, session.begin():
        # the targets and their last decisions in one query per chunk, not two per target:
        # held here (the session's identity map keeps objects only while referenced),
        # _save's session.get finds them without a round trip
        ids, held = [t.id for t, *_ in items], []
        for part in chunks(ids):
            held += session.scalars(select(Target).where(Target.id.in_(part))).all()
            held += session.scalars(
                select(DecisionRecord).where(DecisionRecord.target_id.in_(part))).all()
        return [_save(session, *item) for item in items]


def _save(session: Session, target: Target, record: dict[str, Any], now: int, changed: bool,
          previous: dict[str, Any] | None) -> int | None:
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


def ack_action(
    store: Store, action_id: int, by: str, now: int,
    applied: int | None = None, ready: int | None = None,
) -> ActionRecord:
    """Mark an action done; acknowledging twice keeps the first time (idempotent).

    ``applied`` / ``ready`` (scaling actions only, validated by the caller as bounded
    non-negative integers): the replicas the actuator applied (requested) and the replicas
    ready. Every acknowledgement that carries either count replaces both and their time
    ``counts_at`` (a count left out is stored as unknown), so an actuator may acknowledge again
    to report progress; the first acknowledgement's time and name stay.

    Raises:
        NotFoundError: no action with this id.
        InputError: counts on an action that is not a scaling one (``where="applied"`` or
            ``"ready"``).

    """
    with store.write_sessions() as session, session.begin():
        row = session.get(ActionRecord, action_id)
        if row is None:
            raise NotFoundError(f"no action with id {action_id}; see GET /v1/actions")
        counted = applied is not None or ready is not None
        if counted and row.kind != "vm":
            raise InputError(
                f"action {action_id} is a {row.kind} action; replica counts belong to the "
                "acknowledgement of a scaling action (send no counts)",
                where="applied" if applied is not None else "ready",
            )
        if row.acked_at is None:
            row.acked_at, row.acked_by = now, by
        if counted:
            row.applied, row.ready, row.counts_at = applied, ready, now
        return row


@dataclasses.dataclass(frozen=True)
class AckCounts:
    """Replica counts an actuator reported with an acknowledgement (None: not reported)."""

    applied: int | None
    ready: int | None
    at: int  # unix s


def latest_ack_counts(session: Session, target: str, now: int) -> AckCounts | None:
    """Return the counts of the newest action of ``target`` acknowledged by ``now``.

    Only the newest acknowledged action counts: once an actuator has acknowledged a later
    action without counts, an earlier action's counts describe a setting that was replaced.
    None when nothing was acknowledged or the newest acknowledgement carries no counts. How
    recent the counts must be is the caller's rule (their time is ``at``).
    """
    A = ActionRecord
    row = session.execute(
        select(A.applied, A.ready, A.counts_at)
        .where(A.target == target, A.acked_at.is_not(None), A.acked_at <= now)
        .order_by(A.id.desc())
        .limit(1)
    ).first()
    if row is None or row.counts_at is None:
        return None
    return AckCounts(row.applied, row.ready, int(row.counts_at))


def latest_acks_counts(
    session: Session, targets: list[str], now: int
) -> dict[str, AckCounts | None]:
    """:func:`latest_ack_counts` of each of ``targets`` (every name a key), in few queries.

    One query per :data:`service.store.sql.CHUNK` targets instead of one per target (the
    forecast job decides every vm target of its shards each period): each target's newest
    acknowledged action by ``now``, picked by a window function.
    """
    A = ActionRecord
    out: dict[str, AckCounts | None] = dict.fromkeys(targets)
    for part in chunks(targets):
        newest = func.row_number().over(partition_by=A.target, order_by=A.id.desc())
        acked = (
            select(A.target, A.applied, A.ready, A.counts_at, newest.label("rank"))
            .where(A.target.in_(list(part)), A.acked_at.is_not(None), A.acked_at <= now)
            .subquery()
        )
        q = select(acked.c.target, acked.c.applied, acked.c.ready, acked.c.counts_at).where(
            acked.c.rank == 1)
        for name, applied, ready, at in session.execute(q):
            out[name] = None if at is None else AckCounts(applied, ready, int(at))
    return out
