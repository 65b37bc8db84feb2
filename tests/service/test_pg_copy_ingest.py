"""PostgreSQL ingest through COPY: the same stored rows as the executemany path it replaced.

On the real PostgreSQL (a fresh schema per store): last write wins inside a batch and across
batches, a failing batch leaves nothing (neither samples, entities, series nor dirty marks),
the rollup job still finds the dirty ranges, and random batches give row for row the same
store through COPY as through ``executemany`` (kept, ``use_copy=False``, as the reference).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import exc, select

from service import migrate
from service.ingest import MAX_ABS_VALUE, Batch, ConflictError, validate
from service.store import rollups
from service.store import samples as sample_store
from service.store.db import Store
from service.store.tables import Entity, Sample, Series
from tests.service.conftest import PG_AVAILABLE, make_settings, pg_schema

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_AVAILABLE, reason="no PostgreSQL at 127.0.0.1:5432"),
]

NOW = int(time.time())


@contextlib.contextmanager
def pg_store(tmp_path) -> Iterator[Store]:  # noqa: ANN001
    """An open store on a freshly migrated schema of its own, dropped afterwards."""
    with pg_schema() as schema:
        cfg = make_settings("postgresql", tmp_path, schema)
        migrate.upgrade(cfg)
        store = Store(cfg)
        try:
            yield store
        finally:
            store.close()


@pytest.fixture
def pg(tmp_path) -> Iterator[Store]:  # noqa: ANN001
    """One PostgreSQL store for this test."""
    with pg_store(tmp_path) as store:
        yield store


def batch(*samples: tuple[str, str, int, float], kind: str = "vm") -> Batch:
    """A validated batch of (entity, metric, seconds before NOW, value) samples."""
    items = [
        {"entity": e, "kind": kind, "metric": m, "ts": NOW - ago, "value": v}
        for e, m, ago, v in samples
    ]
    return validate(items, NOW, 300)


def stored(store: Store) -> dict[tuple[str, str, int], str]:
    """Every sample as (entity, metric, ts) -> value in ``float.hex`` (exact, signed zero)."""
    q = (
        select(Entity.name, Series.metric, Sample.ts, Sample.value)
        .join(Series, Series.id == Sample.series_id)
        .join(Entity, Entity.id == Series.entity_id)
    )
    with store.sessions() as s:
        return {(e, m, t): float(v).hex() for e, m, t, v in s.execute(q)}


def dirty(store: Store) -> dict[tuple[str, str], tuple[int | None, int | None]]:
    """Every series' dirty range, by (entity, metric)."""
    q = select(Entity.name, Series.metric, Series.dirty_from, Series.dirty_to).join(Entity)
    with store.sessions() as s:
        return {(e, m): (lo, hi) for e, m, lo, hi in s.execute(q)}


def names(store: Store) -> set[str]:
    """Names of the stored entities."""
    with store.sessions() as s:
        return set(s.scalars(select(Entity.name)))


def test_copy_is_the_default_on_postgresql(pg: Store, monkeypatch) -> None:  # noqa: ANN001
    used = []
    monkeypatch.setattr(
        sample_store, "_upsert_copy", lambda *a, **k: used.append(a[1:]), raising=True
    )
    sample_store.ingest(pg, batch(("a", "m", 10, 1.0)))
    assert len(used) == 1


def test_last_write_wins_inside_a_batch_and_across_batches(pg: Store) -> None:
    n = sample_store.ingest(
        pg,
        batch(("a", "m", 10, 1.0), ("a", "m", 10, 2.0), ("b", "m", 10, 5.0), ("a", "m", 10, 3.0)),
    )
    assert n == 4  # every item counts as written, duplicates included, as before
    assert stored(pg) == {("a", "m", NOW - 10): (3.0).hex(), ("b", "m", NOW - 10): (5.0).hex()}
    sample_store.ingest(pg, batch(("a", "m", 10, -0.0), ("a", "m", 9, 7.0), ("a", "m", 10, 4.5)))
    assert stored(pg) == {
        ("a", "m", NOW - 10): (4.5).hex(),
        ("a", "m", NOW - 9): (7.0).hex(),
        ("b", "m", NOW - 10): (5.0).hex(),
    }


def test_values_round_trip_exactly(pg: Store) -> None:
    values = [0.1, -0.0, 5e-324, MAX_ABS_VALUE, -MAX_ABS_VALUE, 1 / 3, 2.0**49 + 0.5]
    sample_store.ingest(pg, batch(*(("a", "m", i, v) for i, v in enumerate(values))))
    assert stored(pg) == {("a", "m", NOW - i): v.hex() for i, v in enumerate(values)}


