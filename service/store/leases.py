"""Job leases and daemon heartbeats.

A lease says which daemon runs a scheduled job, or one shard of the forecast job, this
period; the heartbeats say which daemons share the shards (:mod:`service.sharding`).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select, update

from service.store.db import Store, write_tx
from service.store.sql import insert_for
from service.store.tables import DaemonHeartbeat, JobLease


def try_lease(store: Store, name: str, holder: str, now: float, ttl_s: float) -> bool:
    """Take the lease of job ``name`` for ``ttl_s`` seconds; False when another holds it.

    Several daemons on one database call this before each run of a job: the conditional
    UPDATE is atomic on both databases (row lock on PostgreSQL, the write lock on SQLite), so
    exactly one of them gets each period.
    """
    return bool(claim_leases(store, [name], holder, now, now + ttl_s))


def claim_leases(store: Store, names: Sequence[str], holder: str, now: float,
                 until: float) -> list[str]:
    """Take each lease of ``names`` that has expired at ``now``, until ``until``.

    One transaction; the rows are created first when missing and taken in sorted order, so
    two daemons claiming overlapping sets wait on each other's row locks (PostgreSQL) in the
    same order and cannot deadlock. A lease is taken only by the conditional UPDATE
    ``WHERE expires_at <= now``, atomic on both databases: of several daemons racing for an
    expired lease, exactly one gets it.

    Returns:
        the names taken, sorted.

    """
    wanted = sorted(set(names))
    if not wanted:
        return []
    got = []
    with write_tx(store.engine) as conn:
        conn.execute(
            insert_for(store.dialect, JobLease.__table__)
            .values([{"name": n, "holder": "", "expires_at": 0.0, "last_run": None}
                     for n in wanted])
            .on_conflict_do_nothing(index_elements=["name"])
        )
        for name in wanted:
            res = conn.execute(
                update(JobLease)
                .where(JobLease.name == name, JobLease.expires_at <= now)
                .values(holder=holder, expires_at=until, last_run=now)
            )
            if res.rowcount == 1:
                got.append(name)
    return got


def lease_holders(store: Store, names: Sequence[str], now: float) -> dict[str, str]:
    """Return who holds each of ``names`` at ``now`` (leases not expired), by name."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(JobLease.name, JobLease.holder)
            .where(JobLease.name.in_(list(names)), JobLease.expires_at > now)
        ).all()
    return {n: h for n, h in rows}


def beat(store: Store, holder: str, now: float, started_at: float, shards: int,
         prune_before: float | None = None) -> None:
    """Record that ``holder`` is alive at ``now`` (one upsert of its heartbeat row).

    ``prune_before`` (optional): also delete, in the same transaction, the heartbeats last
    seen before that time.
    """
    with write_tx(store.engine) as conn:
        if prune_before is not None:
            conn.execute(delete(DaemonHeartbeat).where(DaemonHeartbeat.seen_at < prune_before))
        conn.execute(
            insert_for(store.dialect, DaemonHeartbeat.__table__)
            .values(holder=holder, seen_at=now, started_at=started_at, shards=shards)
            .on_conflict_do_update(index_elements=["holder"],
                                   set_={"seen_at": now, "started_at": started_at,
                                         "shards": shards})
        )


def seen_since(store: Store, since: float) -> list[tuple[str, float, int]]:
    """Return ``(holder, started_at, shards)`` of every daemon seen at or after ``since``."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(DaemonHeartbeat.holder, DaemonHeartbeat.started_at, DaemonHeartbeat.shards)
            .where(DaemonHeartbeat.seen_at >= since)
            .order_by(DaemonHeartbeat.holder)
        ).all()
    return [(h, float(s), int(n)) for h, s, n in rows]


def forget_holder(store: Store, holder: str) -> None:
    """Delete the heartbeat of ``holder``."""
    with write_tx(store.engine) as conn:
        conn.execute(delete(DaemonHeartbeat).where(DaemonHeartbeat.holder == holder))
