"""Samples: ingest (entity and series resolution), entities, series queries.

Write semantics (documented in docs/ingest.md):

* A sample is keyed by (series, second). A re-sent sample replaces the stored value:
  **last write wins**, across batches (the later commit) and inside one batch (the later
  item). Fractions of a second are dropped on ingest.
* One batch is one transaction: either every sample is stored or none.
* Entity kind is fixed when the entity is first seen; a batch naming another kind is
  rejected (409). Entity labels: the last labels sent replace the stored ones. A series'
  unit is set when the series is first seen.
* Every write marks the written time range of its series dirty; the rollup job recomputes
  the per-minute rollups of dirty ranges only. The same update keeps the series' write
  marks (``max_ts``, ``late_count``, ``late_from``/``late_to``) that the forecast refresh's
  cache of buckets checks (:class:`service.forecasting.BucketCache`).

On PostgreSQL the samples go in through binary COPY: the batch, deduplicated in Python (last
item wins), is copied straight into ``samples``; should a key be stored already (a re-sent
batch, a backfill), the unique violation rolls that COPY back to a savepoint and the batch goes
into a temporary staging table of the connection, then one ``INSERT ... SELECT ... ON CONFLICT
DO UPDATE`` moves it into ``samples``, all in the batch's transaction. SQLite keeps
``executemany`` (its inserts are already in-process calls).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, bindparam, case, func, select, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from service.ingest import (
    MAX_LABEL_VALUE,
    MAX_PROBLEMS,
    Batch,
    ConflictError,
    label_problems,
    text_problem,
)
from service.store.db import IdCache, Store, write_tx
from service.store.errors import NotFoundError, QueryError
from service.store.sql import chunks, driver_errors, insert_for
from service.store.tables import Entity, Rollup, Sample, Series

try:  # the metric vocabulary of the canonical frame gives default units
    from traces.frame import METRICS as _DEFAULT_UNITS
except ImportError:  # pragma: no cover - traces is part of this distribution
    _DEFAULT_UNITS = {}

_ENT = Entity.__table__
_SER = Series.__table__
AGGREGATES = ("mean", "min", "max", "sum", "count")


def _sample_upsert_sql(dialect: str) -> str:
    mark = "%s" if dialect == "postgresql" else "?"
    return (
        f"INSERT INTO samples (series_id, ts, value) VALUES ({mark}, {mark}, {mark}) "
        "ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value"
    )


#: The connection's staging table of the COPY path. ON COMMIT DELETE ROWS: it empties itself
#: at every commit (and a rollback takes its rows, or its creation, with it), so it is created
#: once per database session and reused by every batch. Explicitly in ``pg_temp``, so no table
#: of the ``search_path`` schema can be read or written instead.
_STAGE = "pg_temp.tidewise_ingest_stage"
_STAGE_DDL = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} "
    "(series_id integer NOT NULL, ts bigint NOT NULL, value double precision NOT NULL) "
    "ON COMMIT DELETE ROWS"
)
_STAGE_COPY = f"COPY {_STAGE} (series_id, ts, value) FROM STDIN (FORMAT BINARY)"
_STAGE_UPSERT = (
    f"INSERT INTO samples (series_id, ts, value) SELECT series_id, ts, value FROM {_STAGE} "
    "ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value"
)
#: The fast path: straight into ``samples`` (it fails when one of the batch's keys is stored).
_DIRECT_COPY = "COPY samples (series_id, ts, value) FROM STDIN (FORMAT BINARY)"
#: SQLSTATE of a unique violation.
_UNIQUE_VIOLATION = "23505"
#: The savepoint around the COPY straight into ``samples`` (never released: the commit does).
_SAVEPOINT = "SAVEPOINT tidewise_copy"
_ROLLBACK_TO_SAVEPOINT = "ROLLBACK TO SAVEPOINT tidewise_copy"
#: PostgreSQL's series lock (see :func:`_lock_series`): the rows in id order, with their marks;
#: then, once the samples are written, the dirty ranges that must widen to [lo, hi]
#: (:func:`_widen_dirty`).
_LOCK_SERIES = (
    "SELECT id, dirty_from, dirty_to, max_ts FROM series WHERE id = ANY(%s::integer[]) "
    "ORDER BY id FOR NO KEY UPDATE"
)
_WIDEN_DIRTY = (
    "UPDATE series SET "
    "dirty_from = CASE WHEN dirty_from IS NULL OR dirty_from > %(lo)s "
    "THEN %(lo)s ELSE dirty_from END, "
    "dirty_to = CASE WHEN dirty_to IS NULL OR dirty_to < %(hi)s THEN %(hi)s ELSE dirty_to END, "
    "late_count = CASE WHEN max_ts - 60 >= %(first)s THEN late_count + 1 ELSE late_count END, "
    "late_from = CASE WHEN max_ts - 60 >= %(first)s THEN %(lo)s ELSE late_from END, "
    "late_to = CASE WHEN max_ts - 60 >= %(first)s THEN %(hi)s ELSE late_to END, "
    "max_ts = CASE WHEN max_ts IS NULL OR max_ts < %(hi)s THEN %(hi)s ELSE max_ts END "
    "WHERE id = ANY(%(ids)s::integer[]) "
    "AND (dirty_from IS NULL OR dirty_from > %(lo)s OR dirty_to IS NULL OR dirty_to < %(hi)s "
    "OR max_ts IS NULL OR max_ts < %(hi)s OR max_ts - 60 >= %(first)s)"
)

#: One row of PostgreSQL's binary COPY format for (integer, bigint, double precision): the
#: field count, then each field's byte length and value, all big-endian. A float8 arrives bit
#: for bit (no text round trip), and numpy writes the whole batch at once (psycopg's
#: ``write_row`` cost about 1 µs per row in Python).
_COPY_ROW = np.dtype(
    [("n", ">i2"), ("l_sid", ">i4"), ("sid", ">i4"), ("l_ts", ">i4"), ("ts", ">i8"),
     ("l_v", ">i4"), ("v", ">f8")]
)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_COPY_TRAILER = b"\xff\xff"


def _last_per_key(
    series_ids: list[int], ts: list[int], values: list[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep one row per (series, second), the later item's, sorted by key.

    One INSERT may not update a row twice ("ON CONFLICT DO UPDATE command cannot affect row
    a second time") and a COPY into ``samples`` fails on a repeated key, so duplicates are
    dropped first, keeping the value of the later item: the same rows as
    :func:`_upsert_executemany` leaves.
    """
    sid = np.array(series_ids, dtype=np.int32)  # (N,)
    t = np.array(ts, dtype=np.int64)  # (N,)
    v = np.array(values, dtype=np.float64)  # (N,)
    order = np.lexsort((np.arange(len(t)), t, sid))  # by series, second, then request order
    sid, t, v = sid[order], t[order], v[order]
    last = np.ones(len(t), dtype=bool)  # last item of its (series, second) run
    last[:-1] = (sid[1:] != sid[:-1]) | (t[1:] != t[:-1])
    return sid[last], t[last], v[last]