def corrupt_row(monkeypatch, index: int) -> None:  # noqa: ANN001
    """Make row ``index`` of every COPY stream unreadable: the field count says 3, the first
    field's length 5 (an integer has 4 bytes), so PostgreSQL refuses the COPY at that row."""
    real = sample_store._copy_payload
    row = sample_store._COPY_ROW.itemsize
    header = len(sample_store._COPY_HEADER)

    def payload(sid, t, v) -> bytes:  # noqa: ANN001
        data = bytearray(real(sid, t, v))
        at = header + index * row + 2  # after the row's field count
        data[at : at + 4] = (5).to_bytes(4, "big")
        return bytes(data)

    monkeypatch.setattr(sample_store, "_copy_payload", payload)


@pytest.mark.parametrize("path", ["direct", "upsert"])
def test_a_bad_row_in_the_middle_of_the_copy_leaves_nothing(
    pg: Store, monkeypatch, path: str  # noqa: ANN001
) -> None:
    # "direct": new seconds only, copied straight into samples; "upsert": one second stored
    # already, so the direct COPY stops at it and the batch goes through the staging table
    # and INSERT ... ON CONFLICT.
    sample_store.ingest(pg, batch(("a", "m", 100, 1.0)))
    before = (stored(pg), dirty(pg), names(pg))
    items = [("a", "m", 50 - i, float(i)) for i in range(20)] + [("new", "m", 5, 3.0)]
    if path == "upsert":
        items.append(("a", "m", 100, 9.0))
    corrupt_row(monkeypatch, 10)
    with pytest.raises(exc.DataError, match="incorrect binary data format"):
        sample_store.ingest(pg, batch(*items))
    assert (stored(pg), dirty(pg), names(pg)) == before
    assert ("new", "m") not in pg.cache.series  # a rolled-back id never enters the cache
    monkeypatch.undo()
    # The pooled connection (and its staging table) still serves the next batch.
    sample_store.ingest(pg, batch(*items))
    assert stored(pg) == {
        ("a", "m", NOW - 100): (9.0 if path == "upsert" else 1.0).hex(),
        **{("a", "m", NOW - 50 + i): float(i).hex() for i in range(20)},
        ("new", "m", NOW - 5): (3.0).hex(),
    }


def spy_paths(monkeypatch) -> list[str]:  # noqa: ANN001
    """Record which COPY path each batch took: ``direct``, ``upsert`` or both in turn."""
    taken: list[str] = []
    direct, upsert = sample_store._copy_direct, sample_store._copy_upsert

    def spy_direct(*a):  # noqa: ANN002, ANN202
        taken.append("direct")
        return direct(*a)

    def spy_upsert(*a):  # noqa: ANN002, ANN202
        taken.append("upsert")
        return upsert(*a)

    monkeypatch.setattr(sample_store, "_copy_direct", spy_direct)
    monkeypatch.setattr(sample_store, "_copy_upsert", spy_upsert)
    return taken


def test_new_seconds_are_copied_straight_in_and_stored_ones_upserted(
    pg: Store, monkeypatch  # noqa: ANN001
) -> None:
    taken = spy_paths(monkeypatch)
    sample_store.ingest(pg, batch(("a", "m", 10, 1.0), ("a", "m", 10, 2.0), ("b", "m", 9, 3.0)))
    assert taken == ["direct"]  # duplicates inside the batch: the later item, no conflict
    sample_store.ingest(pg, batch(("a", "m", 8, 4.0), ("b", "m", 8, 5.0)))
    assert taken == ["direct", "direct"]
    sample_store.ingest(pg, batch(("b", "m", 7, 6.0), ("a", "m", 10, 7.0)))  # a re-sent key
    assert taken == ["direct", "direct", "direct", "upsert"]  # the direct COPY stopped at it
    assert stored(pg) == {
        ("a", "m", NOW - 10): (7.0).hex(),
        ("b", "m", NOW - 9): (3.0).hex(),
        ("a", "m", NOW - 8): (4.0).hex(),
        ("b", "m", NOW - 8): (5.0).hex(),
        ("b", "m", NOW - 7): (6.0).hex(),
    }


