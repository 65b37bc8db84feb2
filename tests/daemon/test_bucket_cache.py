"""The refresh's cache of bucketed history gives what a full read of the window gives.

A daemon keeps each series' buckets between forecast runs (:class:`BucketCache`) and reads
only what the write marks say may have changed. Here every period's refresh through the
cache is compared with a full re-read: the histories value for value (NaN where no sample)
and the stored forecasts row for row, after in-order writes, a last-write-wins overwrite
into an old bucket, a late sample into an empty old bucket, a lagging series catching up,
two late writes in one period, writes by another store (connection pool) and by another
process, and a retention delete inside the window; and a decision's longer window read through
the same cache equals the one-series read (:func:`forecasting.bucketed`), as do many series'
windows read at once (``History.prefetch``, the period's decisions). Each step also
checks that the cache read less than the whole window where it may, so a cache that always
re-read everything (or never re-read) fails here too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from service import forecasting
from service.ingest import validate
from service.store import rollups
from service.store import samples as sample_store
from service.store.db import Store
from service.store.errors import NotFoundError

STEP = 15
CTX = 40  # buckets: a 600-s window keeps the test quick
ENTITIES = ("e0", "e1", "e2")
METRICS = ("cpu", "mem")
ROOT = Path(__file__).resolve().parents[2]


def _put(store: Store, rows: list[tuple[str, str, int, float]]) -> None:
    """Ingest (entity, metric, ts, value) rows through the store's ingest, in one batch."""
    items = [{"entity": e, "kind": "vm", "metric": m, "ts": t, "value": v}
             for e, m, t, v in rows]
    sample_store.ingest(store, validate(items, int(time.time()), 300))


def _value(e: str, m: str, t: int) -> float:
    return float(1 + ENTITIES.index(e) + 0.5 * METRICS.index(m) + np.sin(t / 97.0))


def _period(t0: int, t1: int, skip: set[tuple[str, str]] = frozenset()) -> list[tuple]:
    return [(e, m, t, _value(e, m, t)) for e in ENTITIES for m in METRICS
            if (e, m) not in skip for t in range(t0, t1)]


def _held_at(cache: forecasting.BucketCache, sid: int, t: int) -> float:
    """The value the cache holds for the bucket of second ``t`` of series ``sid``."""
    held = cache._held[sid]
    return float(held.values[(t - held.first(STEP)) // STEP])


def _stored(store: Store) -> list[list]:
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT series_id, computed_at, start, step, model, fallback, "
                                 "payload, samples FROM forecasts ORDER BY series_id")).all()
    return [[*r[:6], r[6] if isinstance(r[6], dict) else json.loads(r[6]), bytes(r[7])]
            for r in rows]


def _check(store: Store, cache: forecasting.BucketCache, now: int) -> dict[str, int]:
    """Refresh through the cache and in full at ``now``; both must agree. Return the stats."""
    with store.sessions() as session:
        ids = [a.series_id for a in sample_store.active_series(session, 0)]
        cached = cache.read(session, ids, now, STEP, CTX)
        stats = dict(cache.last)
        _, full = forecasting.bucketed_many(session, ids, now, STEP, CTX)
    assert sorted(cached) == sorted(full) == sorted(ids)
    for sid in ids:
        np.testing.assert_array_equal(cached[sid], full[sid], err_msg=f"series {sid}")
    # the same through refresh: what the cache path stores, the full path stores
    res = forecasting.refresh(store, now, buckets=cache)
    via_cache = _stored(store)
    res_full = forecasting.refresh(store, now)
    assert (res.series, res.forecasts, res.fallbacks, res.errors) == (
        res_full.series, res_full.forecasts, res_full.fallbacks, res_full.errors)
    assert via_cache == _stored(store)
    assert len(via_cache) == len(ids)
    # a decision's longer window through the same cache (History, as decide_all reads it)
    # gives what the one-series read gives
    hist = forecasting.History(store, cache=cache)
    with store.sessions() as session:
        for e in ENTITIES:
            for m in METRICS:
                ts_c, v_c = hist.buckets(e, m, now, STEP, 3 * CTX)
                ts_f, v_f = forecasting.bucketed(session, e, m, now, STEP, 3 * CTX)
                np.testing.assert_array_equal(ts_c, ts_f)
                np.testing.assert_array_equal(v_c, v_f, err_msg=f"{e}/{m}")
    return stats