def _copy_payload(sid: np.ndarray, t: np.ndarray, v: np.ndarray) -> bytes:
    """Build the binary COPY stream (header, rows, trailer) of the rows ``sid``/``t``/``v``."""
    rows = np.empty(len(t), dtype=_COPY_ROW)
    rows["n"] = 3
    rows["l_sid"] = 4
    rows["sid"] = sid
    rows["l_ts"] = 8
    rows["ts"] = t
    rows["l_v"] = 8
    rows["v"] = v
    return _COPY_HEADER + rows.tobytes() + _COPY_TRAILER


def _upsert_executemany(
    conn: Connection, dialect: str, series_ids: list[int], ts: list[int], values: list[float]
) -> None:
    """One INSERT ... ON CONFLICT DO UPDATE per sample, in request order (later items win)."""
    conn.exec_driver_sql(
        _sample_upsert_sql(dialect), list(zip(series_ids, ts, values, strict=True))
    )


def _upsert_copy(
    conn: Connection, series_ids: list[int], ts: list[int], values: list[float]
) -> None:
    """PostgreSQL: the batch through binary COPY, deduplicated (:func:`_last_per_key`).

    The rows are copied straight into ``samples``, inside the savepoint :func:`_lock_series`
    opened: in the usual case (a stream of new seconds) none of the keys is stored and that
    is all. When one is (a re-sent batch, a backfill over stored seconds) the COPY stops at
    it with a unique violation, the savepoint takes back the rows it wrote, and the rows are
    copied into the staging table and moved into ``samples`` by one INSERT ... SELECT ... ON
    CONFLICT DO UPDATE. The direct COPY is tried first instead of asking the server whether a
    key is stored (one index descent per series, 1.8 ms for 500 series measured, paid by
    every batch); a batch over stored seconds then pays a COPY that stops at its first
    stored key.
    """
    sid, t, v = _last_per_key(series_ids, ts, values)
    payload = _copy_payload(sid, t, v)
    # The DB-API connection under SQLAlchemy's, in the transaction SQLAlchemy began.
    with conn.connection.driver_connection.cursor() as cur:
        if not _copy_direct(conn, cur, payload):
            _copy_upsert(conn, cur, payload)


