"""Jobs over the samples: per-minute rollups of dirty ranges, and retention."""

from __future__ import annotations

import dataclasses

from sqlalchemy import delete, func, select, text, update

from service.store.db import Store, write_tx
from service.store.sql import chunks, insert_for
from service.store.tables import Rollup, Sample, Series

_SER = Series.__table__
_SAM = Sample.__table__
_ROL = Rollup.__table__

#: PostgreSQL: the rollups of many series' dirty ranges in one statement (the ranges as
#: three arrays), each range read by its own index scan (the lateral subquery: a join let
#: the planner scan the whole table for 100 series; ``OFFSET 0`` keeps it from being
#: merged into one). ``avg(... ORDER BY ts)`` adds in time
#: order whatever the plan, as the one-series statement's index scan does: the same bits.
_ROLLUP_MANY = text(
    "INSERT INTO rollups_1m (series_id, ts, min, mean, max, count) "
    "SELECT s.series_id, s.ts - s.ts % 60, min(s.value), avg(s.value ORDER BY s.ts), "
    "max(s.value), count(*) "
    "FROM unnest(CAST(:ids AS integer[]), CAST(:los AS bigint[]), CAST(:his AS bigint[])) "
    "AS d(sid, lo, hi) CROSS JOIN LATERAL ("
    "SELECT series_id, ts, value FROM samples "
    "WHERE series_id = d.sid AND ts BETWEEN d.lo AND d.hi OFFSET 0) AS s "
    "GROUP BY s.series_id, s.ts - s.ts % 60 "
    "ON CONFLICT (series_id, ts) DO UPDATE SET min = excluded.min, mean = excluded.mean, "
    "max = excluded.max, count = excluded.count"
)


def run_rollups(store: Store, now: int, series_per_tx: int = 100,
                one_by_one: bool | None = None) -> int:
    """Recompute the per-minute rollups of every dirty range; return series processed.

    Minutes older than the raw retention are left alone: their samples may already be gone,
    and recomputing would replace a complete rollup by a partial one.

    On PostgreSQL the ranges of a transaction's series are rolled up by one statement
    (:data:`_ROLLUP_MANY`); one statement per series cost a round trip, a plan and the
    client's statement building each, about 35,000 a run at 35,000 series written every
    second (15-40 s a run, beside the forecast job). SQLite (one writer, no round trips)
    keeps one statement per series. ``one_by_one`` forces either (tests compare them).
    """
    if one_by_one is None:
        one_by_one = store.dialect != "postgresql"
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
    for part in chunks(pending, series_per_tx):
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
            ranges = [(sid, max(lo - lo % 60, floor), hi - hi % 60 + 59) for sid, lo, hi in rows]
            ranges = [(sid, lo, hi) for sid, lo, hi in ranges if hi >= lo]
            if not one_by_one and ranges:
                ids, los, his = (list(c) for c in zip(*ranges, strict=True))
                conn.execute(_ROLLUP_MANY, {"ids": ids, "los": los, "his": his})
            for sid, lo, hi in ranges if one_by_one else ():
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
                stmt = insert_for(dialect, _ROL).from_select(
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
    small transactions so ingest is never blocked for long on SQLite. A series that lost raw
    samples has the deletion counted in its write marks (``late_count``, ``late_to`` =
    ``raw_cut - 1``, ``late_from`` NULL), in the same transaction, so a cache of its
    bucketed history never keeps a deleted sample (:class:`service.forecasting.BucketCache`).
    """
    raw_cut = now - store.settings.raw_retention_s
    roll_cut = now - store.settings.rollup_retention_s
    with store.engine.connect() as conn:
        ids = [r[0] for r in conn.execute(select(_SER.c.id).order_by(_SER.c.id))]
    result = RetentionResult(0, 0)
    for part in chunks(ids, series_per_tx):
        with write_tx(store.engine) as conn:
            gone = []
            for sid in part:
                n = conn.execute(
                    delete(_SAM).where(_SAM.c.series_id == sid, _SAM.c.ts < raw_cut)
                ).rowcount
                result.samples += n
                if n:
                    gone.append(sid)
                result.rollups += conn.execute(
                    delete(_ROL).where(_ROL.c.series_id == sid, _ROL.c.ts < roll_cut)
                ).rowcount
            if gone:  # a change below raw_cut for the forecast cache (late_from NULL: unbounded)
                if store.dialect == "postgresql":  # locked in id order, as ingest locks them
                    conn.execute(select(_SER.c.id).where(_SER.c.id.in_(gone))
                                 .order_by(_SER.c.id).with_for_update(key_share=True))
                conn.execute(
                    update(_SER).where(_SER.c.id.in_(gone)).values(
                        late_count=_SER.c.late_count + 1, late_from=None, late_to=raw_cut - 1)
                )
    return result