def test_a_stored_key_after_new_ones_rolls_the_direct_copy_back_and_upserts(
    pg: Store, monkeypatch  # noqa: ANN001
) -> None:
    # The COPY fails on the stored key after it wrote the 30 new rows before it: the
    # savepoint takes them back and the upsert stores the whole batch once, later items
    # winning.
    sample_store.ingest(pg, batch(("a", "m", 5, 1.0)))
    taken = spy_paths(monkeypatch)
    items = [("a", "m", 40 - i, float(i)) for i in range(30)] + [("a", "m", 5, 2.0)]
    assert sample_store.ingest(pg, batch(*items)) == 31
    assert taken == ["direct", "upsert"]
    assert stored(pg) == {
        **{("a", "m", NOW - 40 + i): float(i).hex() for i in range(30)},
        ("a", "m", NOW - 5): (2.0).hex(),
    }


@pytest.mark.parametrize("statement", ["_LOCK_SERIES", "_WIDEN_DIRTY", "_STAGE_UPSERT"])
def test_a_database_error_in_the_copy_path_is_sqlalchemys(
    pg: Store, monkeypatch, statement: str  # noqa: ANN001
) -> None:
    # The API answers sqlalchemy's OperationalError (deadlock, lost connection, timeout)
    # with 503 "retry": the raw psycopg cursor's errors must arrive as such, not as a 500.
    sample_store.ingest(pg, batch(("a", "m", 10, 1.0)))
    before = (stored(pg), dirty(pg), names(pg))
    with pg.engine.begin() as conn:
        conn.exec_driver_sql("SET SESSION statement_timeout = 200")  # the pool's connection
    slow = {
        "_LOCK_SERIES": "SELECT pg_sleep(1) FROM (SELECT %s::int[]) x",
        "_WIDEN_DIRTY": "SELECT pg_sleep(1) FROM (SELECT %(lo)s, %(hi)s, %(first)s, %(ids)s) x",
        "_STAGE_UPSERT": "SELECT pg_sleep(1)",
    }
    monkeypatch.setattr(sample_store, statement, slow[statement])
    with pytest.raises(exc.OperationalError, match="statement timeout"):
        sample_store.ingest(pg, batch(("a", "m", 10, 2.0), ("b", "m", 10, 1.0)))
    assert (stored(pg), dirty(pg), names(pg)) == before


def test_a_kind_conflict_leaves_nothing(pg: Store) -> None:
    sample_store.ingest(pg, batch(("a", "m", 100, 1.0)))
    before = (stored(pg), dirty(pg), names(pg))
    items = [
        {"entity": "b", "kind": "vm", "metric": "m", "ts": NOW - 3, "value": 2.0},
        {"entity": "a", "kind": "function", "metric": "m", "ts": NOW - 3, "value": 2.0},
    ]
    with pytest.raises(ConflictError):
        sample_store.ingest(pg, validate(items, NOW, 300))
    assert (stored(pg), dirty(pg), names(pg)) == before


def test_the_staging_table_starts_empty_in_every_batch(pg: Store, monkeypatch) -> None:  # noqa: ANN001
    taken = spy_paths(monkeypatch)
    sample_store.ingest(pg, batch(("a", "m", 10, 1.0)))
    sample_store.ingest(pg, batch(("a", "m", 10, 2.0)))
    sample_store.ingest(pg, batch(("a", "m", 10, 3.0), ("b", "m", 10, 2.0)))
    assert taken == ["direct", "direct", "upsert", "direct", "upsert"]
    assert stored(pg) == {("a", "m", NOW - 10): (3.0).hex(), ("b", "m", NOW - 10): (2.0).hex()}
    with pg.engine.connect() as conn:  # the pool's one connection so far: the same session
        conn.exec_driver_sql(sample_store._STAGE_DDL)
        assert conn.exec_driver_sql(f"SELECT count(*) FROM {sample_store._STAGE}").scalar() == 0


def test_dirty_ranges_and_rollups(pg: Store) -> None:
    start = NOW - NOW % 60 - 600  # a whole minute, 10 minutes ago
    ago = NOW - start
    sample_store.ingest(pg, batch(*(("a", "m", ago - i, float(i)) for i in range(60))))
    assert dirty(pg) == {("a", "m"): (start, start + 59)}
    sample_store.ingest(pg, batch(("a", "m", ago - 30, 100.0), ("a", "m", ago + 60, -1.0)))
    assert dirty(pg) == {("a", "m"): (start - 60, start + 59)}  # widened, never narrowed
    assert rollups.run_rollups(pg, NOW) == 1
    assert dirty(pg) == {("a", "m"): (None, None)}
    with pg.sessions() as s:
        points = sample_store.query_series(s, "a", "m", start - 60, start + 59, step=60, agg="sum")
    assert points.source == "rollup"
    assert points.points == [(start - 60, -1.0), (start, sum(range(60)) - 30 + 100.0)]


