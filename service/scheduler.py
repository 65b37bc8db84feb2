"""The daemon's scheduled jobs (APScheduler, in the same process as the API).

* ``rollups``: every ``rollup_interval_s``, recompute the per-minute rollups of the time
  ranges written since the last run (see :func:`service.repository.run_rollups`).
* ``retention``: every ``retention_interval_s``, delete raw samples older than
  ``raw_retention_hours`` and rollups older than ``rollup_retention_days``.

Jobs never overlap themselves (``max_instances=1``) and missed runs are coalesced into one.
A failing run is logged and retried at the next period; it never stops the daemon.
"""

from __future__ import annotations

import logging
import time

from apscheduler.schedulers.background import BackgroundScheduler

from service import repository
from service.db import Store

log = logging.getLogger("tidewise.scheduler")


def rollup_job(store: Store) -> None:
    """One run of the rollup job (exceptions are logged, not raised)."""
    try:
        n = repository.run_rollups(store, now=int(time.time()))
        if n:
            log.debug("rolled up %d series", n)
    except Exception:  # noqa: BLE001 - a scheduled job must survive a bad run
        log.exception("rollup job failed; retrying at the next period")


def retention_job(store: Store) -> None:
    """One run of the retention job (exceptions are logged, not raised)."""
    try:
        res = repository.apply_retention(store, now=int(time.time()))
        if res.samples or res.rollups:
            log.info("retention deleted %d samples and %d rollups", res.samples, res.rollups)
    except Exception:  # noqa: BLE001
        log.exception("retention job failed; retrying at the next period")


def make_scheduler(store: Store) -> BackgroundScheduler:
    """Build a scheduler holding the two jobs (not started)."""
    s = store.settings
    sched = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True})
    sched.add_job(
        rollup_job,
        "interval",
        args=[store],
        seconds=s.rollup_interval_s,
        id="rollups",
        max_instances=1,
    )
    sched.add_job(
        retention_job,
        "interval",
        args=[store],
        seconds=s.retention_interval_s,
        id="retention",
        max_instances=1,
    )
    return sched
