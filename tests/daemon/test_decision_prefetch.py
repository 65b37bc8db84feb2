"""The period's decisions read their scaling targets' demand at once (``History.prefetch``
through the daemon's :class:`service.forecasting.BucketCache`); each decision must be the
one its target makes alone, reading its own window (real API, SQLite and PostgreSQL)."""

from __future__ import annotations

import time

from service import decisions, forecasting
from service.store import targets as target_store
from tests.daemon.conftest import scaling_target, send


def test_the_periods_decisions_through_the_cache_equal_each_target_alone(http, store):
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
    out = decisions.decide_all(store, now, buckets=forecasting.BucketCache())
    assert {o.target: (o.desired, o.valid, o.fallback, o.why) for o in out} == alone
    assert alone["t2"][0]["replicas"] > alone["t1"][0]["replicas"] > alone["t0"][0]["replicas"]
    assert alone["t0-again"][0]["replicas"] > alone["t0"][0]["replicas"]  # smaller capacity
