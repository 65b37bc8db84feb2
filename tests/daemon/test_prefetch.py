"""The period's decisions read the store for all their targets at once (``Prefetched``).

Each batch read gives what the per-target read gives (on SQLite and PostgreSQL), the forecast
job uses the batches instead of one read per target, and a failing batch read falls back to
the per-target reads with the same decisions; the scaling targets' demand windows, read at
once through the daemon's cache, give each target the decision it makes alone.
"""

from __future__ import annotations

import time

from service import decisions, forecasting
from service.store import decisions as decision_store
from service.store import forecasts as forecast_store
from service.store import samples as sample_store
from service.store import targets as target_store
from service.store.tables import ActionRecord
from tests.daemon.conftest import scaling_target, send

STEP = 15


def _now() -> int:
    now = int(time.time())
    return now - now % STEP


def _action(store, target: str, at: int, acked_at: int | None = None,  # noqa: ANN001
            counts: tuple[int, int] | None = None) -> None:
    with store.write_sessions() as session, session.begin():
        row = ActionRecord(target=target, kind="vm", created_at=at, desired={}, why="test",
                           acked_at=acked_at)
        if counts is not None:
            row.applied, row.ready, row.counts_at = counts[0], counts[1], acked_at
        session.add(row)


def test_the_batch_of_ack_counts_is_each_targets_own(store):  # noqa: ANN001
    now = _now()
    _action(store, "counted", now - 100, now - 90, (4, 3))
    _action(store, "counted", now - 50, now - 40, (5, 5))  # the newer wins
    _action(store, "replaced", now - 100, now - 90, (4, 3))
    _action(store, "replaced", now - 50, now - 40)  # acknowledged without counts
    _action(store, "pending", now - 100, now - 90, (2, 2))
    _action(store, "pending", now - 50)  # not acknowledged: the earlier one stands
    _action(store, "future", now - 100, now - 90, (1, 1))
    _action(store, "future", now - 50, now + 30, (9, 9))  # acknowledged after now
    names = ["counted", "replaced", "pending", "future", "never"]
    with store.sessions() as session:
        batch = decision_store.latest_acks_counts(session, names, now)
        one = {n: decision_store.latest_ack_counts(session, n, now) for n in names}
    assert batch == one
    assert batch["counted"] == decision_store.AckCounts(5, 5, now - 40)
    assert batch["replaced"] is None and batch["never"] is None
    assert batch["pending"].applied == 2 and batch["future"].applied == 1


def test_the_batch_of_stored_forecasts_is_each_entitys_own(http, store):  # noqa: ANN001
    now = _now()
    for e, metrics in (("a-vm", ("cpu_cores", "mem_gb")), ("b-vm", ("cpu_cores",))):
        for k, m in enumerate(metrics):
            send(http, e, "vm", m, [(now - 900 + i, 3.0 + k + (i % 7) / 7) for i in range(900)])
    forecasting.refresh(store, now)
    names = ["a-vm", "b-vm", "no-such-vm"]
    with store.sessions() as session:
        batch = forecast_store.entities_forecasts(session, names)
        one = {e: forecast_store.entity_forecasts(session, e) for e in names}
    assert batch == one
    assert sorted(batch["a-vm"]) == ["cpu_cores", "mem_gb"] and batch["no-such-vm"] == {}


def test_the_job_decides_from_the_batches_and_alike_without_them(http, store, monkeypatch):  # noqa: ANN001
    now = _now()
    for e in ("a-vm", "b-vm"):
        send(http, e, "vm", "cpu_cores", [(now - 900 + i, 5.0 + (i % 11) / 11) for i in range(900)])
    for name, e, fc in (("a", "a-vm", "stored"), ("b", "b-vm", "stored"), ("c", "a-vm", "auto")):
        body = scaling_target(name=name, entity=e, policy="bayes", params={}, forecaster=fc)
        assert http.post("/v1/targets", json=body).status_code == 201
    forecasting.refresh(store, now)

    singles: list[str] = []
    real_ack, real_fc = decision_store.latest_ack_counts, forecast_store.entity_forecasts
    monkeypatch.setattr(decision_store, "latest_ack_counts",
                        lambda s, n, t: singles.append(f"ack {n}") or real_ack(s, n, t))
    monkeypatch.setattr(forecast_store, "entity_forecasts",
                        lambda s, e: singles.append(f"forecast {e}") or real_fc(s, e))
    batched = {o.target: (o.desired, o.valid, o.fallback) for o in decisions.decide_all(store, now)}
    assert singles == []  # the batches served every target
    assert all(valid and not fb for _, valid, fb in batched.values()), batched

    # the same period again, with every batch read failing: each target reads its own
    fail = lambda *a: (_ for _ in ()).throw(RuntimeError("store busy"))  # noqa: E731
    for mod, name in ((decision_store, "latest_decisions"), (decision_store, "latest_acks_counts"),
                      (forecast_store, "entities_forecasts")):
        monkeypatch.setattr(mod, name, fail)
    with store.write_sessions() as session, session.begin():  # decide the period afresh
        session.query(decision_store.DecisionRecord).delete()
    alone = {o.target: (o.desired, o.valid, o.fallback) for o in decisions.decide_all(store, now)}
    assert sorted(singles) == ["ack a", "ack b", "ack c", "forecast a-vm", "forecast b-vm"]
    assert alone == batched