def test_dirty_marks_cover_whole_minutes_and_rewrite_a_series_row_only_to_widen(
    pg: Store,
) -> None:
    start = NOW - NOW % 60 - 600  # a whole minute, 10 minutes ago
    ago = NOW - start

    def version() -> str:  # the transaction that last wrote the series row
        with pg.engine.connect() as conn:
            return conn.exec_driver_sql("SELECT xmin::text FROM series").scalar()

    sample_store.ingest(pg, batch(("a", "m", ago - 5, 1.0)))
    assert dirty(pg) == {("a", "m"): (start, start + 59)}
    written = version()
    sample_store.ingest(pg, batch(("a", "m", ago - 30, 2.0), ("a", "m", ago - 59, 2.0)))
    assert version() == written  # inside the marked minute: locked, not rewritten
    sample_store.ingest(pg, batch(("a", "m", ago - 70, 3.0)))
    assert version() != written
    assert dirty(pg) == {("a", "m"): (start, start + 119)}
    assert rollups.run_rollups(pg, NOW) == 1
    sample_store.ingest(pg, batch(("a", "m", ago - 31, 4.0)))  # rolled up: marked again
    assert dirty(pg) == {("a", "m"): (start, start + 59)}


# --- COPY and executemany give the same store, row for row ----------------------------------

ENTITIES = ["vm-1", "vm-2", "é x"]
METRICS = ["m1", "m2"]
VALUES = st.one_of(
    st.floats(-MAX_ABS_VALUE, MAX_ABS_VALUE, allow_nan=False, allow_subnormal=True),
    st.sampled_from([0.0, -0.0, 1.0, 0.1]),
    st.integers(-(10**15), 10**15),  # JSON integers are stored as floats
)
SAMPLE = st.tuples(st.sampled_from(ENTITIES), st.sampled_from(METRICS), st.integers(0, 40), VALUES)
# Few entities, metrics and seconds: duplicates inside a batch and across batches are common.
BATCHES = st.lists(st.lists(SAMPLE, min_size=1, max_size=60), min_size=1, max_size=4)


def test_copy_stores_what_executemany_stores(tmp_path) -> None:  # noqa: ANN001
    with pg_store(tmp_path / "copy") as via_copy, pg_store(tmp_path / "many") as via_many:

        @settings(
            max_examples=100,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(BATCHES)
        def check(batches: list[list[tuple[str, str, int, float]]]) -> None:
            for samples in batches:
                b = batch(*samples)
                n_copy = sample_store.ingest(via_copy, b, use_copy=True)
                n_many = sample_store.ingest(via_many, b, use_copy=False)
                assert n_copy == n_many == len(samples)
            # Both stores saw the same batches so far (hypothesis examples accumulate).
            assert stored(via_copy) == stored(via_many)
            assert dirty(via_copy) == dirty(via_many)

        check()
        assert stored(via_copy)  # the comparison was not of two empty stores


def test_copy_needs_postgresql(tmp_path) -> None:  # noqa: ANN001
    cfg = make_settings("sqlite", tmp_path)
    migrate.upgrade(cfg)
    store = Store(cfg)
    try:
        with pytest.raises(ValueError, match="PostgreSQL"):
            sample_store.ingest(store, batch(("a", "m", 1, 1.0)), use_copy=True)
        assert sample_store.ingest(store, batch(("a", "m", 1, 1.0))) == 1  # executemany there
    finally:
        store.close()


def test_concurrent_batches_over_the_same_series(pg: Store) -> None:
    # Four writers send the same keys, two of them in the opposite order: no deadlock (an
    # unordered UPDATE of the series rows deadlocked, and so did dirty marks written after
    # the samples), and since every batch covers every key, the store ends equal to one
    # whole batch (the last committed).
    writers, rounds = 4, 8
    keys = [(f"e{i % 100}", f"m{i % 3}", 10 + i // 300) for i in range(900)]
    batches = {
        (w, n): batch(*((e, m, ago, float(1000 * w + n)) for e, m, ago in keys[:: 1 - 2 * (w % 2)]))
        for w in range(writers)
        for n in range(rounds)
    }
    sample_store.ingest(pg, batches[0, 0])  # entities and series exist before the race
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for n in range(rounds):
                sample_store.ingest(pg, batches[w, n])
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    values = set(stored(pg).values())
    assert len(values) == 1
    assert len(stored(pg)) == len(set(keys))