def _copy_direct(conn: Connection, cur: Any, payload: bytes) -> bool:  # noqa: ANN401
    """COPY ``payload`` straight into ``samples``; False on a unique violation.

    On False the savepoint is rolled back (no row of the COPY is left) and the transaction
    goes on; any other error is raised.
    """
    try:
        with driver_errors(conn, _DIRECT_COPY), cur.copy(_DIRECT_COPY) as copy:
            copy.write(payload)
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) != _UNIQUE_VIOLATION:
            raise
        with driver_errors(conn, _ROLLBACK_TO_SAVEPOINT):
            cur.execute(_ROLLBACK_TO_SAVEPOINT)
        return False
    return True


def _copy_upsert(conn: Connection, cur: Any, payload: bytes) -> None:  # noqa: ANN401
    """COPY ``payload`` into the staging table, then upsert it into ``samples`` (later wins)."""
    conn.exec_driver_sql(_STAGE_DDL)
    with driver_errors(conn, _STAGE_COPY), cur.copy(_STAGE_COPY) as copy:
        copy.write(payload)
    with driver_errors(conn, _STAGE_UPSERT):
        cur.execute(_STAGE_UPSERT)


def _resolve_entities(
    conn: Connection, dialect: str, batch: Batch, known: dict[str, tuple[int, str, dict]]
) -> dict[str, tuple[int, str, dict[str, Any]]]:
    """Ids of the batch's entities (creating new ones), checking kinds and updating labels."""
    found: dict[str, tuple[int, str, dict[str, Any]]] = {}
    missing = [name for name in batch.kinds if name not in known]
    if missing:
        stmt = insert_for(dialect, _ENT).on_conflict_do_nothing(index_elements=["name"])
        conn.execute(
            stmt,
            [
                {"name": n, "kind": batch.kinds[n], "labels": batch.labels.get(n, {})}
                for n in missing
            ],
        )
        for part in chunks(missing):
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
    stmt = insert_for(dialect, _SER).on_conflict_do_nothing(index_elements=["entity_id", "metric"])
    conn.execute(stmt, rows)
    by_entity_id = {entity_ids[e]: e for e, _ in missing}
    for part in chunks(sorted(by_entity_id)):
        q = select(_SER.c.id, _SER.c.entity_id, _SER.c.metric).where(_SER.c.entity_id.in_(part))
        for sid, eid, metric in conn.execute(q):
            found[(by_entity_id[eid], metric)] = sid
    return found


def _minutes(lo: int, hi: int) -> tuple[int, int]:
    """[lo, hi] widened to whole minutes."""
    return lo - lo % 60, hi + 59 - hi % 60


