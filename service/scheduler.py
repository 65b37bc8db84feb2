"""The daemon's scheduled jobs (APScheduler 3, job store in the database).

* ``rollups``: every ``rollup_interval_s``, recompute the per-minute rollups of the time
  ranges written since the last run (see :func:`service.store.rollups.run_rollups`).
* ``retention``: every ``retention_interval_s``, delete raw samples older than
  ``raw_retention_hours`` and rollups older than ``rollup_retention_days``.
* ``forecast``: every ``forecast_interval_s``, forecast every series with recent data, an
  entity's metrics jointly (:mod:`service.forecasting`), then decide for every target
  (:mod:`service.decisions`); split into ``TIDEWISE_SHARDS`` shards that the daemons on one
  database share (:mod:`service.sharding`).
* ``retrain``: every ``retrain_interval_s``, train a candidate model per indicator set
  (``TIDEWISE_RETRAIN_MODEL``) over ``TIDEWISE_TRAIN_HISTORY_S`` and register it only when it
  beats the current one on held-out recent data (:func:`service.forecasting.retrain`).
* ``choose``: every ``choose_interval_s``, backtest the forecaster candidates on each auto
  scaling target's own history and register the pick (:mod:`service.choosing`).

The jobs live in the ``apscheduler_jobs`` table (``SQLAlchemyJobStore`` on the store's own
engine), so their next run times survive a restart. Several daemons may share one database:
each run first takes the job's lease row (:func:`service.store.leases.try_lease`) for 80 % of
the period; a daemon that finds it taken skips the run, so each job runs once per period
whatever the number of daemons. Jobs never overlap themselves (``max_instances=1``), missed
runs are coalesced into one, and a failing run is logged and retried at the next period; it
never stops the daemon.

The ``forecast`` job is the exception (:data:`SHARDED`): every daemon runs it at the start of
every epoch-aligned period and does the shards it leases for that period
(:func:`service.sharding.claim`), so K daemons do K times the work. It therefore lives in each
daemon's own memory job store (in the shared store it would fire in whichever daemon woke
first), beside a ``heartbeat`` tick every quarter period that tells the others this daemon is
alive. A run that gets no shard is ``skipped``.

The jobs in the store reference :func:`run_job` and a context key (a stable name of the
database), since a job store can only hold importable functions and plain arguments; the
process's open store and telemetry are found through :data:`_CONTEXTS`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from service.store import leases as lease_store
from service.store import rollups as rollup_store
from service.store.db import Store

log = logging.getLogger("tidewise.scheduler")

#: Share of a job's period its lease lasts: long enough to keep other daemons out of this
#: period, short enough that the next period's run (by anyone) can take it.
LEASE_SHARE = 0.8
#: Jobs every daemon runs each period on the shards it leases (not under a whole-job lease).
SHARDED = frozenset({"forecast"})


@dataclasses.dataclass
class DaemonContext:
    """What a job run needs: the open store, telemetry, model cache and who we are."""

    store: Store
    telemetry: Any = None
    holder: str = dataclasses.field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    )
    cache: Any = None
    health: JobHealth | None = None
    #: When this daemon started (unix s): the oldest daemon's shard count rules.
    started_at: float = dataclasses.field(default_factory=time.time)
    #: When the forecast run in progress started (unix s), None between runs.
    busy_since: float | None = None
    #: The shards of the last forecast run (logged when they change).
    last_shards: frozenset[int] | None = None
    #: Every shard the last finished forecast run did (its claim and what its sweep took).
    done_shards: frozenset[int] = frozenset()
    #: The forecast run in progress does a shard the last one did not (the daemon's first
    #: run, or a takeover): it reads those shards' whole windows, so it is slow by nature.
    cold_run: bool = False
    #: Bucketed history kept between forecast runs (``TIDEWISE_FORECAST_INCREMENTAL``).
    buckets: Any = None

    def __post_init__(self) -> None:
        from service.forecasting import BucketCache, ModelCache

        if self.cache is None:
            self.cache = ModelCache()
        if self.buckets is None and self.store.settings.forecast_incremental:
            self.buckets = BucketCache()


class JobHealth:
    """When each job last ran and last succeeded in this daemon, for ``/readyz`` (thread-safe).

    A ``skipped`` run counts as a success: another daemon holds the period's lease, so the job
    does run (that daemon's own ``/readyz`` reports its outcome). Before a job's first run the
    time the scheduler started stands in for its last success, so a daemon is ready while it
    is still within the allowed number of periods of starting.
    """

    def __init__(self, periods: dict[str, float]) -> None:
        self.periods = dict(periods)
        self.started_at: float | None = None
        self._last: dict[str, tuple[float, str]] = {}
        self._last_ok: dict[str, float] = {}
        self._lock = threading.Lock()

    def start(self, now: float) -> None:
        """Note when the scheduler started."""
        self.started_at = now

    def record(self, name: str, outcome: str, now: float) -> None:
        """Note a run of job ``name``: ``ok``, ``skipped`` or ``failed``."""
        with self._lock:
            self._last[name] = (now, outcome)
            if outcome in ("ok", "skipped"):
                self._last_ok[name] = now

    def report(
        self, now: float, running: bool, allowed_periods: float
    ) -> tuple[bool, dict[str, Any]]:
        """Say whether the jobs are healthy, with per job what is known.

        Unhealthy when the scheduler is not running, or a job has not succeeded for more than
        ``allowed_periods`` of its periods (counted from the start before its first run).
        """
        problems: list[str] = [] if running else ["the scheduler is not running"]
        jobs: dict[str, Any] = {}
        with self._lock:
            for name, period in self.periods.items():
                ok_at = self._last_ok.get(name)
                since = ok_at if ok_at is not None else self.started_at
                last = self._last.get(name)
                jobs[name] = {
                    "period_s": period,
                    "last_success_unix": ok_at,
                    "last_run_unix": last[0] if last else None,
                    "last_outcome": last[1] if last else None,
                }
                if since is None:
                    continue
                quiet = now - since
                if quiet > allowed_periods * period:
                    what = "succeeded" if ok_at is not None else "run successfully since start"
                    problems.append(
                        f"job {name!r} has not {what} for {quiet:.0f} s, more than "
                        f"{allowed_periods:g} periods of {period:g} s (last outcome: "
                        f"{last[1] if last else 'none'}); see the daemon's log"
                    )
        return not problems, {"running": running, "problems": problems, "jobs": jobs}


_CONTEXTS: dict[str, DaemonContext] = {}
_CONTEXTS_LOCK = threading.Lock()


def context_key(store: Store) -> str:
    """Name the store's database (same database, same key)."""
    s = store.settings
    return f"{s.db_url}#{s.db_schema or ''}"


# --------------------------------------------------------------------------- job bodies


def rollup_job(ctx: DaemonContext, now: float) -> None:
    """Roll up the dirty ranges."""
    n = rollup_store.run_rollups(ctx.store, now=int(now))
    if n:
        log.debug("rolled up %d series", n)


def retention_job(ctx: DaemonContext, now: float) -> None:
    """Delete what is past retention."""
    res = rollup_store.apply_retention(ctx.store, now=int(now))
    if res.samples or res.rollups:
        log.info("retention deleted %d samples and %d rollups", res.samples, res.rollups)


def forecast_shards(ctx: DaemonContext, now: float, claim: Any) -> None:  # noqa: ANN401
    """Refresh the forecasts of the series in ``claim``'s shards, then decide its targets."""
    from service import decisions, forecasting

    entity = None if claim.everything else claim.has_entity
    target = None if claim.everything else claim.has_target
    t0, c0 = time.perf_counter(), time.thread_time()
    res = forecasting.refresh(ctx.store, int(now), ctx.cache, ctx.telemetry, only=entity,
                              buckets=ctx.buckets)
    if ctx.telemetry is not None:
        ctx.telemetry.forecast_error(len(res.errors))
    t1, c1 = time.perf_counter(), time.thread_time()
    outcomes = decisions.decide_all(ctx.store, int(now), ctx.telemetry, only=target,
                                    buckets=ctx.buckets)
    # one line per run, read by bench/daemon.py (wall and this thread's CPU seconds per phase;
    # the CPU figure leaves out what other processes, e.g. PostgreSQL, spend on the job) and
    # by the sharding tests (who did what)
    log.debug(
        "forecast refresh: %d series, %d forecasts, %d fallbacks, %d errors in %.3f s "
        "(cpu %.3f s); %d decisions in %.3f s (cpu %.3f s); "
        "period %d shards %s of %d (%d alive, quota %d); decided %s",
        res.series, res.forecasts, res.fallbacks, len(res.errors), t1 - t0, c1 - c0,
        len(outcomes), time.perf_counter() - t1, time.thread_time() - c1,
        claim.period, sorted(claim.shards),
        claim.total, len(claim.alive), claim.quota, ",".join(o.target for o in outcomes),
    )


def forecast_job(ctx: DaemonContext, now: float) -> int:
    """Refresh the forecasts and decide, for the shards this daemon leases this period.

    Returns:
        the number of shards done (0: another daemon holds them all).

    """
    from service import sharding

    t0 = time.perf_counter()
    ctx.busy_since = time.time()
    try:
        claim = sharding.claim(ctx.store, ctx.holder, now, ctx.started_at)
        ctx.cold_run = bool(claim.shards - ctx.done_shards)
        if claim.shards != ctx.last_shards:
            log.info("forecast shards now %s of %d (%d daemons alive, at most %d each)",
                     sorted(claim.shards), claim.total, len(claim.alive), claim.quota)
            ctx.last_shards = claim.shards
        if claim.shards:
            forecast_shards(ctx, now, claim)
        # the clock of the sweep: ``now`` moved on by the run's own time (fake clocks too)
        extra = sharding.sweep(ctx.store, claim, now + time.perf_counter() - t0)
        if extra.shards:
            log.info("forecast period %d: took over shards %s nobody claimed",
                     extra.period, sorted(extra.shards))
            ctx.cold_run = ctx.cold_run or bool(extra.shards - ctx.done_shards)
            forecast_shards(ctx, now, extra)
        ctx.done_shards = frozenset(claim.shards | extra.shards)
        return len(claim.shards) + len(extra.shards)
    finally:
        ctx.busy_since = None
        ctx.cold_run = False


def heartbeat_job(key: str) -> None:
    """Tell the other daemons this one is alive (unless its forecast run is overdue)."""
    from service import sharding

    with _CONTEXTS_LOCK:
        ctx = _CONTEXTS.get(key)
    if ctx is None or ctx.last_shards is None:
        return  # not counted on before its first forecast run claims (and heartbeats)
    now = time.time()
    busy = ctx.busy_since
    if (busy is not None and now - busy > ctx.store.settings.forecast_interval_s
            and not ctx.cold_run):
        return  # too slow to take its next period: let the others count it out
    # A cold run (shards new to this daemon: its first run, or a takeover) reads those
    # shards' whole windows and may take several periods; it keeps its heartbeat. Counted
    # out, its shards would move to the others, cold for them too, and back when it is
    # done: K daemons started on a large store each took every shard, period after period
    # (bench/daemon.py --daemons 2, 22,400 series, docs/scale.md). A run that hangs is
    # what /readyz reports (the job has not succeeded for several periods).
    try:
        sharding.heartbeat(ctx.store, ctx.holder, now, ctx.started_at)
    except Exception as exc:  # noqa: BLE001 - the next tick retries
        log.warning("heartbeat not written: %s: %s", type(exc).__name__, exc)


def exit_with_parent(parent: int, interval_s: float = 1.0) -> threading.Thread:
    """End this (child) process as soon as ``parent`` is no longer its parent.

    A daemon stopped, or killed, while its retrain child trains must not leave the child
    training on as an orphan (seen: two of them still alive an hour after their daemons).
    A background thread checks the parent every ``interval_s`` and exits the process at once.
    """
    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(1)

    t = threading.Thread(target=watch, name="exit-with-parent", daemon=True)
    t.start()
    return t


def _job_in_child(job: str, settings: Any, now: int, parent: int) -> list[dict[str, Any]]:  # noqa: ANN401
    """Run the ``retrain`` or ``choose`` job's work in a child process on its own store.

    The child lowers its CPU priority first, so training yields the CPU to the API and the
    forecast job, and ends with its daemon (:func:`exit_with_parent`).
    """
    from service import choosing, forecasting
    from service.store.db import Store

    exit_with_parent(parent)
    try:
        os.nice(10)
    except OSError:
        pass
    work = {"retrain": forecasting.retrain, "choose": choosing.choose_all}[job]
    store = Store(settings)
    try:
        return work(store, now)
    finally:
        store.close()


def _in_child(ctx: DaemonContext, job: str, now: float) -> Any:  # noqa: ANN401
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_job_in_child, job, ctx.store.settings, int(now),
                           os.getpid()).result()


