"""The daemon's own health in the Prometheus text format (``GET /metrics``).

One :class:`Telemetry` per app, each with its own ``CollectorRegistry`` (two apps in one
process — tests, several daemons — never share counters). Metric families:

* ``tidewise_ingest_requests_total{outcome}`` — ingest requests by ``stored`` / ``refused``;
* ``tidewise_ingest_samples_total`` — samples stored;
* ``tidewise_remote_write_skipped_samples_total{reason}`` — remote-write samples not stored
  (``kind_conflict``, ``invalid_label``, ``out_of_range``, ``stale``…, see
  :mod:`service.remote_write`);
* ``tidewise_job_runs_total{job,outcome}`` — scheduled runs: ``ok``, ``failed``, or
  ``skipped`` (another daemon held the period's lease);
* ``tidewise_job_duration_seconds{job}`` — run time of the jobs that ran (histogram);
* ``tidewise_forecasts_total{source}`` — forecasts stored, ``model`` or ``fallback``;
* ``tidewise_forecast_errors_total`` — series that could not be forecast at all;
* ``tidewise_decisions_total{policy,outcome}`` — ``valid``, ``invalid`` (setting kept);
* ``tidewise_decision_fallbacks_total{policy}`` — decisions that used a fallback rule;
* ``tidewise_actions_total`` — actions logged (desired setting changed);
* ``tidewise_last_job_success_timestamp_seconds{job}`` — for "job stuck" alerts.
"""

from __future__ import annotations

import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# ``*_created`` series double the exposition and no dashboard of ours reads them.
disable_created_metrics()

__all__ = ["CONTENT_TYPE_LATEST", "Telemetry"]


class Telemetry:
    """Counters and histograms of one daemon (thread-safe: prometheus_client locks)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ingest_requests = Counter(
            "tidewise_ingest_requests", "Ingest requests by outcome.", ["outcome"], registry=r
        )
        self.ingest_samples = Counter(
            "tidewise_ingest_samples", "Samples stored by ingest.", registry=r
        )
        self.job_runs = Counter(
            "tidewise_job_runs", "Scheduled job runs by outcome.", ["job", "outcome"], registry=r
        )
        self.job_seconds = Histogram(
            "tidewise_job_duration_seconds",
            "Run time of scheduled jobs (seconds).",
            ["job"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.job_last_ok = Gauge(
            "tidewise_last_job_success_timestamp_seconds",
            "Unix time of the last successful run of each job.",
            ["job"],
            registry=r,
        )
        self.forecasts = Counter(
            "tidewise_forecasts", "Forecasts stored by source.", ["source"], registry=r
        )
        self.forecast_errors = Counter(
            "tidewise_forecast_errors", "Series that could not be forecast.", registry=r
        )
        self.decisions = Counter(
            "tidewise_decisions", "Decisions by policy and outcome.", ["policy", "outcome"],
            registry=r,
        )
        self.fallbacks = Counter(
            "tidewise_decision_fallbacks", "Decisions that used a fallback rule.", ["policy"],
            registry=r,
        )
        self.actions = Counter("tidewise_actions", "Actions logged.", registry=r)
        self.rw_skipped = Counter(
            "tidewise_remote_write_skipped_samples",
            "Remote-write samples not stored, by reason (see POST /api/v1/write).",
            ["reason"],
            registry=r,
        )

    # -- hooks called by the API and the jobs -------------------------------------------------
    def ingested(self, samples: int) -> None:
        """Count a stored batch of ``samples``."""
        self.ingest_requests.labels("stored").inc()
        self.ingest_samples.inc(samples)

    def ingest_refused(self) -> None:
        """Count a refused ingest request (bad input, store busy…)."""
        self.ingest_requests.labels("refused").inc()

    def remote_write_skipped(self, skipped: dict[str, int]) -> None:
        """Count the samples of one remote-write request skipped, by reason."""
        for reason, n in skipped.items():
            if n:
                self.rw_skipped.labels(reason).inc(n)

    def job(self, name: str, outcome: str, seconds: float | None = None) -> None:
        """Count a scheduled run: ``ok``, ``failed`` or ``skipped``."""
        self.job_runs.labels(name, outcome).inc()
        if seconds is not None:
            self.job_seconds.labels(name).observe(seconds)
        if outcome == "ok":
            self.job_last_ok.labels(name).set(time.time())

    def forecast(self, model: str, fallback: bool) -> None:
        """Count a stored forecast."""
        self.forecasts.labels("fallback" if fallback else "model").inc()

    def forecast_error(self, n: int = 1) -> None:
        """``n`` series could not be forecast."""
        if n:
            self.forecast_errors.inc(n)

    def decision(self, policy: str, valid: bool, fallback: bool, action: bool) -> None:
        """Count a stored decision (and an action logged when ``action``)."""
        self.decisions.labels(policy, "valid" if valid else "invalid").inc()
        if fallback:
            self.fallbacks.labels(policy).inc()
        if action:
            self.actions.inc()

    def render(self) -> bytes:
        """Render every metric in the text exposition format."""
        return generate_latest(self.registry)