def _lock_series(
    conn: Connection, dialect: str, series_ids: list[int], lo: int, hi: int, copy: bool = False
) -> tuple[set[int], list[int]]:
    """Lock the series ``series_ids`` and read which dirty ranges must widen to [lo, hi].

    The whole batch's [lo, hi], widened to whole minutes, is marked on each of its series
    (:func:`_widen_dirty`, once the samples are written): a superset of what was written, and
    the rollup job recomputes whole minutes anyway, so it redoes the same minutes and never
    misses one. Whole minutes let most batches of a stream (each a few seconds further on)
    find their range already marked: those series rows are then only locked, not rewritten,
    and which rows need it is decided here from the marks the lock reads (asking the server
    to filter all 500 rows again in the UPDATE took 1.7 ms a batch).

    On PostgreSQL the rows are locked in id order (an UPDATE visits its rows in table order,
    which changes as rows are updated: 4 writers over the same 500 series deadlocked every
    few batches) and held until the commit, before any sample is written: samples of these
    series are written by one batch at a time, and no series can be deleted under the
    batch. With ``copy`` (the COPY path) the savepoint of :func:`_copy_direct` follows in the
    same round trip (psycopg's pipeline; on a loaded machine each round trip cost 1-4 ms,
    more than the statements themselves). SQLite has one writer anyway.

    The marks are also the series' write marks that the forecast refresh's cache of buckets
    checks (:class:`Series`), in whole minutes too, so a stream's batches inside the newest
    minute rewrite nothing: ``max_ts`` rises to the last second of the newest minute
    written, and a batch whose first second lies in an earlier minute (``first <= max_ts -
    60``: a late sample, a backfill, a re-sent older batch) counts as late, with its range in
    whole minutes. A write inside the newest minute is not counted: the cache re-reads that
    whole minute each time (:meth:`service.forecasting.BucketCache.read`).

    Returns:
        the ids of ``series_ids`` that no longer exist (a series deleted by hand while this
        process had its id cached), empty normally; and the ids whose marks
        :func:`_widen_dirty` must rewrite.

    """
    first = lo
    lo, hi = _minutes(lo, hi)
    ids = sorted(set(series_ids))
    if dialect == "postgresql":
        raw = conn.connection.driver_connection
        # The ids as one array literal, parsed by the server: the client side of this round
        # trip took 5 ms a batch, mostly psycopg adapting 3 lists of 500 Python ints (0.8 ms
        # a list measured alone, 0.2 ms for a literal).
        array = "{" + ",".join(map(str, ids)) + "}"
        steps = [(_LOCK_SERIES, (array,))] + ([(_SAVEPOINT, None)] if copy else [])
        cursors = [raw.cursor() for _ in steps]
        try:
            with driver_errors(conn, _LOCK_SERIES), raw.pipeline():
                for cur, (sql, params) in zip(cursors, steps, strict=True):
                    cur.execute(sql, params)
            rows = cursors[0].fetchall()
        finally:
            for cur in cursors:
                cur.close()
    else:
        q = select(_SER.c.id, _SER.c.dirty_from, _SER.c.dirty_to, _SER.c.max_ts).where(
            _SER.c.id.in_(bindparam("ids", expanding=True))
        )
        rows = [row for part in chunks(ids) for row in conn.execute(q, {"ids": part})]
    found = set()
    widen: list[int] = []
    for sid, dirty_from, dirty_to, top in rows:
        found.add(sid)
        if (dirty_from is None or dirty_from > lo or dirty_to is None or dirty_to < hi
                or top is None or top < hi or top - 60 >= first):
            widen.append(sid)
    return set(ids) - found, widen


def _widen_dirty(
    conn: Connection, dialect: str, widen: list[int], lo: int, hi: int
) -> None:
    """Widen the dirty ranges and write marks of the series ``widen`` to [lo, hi].

    ``widen`` comes from :func:`_lock_series` in the same transaction: the rows are locked
    since, so their marks are as read. The CASEs still read each row, so the outcome does not
    depend on that.
    """
    if not widen:
        return
    first = lo
    lo, hi = _minutes(lo, hi)
    if dialect == "postgresql":
        array = "{" + ",".join(map(str, widen)) + "}"
        with driver_errors(conn, _WIDEN_DIRTY), \
                conn.connection.driver_connection.cursor() as cur:
            cur.execute(_WIDEN_DIRTY, {"lo": lo, "hi": hi, "first": first, "ids": array})
        return
    late = _SER.c.max_ts - 60 >= first  # NULL (not late) before the first write
    mark = (
        update(_SER)
        .values(
            dirty_from=case(
                (_SER.c.dirty_from.is_(None) | (_SER.c.dirty_from > lo), lo),
                else_=_SER.c.dirty_from,
            ),
            dirty_to=case(
                (_SER.c.dirty_to.is_(None) | (_SER.c.dirty_to < hi), hi),
                else_=_SER.c.dirty_to,
            ),
            # every SET reads the old row
            late_count=case((late, _SER.c.late_count + 1), else_=_SER.c.late_count),
            late_from=case((late, lo), else_=_SER.c.late_from),
            late_to=case((late, hi), else_=_SER.c.late_to),
            max_ts=case((_SER.c.max_ts.is_(None) | (_SER.c.max_ts < hi), hi),
                        else_=_SER.c.max_ts),
        )
        .where(_SER.c.id.in_(bindparam("ids", expanding=True)))
    )
    for part in chunks(widen):
        conn.execute(mark, {"ids": part})