def choose_job(ctx: DaemonContext, now: float) -> None:
    """Re-pick each auto scaling target's forecaster by a backtest on its own history."""
    from service import choosing

    if ctx.store.settings.retrain_isolation == "process":
        reports = _in_child(ctx, "choose", now)
    else:
        reports = choosing.choose_all(ctx.store, int(now))
    for report in reports:
        log.info("forecaster of %s: %s %s", report["target"], report["outcome"],
                 report.get("chosen", report.get("reason", "")))


def retrain_job(ctx: DaemonContext, now: float) -> None:
    """Train candidates and register those that beat the current models.

    With ``TIDEWISE_RETRAIN_ISOLATION=process`` (the default) training runs in a child
    process (spawned, so it shares nothing but the store), at a lower CPU priority: a
    harmony fit holds Python's interpreter lock for most of its minutes, and in the daemon's
    own process it would stall the API (measured with ``bench/api.py --retrain harmony``).
    The registered model reaches the forecast job through the store, as before.
    """
    from service import forecasting

    if ctx.store.settings.retrain_isolation == "process":
        reports = _in_child(ctx, "retrain", now)
    else:
        reports = forecasting.retrain(ctx.store, int(now))
    for report in reports:
        log.info("retrain %s: %s", report["metric"], report["outcome"])


