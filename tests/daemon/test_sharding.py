"""Sharded forecast job: the shard function, the plan, leased claims on a fake clock, the job.

The claims run on SQLite and on the real PostgreSQL, each holder with its own engine, as
separate daemons would. Time is a fake clock: ``now`` is passed in, nothing sleeps.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from service import sharding
from service.scheduler import DaemonContext, run_once
from service.store import leases as lease_store
from service.store.db import Store
from service.store.tables import ForecastRecord, JobLease
from tests.daemon.conftest import scaling_target, send

ROOT = Path(__file__).resolve().parents[2]
NAMES = [f"vm-{i:04d}" for i in range(1000)]
_PRINT = ("import json, sys; from service.sharding import shard_of; "
          "names = json.loads(sys.stdin.read()); "
          "print(json.dumps([[shard_of(n, 16) for n in names], [hash(n) % 16 for n in names]]))")


def _in_fresh_process(seed: str) -> tuple[list[int], list[int]]:
    env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", _PRINT], input=json.dumps(NAMES), env=env,
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout
    ours, salted = json.loads(out)
    return ours, salted


def test_shard_of_is_the_same_in_every_process_unlike_pythons_hash():
    a_ours, a_salted = _in_fresh_process("1")
    b_ours, b_salted = _in_fresh_process("2")
    assert a_ours == b_ours == [sharding.shard_of(n, 16) for n in NAMES]
    assert a_salted != b_salted  # what the test would catch: hash() differs per process
    counts = [a_ours.count(i) for i in range(16)]
    assert min(counts) >= 30 and max(counts) <= 100, counts  # ~62 each: no shard starved


def test_shard_of_refuses_no_shards():
    with pytest.raises(ValueError, match="at least 1"):
        sharding.shard_of("x", 0)


def test_a_target_is_in_the_shard_of_its_demand_entity_a_power_row_by_its_name():
    claim = sharding.Claim("d", 0, 15.0, 16, frozenset({sharding.shard_of("web-vm", 16)}),
                           ("d",), 16)
    vm = types.SimpleNamespace(name="zz-other-name", spec={"entity": "web-vm"})
    assert claim.has_entity("web-vm") and claim.has_target(vm)
    power = types.SimpleNamespace(name="row-1", spec={"servers": ["s1", "s2"]})
    assert sharding.target_key(power) == "row-1"
    assert claim.has_target(power) == (sharding.shard_of("row-1", 16) in claim.shards)


@pytest.mark.parametrize(("shards", "k"), [(1, 1), (1, 3), (7, 2), (16, 3), (16, 5), (64, 4)])
def test_the_plan_gives_every_shard_to_one_holder_at_most_ceil_s_over_k_each(shards, k):
    holders = [f"host:{i}:x" for i in range(k)]
    plan = sharding.assign(holders, shards)
    got = sorted(i for v in plan.values() for i in v)
    assert got == list(range(shards))  # each shard once
    assert max(len(v) for v in plan.values()) <= math.ceil(shards / k)
    assert sharding.assign(list(reversed(holders)), shards) == plan  # same in every daemon


def test_when_a_holder_leaves_the_plan_moves_its_shards_and_few_others():
    holders = ["a:1:x", "b:2:y", "c:3:z"]
    full, less = sharding.assign(holders, 16), sharding.assign(holders[:2], 16)
    kept = sum(len(set(full[h]) & set(less[h])) for h in holders[:2])
    assert kept * 2 >= len(full[holders[0]]) + len(full[holders[1]])
    assert sorted(less[holders[0]] + less[holders[1]]) == list(range(16))


# --------------------------------------------------------------------------- leased claims


@pytest.fixture
def daemons(store):
    """Three holders, each with its own engine on the test's database."""
    stores = [store, Store(store.settings), Store(store.settings)]
    yield [(s, f"daemon-{c}") for s, c in zip(stores, "abc", strict=True)]
    for s in stores[1:]:
        s.close()


def _holders_of(store: Store) -> dict[int, str]:
    with store.sessions() as session:
        rows = session.query(JobLease).filter(JobLease.name.like("forecast:shard:%")).all()
    return {int(r.name.rsplit(":", 1)[1]): r.holder for r in rows}