def _deleted_series(
    batch: Batch, ids: dict[tuple[str, str], int], gone: set[int], cache: IdCache
) -> ConflictError:
    """Forget the cached ids of series deleted from the store; the error for the batch."""
    keys = sorted(k for k, sid in ids.items() if sid in gone)
    with cache.lock:
        for entity, metric in keys:
            cache.series.pop((entity, metric), None)
            cache.entities.pop(entity, None)  # its entity may be gone too
    first = {k: i for i, k in reversed(list(enumerate(batch.keys)))}
    return ConflictError(
        [
            batch.problem(
                first[k],
                f"series {k[0]!r}/{k[1]!r} was deleted from the store while this daemon "
                "held its id; nothing was written: send the batch again",
                "metric",
            )
            for k in keys[:MAX_PROBLEMS]
        ]
    )


def ingest(store: Store, batch: Batch, *, use_copy: bool | None = None) -> int:
    """Store a validated batch in one transaction; return how many samples were written.

    ``use_copy``: write the samples through COPY (:func:`_upsert_copy`); None (the default)
    means on PostgreSQL. False keeps ``executemany``, the reference the tests compare against.

    Raises:
        ConflictError: an entity's kind contradicts the store, or a series was deleted from
            the store while cached (nothing is written).

    """
    if not batch.ts:
        return 0
    cache = store.cache
    dialect = store.dialect
    # The cache dicts are updated under the lock after commit, and a batch that finds a
    # series deleted from the store drops its ids (:func:`_deleted_series`); lookups (never
    # iteration) are safe without the lock, so each of the batch's keys is looked up once,
    # here: a key dropped meanwhile by another batch is then resolved again, not a KeyError.
    keys = set(batch.keys)
    known_entities = {n: v for n in batch.kinds if (v := cache.entities.get(n)) is not None}
    known_series = {k: v for k in keys if (v := cache.series.get(k)) is not None}
    with write_tx(store.engine) as conn:
        new_entities = _resolve_entities(conn, dialect, batch, known_entities)
        entity_ids = {n: (new_entities.get(n) or known_entities[n])[0] for n in batch.kinds}
        new_series = _resolve_series(conn, dialect, batch, keys, entity_ids, known_series)
        ids = {k: new_series[k] if k in new_series else known_series[k] for k in keys}
        series_ids = [ids[k] for k in batch.keys]
        if use_copy is None:
            use_copy = dialect == "postgresql"
        elif use_copy and dialect != "postgresql":
            raise ValueError(f"COPY ingest needs PostgreSQL, not {dialect}")
        # The batch's series rows are locked before any sample row, so concurrent batches
        # over the same series queue there (locked after, two PostgreSQL batches writing the
        # same samples in different orders deadlocked: a test does that). Their marks are
        # widened after the samples, in the same transaction (so the same outcome), outside
        # the savepoint a direct COPY may roll back to.
        lo, hi = min(batch.ts), max(batch.ts)
        gone, widen = _lock_series(conn, dialect, series_ids, lo, hi, copy=use_copy)
        if gone:
            raise _deleted_series(batch, ids, gone, cache)
        if use_copy:
            _upsert_copy(conn, series_ids, batch.ts, batch.values)
        else:
            _upsert_executemany(conn, dialect, series_ids, batch.ts, batch.values)
        _widen_dirty(conn, dialect, widen, lo, hi)
    # Only committed ids enter the cache (a rolled-back insert must not leave stale ids).
    with cache.lock:
        cache.entities.update(new_entities)
        cache.series.update(new_series)
    return len(batch.ts)


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


def readable_labels(labels: Any) -> dict[str, Any]:
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
    if step % 60 == 0 and not _dirty_over(series.dirty_from, series.dirty_to, start, end):
        out.source = "rollup"
    out.points = [(b, v) for _, b, v in _buckets(session, [series.id], start, end, step, agg,
                                                 out.source == "rollup")]
    return out


