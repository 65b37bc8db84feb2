"""Targets the daemon manages (declared through ``POST /v1/targets``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.store.db import Store
from service.store.errors import NotFoundError
from service.store.tables import DecisionRecord, Target


def upsert_target(
    store: Store, name: str, kind: str, policy: str, spec: dict[str, Any],
    params: dict[str, Any], now: int,
) -> bool:
    """Declare or replace target ``name``; True when it was created.

    A replaced target keeps its id (so its latest decision and policy memory stay) unless
    its kind or policy changed, in which case the stale decision is dropped.
    """
    with store.write_sessions() as session, session.begin():
        row = session.scalars(select(Target).where(Target.name == name)).one_or_none()
        if row is None:
            session.add(Target(name=name, kind=kind, policy=policy, spec=spec, params=params,
                               created_at=now, updated_at=now))
            return True
        if (row.kind, row.policy) != (kind, policy):
            session.execute(delete(DecisionRecord).where(DecisionRecord.target_id == row.id))
        row.kind, row.policy, row.spec, row.params, row.updated_at = (
            kind, policy, spec, params, now)
        return False


def list_targets(session: Session) -> list[Target]:
    """Every declared target, by name."""
    return list(session.scalars(select(Target).order_by(Target.name)))


def get_target(session: Session, name: str) -> Target:
    """Return the target called ``name``.

    Raises:
        NotFoundError: no such target.

    """
    row = session.scalars(select(Target).where(Target.name == name)).one_or_none()
    if row is None:
        raise NotFoundError(f"no target named {name!r}; see GET /v1/targets")
    return row


def delete_target(store: Store, name: str) -> None:
    """Forget target ``name`` and its latest decision (its actions stay in the log).

    Raises:
        NotFoundError: no such target.

    """
    with store.write_sessions() as session, session.begin():
        row = get_target(session, name)
        session.delete(row)