def test_cached_histories_and_forecasts_equal_a_full_read(settings_factory):
    from service import migrate

    # raw retention of 0.1 h (360 s) reaches into the 600-s window: retention deletes there
    settings = settings_factory(forecast_context_steps=CTX, raw_retention_hours=0.1,
                                rollup_interval_s=30)
    migrate.upgrade(settings)
    store, other = Store(settings), Store(settings)
    try:
        now = int(time.time()) - 200
        now -= now % STEP
        t0 = now - CTX * STEP
        cache = forecasting.BucketCache()
        # e2/mem stops 100 s early (a lagging series); e0/mem misses its 11th bucket
        hole = t0 + 10 * STEP
        _put(store, _period(t0, now, skip={("e2", "mem"), ("e0", "mem")}))
        _put(store, [("e2", "mem", t, _value("e2", "mem", t)) for t in range(t0, now - 100)])
        _put(store, [("e0", "mem", t, _value("e0", "mem", t)) for t in range(t0, now)
                     if not hole <= t < hole + STEP])
        stats = _check(store, cache, now)
        assert stats["full"] == 6 and stats["partial"] == 0
        with pytest.raises(NotFoundError, match="no entity named 'nope'"):
            forecasting.History(store, cache=cache).buckets("nope", "cpu", now, STEP, CTX)

        # next period, in order: only the new bucket is read (the lagging series from its
        # newest second's bucket)
        _put(store, _period(now, now + STEP, skip={("e2", "mem")}))
        now += STEP
        stats = _check(store, cache, now)
        assert stats["full"] == 0 and stats["partial"] == 6
        assert stats["buckets"] < 6 * CTX // 4

        # the lagging series catches up below the end of what the cache holds (not a late
        # write: above its newest second), and e1/cpu is overwritten in an old bucket
        _put(store, [("e2", "mem", t, _value("e2", "mem", t)) for t in range(now - 100, now)])
        _put(store, _period(now, now + STEP, skip={("e2", "mem")}))
        late = now - 300
        _put(store, [("e1", "cpu", late, 1000.0)])  # last write wins
        now += STEP
        stats = _check(store, cache, now)
        assert stats["full"] == 0 and stats["partial"] == 6
        with store.sessions() as session:
            sid = sample_store.series_id(session, "e1", "cpu")
            hole_sid = sample_store.series_id(session, "e0", "mem")
        # the overwritten bucket holds the new value (mean of 14 sines and 1000)
        assert _held_at(cache, sid, late) > 50

        # another store (another daemon's ingest: its own connections and id cache) fills the
        # empty old bucket of e0/mem and writes the period
        assert np.isnan(_held_at(cache, hole_sid, hole))
        _put(other, [("e0", "mem", hole + 3, 42.0)])
        _put(other, _period(now, now + STEP))
        now += STEP
        stats = _check(store, cache, now)
        assert stats["full"] == 0 and stats["partial"] == 6
        assert _held_at(cache, hole_sid, hole) == 42.0

        # a store migrated with data has no max_ts yet: read in full until a write sets it
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE series SET max_ts = NULL"))
        stats = _check(store, cache, now + STEP)
        assert stats["full"] == 6
        _put(store, _period(now, now + STEP))
        now += STEP
        stats = _check(store, cache, now)
        assert stats["full"] == 6  # held nothing (the marks had no max_ts)
        _put(store, _period(now, now + STEP))
        now += STEP
        stats = _check(store, cache, now)
        assert stats["full"] == 0 and stats["partial"] == 6

        # two late writes to e2/cpu in one period: its marks cannot say both ranges, so
        # it is read in full; the others are not
        _put(other, [("e2", "cpu", now - 200, -5.0)])
        _put(store, [("e2", "cpu", now - 400, -7.0)])
        _put(store, _period(now, now + STEP))
        now += STEP
        stats = _check(store, cache, now)
        assert stats["full"] == 1 and stats["partial"] == 5

        # another process overwrites e0/cpu in an old bucket
        code = (
            "import sys, time\n"
            "from service.config import Settings\n"
            "from service.ingest import validate\n"
            "from service.store import samples\n"
            "from service.store.db import Store\n"
            "s = Store(Settings(db_url=sys.argv[1], db_schema=sys.argv[2] or None, "
            "scheduler_enabled=False))\n"
            "items = [{'entity': 'e0', 'kind': 'vm', 'metric': 'cpu', 'ts': int(sys.argv[3]), "
            "'value': 77.0}]\n"
            "samples.ingest(s, validate(items, int(time.time()), 300))\n"
            "s.close()\n"
        )
        subprocess.run([sys.executable, "-c", code, settings.db_url, settings.db_schema or "",
                        str(now - 500)], check=True, cwd=ROOT, timeout=120)
        _put(store, _period(now, now + STEP))
        now += STEP
        stats = _check(store, cache, now)
        assert stats["full"] == 0 and stats["partial"] == 6

        # an overwrite before the refresh's window but inside a decision's longer one: the
        # refresh reads only its new bucket, the decision's window re-reads what it touched
        assert t0 + 2 < now - CTX * STEP
        _put(other, [("e1", "mem", t0 + 2, 500.0)])
        _put(store, _period(now, now + STEP))
        now += STEP
        stats = _check(store, cache, now)
        assert stats["full"] == 0 and stats["partial"] == 6

        # retention deletes samples older than 360 s, inside the 600-s window
        gone = rollups.apply_retention(store, now)
        assert gone.samples > 0
        _put(store, _period(now, now + STEP))
        now += STEP
        stats = _check(store, cache, now)
        assert stats["full"] == 6

        # and back to reading only the new bucket
        _put(store, _period(now, now + STEP))
        now += STEP
        stats = _check(store, cache, now)
        assert stats["full"] == 0 and stats["partial"] == 6
    finally:
        store.close()
        other.close()


