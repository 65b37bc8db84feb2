"""Repository functions: the only code that reads or writes the store.

Write semantics (documented in the README):

* A sample is keyed by (series, second). A re-sent sample replaces the stored value:
  **last write wins**, across batches (the later commit) and inside one batch (the later
  item). Fractions of a second are dropped on ingest.
* One batch is one transaction: either every sample is stored or none.
* Entity kind is fixed when the entity is first seen; a batch naming another kind is
  rejected (409). Entity labels: the last labels sent replace the stored ones. A series'
  unit is set when the series is first seen.
* Every write marks the written time range of its series dirty; the rollup job recomputes
  the per-minute rollups of dirty ranges only.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, case, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from common.errors import InputError, TidewiseError
from service.db import Store, write_tx
from service.ingest import MAX_LABEL_VALUE, Batch, ConflictError, label_problems, text_problem
from service.tables import (
    ActionRecord,
    DecisionRecord,
    Entity,
    ForecastRecord,
    JobLease,
    ModelRecord,
    Rollup,
    Sample,
    Series,
    Target,
)

try:  # the metric vocabulary of the canonical frame gives default units
    from traces.frame import METRICS as _DEFAULT_UNITS
except ImportError:  # pragma: no cover - traces is part of this distribution
    _DEFAULT_UNITS = {}

_ENT = Entity.__table__
_SER = Series.__table__
_SAM = Sample.__table__
_ROL = Rollup.__table__
_CHUNK = 500  # names per IN (...) list: far below every database's bound-parameter limit
AGGREGATES = ("mean", "min", "max", "sum", "count")


class NotFoundError(TidewiseError):
    """The requested entity or series does not exist (HTTP 404)."""


class QueryError(InputError):
    """A query asks for something the store will not answer (HTTP 422)."""


def _insert(dialect: str, table):  # noqa: ANN001, ANN202 - returns a dialect Insert
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)


def _chunks(seq: Sequence[Any], size: int = _CHUNK):
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def _sample_upsert_sql(dialect: str) -> str:
    mark = "%s" if dialect == "postgresql" else "?"
    return (
        f"INSERT INTO samples (series_id, ts, value) VALUES ({mark}, {mark}, {mark}) "
        "ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value"
    )


def _resolve_entities(
    conn: Connection, dialect: str, batch: Batch, known: dict[str, tuple[int, str, dict]]
) -> dict[str, tuple[int, str, dict[str, Any]]]:
    """Ids of the batch's entities (creating new ones), checking kinds and updating labels."""
    found: dict[str, tuple[int, str, dict[str, Any]]] = {}
    missing = [name for name in batch.kinds if name not in known]
    if missing:
        stmt = _insert(dialect, _ENT).on_conflict_do_nothing(index_elements=["name"])
        conn.execute(
            stmt,
            [
                {"name": n, "kind": batch.kinds[n], "labels": batch.labels.get(n, {})}
                for n in missing
            ],
        )
        for part in _chunks(missing):
            rows = conn.execute(
                select(_ENT.c.id, _ENT.c.name, _ENT.c.kind, _ENT.c.labels).where(
                    _ENT.c.name.in_(part)
                )
            )
            for eid, name, kind, labels in rows:
                found[name] = (eid, kind, labels or {})
    problems = []
    for name, kind in batch.kinds.items():
        eid, stored_kind, labels = found.get(name) or known[name]
        if stored_kind != kind:
            problems.append(
                batch.problem(
                    batch.first_item[name],
                    f"entity {name!r} is registered as kind {stored_kind!r}, not {kind!r}",
                    "kind",
                )
            )
    if problems:
        raise ConflictError(problems)
    changed = []
    for name, labels in batch.labels.items():
        eid, kind, stored = found.get(name) or known[name]
        # Written whenever given (unless just inserted with them): another daemon on the same
        # database may have changed them since this process cached them.
        if name not in found or labels != stored:
            changed.append({"b_id": eid, "b_labels": labels})
            found[name] = (eid, kind, labels)
    if changed:
        conn.execute(
            update(_ENT).where(_ENT.c.id == bindparam("b_id")).values(labels=bindparam("b_labels")),
            changed,
        )
    return found