def test_three_holders_claim_disjoint_covers_and_a_silent_one_is_replaced_within_two_periods(
        daemons):
    store = daemons[0][0]
    period, total = store.settings.forecast_interval_s, store.settings.shards
    p0 = 100_000  # the fake clock: period p starts at p * period
    started = {h: p0 * period for _, h in daemons}
    claims: dict[int, dict[str, frozenset[int]]] = {}
    views: dict[str, sharding.Claim] = {}

    def run(p: int, who: list[tuple[Store, str]]) -> dict[str, frozenset[int]]:
        got = {}
        for j, (s, h) in enumerate(who):
            views[h] = sharding.claim(s, h, p * period + 0.1 * (j + 1), started[h])
            got[h] = views[h].shards
        claims.setdefault(p, {}).update(got)
        return got

    # period 0: the first daemon is alone when it claims, so it takes every shard; the two
    # that start later in that period find them all leased to the end of the period
    first = run(p0, daemons)
    assert first == {"daemon-a": frozenset(range(total)), "daemon-b": frozenset(),
                     "daemon-c": frozenset()}
    # next periods: all three alive, disjoint covers of at most ceil(16 / 3) = 6 each
    for p in (p0 + 1, p0 + 2):
        got = run(p, daemons)
        assert sorted(i for v in got.values() for i in v) == list(range(total))
        assert all(0 < len(v) <= math.ceil(total / 3) for v in got.values())
        assert _holders_of(store) == {i: h for h, v in got.items() for i in v}
    assert claims[p0 + 1] == claims[p0 + 2]  # same alive set, same shards

    # daemon-c stops (no heartbeat, no claim) after period p0 + 2
    c_shards = claims[p0 + 2]["daemon-c"]
    got = run(p0 + 3, daemons[:2])  # its heartbeat is younger than a period: still counted
    assert not (got["daemon-a"] | got["daemon-b"]) & c_shards
    # ...but what the others leave unclaimed, a sweep late in the period takes, within quota
    for s, h in daemons[:2]:
        assert views[h].quota == math.ceil(total / 3)
        extra = sharding.sweep(s, views[h], (p0 + 3) * period + 0.5)
        assert len(got[h]) + len(extra.shards) <= views[h].quota
        assert not extra.shards & (got["daemon-a"] | got["daemon-b"])
        got[h] = got[h] | extra.shards
    assert not got["daemon-a"] & got["daemon-b"]
    # a later claim in the same period (daemon-c now counted out, quota 8) takes only
    # shards nobody has, and counts those it has against its quota
    for s, h in daemons[:2]:
        again = sharding.claim(s, h, (p0 + 3) * period + 0.9, started[h])
        assert again.quota == math.ceil(total / 2)
        assert not again.shards & (got["daemon-a"] | got["daemon-b"])
        got[h] = got[h] | again.shards
        assert len(got[h]) == again.held <= again.quota
    assert not got["daemon-a"] & got["daemon-b"]
    # the sweep never runs past its period
    assert not sharding.sweep(daemons[0][0], views["daemon-a"], (p0 + 4) * period).shards
    # the second period after its last run: every shard is with the two left, 8 each at most
    for p in (p0 + 4, p0 + 5):
        got = run(p, daemons[:2])
        assert sorted(i for v in got.values() for i in v) == list(range(total))
        assert all(len(v) <= math.ceil(total / 2) for v in got.values())
        assert _holders_of(store) == {i: h for h, v in got.items() for i in v}


def test_a_lease_holds_to_the_end_of_its_period_and_not_a_moment_longer(daemons):
    (sa, a), (sb, b) = daemons[:2]
    period = sa.settings.forecast_interval_s
    p = 200_000
    names = [sharding.lease_name(i) for i in range(4)]
    assert lease_store.claim_leases(sa, names, a, p * period, (p + 1) * period) == sorted(names)
    assert lease_store.claim_leases(sb, names, b, (p + 1) * period - 0.001,
                                    (p + 1) * period) == []
    assert lease_store.claim_leases(sb, names, b, (p + 1) * period,
                                    (p + 2) * period) == sorted(names)


