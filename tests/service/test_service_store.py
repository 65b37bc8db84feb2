"""Repository functions on SQLite and PostgreSQL: writes, queries, rollups, retention, models."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from common.errors import InputError
from service.ingest import ConflictError, validate
from service.store import model_registry as model_store
from service.store import rollups as rollup_store
from service.store import samples as sample_store
from service.store.errors import NotFoundError, QueryError
from service.store.tables import Entity, Rollup, Sample, Series

T0 = 1_700_000_040  # a minute boundary (T0 % 60 == 0)
NOW = T0 + 3600


def s(ts, value, entity="vm-1", metric="cpu_util", kind="vm", **kw):
    out = {"entity": entity, "kind": kind, "metric": metric, "ts": ts, "value": value}
    out.update(kw)
    return out


def put(store, *samples) -> int:
    return sample_store.ingest(store, validate(list(samples), NOW, 300))


def raw(store, entity="vm-1", metric="cpu_util", start=T0 - 3600, end=NOW, **kw):
    with store.sessions() as session:
        return sample_store.query_series(session, entity, metric, start, end, **kw)


def close(points, expected) -> bool:
    """Same bucket timestamps exactly, values up to float rounding."""
    return [t for t, _ in points] == [t for t, _ in expected] and [
        v for _, v in points
    ] == pytest.approx([v for _, v in expected])


def count(store, model) -> int:
    with store.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_ingest_then_query_raw(store):
    stored = put(store, s(T0 + 2, 3.0), s(T0, 1.0), s(T0 + 1, 2.0), s(T0, 9.0, metric="mem_util"))
    assert stored == 4
    res = raw(store)
    assert res.source == "raw" and res.step == 1
    assert res.points == [(T0, 1.0), (T0 + 1, 2.0), (T0 + 2, 3.0)]
    assert res.unit == "percent"  # default unit of a known metric
    assert raw(store, metric="mem_util").points == [(T0, 9.0)]


def test_resent_sample_is_idempotent_and_last_write_wins(store):
    put(store, s(T0, 1.0), s(T0 + 1, 2.0))
    put(store, s(T0, 1.0), s(T0 + 1, 2.0))
    assert count(store, Sample) == 2
    put(store, s(T0, 5.0))
    assert raw(store).points == [(T0, 5.0), (T0 + 1, 2.0)]
    # inside one batch, the later item wins; fractions of a second share the second
    put(store, s(T0 + 1.2, 7.0), s(T0 + 1.9, 8.0))
    assert raw(store).points == [(T0, 5.0), (T0 + 1, 8.0)]
    assert count(store, Sample) == 2


def test_query_buckets_at_one_second_gives_the_raw_samples_for_every_aggregate(store):
    """1-s buckets (a daemon forecasting at ``TIDEWISE_FORECAST_STEP_S=1``) read many series
    at once: the raw values where a sample is, NaN where none, whatever the aggregate."""
    put(store, s(T0, 1.5), s(T0 + 2, -2.0), s(T0 + 3, 4.0), s(T0 + 1, 7.0, entity="vm-2"))
    with store.sessions() as session:
        ids = [sample_store.series_id(session, e, "cpu_util") for e in ("vm-1", "vm-2")]
        for agg in sample_store.AGGREGATES:
            got = sample_store.query_buckets(session, ids, T0, T0 + 3, 1, agg)
            assert got[ids[0]].tolist()[:1] + got[ids[0]].tolist()[2:] == [1.5, -2.0, 4.0], agg
            assert np.isnan(got[ids[0]][1]) and np.isnan(got[ids[1]][[0, 2, 3]]).all(), agg
            assert got[ids[1]][1] == 7.0, agg
    assert [v for _, v in raw(store, start=T0, end=T0 + 3).points] == [1.5, -2.0, 4.0]


def test_kind_conflict_rejects_the_whole_batch(store):
    put(store, s(T0, 1.0))
    batch = validate(
        [s(T0, 1.0, entity="new-fn", kind="function"), s(T0 + 1, 4.0, kind="server")], NOW, 300
    )
    with pytest.raises(ConflictError) as info:
        sample_store.ingest(store, batch)
    p = info.value.problems[0]
    assert (p.item, p.field) == (1, "kind") and "registered as kind 'vm'" in p.message
    assert count(store, Sample) == 1
    with store.sessions() as session:
        assert [e["name"] for e in sample_store.list_entities(session)] == ["vm-1"]
    # the rolled-back entity left no stale id in the cache: it can be created afterwards
    put(store, s(T0, 2.0, entity="new-fn", kind="function"))
    assert raw(store, "new-fn").points == [(T0, 2.0)]


def test_labels_last_write_wins_and_units_are_kept(store):
    put(store, s(T0, 1.0, labels={"zone": "a"}, unit="%"))
    put(store, s(T0 + 1, 1.0))  # no labels: unchanged
    with store.sessions() as session:
        (e,) = sample_store.list_entities(session)
    assert e["labels"] == {"zone": "a"} and e["metrics"] == [{"metric": "cpu_util", "unit": "%"}]
    put(store, s(T0 + 2, 1.0, labels={"zone": "b", "rack": 4}))
    with store.sessions() as session:
        (e,) = sample_store.list_entities(session)
        assert e["labels"] == {"zone": "b", "rack": 4}
        assert sample_store.list_entities(session, kind="function") == []


def test_entities_list_is_ordered_with_series(store):
    put(
        store,
        s(T0, 1, entity="b", kind="server", metric="power_w"),
        s(T0, 1, entity="a", kind="function", metric="requests"),
        s(T0, 1, entity="a", kind="function", metric="cold_starts"),
    )
    with store.sessions() as session:
        ents = sample_store.list_entities(session)
    assert [(e["name"], e["kind"]) for e in ents] == [("a", "function"), ("b", "server")]
    assert [m["metric"] for m in ents[0]["metrics"]] == ["cold_starts", "requests"]


def minute_values(store):
    with store.sessions() as session:
        return session.execute(
            select(Rollup.ts, Rollup.min, Rollup.mean, Rollup.max, Rollup.count).order_by(Rollup.ts)
        ).all()


def test_rollups_summarise_each_minute_and_follow_late_writes(store):
    # minute T0: 1, 2, 6 ; minute T0+60: 10
    put(store, s(T0 + 5, 1.0), s(T0 + 30, 2.0), s(T0 + 59, 6.0), s(T0 + 60, 10.0))
    assert rollup_store.run_rollups(store, NOW) == 1
    assert minute_values(store) == [(T0, 1.0, 3.0, 6.0, 3), (T0 + 60, 10.0, 10.0, 10.0, 1)]
    with store.sessions() as session:
        assert session.scalar(select(Series.dirty_from)) is None
    assert rollup_store.run_rollups(store, NOW) == 0  # nothing dirty, nothing done
    # a late sample and a rewrite in the first minute
    put(store, s(T0 + 6, -2.0), s(T0 + 59, 3.0))
    assert rollup_store.run_rollups(store, NOW) == 1
    assert minute_values(store)[0] == (T0, -2.0, 1.0, 3.0, 4)


def test_query_by_step_uses_rollups_when_current_and_raw_otherwise(store):
    put(store, *[s(T0 + i, float(i)) for i in range(180)])  # 3 minutes: 0..179
    expected_mean = [(T0, 59.5), (T0 + 120, 149.5)]  # 2-minute buckets
    dirty = raw(store, start=T0, end=T0 + 179, step=120)
    assert dirty.source == "raw" and dirty.points == expected_mean
    rollup_store.run_rollups(store, NOW)
    clean = raw(store, start=T0, end=T0 + 179, step=120)
    assert clean.source == "rollup" and close(clean.points, expected_mean)
    for agg, want in [
        ("min", [0.0, 120.0]),
        ("max", [119.0, 179.0]),
        ("count", [120.0, 60.0]),
        ("sum", [7140.0, 8970.0]),
    ]:
        got = raw(store, start=T0, end=T0 + 179, step=120, agg=agg)
        assert got.source == "rollup" and [v for _, v in got.points] == pytest.approx(want)
    # a step that is not a multiple of a minute is aggregated from raw samples
    odd = raw(store, start=T0, end=T0 + 179, step=90)
    assert odd.source == "raw" and odd.points == [
        (T0 - 30, 29.5),
        (T0 + 60, 104.5),
        (T0 + 150, 164.5),
    ]
    # the range is widened to whole buckets: start inside a bucket still gets all of it
    assert close(raw(store, start=T0 + 100, end=T0 + 100, step=120).points, [(T0, 59.5)])
    # a new write in the range makes the rollups stale for it: back to raw, new value seen
    put(store, s(T0 + 10, 1000.0))
    again = raw(store, start=T0, end=T0 + 179, step=120, agg="max")
    assert again.source == "raw" and again.points[0] == (T0, 1000.0)


def test_rollup_run_covers_many_series_in_chunks(store):
    put(store, *[s(T0 + i % 3, float(i), entity=f"vm-{i // 3}") for i in range(30)])
    assert rollup_store.run_rollups(store, NOW, series_per_tx=3) == 10
    with store.sessions() as session:
        assert session.scalar(select(func.count()).where(Series.dirty_from.is_not(None))) == 0
    assert count(store, Rollup) == 10
    got = sorted(r[1:] for r in minute_values(store))
    assert got == [(3.0 * k, 3.0 * k + 1, 3.0 * k + 2, 3) for k in range(10)]


def test_postgres_rolls_many_series_up_in_one_statement_with_the_same_bits(store):
    """PostgreSQL's one statement per transaction = one statement per series, to the bit.

    Values with all 53 bits in play, 40 series over 3 minutes written out of order, then a
    late sample and a rewrite in old minutes; every rollup row of the set-based run equals
    the one-series run's (its mean too, not only approximately), and the mean is the sum in
    time order over the count.
    """
    if store.dialect != "postgresql":
        pytest.skip("the one-statement rollup is PostgreSQL's; SQLite keeps one per series")
    rng = np.random.default_rng(7)
    secs = rng.permutation(180)  # written in a shuffled order
    vals = {(e, t): float(rng.normal(50.0, 20.0)) for e in range(40) for t in range(180)}
    for lo in range(0, 180, 60):
        put(store, *[s(T0 + int(t), vals[e, int(t)], entity=f"vm-{e:02d}")
                     for e in range(40) for t in secs[lo:lo + 60]])
    late = {(3, 10): -7.25, (3, 11): 1e-3, (17, 130): 123.456789}
    put(store, *[s(T0 + t, v, entity=f"vm-{e:02d}") for (e, t), v in late.items()])
    vals.update(late)

    def rows():
        with store.sessions() as session:
            return session.execute(select(Rollup.series_id, Rollup.ts, Rollup.min, Rollup.mean,
                                          Rollup.max, Rollup.count)
                                   .order_by(Rollup.series_id, Rollup.ts)).all()

    assert rollup_store.run_rollups(store, NOW, series_per_tx=16) == 40
    together = rows()
    with store.sessions() as session, session.begin():
        session.execute(Rollup.__table__.delete())
        session.execute(Series.__table__.update().values(dirty_from=T0, dirty_to=T0 + 179))
    assert rollup_store.run_rollups(store, NOW, series_per_tx=16, one_by_one=True) == 40
    assert rows() == together and len(together) == 40 * 3
    with store.sessions() as session:
        names = dict(session.execute(select(Series.id, Entity.name).join(Entity)).all())
    for sid, ts, lo, mean, hi, n in together:
        e = int(names[sid].split("-")[1])
        xs = [vals[e, t] for t in range(ts - T0, ts - T0 + 60)]
        acc = 0.0
        for x in xs:  # PostgreSQL's float8 avg: the sum in input (time) order over the count
            acc += x
        assert (lo, hi, n) == (min(xs), max(xs), 60)
        assert mean == acc / 60


def test_rollups_answer_after_raw_samples_expired(store):
    put(store, *[s(T0 + i, float(i % 7)) for i in range(120)])
    rollup_store.run_rollups(store, NOW)
    before = raw(store, start=T0, end=T0 + 119, step=60).points
    later = T0 + store.settings.raw_retention_s + 3600
    res = rollup_store.apply_retention(store, later)
    assert (res.samples, res.rollups) == (120, 0)
    assert count(store, Sample) == 0
    after = raw(store, start=T0, end=T0 + 119, step=60)
    assert after.source == "rollup" and close(after.points, before)
    assert raw(store, start=T0, end=T0 + 119).points == []


def test_retention_deletes_exactly_what_is_older_than_the_limits(store):
    raw_s = store.settings.raw_retention_s
    put(store, s(T0, 1.0), s(T0 + 60, 2.0), s(T0 + 120, 3.0))
    rollup_store.run_rollups(store, NOW)
    # at now = T0 + 60 + raw_s the cut is T0 + 60: only the sample at T0 is older
    res = rollup_store.apply_retention(store, T0 + 60 + raw_s)
    assert (res.samples, res.rollups) == (1, 0)
    assert [t for t, _ in raw(store, start=T0, end=T0 + 200).points] == [T0 + 60, T0 + 120]
    roll_s = store.settings.rollup_retention_s
    res = rollup_store.apply_retention(store, T0 + 61 + roll_s)
    assert (res.samples, res.rollups) == (2, 2)  # the T0 and T0+60 minutes
    assert [r[0] for r in minute_values(store)] == [T0 + 120]


def test_rollup_job_leaves_minutes_older_than_raw_retention_alone(store):
    put(store, s(T0, 1.0), s(T0 + 1, 3.0))
    rollup_store.run_rollups(store, NOW)
    rollup_store.apply_retention(store, T0 + store.settings.raw_retention_s + 120)
    # a late write into the expired minute must not turn its complete rollup into a partial one
    put(store, s(T0 + 2, 100.0))
    rollup_store.run_rollups(store, T0 + store.settings.raw_retention_s + 120)
    assert minute_values(store) == [(T0, 1.0, 2.0, 3.0, 2)]


def test_query_errors(store):
    put(store, s(T0, 1.0))
    with pytest.raises(NotFoundError, match="no entity named 'nope'"):
        raw(store, "nope")
    with pytest.raises(NotFoundError, match="has no metric 'power_w'"):
        raw(store, metric="power_w")
    with pytest.raises(QueryError, match="before start"):
        raw(store, start=T0, end=T0 - 1)
    with pytest.raises(QueryError, match="at most 100;"):
        raw(store, start=T0, end=T0 + 100, max_points=100)
    assert len(raw(store, start=T0, end=T0 + 99, max_points=100).points) == 1


def test_model_registry(store):
    with store.write_sessions() as session:
        a = model_store.register_model(
            session, "harmony", "1", "/m/h1.pt", "fisher 1-7", {"mse": 0.05}
        )
        session.commit()
        assert a.is_current and a.created_at is not None
    with store.write_sessions() as session:
        model_store.register_model(session, "harmony", "2", "/m/h2.pt", metrics={"mse": 0.04})
        model_store.register_model(
            session, "harmony", "3-candidate", "/m/h3.pt", make_current=False
        )
        model_store.register_model(session, "naive", "1", "/m/n1.pt")
        session.commit()
    with store.sessions() as session:
        cur = model_store.current_model(session, "harmony")
        assert (cur.version, cur.metrics, cur.artifact_path) == ("2", {"mse": 0.04}, "/m/h2.pt")
        assert [m.version for m in model_store.list_models(session, "harmony")] == [
            "1",
            "2",
            "3-candidate",
        ]
        harmony = model_store.list_models(session, "harmony")
        assert [m.is_current for m in harmony] == [False, True, False]
        assert model_store.list_models(session, "harmony")[0].trained_on == "fisher 1-7"
        assert len(model_store.list_models(session)) == 4
        assert model_store.current_model(session, "absent") is None
    with store.write_sessions() as session:
        with pytest.raises(InputError, match="registered already"):
            model_store.register_model(session, "harmony", "2", "/elsewhere")


def test_entity_ids_are_reused_across_batches(store):
    put(store, s(T0, 1.0))
    put(store, s(T0 + 1, 1.0))
    store.cache.entities.clear()
    store.cache.series.clear()  # a fresh process finds the existing rows
    put(store, s(T0 + 2, 1.0))
    assert count(store, Entity) == 1 and count(store, Series) == 1 and count(store, Sample) == 3


def test_deleting_an_entity_deletes_its_samples_and_a_stale_cached_id_is_refused(store):
    # samples.series_id has no foreign key: a trigger on series deletes a deleted series'
    # samples (as ON DELETE CASCADE did), and ingest checks the batch's series exist.
    from sqlalchemy import delete

    put(store, s(T0, 1.0), s(T0, 2.0, entity="vm-2"))
    with store.engine.begin() as conn:
        conn.execute(delete(Entity).where(Entity.name == "vm-1"))  # series cascade, samples
    assert count(store, Series) == 1 and count(store, Sample) == 1
    # This process still caches the ids of vm-1 and its series.
    with pytest.raises(ConflictError, match="was deleted from the store") as err:
        put(store, s(T0 + 1, 3.0, entity="vm-2"), s(T0 + 1, 4.0))
    assert err.value.problems[0].item == 1 and err.value.problems[0].field == "metric"
    assert count(store, Sample) == 1 and count(store, Entity) == 1  # nothing written
    put(store, s(T0 + 1, 3.0, entity="vm-2"), s(T0 + 1, 4.0))  # sent again: stored
    assert raw(store).points == [(T0 + 1, 4.0)]
    assert raw(store, entity="vm-2").points == [(T0, 2.0), (T0 + 1, 3.0)]


def test_a_cached_id_dropped_by_another_batch_midway_is_no_server_error(store, monkeypatch):
    """Another batch that found a series deleted drops cached ids (``_deleted_series``) while
    this one is between resolving its series and using their ids: this batch still stores
    (it looked each key up once), where it raised KeyError (a 500) before."""
    put(store, s(T0, 1.0), s(T0, 2.0, entity="vm-2"))
    resolve = sample_store._resolve_series

    def racing(*args, **kwargs):
        out = resolve(*args, **kwargs)
        with store.cache.lock:  # what _deleted_series does for a key of this batch
            store.cache.series.pop(("vm-1", "cpu_util"), None)
            store.cache.entities.pop("vm-1", None)
        return out

    monkeypatch.setattr(sample_store, "_resolve_series", racing)
    assert put(store, s(T0 + 1, 3.0), s(T0 + 1, 4.0, entity="vm-2")) == 2
    assert raw(store).points == [(T0, 1.0), (T0 + 1, 3.0)]


def test_two_daemons_on_one_database_keep_last_write_wins_for_labels(store):
    from service.store.db import Store

    other = Store(store.settings)  # a second process's store: its own id cache
    try:
        put(store, s(T0, 1.0, labels={"zone": "a"}))
        sample_store.ingest(other, validate([s(T0 + 1, 2.0, labels={"zone": "b"})], NOW, 300))
        put(store, s(T0 + 2, 3.0, labels={"zone": "a"}))  # same as this store's cached labels
        with other.sessions() as session:
            assert sample_store.list_entities(session)[0]["labels"] == {"zone": "a"}
        assert raw(store).points == [(T0, 1.0), (T0 + 1, 2.0), (T0 + 2, 3.0)]
    finally:
        other.close()


def test_concurrent_writers_and_jobs_all_succeed(store):
    """Several ingest threads, the rollup and the retention job at once: no lock errors."""
    import threading

    errors: list[BaseException] = []

    def writer(w: int) -> None:
        # all writers create the same five entities and series at the same time
        try:
            for b in range(10):
                put(
                    store,
                    *[
                        s(T0 + w * 1000 + b * 10 + i % 10, float(w), entity=f"e-{i // 10}")
                        for i in range(50)
                    ],
                )
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    def jobs() -> None:
        try:
            for _ in range(10):
                rollup_store.run_rollups(store, NOW)
                rollup_store.apply_retention(store, NOW)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    threads.append(threading.Thread(target=jobs))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count(store, Sample) == 4 * 10 * 50
    assert count(store, Entity) == 5 and count(store, Series) == 5
    rollup_store.run_rollups(store, NOW)
    with store.sessions() as session:
        assert session.scalar(select(func.sum(Rollup.count))) == 4 * 10 * 50