def _resolve_series(
    conn: Connection,
    dialect: str,
    batch: Batch,
    keys: set[tuple[str, str]],
    entity_ids: dict[str, int],
    known: dict[tuple[str, str], int],
) -> dict[tuple[str, str], int]:
    """Ids of the batch's series (``keys``) missing from ``known``, creating new ones."""
    missing = [k for k in keys if k not in known]
    found: dict[tuple[str, str], int] = {}
    if not missing:
        return found
    rows = []
    for ent, metric in missing:
        unit = batch.units.get((ent, metric)) or _DEFAULT_UNITS.get(metric, "")
        rows.append({"entity_id": entity_ids[ent], "metric": metric, "unit": unit[:64]})
    stmt = _insert(dialect, _SER).on_conflict_do_nothing(index_elements=["entity_id", "metric"])
    conn.execute(stmt, rows)
    by_entity_id = {entity_ids[e]: e for e, _ in missing}
    for part in _chunks(sorted(by_entity_id)):
        q = select(_SER.c.id, _SER.c.entity_id, _SER.c.metric).where(_SER.c.entity_id.in_(part))
        for sid, eid, metric in conn.execute(q):
            found[(by_entity_id[eid], metric)] = sid
    return found


def ingest(store: Store, batch: Batch) -> int:
    """Store a validated batch in one transaction; return how many samples were written.

    Raises:
        ConflictError: an entity's kind contradicts the store (nothing is written).

    """
    if not batch.ts:
        return 0
    cache = store.cache
    dialect = store.dialect
    # The cache dicts only grow and are updated under the lock after commit; lookups
    # (never iteration) are safe without the lock, and copying them per batch would cost
    # O(number of series).
    known_entities = cache.entities
    known_series = cache.series
    keys = set(batch.keys)
    with write_tx(store.engine) as conn:
        new_entities = _resolve_entities(conn, dialect, batch, known_entities)
        entity_ids = {n: (new_entities.get(n) or known_entities[n])[0] for n in batch.kinds}
        new_series = _resolve_series(conn, dialect, batch, keys, entity_ids, known_series)
        ids = {k: new_series[k] if k in new_series else known_series[k] for k in keys}
        series_ids = [ids[k] for k in batch.keys]
        conn.exec_driver_sql(
            _sample_upsert_sql(dialect), list(zip(series_ids, batch.ts, batch.values, strict=True))
        )
        lo, hi = min(batch.ts), max(batch.ts)
        # The whole batch's [lo, hi] is marked on each of its series: a superset of what was
        # written, so the rollup job may redo a few minutes but never misses one. One UPDATE
        # per chunk of ids (ascending, so concurrent writers lock rows in the same order).
        mark = update(_SER).values(
            dirty_from=case(
                (_SER.c.dirty_from.is_(None) | (_SER.c.dirty_from > lo), lo),
                else_=_SER.c.dirty_from,
            ),
            dirty_to=case(
                (_SER.c.dirty_to.is_(None) | (_SER.c.dirty_to < hi), hi),
                else_=_SER.c.dirty_to,
            ),
        )
        mark = mark.where(_SER.c.id.in_(bindparam("ids", expanding=True)))
        for part in _chunks(sorted(set(series_ids))):
            conn.execute(mark, {"ids": part})
    # Only committed ids enter the cache (a rolled-back insert must not leave stale ids).
    with cache.lock:
        cache.entities.update(new_entities)
        cache.series.update(new_series)
    return len(batch.ts)


# --------------------------------------------------------------------------- queries


def list_entities(session: Session, kind: str | None = None) -> list[dict[str, Any]]:
    """Every entity with its kind, labels and series (metric, unit), ordered by name."""
    q = select(Entity).order_by(Entity.name)
    if kind is not None:
        q = q.where(Entity.kind == kind)
    entities = session.scalars(q).all()
    metrics: dict[int, list[dict[str, str]]] = {}
    for eid, metric, unit in session.execute(
        select(Series.entity_id, Series.metric, Series.unit).order_by(Series.metric)
    ):
        metrics.setdefault(eid, []).append({"metric": metric, "unit": unit})
    return [
        {
            "name": e.name,
            "kind": e.kind,
            "labels": readable_labels(e.labels),
            "metrics": metrics.get(e.id, []),
        }
        for e in entities
    ]


def readable_labels(labels: Any) -> dict[str, Any]:  # noqa: ANN401
    """Return stored labels as they are, or a readable copy of labels ingest now refuses.

    Stores written before ingest validated labels may hold lone surrogates (which no JSON
    answer can encode), nested objects or NaN: such names and values are replaced by their
    ASCII ``repr`` (cut to :data:`service.ingest.MAX_LABEL_VALUE` characters), so reading
    the entities keeps answering instead of failing for every reader.
    """
    if not labels:
        return {}
    if not isinstance(labels, dict):
        return {"labels": ascii(labels)[:MAX_LABEL_VALUE]}
    if not label_problems(labels):
        return labels
    out: dict[str, Any] = {}
    for k, v in labels.items():
        key = k if isinstance(k, str) and text_problem(k) is None else ascii(k)
        out[key] = v if not label_problems({key: v}) else ascii(v)[:MAX_LABEL_VALUE]
    return out