JOBS: dict[str, Callable[[DaemonContext, float], Any]] = {
    "rollups": rollup_job,
    "retention": retention_job,
    "forecast": forecast_job,
    "retrain": retrain_job,
    "choose": choose_job,
}


def periods(store: Store) -> dict[str, float]:
    """Period of each job (seconds) from the settings."""
    s = store.settings
    return {
        "rollups": s.rollup_interval_s,
        "retention": s.retention_interval_s,
        "forecast": s.forecast_interval_s,
        "retrain": s.retrain_interval_s,
        "choose": s.choose_interval_s,
    }


def run_once(ctx: DaemonContext, name: str, now: float | None = None) -> str:
    """Run job ``name`` if this daemon gets its lease for the period.

    A job of :data:`SHARDED` takes no whole-job lease: it runs, on the shards it leases.

    Returns:
        ``ok``, ``failed`` or ``skipped`` (another daemon holds the lease, or every shard).
        Exceptions are logged, never raised.

    """
    now = time.time() if now is None else now
    period = periods(ctx.store)[name]
    try:
        if name not in SHARDED and not lease_store.try_lease(
                ctx.store, name, ctx.holder, now, LEASE_SHARE * period):
            outcome, took = "skipped", None
        else:
            t0 = time.perf_counter()
            try:
                done = JOBS[name](ctx, now)
                outcome = "skipped" if name in SHARDED and done == 0 else "ok"
            finally:
                took = time.perf_counter() - t0
            if outcome == "skipped":  # no shard: timed like a run skipped for its lease
                took = None
    except Exception:  # noqa: BLE001 - a scheduled job must survive a bad run
        log.exception("%s job failed; retrying at the next period", name)
        outcome, took = "failed", None
    if ctx.telemetry is not None:
        ctx.telemetry.job(name, outcome, took)
    if ctx.health is not None:
        ctx.health.record(name, outcome, time.time())
    return outcome


