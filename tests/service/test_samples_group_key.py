"""PostgreSQL's samples key groups series: every read of ``samples`` names the group.

The key is a unique index on ``(series_id / SERIES_GROUP, ts, series_id)`` (migration
``b7d41e9c2a60``). A statement that filters on ``series_id`` alone cannot use it, and reads
the whole table instead: at a fleet's size a scan per series. These tests run the store's
reads and deletes against a real PostgreSQL, record every statement that touches
``samples`` (SQLAlchemy's ``before_cursor_execute``), and EXPLAIN each with sequential scans
disabled: a plan that still scans ``samples`` sequentially, or walks the whole index with
the series as a filter, means the group was not named.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import event, text

from service.ingest import validate
from service.promreads import forecast_heads
from service.store import rollups as rollup_store
from service.store import samples as sample_store
from service.store.db import Store
from service.store.tables import SERIES_GROUP

pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)

T0 = 1_700_000_040  # a minute boundary
NOW = T0 + 3600


def _ingest(store: Store, entities: int, seconds: int) -> None:
    items = [{"entity": f"vm-{e:03d}", "kind": "vm", "metric": m, "ts": T0 + t,
              "value": float(e + t)}
             for e in range(entities) for m in ("cpu_util", "mem_util") for t in range(seconds)]
    sample_store.ingest(store, validate(items, NOW, 300))


def _seq_scans(plan: dict) -> list[str]:
    """Relations the plan (EXPLAIN's JSON) reads by a sequential scan."""
    found = [plan["Relation Name"]] if plan.get("Node Type") == "Seq Scan" else []
    for sub in plan.get("Plans", []):
        found += _seq_scans(sub)
    return found


def _unbounded_reads(plan: dict) -> list[str]:
    """Scans of ``samples`` not bounded by its group: a sequential scan, or an index scan
    whose index condition does not name the group (a walk of the whole index, filtered)."""
    node = plan.get("Node Type", "")
    bad = []
    if plan.get("Relation Name") == "samples" and node == "Seq Scan":
        bad.append(node)
    on_samples = (plan.get("Relation Name") == "samples"
                  or plan.get("Index Name") == "samples_group_ts_series")
    if on_samples and node in ("Index Scan", "Index Only Scan", "Bitmap Index Scan"):
        if f"(series_id / {SERIES_GROUP})" not in plan.get("Index Cond", ""):
            bad.append(f"{node} with Index Cond {plan.get('Index Cond')!r}")
    for sub in plan.get("Plans", []):
        bad += _unbounded_reads(sub)
    return bad


def _recorded(store: Store) -> tuple[list[tuple[str, object]], object]:
    seen: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001, ARG001
        if "samples" in statement and not executemany:
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", record)
    return seen, record


def _explain_all(store: Store, seen: list[tuple[str, object]]) -> dict[str, list[str]]:
    """Each recorded statement's reads of ``samples`` not bounded by the group (seqscan off)."""
    out: dict[str, list[str]] = {}
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SET enable_seqscan = off")
        for statement, params in seen:
            cur.execute("EXPLAIN (FORMAT JSON) " + statement, params or None)
            plan = cur.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            out[" ".join(statement.split())[:160]] = _unbounded_reads(plan[0]["Plan"])
        raw.rollback()
    finally:
        raw.close()
    return out


def test_the_key_is_grouped_as_the_code_names_it(store: Store) -> None:
    with store.engine.connect() as conn:
        defs = conn.execute(text(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'samples' "
            "AND schemaname = current_schema()")).scalars().all()
        pkey = conn.execute(text(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'samples'::regclass "
            "AND contype = 'p'")).scalar()
    assert pkey == 0  # the per-series key is gone: one index, the grouped one
    assert len(defs) == 1 and "UNIQUE" in defs[0]
    assert defs[0].endswith(f"(((series_id / {SERIES_GROUP})), ts, series_id)")


def test_every_read_of_samples_names_the_group(store: Store) -> None:
    # enough rows that a scan is no accident of a tiny table: 300 series over 3 groups+
    _ingest(store, entities=150, seconds=130)
    with store.sessions() as s:
        ids = sorted(sample_store.series_ids(s, [(f"vm-{e:03d}", "cpu_util")
                                                 for e in range(150)]).values())
    assert len({i // SERIES_GROUP for i in ids}) > 2
    seen, hook = _recorded(store)
    try:
        with store.sessions() as s:
            raw = sample_store.query_series(s, "vm-007", "cpu_util", T0, T0 + 129)
            stepped = sample_store.query_series(s, "vm-007", "cpu_util", T0, T0 + 119, step=15)
            buckets = sample_store.query_buckets(s, ids[:90], T0, T0 + 119, 15)
            active = sample_store.active_series(s, T0)
            mine = sample_store.active_series(s, T0, only=lambda e: e < "vm-050")
            last = sample_store.last_sample_ts(s, ids[5])
            heads = forecast_heads(s, 10)
        again = sample_store.ensure_series(store, "vm-009", "cpu_util")
        rolled = rollup_store.run_rollups(store, NOW, one_by_one=False)
        _ingest(store, entities=150, seconds=5)  # dirty again, for the one-by-one path
        rolled_one = rollup_store.run_rollups(store, NOW, one_by_one=True)
        gone = rollup_store.apply_retention(store, T0 + store.settings.raw_retention_s + 60)
    finally:
        event.remove(store.engine, "before_cursor_execute", hook)
    # the reads answered what they should, so the statements recorded are the real ones
    assert [v for _, v in raw.points] == [7.0 + t for t in range(130)]
    assert [t for t, _ in stepped.points] == [T0 + 15 * k for k in range(8)]
    assert set(buckets) == set(ids[:90]) and len(active) == 300 and 0 < len(mine) < 300
    assert last == T0 + 129 and again.last_ts == T0 + 129 and heads == ([], 0)
    assert rolled == 300 and rolled_one == 300 and gone.samples == 300 * 60
    plans = _explain_all(store, seen)
    kinds = {k.split()[0] for k in plans}
    assert {"SELECT", "INSERT", "DELETE"} <= kinds, plans  # reads, rollups, retention
    assert len(plans) >= 8, plans
    unbounded = {stmt: bad for stmt, bad in plans.items() if bad}
    assert unbounded == {}, unbounded


def test_deleting_a_series_deletes_its_samples_through_the_group(store: Store) -> None:
    _ingest(store, entities=70, seconds=3)
    with store.sessions() as s:
        sid = sample_store.series_id(s, "vm-066", "cpu_util")
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM series WHERE id = :i"), {"i": sid})
        left = conn.execute(text("SELECT count(*) FROM samples WHERE series_id = :i"),
                            {"i": sid}).scalar()
        others = conn.execute(text("SELECT count(*) FROM samples")).scalar()
    assert left == 0 and others == (140 - 1) * 3
    with store.engine.connect() as conn:
        body = conn.execute(text(
            "SELECT prosrc FROM pg_proc WHERE proname = 'series_delete_samples' "
            "AND pronamespace = current_schema()::regnamespace")).scalar()
    where = f"series_id / {SERIES_GROUP} = $1 / {SERIES_GROUP} AND series_id = $1"
    assert where in body
    # ... which the grouped index serves
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SET enable_seqscan = off")
        cur.execute("EXPLAIN (FORMAT JSON) DELETE FROM samples WHERE "
                    + where.replace("$1", "%(i)s"), {"i": sid})
        plan = cur.fetchone()[0]
        raw.rollback()
    finally:
        raw.close()
    plan = json.loads(plan) if isinstance(plan, str) else plan
    assert _unbounded_reads(plan[0]["Plan"]) == []
