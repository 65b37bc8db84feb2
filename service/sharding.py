"""Shards of the forecast job, leased per period, so K daemons on one database do K times the work.

The ``forecast`` job (refresh every series, then decide every target) is split into
``S = TIDEWISE_SHARDS`` shards. An entity's series belong to shard
:func:`shard_of` ``(entity)`` (blake2b of the name modulo ``S``: the same in every process,
unlike Python's salted ``hash``), so an entity's metrics forecast jointly stay together; a
target belongs to the shard of its demand entity (:func:`target_key`: ``spec.entity``; a power
row, which has no single entity, by its own name), so its decision reads the forecast its
own daemon made a moment before in the same run.

Periods are epoch-aligned: period ``p`` is ``[p*T, (p+1)*T)`` with ``T =
TIDEWISE_FORECAST_INTERVAL_S``, and every daemon fires the job at the start of each period
(the job lives in each daemon's own scheduler, not the shared job store, see
:mod:`service.scheduler`). Each run, at time ``now`` in period ``p``, of holder ``D``:

1. **heartbeat**: ``D`` upserts its row in ``daemon_heartbeats`` (also every ``T/4`` from a
   scheduler tick once its first run has claimed, unless its own forecast run has been going
   for more than ``T``: a daemon too slow to take its next period should not be counted on
   for it; a *cold* run, one doing a shard its last run did not, keeps the tick, see
   :func:`service.scheduler.heartbeat_job`).
2. **alive set**: the holders seen in the last ``T`` seconds (``D`` included) that run the
   same shard count as the oldest of them (a daemon started with another ``TIDEWISE_SHARDS``
   claims nothing and says so, rather than hashing the work differently). ``K`` is their
   number and ``quota = ceil(S / K)``.
3. **plan**: :func:`assign` maps every shard to one alive holder, each getting at most
   ``quota`` (highest ``blake2b(shard, holder)`` first, so the same alive set gives the same
   plan in every daemon, and a change of the set moves few shards).
4. **claim**: ``D`` takes the lease rows ``forecast:shard:<i>`` (table ``job_leases``) of
   its planned shards with the conditional ``UPDATE ... SET holder = D, expires_at =
   (p+1)*T WHERE name = :i AND expires_at <= now``, then forecasts and decides exactly the
   shards it got, in one pass.
5. **sweep**: if it got fewer than ``quota`` (another daemon's view of the alive set
   differs, or a planned holder died), still within period ``p`` after its own work, it
   claims shards nobody took this period, up to ``quota`` in all, and does them too.

**No series or target is handled twice in a period.** A shard is processed for period ``p``
only by the daemon whose claim of its lease at some ``now`` in ``p`` succeeded. A
successful claim sets ``expires_at = (p+1)*T``, which is greater than every ``now'`` in
``p``, so every later claim of that lease in ``p`` fails its ``expires_at <= now'``
condition; and a claim that succeeded earlier in ``p`` would have made this one fail. The
conditional UPDATE is atomic (a row lock on PostgreSQL, re-checked after a concurrent
writer commits; the database write lock on SQLite), so of two racing claims exactly one
matches. Hence at most one claim per (shard, period) succeeds. A daemon runs the job once
per period (APScheduler's ``max_instances=1``) and its sweep only takes shards it did not
get, so the winner processes the shard once. Every series and target belongs to exactly
one shard (a pure function of its name and ``S``, and the oldest daemon's ``S`` rules), so
each is handled at most once per period. The argument needs the daemons' clocks to agree
(NTP) to well within a period; a claim is stamped with the claimer's own clock. A lease
never outlives its period, so a daemon whose run overruns its period can meet another
daemon doing the *next* period of the same shard; each is then the only run of its period.

**A dead daemon's shards move within two periods.** A daemon that dies in period ``p``
heartbeat last before ``(p+1)*T``; at any run in period ``p+2`` (``now >= (p+2)*T``) its
heartbeat is more than ``T`` old, so no daemon counts it alive, every plan leaves it out,
and its shards are claimed by the others (in ``p+1`` already by the sweep where the others'
quotas leave room). The shards it held in ``p`` itself are not redone in ``p``: their
leases hold to the end of the period. A daemon stopped cleanly deletes its heartbeat
(:func:`leave`), so its shards move at the next period.

One daemon (SQLite or PostgreSQL) sees ``K = 1`` and takes every shard each period.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Sequence
from typing import Any

from service.store import leases as lease_store
from service.store.db import Store

log = logging.getLogger("tidewise.sharding")

#: Name of shard ``i``'s lease row in ``job_leases``.
LEASE_PREFIX = "forecast:shard:"
#: How long (in forecast periods) a heartbeat counts: a daemon unseen for longer is dead.
ALIVE_PERIODS = 1.0
#: How often (in forecast periods) a daemon rewrites its heartbeat between runs.
HEARTBEAT_PERIODS = 0.25
#: Heartbeats unseen for this long (s), at least, are deleted.
PRUNE_AFTER_S = 3600.0


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def shard_of(key: str, shards: int) -> int:
    """Return the shard of ``key`` among ``shards`` (stable across processes and versions)."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    return _digest(key) % shards


def target_key(target: Any) -> str:  # noqa: ANN401 - a Target row or any object with spec/name
    """Return the name a target is sharded by: its demand entity, else (power) its own name."""
    spec = getattr(target, "spec", None) or {}
    entity = spec.get("entity") if isinstance(spec, dict) else None
    return str(entity) if entity else str(target.name)


def lease_name(shard: int) -> str:
    """Name of the lease row of ``shard``."""
    return f"{LEASE_PREFIX}{shard}"


