"""Job leases: which daemon runs a scheduled job this period."""

from __future__ import annotations

from sqlalchemy import update

from service.store.db import Store, write_tx
from service.store.sql import insert_for
from service.store.tables import JobLease


def try_lease(store: Store, name: str, holder: str, now: float, ttl_s: float) -> bool:
    """Take the lease of job ``name`` for ``ttl_s`` seconds; False when another holds it.

    Several daemons on one database call this before each run of a job: the conditional
    UPDATE is atomic on both databases (row lock on PostgreSQL, the write lock on SQLite), so
    exactly one of them gets each period.
    """
    with write_tx(store.engine) as conn:
        conn.execute(
            insert_for(store.dialect, JobLease.__table__)
            .values(name=name, holder="", expires_at=0.0, last_run=None)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        res = conn.execute(
            update(JobLease)
            .where(JobLease.name == name, JobLease.expires_at <= now)
            .values(holder=holder, expires_at=now + ttl_s, last_run=now)
        )
        return res.rowcount == 1