@dataclasses.dataclass
class SeriesPoints:
    """Answer of :func:`query_series`."""

    entity: str
    metric: str
    unit: str
    start: int
    end: int
    step: int
    agg: str | None
    source: str  # "raw" or "rollup"
    points: list[tuple[int, float]]


def _find_series(session: Session, entity: str, metric: str) -> Series:
    row = session.execute(
        select(Series).join(Entity).where(Entity.name == entity, Series.metric == metric)
    ).scalar_one_or_none()
    if row is None:
        exists = session.execute(select(Entity.id).where(Entity.name == entity)).first()
        if exists is None:
            raise NotFoundError(f"no entity named {entity!r}; see GET /v1/entities")
        raise NotFoundError(f"entity {entity!r} has no metric {metric!r}; see GET /v1/entities")
    return row


def query_series(
    session: Session,
    entity: str,
    metric: str,
    start: int,
    end: int,
    step: int | None = None,
    agg: str = "mean",
    max_points: int = 100_000,
) -> SeriesPoints:
    """Points of one series between ``start`` and ``end`` (unix s, inclusive).

    Without ``step`` (or ``step=1``) the raw 1-second samples are returned. With a step the
    points are aggregates (``agg``) over epoch-aligned buckets of ``step`` seconds, stamped
    with the bucket's first second; the range is widened to whole buckets. Buckets come from
    the per-minute rollups when ``step`` is a multiple of 60 and the rollups are current
    over the range, otherwise they are aggregated from the raw samples, so both give the
    same answer (up to float rounding).

    Raises:
        NotFoundError: unknown entity or metric.
        QueryError: a bad range, step or aggregate, or more than ``max_points`` points.

    """
    if end < start:
        raise QueryError(f"end ({end}) is before start ({start})", where="end")
    if step is not None and step < 1:
        raise QueryError(f"must be a whole number of seconds >= 1, got {step}", where="step")
    if agg not in AGGREGATES:
        raise QueryError(f"unknown aggregate {agg!r}; use one of {AGGREGATES}", where="agg")
    step = step or 1
    if step > 1:
        start -= start % step
        end = end - end % step + step - 1
    n_points = (end - start + 1) // step
    if n_points > max_points:
        raise QueryError(
            f"{n_points} points asked for, at most {max_points}; shorten the range or raise step",
            where="step",
        )
    series = _find_series(session, entity, metric)
    out = SeriesPoints(entity, metric, series.unit, start, end, step, None, "raw", [])
    if step == 1:
        rows = session.execute(
            select(Sample.ts, Sample.value)
            .where(Sample.series_id == series.id, Sample.ts.between(start, end))
            .order_by(Sample.ts)
        )
        out.points = [(t, v) for t, v in rows]
        return out
    out.agg = agg
    dirty = series.dirty_from is not None and not (
        series.dirty_to < start or series.dirty_from > end
    )
    if step % 60 == 0 and not dirty:
        out.source = "rollup"
        bucket = Rollup.ts - Rollup.ts % step
        q = (
            select(
                bucket,
                func.min(Rollup.min),
                func.max(Rollup.max),
                func.sum(Rollup.mean * Rollup.count),
                func.sum(Rollup.count),
            )
            .where(Rollup.series_id == series.id, Rollup.ts.between(start, end))
            .group_by(bucket)
            .order_by(bucket)
        )
    else:
        bucket = Sample.ts - Sample.ts % step
        q = (
            select(
                bucket,
                func.min(Sample.value),
                func.max(Sample.value),
                func.sum(Sample.value),
                func.count(),
            )
            .where(Sample.series_id == series.id, Sample.ts.between(start, end))
            .group_by(bucket)
            .order_by(bucket)
        )
    pick = {
        "min": lambda lo, hi, s, n: lo,
        "max": lambda lo, hi, s, n: hi,
        "sum": lambda lo, hi, s, n: s,
        "count": lambda lo, hi, s, n: float(n),
        "mean": lambda lo, hi, s, n: s / n,
    }[agg]
    out.points = [(int(b), float(pick(lo, hi, s, n))) for b, lo, hi, s, n in session.execute(q)]
    return out


# --------------------------------------------------------------------------- jobs


