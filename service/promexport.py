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
* ``tidewise_last_job_success_timestamp_seconds{job}`` — for "job stuck" alerts;
* ``tidewise_export_errors_total`` — scrapes whose store read for the series below failed.

What the daemon forecasts and decides, read from the store at each scrape
(:class:`StoredExport`, queries in :mod:`service.promreads`), never more than
``TIDEWISE_EXPORT_MAX_SERIES`` series in all:

* ``tidewise_forecast{entity,metric,quantile,horizon_s}`` — quantile ``quantile``
  (``TIDEWISE_EXPORT_QUANTILES``) of the latest stored forecast's step that ends
  ``horizon_s`` seconds after the forecast's origin (``TIDEWISE_EXPORT_HORIZONS_S``; the
  step is ``ceil(horizon_s / step) - 1``). A level the store keeps as a column (0.05, 0.1,
  0.25, 0.5, 0.75, 0.9, 0.95) is that column, exactly what ``GET /v1/forecasts`` serves;
  another is computed from the stored sample paths (``numpy.quantile``, linear). Left out
  for a forecast older than three forecast periods (no refresh replaced it: its input
  stopped, or the job did);
* ``tidewise_forecast_fallback{entity,metric,reason}`` — 1 when the latest forecast is
  the per-series fallback, with ``reason`` one of :data:`FALLBACK_REASONS`; else 0 (no
  ``reason``);
* ``tidewise_input_age_seconds{entity,metric}`` — seconds since the newest raw sample of
  each forecast series (a series whose samples all expired has none);
* ``tidewise_desired{target,kind,setting}`` — the latest decision's desired setting:
  ``replicas`` (scaling), ``warm`` (serverless), ``cap_w`` with a ``server`` label (power,
  capped servers only); left out while the decision is stale (older than three forecast
  periods, as ``GET /v1/keda`` answers 503) and, with ``TIDEWISE_REFUSE_FALLBACK_DECISIONS``,
  while the decision is a fallback;
* ``tidewise_decision_age_seconds{target}``, ``tidewise_decision_fallback{target}`` (1/0);
* ``tidewise_export_dropped_series`` — series the cap left out of this scrape.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from service.config import Settings
    from service.store.db import Store

log = logging.getLogger("tidewise.promexport")

# ``*_created`` series double the exposition and no dashboard of ours reads them.
disable_created_metrics()

__all__ = ["CONTENT_TYPE_LATEST", "FALLBACK_REASONS", "StoredExport", "Telemetry"]


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
        self.export_errors = Counter(
            "tidewise_export_errors",
            "Scrapes whose store read for the forecast and decision series failed.",
            registry=r,
        )
        self.stored = StoredExport()

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

    def render(self, store: Store | None = None, now: float | None = None) -> bytes:
        """Render every metric in the text exposition format.

        With ``store``, also the forecast and decision series read from it
        (:class:`StoredExport`); a failed read is logged and counted in
        ``tidewise_export_errors_total``, and the daemon's own metrics are served anyway.
        """
        stored = b""
        if store is not None and store.settings.export_max_series > 0:
            try:
                families = self.stored.collect(store, time.time() if now is None else now)
                stored = generate_latest(_Families(families))
            except Exception:  # noqa: BLE001 - /metrics must answer even when the store fails
                log.exception("reading forecasts and decisions for /metrics failed")
                self.export_errors.inc()
        return generate_latest(self.registry) + stored


# --------------------------------------------------------------------------- stored state

def _needs_samples(levels: tuple[float, ...]) -> bool:
    """Whether a quantile level is not a stored column (:meth:`points` computes it from paths)."""
    from service.forecasting import QUANTILES

    return any(all(abs(lvl - q) >= 1e-12 for lvl in QUANTILES.values()) for q in levels)


#: Values of ``tidewise_forecast_fallback{reason}``: why the forecast is the fallback.
FALLBACK_REASONS = ("short_history", "gaps", "no_data", "model_error", "other")

_ERROR_PREFIX = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(Error|Exception|Failure)\b")