def _dirty_over(dirty_from: int | None, dirty_to: int | None, start: int, end: int) -> bool:
    """Say whether a series' dirty range (written since its last rollup) meets [start, end]."""
    return dirty_from is not None and not (dirty_to < start or dirty_from > end)


_PICK = {
    "min": lambda lo, hi, s, n: lo,
    "max": lambda lo, hi, s, n: hi,
    "sum": lambda lo, hi, s, n: s,
    "count": lambda lo, hi, s, n: float(n),
    "mean": lambda lo, hi, s, n: s / n,
}


def _buckets(
    session: Session, ids: Sequence[int], start: int, end: int, step: int, agg: str,
    rollup: bool,
) -> Iterator[tuple[int, int, float]]:
    """(series id, bucket start, aggregate) of ``ids`` over [start, end], by series and time.

    From the per-minute rollups (``rollup``) or the raw samples; one query per
    :data:`~service.store.sql.CHUNK` series.
    """
    pick = _PICK[agg]
    # PostgreSQL: sums in time order, whatever the plan (a parallel or hash aggregate over
    # many series adds in another order, and float sums then differ in the last bits from
    # a one-series read); SQLite reads each series' range in time order anyway
    postgres = session.bind.dialect.name == "postgresql"

    def total(col: Any, ts: Any) -> Any:  # noqa: ANN401 - SQL expressions
        return func.sum(aggregate_order_by(col, ts)) if postgres else func.sum(col)

    for part in chunks(list(ids)):
        if rollup:
            bucket = Rollup.ts - Rollup.ts % step
            q = (
                select(
                    Rollup.series_id,
                    bucket,
                    func.min(Rollup.min),
                    func.max(Rollup.max),
                    total(Rollup.mean * Rollup.count, Rollup.ts),
                    func.sum(Rollup.count),
                )
                .where(Rollup.series_id.in_(part), Rollup.ts.between(start, end))
                .group_by(Rollup.series_id, bucket)
                .order_by(Rollup.series_id, bucket)
            )
        else:
            bucket = Sample.ts - Sample.ts % step
            q = (
                select(
                    Sample.series_id,
                    bucket,
                    func.min(Sample.value),
                    func.max(Sample.value),
                    total(Sample.value, Sample.ts),
                    func.count(),
                )
                .where(Sample.series_id.in_(part), Sample.ts.between(start, end))
                .group_by(Sample.series_id, bucket)
                .order_by(Sample.series_id, bucket)
            )
        # Core, not the ORM's result machinery: this reads every active series' buckets
        for sid, b, lo, hi, s, n in session.connection().execute(q):
            yield int(sid), int(b), float(pick(lo, hi, s, n))


#: SQL aggregate of each ``agg`` in the per-bucket subquery of :func:`query_buckets` (NULL
#: for an empty bucket, as :func:`query_series` has no point there).
_SQL_AGG = {"mean": "avg(value)", "min": "min(value)", "max": "max(value)",
            "sum": "sum(value)", "count": "nullif(count(*), 0)"}


def _sqlite_buckets(session: Session, ids: Sequence[int], start: int, end: int, step: int,
                    agg: str) -> list[tuple[int, int, float | None]]:
    """SQLite: (series id, bucket start, aggregate or None) of every bucket of ``ids``.

    One indexed range read per (series, bucket) in a correlated subquery: a GROUP BY over
    the bucket expression sorts every sample in a temporary B-tree, which cost about 2.5
    times the CPU (measured on 3.6 M samples). ``avg`` is SQLite's ``sum / count``, the
    very division :func:`query_series` makes.
    """
    marks = ",".join("?" * len(ids))
    sql = (
        "WITH RECURSIVE b(t) AS (SELECT ? UNION ALL SELECT t + ? FROM b WHERE t + ? <= ?) "
        f"SELECT s.id, b.t, (SELECT {_SQL_AGG[agg]} FROM samples "
        "WHERE series_id = s.id AND ts BETWEEN b.t AND b.t + ?) "
        f"FROM series s, b WHERE s.id IN ({marks})"
    )
    cur = session.connection().connection.driver_connection.cursor()
    try:
        cur.execute(sql, (start, step, step, end - step + 1, step - 1, *ids))
        return cur.fetchall()
    finally:
        cur.close()


