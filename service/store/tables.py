"""The store's schema as SQLAlchemy 2.x typed models.

The tables exist only through Alembic migrations (``migrations/versions``); a test checks
that autogenerate finds no difference between these models and the migrated database on
SQLite and PostgreSQL. Time is stored as integer unix seconds (``BigInteger``), values as
double precision.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    Unicode,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Constraint names the same on every database, so migrations can drop them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Entity(Base):
    """A monitored thing: a VM, a serverless function or a server (:data:`service.ingest.KINDS`)."""

    __tablename__ = "entities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Series(Base):
    """One metric of one entity.

    ``dirty_from``/``dirty_to`` (unix s) bound the samples written since the rollup job last
    summarised this series; NULL means its rollups are up to date.

    ``max_ts``, ``late_count``, ``late_from`` and ``late_to`` are the write marks the forecast
    refresh's cache of bucketed history checks (:class:`service.forecasting.BucketCache`):
    ``max_ts`` is the last second of the newest minute ever written (never lowered, NULL
    before the first write); a write that starts in an earlier minute (``first <= max_ts -
    60``: a late sample, a backfill or an older overwrite) or a retention delete counts in
    ``late_count`` and leaves its range (unix s, inclusive, whole minutes for a write) in
    ``late_from``/``late_to``. Whole minutes, so a stream's batches rewrite the row once a
    minute, not once a batch. Only ingest and retention change samples, and both keep
    these marks in the transaction that changes the samples.
    """

    __tablename__ = "series"
    __table_args__ = (UniqueConstraint("entity_id", "metric"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(128))
    unit: Mapped[str] = mapped_column(String(64), default="")
    dirty_from: Mapped[int | None] = mapped_column(BigInteger)
    dirty_to: Mapped[int | None] = mapped_column(BigInteger)
    max_ts: Mapped[int | None] = mapped_column(BigInteger)
    late_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    late_from: Mapped[int | None] = mapped_column(BigInteger)
    late_to: Mapped[int | None] = mapped_column(BigInteger)


class Sample(Base):
    """One value of one series at one second; (series_id, ts) is the key, last write wins.

    ``series_id`` has no foreign key (it cost a locking lookup per inserted sample, half the
    time of a COPY on PostgreSQL): ingest locks the batch's series rows, checking that each
    exists, before writing its samples, and an AFTER DELETE trigger on ``series`` deletes
    the samples of a deleted series (migration ``8b1e5d2c4a90``).
    """

    __tablename__ = "samples"
    # WITHOUT ROWID: the primary key B-tree is the table, one write per sample on SQLite.
    __table_args__ = ({"sqlite_with_rowid": False},)

    series_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[float] = mapped_column(Double)


class Rollup(Base):
    """Per-minute summary of one series; ``ts`` is the minute's first second (unix s)."""

    __tablename__ = "rollups_1m"
    __table_args__ = ({"sqlite_with_rowid": False},)

    series_id: Mapped[int] = mapped_column(
        ForeignKey("series.id", ondelete="CASCADE"), primary_key=True
    )
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    min: Mapped[float] = mapped_column(Double)
    mean: Mapped[float] = mapped_column(Double)
    max: Mapped[float] = mapped_column(Double)
    count: Mapped[int] = mapped_column(Integer)