def fallback_reason(text: str) -> str:
    """Map a stored fallback forecast's free-text ``info.reason`` to :data:`FALLBACK_REASONS`.

    The text comes from :func:`service.forecasting.forecast_series` (``"<Exception>: …"``) or
    from the model's own fallback (:mod:`models.base`: history shorter than the context, too
    much of the context missing, the model failed or produced NaN). A model fitted on the
    spot that refuses missing buckets (``InputError: … fill or drop missing values …``, e.g.
    after the input stopped) counts as ``gaps``.
    """
    t = str(text or "")
    if "shorter than the context" in t or t.startswith("NoDataError: only "):
        return "short_history"
    if ("of the context of indicator" in t and "missing" in t) or "missing values" in t:
        return "gaps"  # too much of the window missing, or a model that cannot take gaps
    if t.startswith("NoDataError"):
        return "no_data"
    if t.startswith("model failed") or "NaN or Inf" in t or _ERROR_PREFIX.match(t):
        return "model_error"
    return "other"


def _level_label(q: float) -> str:
    return format(q, "g")


class _Families:
    """A registry-like holder of ready metric families for ``generate_latest``."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _flat_settings(kind: str, desired: dict[str, Any]) -> list[tuple[tuple[str, str], float]]:
    """Return the numeric settings of a stored ``desired`` as ((setting, server), value).

    ``server`` is empty (no label, to Prometheus) except for a power row's caps.
    """
    out: list[tuple[tuple[str, str], float]] = []
    if kind == "power":
        for server, cap in sorted((desired.get("caps") or {}).items()):
            if isinstance(cap, (int, float)) and not isinstance(cap, bool):
                out.append((("cap_w", str(server)), float(cap)))
        return out

    def walk(prefix: str, value: Any) -> None:  # noqa: ANN401
        if isinstance(value, dict):
            for k in sorted(value, key=str):
                walk(f"{prefix}.{k}" if prefix else str(k), value[k])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(((prefix, ""), float(value)))

    walk("", desired)
    return out


class StoredExport:
    """The latest stored forecasts and decisions as Prometheus families, per scrape.

    Quantiles are computed once per stored forecast (cached by series and ``computed_at``),
    so a scrape between two refreshes reads only the forecasts' heads. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # series_id -> (computed_at, {(q, h): value}, reason)
        self._cache: dict[int, tuple[int, dict[tuple[float, int], float], str]] = {}
        self._cache_key: tuple[tuple[float, ...], tuple[int, ...]] | None = None

    @staticmethod
    def points(payload: dict[str, Any], step: float, levels: tuple[float, ...],
               horizons: tuple[int, ...]) -> dict[tuple[float, int], float]:
        """Quantile ``q`` at horizon ``h`` seconds of one stored forecast payload."""
        from service.forecasting import QUANTILES

        column_of = {lvl: name for name, lvl in QUANTILES.items()}
        n = len(payload.get("times") or [])
        samples = payload.get("samples")
        arr: np.ndarray | None = None
        out: dict[tuple[float, int], float] = {}
        for h in horizons:
            k = math.ceil(h / step) - 1 if step > 0 else -1
            if not 0 <= k < n:
                continue
            for q in levels:
                col = next((c for lvl, c in column_of.items() if abs(lvl - q) < 1e-12), None)
                if col is not None and col in payload and len(payload[col]) > k:
                    v = payload[col][k]
                else:
                    if arr is None:
                        if samples is None or len(samples) == 0:
                            continue
                        arr = np.asarray(samples, dtype=np.float64)
                    v = float(np.quantile(arr[:, k], q))
                if v is not None and math.isfinite(float(v)):
                    out[(q, h)] = float(v)
        return out

    def collect(self, store: Store, now: float) -> list[Metric]:
        """Read the store (bounded, see :mod:`service.promreads`) and build the families."""
        from service import promreads
        from service.targets import KIND_OF_SCENARIO

        s: Settings = store.settings
        levels, horizons = s.export_quantile_levels, s.export_horizon_list
        budget = s.export_max_series
        per_forecast = len(levels) * len(horizons) + 2
        stale_after = 3 * s.forecast_interval_s

        fc = GaugeMetricFamily(
            "tidewise_forecast",
            "Quantile of the latest stored forecast at a horizon after its origin "
            "(unit of the series).",
            labels=["entity", "metric", "quantile", "horizon_s"],
        )
        fb = GaugeMetricFamily(
            "tidewise_forecast_fallback",
            "1 when the latest forecast of the series is the per-series fallback, else 0.",
            labels=["entity", "metric", "reason"],
        )
        age = GaugeMetricFamily(
            "tidewise_input_age_seconds", "Seconds since the newest raw sample of the series.",
            labels=["entity", "metric"],
        )
        desired = GaugeMetricFamily(
            "tidewise_desired", "Desired setting of the latest decision of a target.",
            labels=["target", "kind", "setting", "server"],
        )
        dec_age = GaugeMetricFamily(
            "tidewise_decision_age_seconds", "Seconds since the latest decision of a target.",
            labels=["target"],
        )
        dec_fb = GaugeMetricFamily(
            "tidewise_decision_fallback", "1 when the latest decision of a target is a fallback.",
            labels=["target"],
        )
        used = dropped = 0

        with store.sessions() as session:
            targets, n_targets = promreads.target_decisions(session, budget)
            dropped_targets = max(0, n_targets - len(targets))
            # Targets first: they drive scaling. Then forecasts, whole series at a time.
            for t in targets:
                rows: list[tuple[tuple[str, str], float]] = []
                if t.computed_at is not None:
                    a = max(0.0, now - t.computed_at)
                    usable = a <= stale_after and not (s.refuse_fallback_decisions and t.fallback)
                    if usable and t.desired:
                        rows = _flat_settings(t.kind, t.desired)
                size = len(rows) + (2 if t.computed_at is not None else 0)
                if used + size > budget:
                    dropped += size
                    continue
                used += size
                kind = KIND_OF_SCENARIO.get(t.kind, t.kind)
                for (setting, server), value in rows:
                    desired.add_metric([t.name, kind, setting, server], value)
                if t.computed_at is not None:
                    dec_age.add_metric([t.name], max(0.0, now - t.computed_at))
                    dec_fb.add_metric([t.name], 1.0 if t.fallback else 0.0)
            dropped += dropped_targets * 3  # estimated: replicas, age, fallback each

            limit = max(0, budget - used) // per_forecast + 1
            heads, n_forecasts = promreads.forecast_heads(session, limit)
            with self._lock:
                key = (levels, horizons)
                if key != self._cache_key:
                    self._cache, self._cache_key = {}, key
                stale_ids = [h.series_id for h in heads
                             if self._cache.get(h.series_id, (None,))[0] != h.computed_at]
                if stale_ids:
                    fresh = promreads.forecast_payloads(
                        session, stale_ids, samples=_needs_samples(levels))
                    for sid, (at, step, payload) in fresh.items():
                        reason = fallback_reason((payload.get("info") or {}).get("reason", ""))
                        self._cache[sid] = (at, self.points(payload, step, levels, horizons),
                                            reason)
                live = {h.series_id for h in heads}
                for sid in [x for x in self._cache if x not in live]:
                    del self._cache[sid]
                cache = dict(self._cache)

        for h in heads:
            hit = cache.get(h.series_id)
            # a forecast no refresh replaced for three periods (its input stopped, or the
            # job did) is not shown as if current: its quantiles are left out
            fresh = now - h.computed_at <= stale_after
            values = hit[1] if hit is not None and fresh else {}
            reason = hit[2] if hit is not None else "other"
            size = len(values) + 1 + (h.last_sample_ts is not None)
            if used + size > budget:
                dropped += size
                continue
            used += size
            for (q, hz), v in sorted(values.items(), key=lambda kv: (kv[0][1], kv[0][0])):
                fc.add_metric([h.entity, h.metric, _level_label(q), str(hz)], v)
            # an empty label is no label to Prometheus: ``reason`` only on a fallback
            fb.add_metric([h.entity, h.metric, reason if h.fallback else ""],
                          1.0 if h.fallback else 0.0)
            if h.last_sample_ts is not None:
                age.add_metric([h.entity, h.metric], max(0.0, now - h.last_sample_ts))
        dropped += max(0, n_forecasts - len(heads)) * per_forecast  # estimated for unread rows

        gone = GaugeMetricFamily(
            "tidewise_export_dropped_series",
            "Forecast and decision series left out of this scrape by TIDEWISE_EXPORT_MAX_SERIES "
            "(estimated for rows beyond the cap that were not read).",
            value=float(dropped),
        )
        return [fc, fb, age, desired, dec_age, dec_fb, gone]