def run_rollups(store: Store, now: int, series_per_tx: int = 100) -> int:
    """Recompute the per-minute rollups of every dirty range; return series processed.

    Minutes older than the raw retention are left alone: their samples may already be gone,
    and recomputing would replace a complete rollup by a partial one.
    """
    dialect = store.dialect
    floor = now - store.settings.raw_retention_s
    floor -= floor % 60
    minute = _SAM.c.ts - _SAM.c.ts % 60
    # The series dirty now; what ingest marks while this run works waits for the next run,
    # so a run always ends even under a steady stream of writes.
    with store.engine.connect() as conn:
        pending = [
            r[0]
            for r in conn.execute(
                select(_SER.c.id).where(_SER.c.dirty_from.is_not(None)).order_by(_SER.c.id)
            )
        ]
    done = 0
    for part in _chunks(pending, series_per_tx):
        with write_tx(store.engine) as conn:
            q = (
                select(_SER.c.id, _SER.c.dirty_from, _SER.c.dirty_to)
                .where(_SER.c.id.in_(part), _SER.c.dirty_from.is_not(None))
                .order_by(_SER.c.id)
            )
            if dialect == "postgresql":
                # Several daemons on one database share the work instead of waiting.
                q = q.with_for_update(skip_locked=True)
            rows = conn.execute(q).all()
            for sid, lo, hi in rows:
                lo = max(lo - lo % 60, floor)
                hi = hi - hi % 60 + 59
                if hi < lo:
                    continue
                agg = (
                    select(
                        _SAM.c.series_id,
                        minute,
                        func.min(_SAM.c.value),
                        func.avg(_SAM.c.value),
                        func.max(_SAM.c.value),
                        func.count(),
                    )
                    .where(_SAM.c.series_id == sid, _SAM.c.ts.between(lo, hi))
                    .group_by(_SAM.c.series_id, minute)
                )
                stmt = _insert(dialect, _ROL).from_select(
                    ["series_id", "ts", "min", "mean", "max", "count"], agg
                )
                stmt = stmt.on_conflict_do_update(
                    index_elements=["series_id", "ts"],
                    set_={c: stmt.excluded[c] for c in ("min", "mean", "max", "count")},
                )
                conn.execute(stmt)
            if rows:
                conn.execute(
                    update(_SER)
                    .where(_SER.c.id.in_([r[0] for r in rows]))
                    .values(dirty_from=None, dirty_to=None)
                )
        done += len(rows)
    return done


@dataclasses.dataclass
class RetentionResult:
    """What one retention run deleted."""

    samples: int
    rollups: int


def apply_retention(store: Store, now: int, series_per_tx: int = 200) -> RetentionResult:
    """Delete raw samples older than the raw retention and rollups older than theirs.

    Deletes go series by series so each is a range scan of the (series_id, ts) key, and in
    small transactions so ingest is never blocked for long on SQLite.
    """
    raw_cut = now - store.settings.raw_retention_s
    roll_cut = now - store.settings.rollup_retention_s
    with store.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(select(_SER.c.id).order_by(_SER.c.id))]
    result = RetentionResult(0, 0)
    for part in _chunks(ids, series_per_tx):
        with write_tx(store.engine) as conn:
            for sid in part:
                result.samples += conn.execute(
                    delete(_SAM).where(_SAM.c.series_id == sid, _SAM.c.ts < raw_cut)
                ).rowcount
                result.rollups += conn.execute(
                    delete(_ROL).where(_ROL.c.series_id == sid, _ROL.c.ts < roll_cut)
                ).rowcount
    return result


# --------------------------------------------------------------------------- models


def register_model(
    session: Session,
    name: str,
    version: str,
    artifact_path: str,
    trained_on: str = "",
    metrics: dict[str, Any] | None = None,
    make_current: bool = True,
) -> ModelRecord:
    """Record a trained model; with ``make_current`` it becomes the current one of ``name``.

    The caller commits. Raises :class:`InputError` when (name, version) exists already.
    """
    exists = session.execute(
        select(ModelRecord.id).where(ModelRecord.name == name, ModelRecord.version == version)
    ).first()
    if exists is not None:
        raise InputError(
            f"model {name!r} version {version!r} is registered already; use a new version",
            where="version",
        )
    if make_current:
        session.execute(
            update(ModelRecord)
            .where(ModelRecord.name == name, ModelRecord.is_current.is_(True))
            .values(is_current=False)
        )
    record = ModelRecord(
        name=name,
        version=version,
        trained_on=trained_on,
        metrics=dict(metrics or {}),
        artifact_path=artifact_path,
        is_current=make_current,
    )
    session.add(record)
    session.flush()
    return record


def list_models(session: Session, name: str | None = None) -> list[ModelRecord]:
    """List registered models (of ``name``, or all), oldest first."""
    q = select(ModelRecord).order_by(ModelRecord.name, ModelRecord.id)
    if name is not None:
        q = q.where(ModelRecord.name == name)
    return list(session.scalars(q))