class ModelRecord(Base):
    """A trained forecasting model registered with the daemon.

    At most one version per ``name`` has ``is_current`` set (kept so by
    :func:`service.store.model_registry.register_model`).
    """

    __tablename__ = "models"
    __table_args__ = (
        UniqueConstraint("name", "version"),
        Index("ix_models_name_is_current", "name", "is_current"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    trained_on: Mapped[str] = mapped_column(Text, default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    artifact_path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    is_current: Mapped[bool] = mapped_column(Boolean, default=False)


# --------------------------------------------------------------------------- daemon


class Target(Base):
    """Something the daemon manages: a scaling target, a serverless function or a power row.

    ``kind`` is the replay scenario it maps to (``vm``, ``serverless``, ``power``);
    ``spec`` holds the declared fields (see :mod:`service.targets`), ``params`` the policy's
    parameters.
    """

    __tablename__ = "targets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    policy: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class ForecastRecord(Base):
    """The latest forecast of one series (replaced by every refresh).

    ``payload`` holds ``times`` (unix s per step), ``mean``, quantile columns (``lo-90``,
    ``hi-90``…), ``indicators`` and ``info``; ``samples`` the sample paths ``(S, H)`` in
    binary (:func:`service.store.forecasts.encode_samples`), so a policy can rebuild the
    joint Forecast. Rows written before it held the paths as ``payload["samples"]``.
    Deferred: reading a record for its quantiles (``GET /v1/forecasts``) leaves it unread.
    """

    __tablename__ = "forecasts"

    series_id: Mapped[int] = mapped_column(
        ForeignKey("series.id", ondelete="CASCADE"), primary_key=True
    )
    computed_at: Mapped[int] = mapped_column(BigInteger)
    start: Mapped[float] = mapped_column(Double)
    step: Mapped[float] = mapped_column(Double)
    model: Mapped[str] = mapped_column(String(128))
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    samples: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True,
                                                  deferred=True)


class DecisionRecord(Base):
    """The latest decision for one target (replaced by every decision run).

    ``memory`` is the policy's ``Decision.state``, handed back on the next call.
    """

    __tablename__ = "decisions"

    target_id: Mapped[int] = mapped_column(
        ForeignKey("targets.id", ondelete="CASCADE"), primary_key=True
    )
    computed_at: Mapped[int] = mapped_column(BigInteger)
    policy: Mapped[str] = mapped_column(String(64))
    valid: Mapped[bool] = mapped_column(Boolean)
    fallback: Mapped[bool] = mapped_column(Boolean)
    why: Mapped[str] = mapped_column(Text, default="")
    action: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    memory: Mapped[Any] = mapped_column(JSON, nullable=True)
    desired: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ActionRecord(Base):
    """A change of a target's desired setting, for orchestrators to poll and acknowledge.

    The target is named, not referenced, so the log outlives a deleted target.
    """

    __tablename__ = "actions"
    __table_args__ = (Index("ix_actions_target_created", "target", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)
    desired: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    previous: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    why: Mapped[str] = mapped_column(Text, default="")
    acked_at: Mapped[int | None] = mapped_column(BigInteger)
    acked_by: Mapped[str | None] = mapped_column(String(128))
    #: Replica counts the actuator reported with its latest acknowledgement of a scaling
    #: action: the setting applied (replicas requested) and the replicas ready; ``counts_at``
    #: (unix s) is when. NULL: not reported. Read by the scaling collector
    #: (:func:`service.decisions.collect_vm`) while recent.
    applied: Mapped[int | None] = mapped_column(Integer)
    ready: Mapped[int | None] = mapped_column(Integer)
    counts_at: Mapped[int | None] = mapped_column(BigInteger)


class JobLease(Base):
    """Who runs a scheduled job this period, so several daemons run each job once."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[float] = mapped_column(Double)
    last_run: Mapped[float | None] = mapped_column(Double)


class DaemonHeartbeat(Base):
    """A daemon running the sharded forecast job, and when it was last seen alive.

    Written every quarter of a forecast period by each daemon (:mod:`service.sharding`);
    ``shards`` is its ``TIDEWISE_SHARDS``, ``started_at`` when it started (unix s), so the
    daemons agree on who shares the shards and which shard count rules.
    """

    __tablename__ = "daemon_heartbeats"

    holder: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[float] = mapped_column(Double)
    started_at: Mapped[float] = mapped_column(Double)
    shards: Mapped[int] = mapped_column(Integer)


class SchedulerJob(Base):
    """APScheduler's job store table (``SQLAlchemyJobStore``), created by migration."""

    __tablename__ = "apscheduler_jobs"

    id: Mapped[str] = mapped_column(Unicode(191), primary_key=True)
    next_run_time: Mapped[float | None] = mapped_column(Double, index=True)
    job_state: Mapped[bytes] = mapped_column(LargeBinary)


metadata = Base.metadata