def test_racing_claims_give_each_shard_to_exactly_one_holder(daemons):
    names = [sharding.lease_name(i) for i in range(16)]
    period = daemons[0][0].settings.forecast_interval_s
    for p in range(300_000, 300_004):
        barrier = threading.Barrier(len(daemons))
        got: dict[str, list[str]] = {}

        def race(s: Store, h: str, p: int = p, barrier: threading.Barrier = barrier,
                 got: dict[str, list[str]] = got) -> None:
            mine = names[:]  # every holder wants every shard: the worst case
            barrier.wait()
            got[h] = lease_store.claim_leases(s, mine, h, p * period + 0.1, (p + 1) * period)

        threads = [threading.Thread(target=race, args=d) for d in daemons]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(n for v in got.values() for n in v) == sorted(names)


def test_a_daemon_with_another_shard_count_claims_nothing_while_an_older_one_runs(daemons):
    (sa, a) = daemons[0]
    period = sa.settings.forecast_interval_s
    p = 400_000
    odd = Store(sa.settings.model_copy(update={"shards": 8}))
    try:
        assert sharding.claim(sa, a, p * period, started_at=p * period - 60).shards
        late = sharding.claim(odd, "daemon-odd", p * period + 0.2, started_at=p * period)
        assert late.shards == frozenset() and late.quota == 0
    finally:
        odd.close()


def test_a_daemon_that_leaves_is_counted_out_at_once_and_old_heartbeats_are_pruned(daemons):
    (sa, a), (sb, b), (sc, c) = daemons
    period, total = sa.settings.forecast_interval_s, sa.settings.shards
    p = 500_000
    for s, h in daemons:
        sharding.heartbeat(s, h, p * period, 0.0)
    assert sharding.claim(sa, a, p * period + 0.1, 0.0).alive == (a, b, c)
    sharding.leave(sc, c)  # a clean stop
    sharding.heartbeat(sb, b, (p + 1) * period, 0.0)  # b goes on
    nxt = sharding.claim(sa, a, (p + 1) * period + 0.1, 0.0)
    assert nxt.alive == (a, b) and nxt.quota == math.ceil(total / 2)
    # a heartbeat unseen for long is deleted by the next claim
    later = (p + 1) * period + sharding.PRUNE_AFTER_S + 10 * period + 1
    sharding.claim(sa, a, later, 0.0)
    assert [h for h, _, _ in lease_store.seen_since(sa, 0.0)] == [a]


# --------------------------------------------------------------------------- the job


def test_two_daemons_forecast_and_decide_disjoint_halves_and_a_third_is_skipped(http, store):
    period = int(store.settings.forecast_interval_s)
    now = int(time.time()) - 10 * period  # a fake clock, a little in the past
    now -= now % period - 1  # one second into a period
    entities = [f"vm-{i}" for i in range(8)]
    for e in entities:
        send(http, e, "vm", "cpu_cores", [(now - 600 + i, 3.0) for i in range(600)])
        assert http.post("/v1/targets", json=scaling_target(f"t-{e}", entity=e)).status_code == 201
    other = Store(store.settings)
    third = Store(store.settings)
    try:
        a, b, c = DaemonContext(store), DaemonContext(other), DaemonContext(third)
        sharding.heartbeat(other, b.holder, now - 1, b.started_at)  # b is known alive
        assert run_once(a, "forecast", now) == "ok"
        done_a = _done(store, now)
        plan = sharding.assign(sorted([a.holder, b.holder]), store.settings.shards)
        want_a = {e for e in entities
                  if sharding.shard_of(e, store.settings.shards) in plan[a.holder]}
        assert done_a == (want_a, {f"t-{e}" for e in want_a})
        assert run_once(b, "forecast", now + 0.5) == "ok"
        done = _done(store, now)
        assert done == (set(entities), {f"t-{e}" for e in entities})
        assert run_once(c, "forecast", now + 1) == "skipped"  # every shard taken
        assert _done(store, now) == done
        # next period: the third is counted, and the three split the work again
        nxt = now + period
        outcomes = [run_once(x, "forecast", nxt + 0.1 * j) for j, x in enumerate((a, b, c))]
        assert outcomes == ["ok", "ok", "ok"]  # 16 shards, quota 6: each gets 4 at least
        assert _done(store, nxt) == (set(entities), {f"t-{e}" for e in entities})
    finally:
        other.close()
        third.close()