def current_model(session: Session, name: str) -> ModelRecord | None:
    """Return the current version of model ``name``, or None when none is registered."""
    return session.scalars(
        select(ModelRecord).where(ModelRecord.name == name, ModelRecord.is_current.is_(True))
    ).one_or_none()


def get_model(session: Session, model_id: int) -> ModelRecord:
    """Return the registered model with id ``model_id``.

    Raises:
        NotFoundError: no such id.

    """
    record = session.get(ModelRecord, model_id)
    if record is None:
        raise NotFoundError(f"no registered model has id {model_id}; `tidewise models list`")
    return record


def set_current_model(session: Session, model_id: int) -> ModelRecord:
    """Make model ``model_id`` the current version of its name (the caller commits).

    Raises:
        NotFoundError: no such id.

    """
    record = get_model(session, model_id)
    session.execute(
        update(ModelRecord)
        .where(ModelRecord.name == record.name, ModelRecord.id != record.id)
        .values(is_current=False)
    )
    record.is_current = True
    session.flush()
    return record


# --------------------------------------------------------------------------- daemon: targets


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


# --------------------------------------------------------------------------- daemon: forecasts


@dataclasses.dataclass(frozen=True)
class ActiveSeries:
    """A series with recent data: what the forecast refresh works on."""

    series_id: int
    entity: str
    kind: str
    metric: str
    last_ts: int


def active_series(session: Session, since: int) -> list[ActiveSeries]:
    """Series with at least one raw sample at or after ``since`` (unix s)."""
    last = (
        select(func.max(Sample.ts))
        .where(Sample.series_id == Series.id)
        .correlate(Series)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Series.id, Entity.name, Entity.kind, Series.metric, last.label("last"))
        .join(Entity, Entity.id == Series.entity_id)
        .order_by(Entity.name, Series.metric)
    )
    return [ActiveSeries(int(i), e, k, m, int(t)) for i, e, k, m, t in rows
            if t is not None and t >= since]


def series_id(session: Session, entity: str, metric: str) -> int:
    """Id of one series.

    Raises:
        NotFoundError: naming the entity or the metric that does not exist.

    """
    return _find_series(session, entity, metric).id


def save_forecasts(store: Store, records: list[dict[str, Any]]) -> None:
    """Replace the latest forecast of each series in ``records`` (one transaction)."""
    if not records:
        return
    with write_tx(store.engine) as conn:
        for rec in records:
            ins = _insert(store.dialect, ForecastRecord.__table__).values(**rec)
            conn.execute(ins.on_conflict_do_update(
                index_elements=["series_id"],
                set_={k: ins.excluded[k] for k in rec if k != "series_id"},
            ))


def latest_forecast(session: Session, entity: str, metric: str) -> ForecastRecord:
    """Return the latest forecast of ``entity``/``metric``.

    Raises:
        NotFoundError: no such series, or nothing forecast for it yet.

    """
    sid = series_id(session, entity, metric)
    rec = session.get(ForecastRecord, sid)
    if rec is None:
        raise NotFoundError(
            f"no forecast for {entity!r}/{metric!r} yet; the refresh runs every "
            "TIDEWISE_FORECAST_INTERVAL_S seconds over series with recent data"
        )
    return rec


# --------------------------------------------------------------------------- daemon: decisions


def target_and_decision(session: Session, name: str) -> tuple[Any, Any]:
    """Read a target and its latest decision (None before the first) in one query.

    The hot path of recommendation reads: plain columns (no ORM objects, and not the
    policy's memory blob, which can be large), returned as attribute namespaces.

    Raises:
        NotFoundError: no such target.

    """
    D = DecisionRecord  # noqa: N806
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


# --------------------------------------------------------------------------- daemon: leases


def try_lease(store: Store, name: str, holder: str, now: float, ttl_s: float) -> bool:
    """Take the lease of job ``name`` for ``ttl_s`` seconds; False when another holds it.

    Several daemons on one database call this before each run of a job: the conditional
    UPDATE is atomic on both databases (row lock on PostgreSQL, the write lock on SQLite), so
    exactly one of them gets each period.
    """
    with write_tx(store.engine) as conn:
        conn.execute(
            _insert(store.dialect, JobLease.__table__)
            .values(name=name, holder="", expires_at=0.0, last_run=None)
            .on_conflict_do_nothing(index_elements=["name"])
        )
        res = conn.execute(
            update(JobLease)
            .where(JobLease.name == name, JobLease.expires_at <= now)
            .values(holder=holder, expires_at=now + ttl_s, last_run=now)
        )
        return res.rowcount == 1