def test_saving_a_periods_decisions_reads_targets_and_decisions_in_batches(store):  # noqa: ANN001
    """``save_decisions`` loads the targets and their last decisions in one query per chunk
    (not two per target), and stores what the per-target path stores: the new decision
    over the old one, an action where the setting changed, nothing for a deleted target."""
    from sqlalchemy import event, select

    from service.store.tables import DecisionRecord, Target

    now = _now()
    with store.write_sessions() as session, session.begin():
        targets = [Target(name=f"t{i}", kind="vm", policy="hpa", spec={}, params={},
                          created_at=now, updated_at=now) for i in range(30)]
        session.add_all(targets)
        session.flush()
        for t in targets[:20]:  # ten targets never decided before
            session.add(DecisionRecord(target_id=t.id, computed_at=now - 15, policy="hpa",
                                       valid=True, fallback=False, why="old", action={},
                                       details={}, memory=None, desired={"replicas": 1}))
    with store.write_sessions() as session, session.begin():
        session.delete(session.get(Target, targets[29].id))  # deleted meanwhile

    def record(i: int) -> dict:
        return {"computed_at": now, "policy": "hpa", "valid": True, "fallback": False,
                "why": f"new {i}", "action": {}, "details": {}, "memory": None,
                "desired": {"replicas": 1 + i % 2}}

    items = [(t, record(i), now, i % 2 == 1, {"replicas": 1}) for i, t in enumerate(targets)]
    selects: list[str] = []

    def count(conn, cursor, statement, *args):  # noqa: ANN001, ANN202
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        ids = decision_store.save_decisions(store, items)
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    # 2 batch reads, plus session.get of the 9 never-decided live targets' rows and of the
    # deleted target (not in the identity map): nothing per target that was decided before
    assert len(selects) == 2 + 9 + 1, [" ".join(x.split())[:60] for x in selects]
    assert [i is not None for i in ids] == [i % 2 == 1 for i in range(29)] + [False]
    with store.sessions() as session:
        rows = {r.target_id: r for r in session.scalars(select(DecisionRecord))}
    assert sorted(r.why for r in rows.values()) == sorted(f"new {i}" for i in range(29))
    assert targets[29].id not in rows


def test_the_demand_windows_read_at_once_give_each_targets_own_decision(http, store, monkeypatch):  # noqa: ANN001, E501
    """Through the daemon's cache the period's scaling targets read their demand windows
    at once (``History.prefetch``); each decision is the one its target makes alone,
    reading its own window without a cache (two targets on one series, one without data)."""
    now = int(time.time())
    for i, level in enumerate((3.0, 7.5, 12.0)):
        send(http, f"vm{i}", "vm", "cpu_cores",
             [(now - 600 + j, level + (j % 7) * 0.3) for j in range(600)])
    bodies = [scaling_target(f"t{i}", entity=f"vm{i}") for i in range(3)]
    bodies.append(scaling_target("t0-again", entity="vm0", capacity=1.5))  # the same series
    bodies.append(scaling_target("ghost", entity="vm-none"))  # no series: empty demand
    for body in bodies:
        r = http.post("/v1/targets", json=body)
        assert r.status_code == 201, r.text
    with store.sessions() as session:
        targets = target_store.list_targets(session)
    alone = {}
    for t in targets:  # nothing stored: each reads its own window, without a cache
        d = decisions._decide(store, t, now)
        alone[t.name] = (d.desired, d.valid, d.fallback, d.why)
    looked_up: list[tuple[str, str]] = []
    real = sample_store.series_id
    monkeypatch.setattr(sample_store, "series_id",
                        lambda s, e, m: looked_up.append((e, m)) or real(s, e, m))
    out = decisions.decide_all(store, now, buckets=forecasting.BucketCache())
    assert looked_up == [("vm-none", "cpu_cores")]  # the batch served every series it has
    assert {o.target: (o.desired, o.valid, o.fallback, o.why) for o in out} == alone
    assert alone["t2"][0]["replicas"] > alone["t1"][0]["replicas"] > alone["t0"][0]["replicas"]
    assert alone["t0-again"][0]["replicas"] > alone["t0"][0]["replicas"]  # smaller capacity