def run_job(key: str, name: str) -> None:
    """Entry point stored in the job store: run ``name`` in the context registered as ``key``."""
    with _CONTEXTS_LOCK:
        ctx = _CONTEXTS.get(key)
    if ctx is None:  # the scheduler of a closed app fired late
        return
    run_once(ctx, name)


def make_scheduler(
    store: Store,
    telemetry: Any = None,  # noqa: ANN401
    jobs: tuple[str, ...] | None = None,
    health: JobHealth | None = None,
) -> BackgroundScheduler:
    """Build a scheduler holding the jobs (not started); ``jobs`` limits which.

    ``health`` (optional) records every run for ``/readyz``.

    The jobs are (re)written into the database's job store with ``replace_existing``, so a
    changed period in the settings takes effect at the next start. The sharded ``forecast``
    job and the ``heartbeat`` tick go to this daemon's own memory store instead, firing at
    epoch-aligned period starts (the same instants in every daemon).
    """
    key = context_key(store)
    with _CONTEXTS_LOCK:
        _CONTEXTS[key] = DaemonContext(store, telemetry, health=health)
    shared = SQLAlchemyJobStore(engine=store.engine)
    for name in SHARDED:  # left in the shared store by a version before the shards
        try:
            shared.remove_job(name)
        except JobLookupError:
            pass
        except Exception as exc:  # noqa: BLE001 - e.g. no job table yet: nothing to remove
            log.debug("no %s job to remove from the shared store: %s", name, exc)
    sched = BackgroundScheduler(
        timezone="UTC",
        jobstores={"default": shared, "local": MemoryJobStore()},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    for name, period in periods(store).items():
        if jobs is not None and name not in jobs:
            continue
        if name in SHARDED:
            sched.add_job("service.scheduler:run_job", aligned(period), args=[key, name],
                          id=name, name=name, jobstore="local", replace_existing=True)
            from service.sharding import HEARTBEAT_PERIODS

            executors = logging.getLogger("apscheduler.executors.default")
            if _QUIET not in executors.filters:
                executors.addFilter(_QUIET)
            sched.add_job("service.scheduler:heartbeat_job",
                          IntervalTrigger(seconds=HEARTBEAT_PERIODS * period, timezone="UTC"),
                          args=[key], id="heartbeat", name="heartbeat", jobstore="local",
                          replace_existing=True)
            continue
        sched.add_job(
            "service.scheduler:run_job",
            "interval",
            args=[key, name],
            seconds=period,
            id=name,
            name=name,
            replace_existing=True,
        )
    return sched


class _QuietTicks(logging.Filter):
    """Drop APScheduler's per-run INFO lines of the heartbeat tick (four per period)."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = record.args[0] if isinstance(record.args, tuple) and record.args else None
        return getattr(job, "id", None) != "heartbeat"


_QUIET = _QuietTicks()


def aligned(period_s: float) -> IntervalTrigger:
    """Every ``period_s`` seconds at the multiples of ``period_s`` since the epoch."""
    start = math.floor(time.time() / period_s) * period_s
    return IntervalTrigger(seconds=period_s, timezone="UTC",
                           start_date=dt.datetime.fromtimestamp(start, dt.UTC))


def forget(store: Store) -> None:
    """Drop the process's context of ``store`` (when its app shuts down).

    The daemon's heartbeat goes with it, so the others take its shards at the next period.
    """
    with _CONTEXTS_LOCK:
        ctx = _CONTEXTS.pop(context_key(store), None)
    if ctx is None:
        return
    from service import sharding

    try:
        sharding.leave(store, ctx.holder)
    except Exception as exc:  # noqa: BLE001 - the heartbeat then simply ages out
        log.warning("heartbeat not deleted: %s: %s", type(exc).__name__, exc)