def query_buckets(
    session: Session, series_ids: Sequence[int], start: int, end: int, step: int,
    agg: str = "mean",
) -> dict[int, np.ndarray]:
    """Bucketed values of many series at once: what :func:`query_series` gives each of them.

    ``start`` and ``end`` must be whole buckets of ``step`` (>= 1) seconds; at ``step=1``
    every bucket holds one sample and its value is the raw sample's whatever ``agg`` is, as
    :func:`query_series` gives it. Each series is
    read from the rollups or the raw samples by the same rule as :func:`query_series`
    (rollups when ``step`` is a multiple of 60 and the series is clean over the range), with
    the same aggregate values, but with one query per chunk of series instead of two per
    series: the forecast refresh reads every active series each period.

    Returns:
        per series id, ``(n,)`` values of the ``n = (end + 1 - start) / step`` buckets (NaN
        where a bucket has no sample); an unknown id gets all NaN.

    Raises:
        QueryError: a bad range, step or aggregate.

    """
    if end < start:
        raise QueryError(f"end ({end}) is before start ({start})", where="end")
    if step < 1 or start % step or (end + 1) % step:
        raise QueryError(f"[{start}, {end}] is not whole buckets of {step} s", where="step")
    if agg not in AGGREGATES:
        raise QueryError(f"unknown aggregate {agg!r}; use one of {AGGREGATES}", where="agg")
    if step == 1:
        agg = "mean"  # one sample per bucket: the raw value (``count`` would say 1)
    n = (end + 1 - start) // step
    ids = [int(i) for i in series_ids]
    out = {i: np.full(n, np.nan) for i in ids}
    raw, rolled = list(out), []
    if step % 60 == 0:
        raw = []
        for part in chunks(list(out)):
            rows = session.execute(
                select(Series.id, Series.dirty_from, Series.dirty_to).where(Series.id.in_(part))
            )
            for sid, lo, hi in rows:
                (raw if _dirty_over(lo, hi, start, end) else rolled).append(int(sid))
    rows: list[tuple[Any, ...]] = []
    if session.bind.dialect.name == "sqlite":
        for part in chunks(raw):
            rows += _sqlite_buckets(session, part, start, end, step, agg)
    else:
        rows += _buckets(session, raw, start, end, step, agg, False)
    rows += _buckets(session, rolled, start, end, step, agg, True)
    if rows:
        a = np.array(rows, dtype=np.float64)  # (R, 3): id, bucket, value (None -> NaN)
        uniq, row = np.unique(a[:, 0].astype(np.int64), return_inverse=True)
        grid = np.full((len(uniq), n), np.nan)  # (series, buckets)
        grid[row, ((a[:, 1] - start) // step).astype(np.int64)] = a[:, 2]
        for k, i in enumerate(uniq.tolist()):
            if i in out:
                out[i] = grid[k]
    return out


@dataclasses.dataclass(frozen=True)
class WriteMarks:
    """A series' write marks (:class:`service.store.tables.Series`), read by the refresh."""

    max_ts: int | None
    late_count: int
    late_from: int | None
    late_to: int | None


def write_marks(session: Session, series_ids: Sequence[int]) -> dict[int, WriteMarks]:
    """Return the write marks of ``series_ids`` (an unknown id is left out)."""
    out: dict[int, WriteMarks] = {}
    for part in chunks([int(i) for i in series_ids]):
        rows = session.connection().execute(
            select(_SER.c.id, _SER.c.max_ts, _SER.c.late_count, _SER.c.late_from,
                   _SER.c.late_to).where(_SER.c.id.in_(part)))
        for sid, top, count, lo, hi in rows:
            out[int(sid)] = WriteMarks(None if top is None else int(top), int(count or 0),
                                       None if lo is None else int(lo),
                                       None if hi is None else int(hi))
    return out


@dataclasses.dataclass(frozen=True)
class ActiveSeries:
    """A series with recent data: what the forecast refresh works on."""

    series_id: int
    entity: str
    kind: str
    metric: str
    last_ts: int


def active_series(session: Session, since: int,
                  only: Callable[[str], bool] | None = None) -> list[ActiveSeries]:
    """Series with at least one raw sample at or after ``since`` (unix s), by entity and metric.

    ``only``: the entities to look at (a daemon's shards). The newest sample is then looked
    up for their series alone, so K daemons sharing the work do not each look it up for
    every series (an index descent per series: with two daemons it was 8 % of a forecast
    run's wall time, done twice).
    """
    last = (
        select(func.max(Sample.ts))
        .where(Sample.series_id == Series.id)
        .correlate(Series)
        .scalar_subquery()
    )
    named = (select(Series.id, Entity.name, Entity.kind, Series.metric)
             .join(Entity, Entity.id == Series.entity_id)
             .order_by(Entity.name, Series.metric))
    if only is None:  # every series: the newest sample in the same query
        rows = [(int(i), e, k, m, t) for i, e, k, m, t in session.execute(named.add_columns(last))]
    else:
        mine = [(int(i), e, k, m) for i, e, k, m in session.execute(named) if only(e)]
        newest: dict[int, int | None] = {}
        for part in chunks([i for i, *_ in mine]):
            newest.update(session.execute(
                select(Series.id, last).where(Series.id.in_(part))).tuples().all())
        rows = [(i, e, k, m, newest.get(i)) for i, e, k, m in mine]
    return [ActiveSeries(i, e, k, m, int(t)) for i, e, k, m, t in rows
            if t is not None and t >= since]


def series_id(session: Session, entity: str, metric: str) -> int:
    """Id of one series.

    Raises:
        NotFoundError: naming the entity or the metric that does not exist.

    """
    return _find_series(session, entity, metric).id


def series_ids(session: Session, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Ids of many series at once, by (entity, metric); an unknown one is left out.

    One query per :data:`~service.store.sql.CHUNK` entities (their series are read and the
    ones asked for kept), where :func:`series_id` is one per series.
    """
    want = set(keys)
    out: dict[tuple[str, str], int] = {}
    for part in chunks(sorted({e for e, _ in want})):
        rows = session.execute(select(Entity.name, Series.metric, Series.id)
                               .join(Entity, Entity.id == Series.entity_id)
                               .where(Entity.name.in_(part)))
        for e, m, i in rows:
            if (e, m) in want:
                out[(e, m)] = int(i)
    return out


def last_sample_ts(session: Session, series_id: int) -> int | None:
    """Unix s of the newest raw sample of a series (None: none kept, e.g. all expired)."""
    t = session.scalar(select(func.max(Sample.ts)).where(Sample.series_id == series_id))
    return None if t is None else int(t)
def ensure_series(store: Store, entity: str, metric: str, kind: str = "vm") -> ActiveSeries:
    """Return the series ``entity``/``metric``, creating it (and its entity) when missing.

    For a series whose history lives elsewhere (a target's Prometheus-compatible ``source``):
    its forecasts are stored under its id. A new entity gets ``kind``; an existing one keeps
    its own. ``last_ts`` is the newest stored sample, 0 when none. Read first: the write
    transaction runs only the first time (the refresh asks every period).
    """
    with store.sessions() as session:
        row = session.execute(
            select(Series.id, Entity.kind).join(Entity)
            .where(Entity.name == entity, Series.metric == metric)).first()
        if row is not None:
            last = session.execute(
                select(func.max(Sample.ts)).where(Sample.series_id == row[0])).scalar()
            return ActiveSeries(int(row[0]), entity, row[1], metric, int(last or 0))
    with write_tx(store.engine) as conn:
        conn.execute(insert_for(store.dialect, _ENT).on_conflict_do_nothing(
            index_elements=["name"]), [{"name": entity, "kind": kind, "labels": {}}])
        eid, ekind = conn.execute(
            select(_ENT.c.id, _ENT.c.kind).where(_ENT.c.name == entity)).one()
        conn.execute(insert_for(store.dialect, _SER).on_conflict_do_nothing(
            index_elements=["entity_id", "metric"]),
            [{"entity_id": eid, "metric": metric, "unit": _DEFAULT_UNITS.get(metric, "")[:64]}])
        sid = conn.execute(select(_SER.c.id).where(
            _SER.c.entity_id == eid, _SER.c.metric == metric)).scalar_one()
        last = conn.execute(select(func.max(Sample.ts)).where(Sample.series_id == sid)).scalar()
    return ActiveSeries(int(sid), entity, ekind, metric, int(last or 0))