def period_of(now: float, period_s: float) -> int:
    """Index of the epoch-aligned period holding ``now``."""
    return int(math.floor(now / period_s))


def assign(holders: Sequence[str], shards: int) -> dict[str, tuple[int, ...]]:
    """Plan which alive holder does each shard: at most ``ceil(shards / K)`` each.

    Shard by shard, the holder ranking highest by ``blake2b(shard, holder)`` among those
    below the quota gets it: deterministic for a given set of holders (every daemon computes
    the same plan), balanced, and a holder joining or leaving moves few shards.
    """
    alive = sorted(set(holders))
    if not alive:
        return {}
    quota = math.ceil(shards / len(alive))
    out: dict[str, list[int]] = {h: [] for h in alive}
    for i in range(shards):
        for h in sorted(alive, key=lambda h: _digest(f"{i}\0{h}"), reverse=True):
            if len(out[h]) < quota:
                out[h].append(i)
                break
    return {h: tuple(v) for h, v in out.items()}


@dataclasses.dataclass(frozen=True)
class Claim:
    """The shards one daemon holds for one period, and the view it claimed them under."""

    holder: str
    period: int
    period_s: float
    total: int  # S
    shards: frozenset[int]  # taken by this claim: the shards to process now
    alive: tuple[str, ...]  # holders counted alive (sorted)
    quota: int  # most shards one holder takes this period
    held: int = 0  # shards this holder has this period, these and any taken before

    @property
    def until(self) -> float:
        """End of the period (unix s): when the leases expire."""
        return (self.period + 1) * self.period_s

    @property
    def everything(self) -> bool:
        """Whether this daemon holds every shard (then nothing needs filtering)."""
        return len(self.shards) == self.total

    def has_entity(self, entity: str) -> bool:
        """Whether ``entity``'s series are in this claim."""
        return shard_of(entity, self.total) in self.shards

    def has_target(self, target: Any) -> bool:  # noqa: ANN401
        """Whether ``target``'s decision is in this claim."""
        return shard_of(target_key(target), self.total) in self.shards


def heartbeat(store: Store, holder: str, now: float, started_at: float) -> None:
    """Record that ``holder`` is alive (run every ``T/4`` and at each forecast run)."""
    lease_store.beat(store, holder, now, started_at, int(store.settings.shards))


def leave(store: Store, holder: str) -> None:
    """Delete ``holder``'s heartbeat (clean stop), so the others take its shards next period.

    Its leases are left to expire at the end of the period: releasing them now would let
    another daemon redo this period's shards.
    """
    lease_store.forget_holder(store, holder)


def claim(store: Store, holder: str, now: float, started_at: float | None = None) -> Claim:
    """Heartbeat, then take this period's planned shards (steps 1-4 of the module doc)."""
    s = store.settings
    period_s, total = float(s.forecast_interval_s), int(s.shards)
    started_at = now if started_at is None else started_at
    lease_store.beat(store, holder, now, started_at, total,
                     prune_before=now - max(PRUNE_AFTER_S, 10 * period_s))
    peers = {h: (st, n) for h, st, n in
             lease_store.seen_since(store, now - ALIVE_PERIODS * period_s)}
    peers[holder] = (started_at, total)  # our own heartbeat, whatever the read saw
    oldest = min(peers, key=lambda h: (peers[h][0], h))
    ruling = peers[oldest][1]
    period = period_of(now, period_s)
    if ruling != total:
        log.warning(
            "this daemon has TIDEWISE_SHARDS=%d but the oldest daemon on this database (%s) "
            "has %d: it claims no shard until they agree (every daemon must use one value)",
            total, oldest, ruling)
        return Claim(holder, period, period_s, total, frozenset(), tuple(sorted(peers)), 0)
    alive = tuple(sorted(h for h, (_, n) in peers.items() if n == total))
    quota = math.ceil(total / len(alive))
    # shards already leased this period, by anyone (a second call in one period takes
    # only what nobody has, and counts what it already has against its quota)
    leased = lease_store.lease_holders(store, [lease_name(i) for i in range(total)], now)
    before = sum(1 for h in leased.values() if h == holder)
    todo = [lease_name(i) for i in assign(alive, total)[holder] if lease_name(i) not in leased]
    got = lease_store.claim_leases(store, todo[:max(0, quota - before)], holder, now,
                                   (period + 1) * period_s)
    shards = frozenset(int(n[len(LEASE_PREFIX):]) for n in got)
    return Claim(holder, period, period_s, total, shards, alive, quota, before + len(shards))


def sweep(store: Store, done: Claim, now: float) -> Claim:
    """Claim shards nobody took in ``done``'s period, up to its quota (step 5).

    Returns:
        a Claim of the extra shards only (empty when the period is over, the quota is
        reached or every shard is taken).

    """
    room = done.quota - done.held
    empty = dataclasses.replace(done, shards=frozenset())
    if room <= 0 or now >= done.until or period_of(now, done.period_s) != done.period:
        return empty
    others = [i for i in range(done.total) if i not in done.shards]
    held = lease_store.lease_holders(store, [lease_name(i) for i in others], now)
    free = [i for i in others if lease_name(i) not in held]
    # each sweeper prefers other shards, so two of them rarely race for the same ones
    free.sort(key=lambda i: _digest(f"{i}\0{done.holder}"), reverse=True)
    if not free:
        return empty
    got = lease_store.claim_leases(store, [lease_name(i) for i in free[:room]], done.holder,
                                   now, done.until)
    return dataclasses.replace(done, shards=frozenset(int(n[len(LEASE_PREFIX):])
                                                      for n in got))