def test_a_late_write_is_counted_with_its_range(store):
    """Ingest's marks, in whole minutes: max_ts rises to the newest minute's last second; a
    batch starting in an earlier minute counts, with its range; one inside the newest minute
    (an overwrite included) does not, and rewrites nothing."""
    m0 = (int(time.time()) - 600) // 60 * 60  # a minute's first second
    _put(store, [("e0", "cpu", m0 + 10, 1.0), ("e0", "cpu", m0 + 30, 2.0)])

    def marks() -> tuple:
        with store.sessions() as session:
            sid = sample_store.series_id(session, "e0", "cpu")
            m = sample_store.write_marks(session, [sid])[sid]
        return m.max_ts, m.late_count, m.late_from, m.late_to

    assert marks() == (m0 + 59, 0, None, None)
    _put(store, [("e0", "cpu", m0 + 31, 1.0)])  # after the newest: in order
    _put(store, [("e0", "cpu", m0 + 5, 3.0)])  # inside the newest minute: re-read anyway
    _put(store, [("e0", "cpu", m0 + 31, 4.0)])  # the same second again: an overwrite
    assert marks() == (m0 + 59, 0, None, None)
    _put(store, [("e0", "cpu", m0 + 70, 1.0)])  # the next minute
    assert marks() == (m0 + 119, 0, None, None)
    _put(store, [("e0", "cpu", m0 + 59, 5.0)])  # a minute before the newest: late
    assert marks() == (m0 + 119, 1, m0, m0 + 59)
    _put(store, [("e0", "cpu", m0 - 90, 1.0), ("e0", "cpu", m0 + 65, 1.0)])
    assert marks() == (m0 + 119, 2, m0 - 120, m0 + 119)