def _done(store: Store, now: float) -> tuple[set[str], set[str]]:
    """Entities forecast and targets decided at ``now`` (their stored computed_at)."""
    from service.store.tables import DecisionRecord, Entity, Series, Target

    with store.sessions() as session:
        ents = {e for (e,) in session.query(Entity.name).join(Series).join(
            ForecastRecord, ForecastRecord.series_id == Series.id).filter(
            ForecastRecord.computed_at == int(now))}
        tgts = {t for (t,) in session.query(Target.name).join(
            DecisionRecord, DecisionRecord.target_id == Target.id).filter(
            DecisionRecord.computed_at == int(now))}
    return ents, tgts


def test_the_heartbeat_tick_waits_for_the_first_run_and_pauses_while_a_run_is_overdue(store):
    from service import scheduler

    scheduler.make_scheduler(store, jobs=("forecast",))  # registers this daemon's context
    key = scheduler.context_key(store)
    ctx = scheduler._CONTEXTS[key]
    period = store.settings.forecast_interval_s
    try:
        scheduler.heartbeat_job(key)
        assert lease_store.seen_since(store, 0.0) == []  # no forecast run has claimed yet
        ctx.last_shards = frozenset()
        ctx.busy_since = time.time() - 2 * period  # a run going on for two periods
        scheduler.heartbeat_job(key)
        assert lease_store.seen_since(store, 0.0) == []
        ctx.cold_run = True  # ... reading shards new to it: counted on all the same
        scheduler.heartbeat_job(key)
        assert [h for h, _, _ in lease_store.seen_since(store, 0.0)] == [ctx.holder]
        ctx.cold_run = False
        ctx.busy_since = None
        scheduler.heartbeat_job(key)
        assert [h for h, _, _ in lease_store.seen_since(store, 0.0)] == [ctx.holder]
    finally:
        scheduler.forget(store)
    assert lease_store.seen_since(store, 0.0) == []  # a clean stop deletes the heartbeat


def test_a_run_is_cold_when_it_does_a_shard_the_last_run_did_not(http, store, monkeypatch):
    """The first run, and a run that takes over shards, is cold (its heartbeat is kept while
    it overruns); a run of the same shards as the last is not."""
    from service import scheduler

    period = int(store.settings.forecast_interval_s)
    now = int(time.time()) - 10 * period
    now -= now % period - 1
    send(http, "vm-0", "vm", "cpu_cores", [(now - 600 + i, 3.0) for i in range(600)])
    other = Store(store.settings)
    seen: list[bool] = []
    real = scheduler.forecast_shards

    def spy(ctx, when, claim):  # noqa: ANN001, ANN202
        seen.append(ctx.cold_run)
        return real(ctx, when, claim)

    monkeypatch.setattr(scheduler, "forecast_shards", spy)
    try:
        a, b = DaemonContext(store), DaemonContext(other)
        assert run_once(a, "forecast", now) == "ok"  # alone: every shard, all new
        assert run_once(a, "forecast", now + period) == "ok"  # the same shards again
        assert seen == [True, False] and not a.cold_run  # reset once a run ends
        assert a.done_shards == frozenset(range(store.settings.shards))
        sharding.heartbeat(other, b.holder, now + 2 * period - 1, b.started_at)
        assert run_once(b, "forecast", now + 2 * period) == "ok"  # b's half: new to b
        assert seen[-1] is True
        sharding.heartbeat(store, a.holder, now + 2 * period + 0.4, a.started_at)
        run_once(a, "forecast", now + 2 * period + 0.5)
        assert len(seen) == 4 and seen[-1] is False  # a's half: a part of what it did before
    finally:
        other.close()