def test_active_series_of_some_entities_are_those_of_all_filtered(settings_factory):
    """``active_series(since, only)`` (a daemon's shards) = the full answer, filtered.

    Entities with recent samples, one whose newest sample is exactly ``since``, one a
    second older, and a series with no sample at all; each predicate gives the same rows,
    in the same order, as filtering the answer for every series.
    """
    from service import migrate

    settings = settings_factory()
    migrate.upgrade(settings)
    store = Store(settings)
    try:
        now = int(time.time()) - 100
        since = now - 50
        _put(store, [(e, m, t, 1.0) for e in ("a", "b", "c") for m in METRICS
                     for t in range(now - 80, now)])
        _put(store, [("d", "cpu", since, 2.0), ("d", "mem", since - 1, 2.0)])
        sample_store.ensure_series(store, "e", "cpu")  # no sample: never active
        picks = [lambda e: True, lambda e: False, lambda e: e in ("a", "d"),
                 lambda e: e != "b", lambda e: e == "e"]
        with store.sessions() as session:
            every = sample_store.active_series(session, since)
            assert [(a.entity, a.metric) for a in every] == [
                *((e, m) for e in ("a", "b", "c") for m in sorted(METRICS)), ("d", "cpu")]
            assert every[-1].last_ts == since
            for only in picks:
                assert sample_store.active_series(session, since, only) == [
                    a for a in every if only(a.entity)]
    finally:
        store.close()


def test_prefetched_windows_equal_each_series_read(settings_factory):
    """``History.prefetch`` reads many series' windows at once (the period's decisions);
    ``buckets`` then returns, without a statement, what a read of each series through a
    cache of its own and a full read give, value for value (NaN gaps too). An unknown series
    and another window are left to ``buckets`` as before."""
    from sqlalchemy import event

    from service import migrate

    settings = settings_factory()
    migrate.upgrade(settings)
    store = Store(settings)
    try:
        now = (int(time.time()) - 120) // STEP * STEP + 7
        t0 = now - 30 * STEP
        _put(store, _period(t0, now, skip={("e1", "mem")}))
        _put(store, [("e1", "mem", t, 2.0) for t in range(t0, t0 + 3 * STEP)])  # a gap
        keys = [(e, m) for e in ENTITIES for m in METRICS]
        history = forecasting.History(store, cache=forecasting.BucketCache())
        assert history.prefetch([*keys, ("nobody", "cpu"), ("e0", "cpu")], now, STEP,
                                CTX) == len(keys)
        statements = []

        def seen(conn, cursor, statement, *rest) -> None:  # noqa: ANN001
            statements.append(statement)

        event.listen(store.engine, "before_cursor_execute", seen)
        got = {k: history.buckets(*k, now, STEP, CTX) for k in keys}
        assert statements == []  # served from what was prefetched
        history.buckets("e0", "cpu", now, STEP, CTX - 1)  # another window: read
        assert statements
        event.remove(store.engine, "before_cursor_execute", seen)
        one = forecasting.History(store, cache=forecasting.BucketCache())
        for k in keys:
            ts, v = got[k]
            ts1, v1 = one.buckets(*k, now, STEP, CTX)
            with store.sessions() as session:
                ts2, v2 = forecasting.bucketed(session, *k, now, STEP, CTX)
            np.testing.assert_array_equal(ts, ts1)
            np.testing.assert_array_equal(ts, ts2)
            np.testing.assert_array_equal(v, v1, err_msg=str(k))
            np.testing.assert_array_equal(v, v2, err_msg=str(k))
        assert np.isnan(got[("e1", "mem")][1][-20:]).all()  # the gap
        assert np.isfinite(got[("e0", "cpu")][1][-30:]).all()
        with pytest.raises(NotFoundError):
            history.buckets("nobody", "cpu", now, STEP, CTX)
        # a later window is read, not served from the prefetch: its new samples show
        _put(store, [("e0", "cpu", t, 50.0) for t in range(now - 7, now - 7 + STEP)])
        later = now + STEP
        _, v = history.buckets("e0", "cpu", later, STEP, CTX)
        with store.sessions() as session:
            _, full = forecasting.bucketed(session, "e0", "cpu", later, STEP, CTX)
        np.testing.assert_array_equal(v, full)
        assert v[-1] == 50.0
    finally:
        store.close()
