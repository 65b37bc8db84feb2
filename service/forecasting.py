"""The forecast refresh: a Forecast for every series with recent data.

Every ``TIDEWISE_FORECAST_INTERVAL_S`` the scheduler calls :func:`refresh`. For each series
with a raw sample in the last ``forecast_context_steps x forecast_step_s`` seconds, and each
series a scaling target reads from a Prometheus-compatible ``source`` (:class:`History`, the
one door to a series' buckets; :mod:`service.promsource`):

1. its history is averaged into epoch-aligned buckets of ``forecast_step_s`` seconds; only
   *complete* buckets (ending at or before ``now``) are used, and empty buckets are NaN:
   gaps are normal (missed scrapes), the model imputes them and, where it reads a mask,
   knows which they were (:mod:`models.base`); only a context less than half observed
   goes to the fallback, and it says so;
2. the forecaster is the current registered model of the metric (model name
   ``daemon:<metric>`` in the ``models`` table, trained by :func:`retrain`), else the
   cheap ``TIDEWISE_FORECAST_MODEL`` fitted on the spot to this series;
3. whatever fails — loading the artifact, fitting, predicting — gives the per-series
   fallback forecast (``model = "fallback:last"``, ``info["reason"]`` says why), never an
   exception out of the job;
4. the Forecast is stored (replacing the previous one of the series) with its mean, its
   quantiles by interval name (``lo-90`` is the 5 % quantile, ``hi-90`` the 95 %, …) and
   its sample paths, so a policy can rebuild the joint Forecast.

Forecast step ``h`` covers ``[start + h*step, start + (h+1)*step)``, ``start`` being the end
of the last complete bucket (the convention of ``policies.forecasters``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from common.errors import NoDataError
from models.base import sorted_quantiles
from models.forecast import Forecast
from models.training import beats
from service.promsource import PromSource, SourceError, read_buckets
from service.store import forecasts as forecast_store
from service.store import model_registry as model_store
from service.store import samples as sample_store
from service.store import targets as target_store
from service.store.db import Store
from service.store.errors import NotFoundError

log = logging.getLogger("tidewise.forecasting")

#: Quantile levels stored per step, by interval column name (statsforecast style).
QUANTILES = {
    "lo-90": 0.05,
    "lo-80": 0.10,
    "lo-50": 0.25,
    "median": 0.50,
    "hi-50": 0.75,
    "hi-80": 0.90,
    "hi-90": 0.95,
}
#: Sample paths kept per stored forecast (enough for a policy's tail quantiles).
STORED_SAMPLES = 100


def input_stale_after_s(settings: Any) -> float:  # noqa: ANN401 - a Settings
    """Seconds after which a series' newest raw sample is *stale input* (GET /v1/forecasts).

    Three forecast periods, as for a stale decision (:mod:`service.actions`), and at least
    three buckets, so a series sampled once per bucket is not called stale between samples.
    """
    return 3.0 * max(float(settings.forecast_interval_s), float(settings.forecast_step_s))


def warm_up() -> None:
    """Import the model and policy registries (torch included) before serving.

    Done once at start-up so the first forecast run does not hold the interpreter for
    seconds of imports while requests are being served.
    """
    from models.base import available_models
    from policies import registry

    available_models()
    registry.load_all()


def daemon_model_name(metrics: str | tuple[str, ...]) -> str:
    """Name under which the retraining job registers models of a metric or indicator set.

    One metric: ``daemon:<metric>`` (a one-indicator model, indicator ``value``). Several,
    forecast jointly: ``daemon:<m1>+<m2>+...`` in sorted order (indicators named by metric).
    """
    if isinstance(metrics, str):
        return f"daemon:{metrics}"
    ms = tuple(sorted(metrics))
    return f"daemon:{ms[0]}" if len(ms) == 1 else "daemon:" + "+".join(ms)


def indicator_names(metrics: tuple[str, ...]) -> tuple[str, ...]:
    """Return the model's indicators: ``("value",)`` for one metric, else the metric names."""
    return ("value",) if len(metrics) == 1 else tuple(metrics)


@dataclasses.dataclass(frozen=True)
class Group:
    """Series of one entity forecast together (one joint Forecast over their indicators)."""

    entity: str
    kind: str
    items: tuple[Any, ...]  # ActiveSeries, sorted by metric

    @property
    def metrics(self) -> tuple[str, ...]:
        """The group's metrics (sorted): the joint forecast's indicators."""
        return tuple(a.metric for a in self.items)


def joint_groups(active: list[Any], settings: Any, declared: dict[str, list[tuple[str, ...]]]  # noqa: ANN401
                 ) -> list[Group]:
    """Split the active series into the groups forecast jointly.

    Per entity: first each indicator set a scaling target declares (``indicators``, its
    demand metric included), then the entity's other metrics together, at most
    ``forecast_max_indicators`` per group (sorted by metric). With
    ``TIDEWISE_FORECAST_JOINT=false`` every series is its own group.
    """
    by_entity: dict[str, list[Any]] = {}
    for a in active:
        by_entity.setdefault(a.entity, []).append(a)
    cap = max(1, int(settings.forecast_max_indicators))
    groups = []
    for entity, items in by_entity.items():
        items = sorted(items, key=lambda a: a.metric)
        if not settings.forecast_joint:
            groups.extend(Group(entity, a.kind, (a,)) for a in items)
            continue
        left = {a.metric: a for a in items}
        for wanted in declared.get(entity, []):
            got = tuple(left.pop(m) for m in sorted(set(wanted)) if m in left)
            if got:
                groups.append(Group(entity, got[0].kind, got))
        rest = [left[m] for m in sorted(left)]
        for i in range(0, len(rest), cap):
            chunk = tuple(rest[i:i + cap])
            groups.append(Group(entity, chunk[0].kind, chunk))
    return groups


def declared_indicators(session: Any) -> dict[str, list[tuple[str, ...]]]:  # noqa: ANN401
    """Return the indicator sets scaling targets declare, by entity (:func:`joint_groups`)."""
    out: dict[str, list[tuple[str, ...]]] = {}
    for t in target_store.list_targets(session):
        ind = t.spec.get("indicators") if t.kind == "vm" else None
        if ind:
            out.setdefault(t.spec["entity"], []).append(tuple(ind))
    return out


def bucketed(
    session: Any, entity: str, metric: str, now: int, step: int, n: int, agg: str = "mean"  # noqa: ANN401
) -> tuple[np.ndarray, np.ndarray]:
    """Return the last ``n`` complete buckets of one series before ``now``.

    Returns:
        ``ts`` ``(n,)`` bucket start times (unix s) and ``values`` ``(n,)`` with NaN for
        buckets without samples.

    """
    end = now - now % step  # first second of the bucket in progress (incomplete)
    start = end - n * step
    res = sample_store.query_series(session, entity, metric, start, end - 1, step, agg, n + 1)
    ts = start + step * np.arange(n, dtype=np.int64)
    values = np.full(n, np.nan)
    for t, v in res.points:
        i = (t - start) // step
        if 0 <= i < n:
            values[i] = v
    return ts, values


class History:
    """The one door to a series' recent buckets, for the forecast refresh and the collectors.

    A series is read from the samples pushed into the store (:func:`bucketed`) unless a
    scaling target names a ``source`` for it (its ``entity``/``metric``): then from that
    Prometheus-compatible API (:func:`service.promsource.read_buckets`), with the same
    buckets, the same NaN gaps, so everything downstream runs the same code. Two targets
    naming a source for one series: the first by name is used. A source's query sets its
    own aggregation, so ``agg`` applies to stored samples only.
    """

    def __init__(self, store: Store, sources: dict[tuple[str, str], Any] | None = None,
                 cache: BucketCache | None = None) -> None:
        self.store = store
        self.sources = dict(sources or {})
        #: Where stored series' mean buckets are read through (None: read in full).
        self.cache = cache
        #: What :meth:`prefetch` read: (entity, metric, now, step, n) -> (ts, values).
        self._pre: dict[tuple[str, str, int, int, int], tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def of(cls, store: Store, targets: list[Any] | None = None,
           cache: BucketCache | None = None) -> History:
        """Build the history of ``store`` with the sources its targets (default: all) name.

        ``cache``: read the stored series' mean buckets through this :class:`BucketCache`.
        """
        if targets is None:
            with store.sessions() as session:
                targets = target_store.list_targets(session)
        sources: dict[tuple[str, str], Any] = {}
        for t in sorted(targets, key=lambda t: t.name):
            src = t.spec.get("source") if t.kind == "vm" else None
            if not src:
                continue
            try:
                sources.setdefault((t.spec["entity"], t.spec["metric"]), PromSource(**src))
            except ValueError as exc:  # stored by an older version: declare it again
                log.warning("target %r: its source is not readable (%s); redeclare it", t.name,
                            exc)
        return cls(store, sources, cache)

    def sourced_series(self) -> list[Any]:
        """List the series read from a source (``ActiveSeries``; created in the store if new)."""
        return [sample_store.ensure_series(self.store, e, m) for e, m in sorted(self.sources)]

    def active(self, since: int, only: Callable[[str], bool] | None = None) -> list[Any]:
        """Series to forecast: pushed samples at or after ``since``, and every sourced one.

        ``only``: the entities wanted (a daemon's shards; the sourced series are the
        caller's to filter).
        """
        with self.store.sessions() as session:
            active = sample_store.active_series(session, since, only)
        if not self.sources:
            return active
        have = {(a.entity, a.metric) for a in active}
        extra = [a for a in self.sourced_series() if (a.entity, a.metric) not in have]
        return sorted(active + extra, key=lambda a: (a.entity, a.metric))

    def prefetch(self, keys: Sequence[tuple[str, str]], now: int, step: int, n: int) -> int:
        """Read the mean buckets of many stored series at once, for :meth:`buckets`.

        The period's decisions each read their target's window; through the cache that was
        four round trips per target (a session, the series id, its write marks, its
        buckets), one after the other. This reads them for all ``keys`` (entity, metric) in
        a few queries, through the same :class:`BucketCache` (the same values), and the
        :meth:`buckets` calls with the same ``now``, ``step`` and ``n`` return them. Series
        with a ``source``, unknown ones and calls without the cache are left to
        :meth:`buckets` as before. Returns how many series were read.
        """
        if self.cache is None:
            return 0
        want = sorted({k for k in keys if k not in self.sources})
        if not want:
            return 0
        with self.store.sessions() as session:
            ids = sample_store.series_ids(session, want)
            values = self.cache.read(session, sorted(set(ids.values())), now, step, n)
        ts = _bucket_starts(now, step, n)
        for (e, m), sid in ids.items():
            self._pre[(e, m, now, step, n)] = (ts, values[sid])
        return len(ids)

    def buckets(self, entity: str, metric: str, now: int, step: int, n: int,
                agg: str = "mean") -> tuple[np.ndarray, np.ndarray]:
        """Return the last ``n`` complete buckets before ``now`` (see :func:`bucketed`).

        Raises:
            NotFoundError: a store series that does not exist.
            service.promsource.SourceError: the source failed (names URL, query, status).

        """
        src = self.sources.get((entity, metric))
        if src is not None:
            return read_buckets(src, now, step, n, self.store.settings.source_secrets_dir)
        if agg == "mean" and (entity, metric, now, step, n) in self._pre:
            return self._pre[(entity, metric, now, step, n)]
        with self.store.sessions() as session:
            if self.cache is None or agg != "mean":
                return bucketed(session, entity, metric, now, step, n, agg)
            sid = sample_store.series_id(session, entity, metric)  # NotFoundError as above
            return (_bucket_starts(now, step, n),
                    self.cache.read(session, [sid], now, step, n)[sid])


def _bucket_starts(now: int, step: int, n: int) -> np.ndarray:
    """Return the starts (unix s) of the last ``n`` whole ``step``-s buckets before ``now``."""
    end = now - now % step
    ts = (end - n * step) + step * np.arange(n, dtype=np.int64)
    ts.flags.writeable = False  # shared by the targets of one series
    return ts


def bucketed_many(
    session: Any, series_ids: list[int], now: int, step: int, n: int, agg: str = "mean"  # noqa: ANN401
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """:func:`bucketed` for many series at once (by id): one query per chunk of series.

    Returns:
        ``ts`` ``(n,)`` and, per series id, ``values`` ``(n,)`` (NaN: no sample).

    """
    end = now - now % step
    start = end - n * step
    ts = start + step * np.arange(n, dtype=np.int64)
    out = sample_store.query_buckets(session, series_ids, start, end - 1, step, agg)
    return ts, out


@dataclasses.dataclass
class _Cached:
    """Buckets of one series a :class:`BucketCache` holds, and the marks read before them."""

    end: int  # end (exclusive, unix s) of the last bucket held
    values: np.ndarray  # (k,) the buckets [end - k * step, end)
    max_ts: int  # the series' write marks when they were read
    late_count: int

    def first(self, step: int) -> int:
        """Start (unix s) of the first bucket held."""
        return self.end - len(self.values) * step


class BucketCache:
    """Bucketed history of the stored series, kept by one daemon from one forecast run to the next.

    Each run reads every active series' last ``n`` complete buckets (and each decision its
    target's longer window). With this cache it reads only what may have changed since the
    series was last read, per series: the buckets from the one holding the first second of
    the newest minute written then (``max_ts - 59``) or the end of what it holds, whichever
    is earlier; and, when a
    late write or a retention delete touched the series since (one more in ``late_count``),
    from its ``late_from`` (a change wholly before the window asked for only drops the
    buckets it touched). Every other bucket comes from the cache. The marks are kept by
    ingest and retention in the transaction that changes the samples
    (:func:`service.store.samples.ingest`, :func:`service.store.rollups.apply_retention`),
    whichever process or daemon writes, and they are read before the samples, so the cache
    can only re-read too much, never hold a bucket the full read would not give:

    * ingest keeps ``max_ts`` as the last second of the newest minute written and counts a
      write as late when it starts in an earlier minute (``first <= max_ts - 60``); so a
      write after the marks were read either starts at or below ``max_ts - 60`` of its time
      (>= the ``max_ts`` read), and is counted, or starts at or after ``max_ts - 59`` of the
      ``max_ts`` read, in the buckets re-read (from the one holding that second; an exact
      ``max_ts``, set by hand, is covered too);
    * two or more counted changes since (their ranges are not kept), a ``max_ts`` not yet
      set (a store migrated with data: set by the next write), a series not held, a window
      that moved back or starts before what is held, or a step that is a whole number of
      minutes (the rollups serve those buckets, by a rule over the whole window): the whole
      window asked for is read, as without the cache.

    Bucket values come from :func:`service.store.samples.query_buckets` either way, one
    aggregate per bucket, so a bucket read this period or earlier holds the same bits. A
    series keeps the longest window asked for (the refresh's context, a decision's day).
    Thread-safe (a lock around each :meth:`read`).
    """

    def __init__(self) -> None:
        self._held: dict[int, _Cached] = {}
        self._lock = threading.Lock()
        self._longest = 0  # the most buckets asked for at once: what a series keeps
        self._swept_at: int | None = None  # the window end of the last sweep
        #: What the last :meth:`read` did: series read in full, series read from a later
        #: bucket, buckets read in all.
        self.last = {"full": 0, "partial": 0, "buckets": 0}

    def __len__(self) -> int:
        return len(self._held)

    def _plan(self, sid: int, marks: Any, start: int, end: int, step: int  # noqa: ANN401
              ) -> tuple[int, int]:
        """Return (first bucket to read, first valid bucket held) of ``sid`` for [start, end).

        What is held is valid on [second value, first value); the first value is ``start``
        when the window must be read whole (nothing held kept then).
        """
        held = self._held.get(sid)
        if held is None or marks is None or marks.max_ts is None or held.end > end:
            return start, start
        changes = marks.late_count - held.late_count
        if changes < 0 or changes > 1:
            return start, start
        valid_lo = held.first(step)
        top = held.max_ts - 59  # the newest minute's first second: ingest counts no write
        r = min(held.end, top - top % step)  # inside that minute as late, so re-read it all
        if changes == 1:
            if marks.late_to is not None and marks.late_to < start:
                # wholly before the window: drop the buckets it touched, keep the rest
                valid_lo = max(valid_lo, marks.late_to - marks.late_to % step + step)
            elif marks.late_from is None:
                return start, start
            else:
                r = min(r, marks.late_from - marks.late_from % step)
        if valid_lo > start or r <= start:
            return start, start
        return r, valid_lo

    def read(self, session: Any, series_ids: list[int], now: int, step: int, n: int,  # noqa: ANN401
             ) -> dict[int, np.ndarray]:
        """Return what :func:`bucketed_many` gives (the values by id), reading what changed."""
        end = now - now % step
        start = end - n * step
        if step % 60 == 0:  # the rollups may serve these buckets, by a rule over the window
            self.last = {"full": len(series_ids), "partial": 0, "buckets": n * len(series_ids)}
            return bucketed_many(session, series_ids, now, step, n)[1]
        with self._lock:
            self._longest = max(self._longest, n)
            keep_from = end - self._longest * step
            marks = sample_store.write_marks(session, series_ids)  # before the samples
            plan: dict[int, list[tuple[int, int]]] = {}
            for sid in series_ids:
                r, valid_lo = self._plan(sid, marks.get(sid), start, end, step)
                plan.setdefault(r, []).append((sid, valid_lo))
            out: dict[int, np.ndarray] = {}
            stats = {"full": 0, "partial": 0, "buckets": 0}
            for r, items in sorted(plan.items()):
                ids = [sid for sid, _ in items]
                got = (sample_store.query_buckets(session, ids, r, end - 1, step)
                       if r < end else {})
                k = (end - r) // step
                stats["full" if r == start else "partial"] += len(ids)
                stats["buckets"] += k * len(ids)
                for sid, valid_lo in items:
                    new = got.get(sid, np.full(k, np.nan)) if k else np.empty(0)
                    if r > start:  # held [lo, r) and read [r, end): lo <= start
                        held = self._held[sid]
                        lo = max(valid_lo, keep_from)
                        old = held.values[(lo - held.first(step)) // step:
                                          (r - held.first(step)) // step]
                        values = np.concatenate([old, new])
                        values.flags.writeable = False  # shared with later reads: read only
                        out[sid] = values[(start - lo) // step:]
                    else:
                        values = new
                        values.flags.writeable = False
                        out[sid] = values
                    m = marks.get(sid)
                    if m is not None and m.max_ts is not None:
                        self._held[sid] = _Cached(end, values, m.max_ts, m.late_count)
                    else:
                        self._held.pop(sid, None)
            # what ends before the longest window's start can serve no later read (looked
            # for once per bucket end: a decision reads one series at a time)
            if end != self._swept_at:
                self._swept_at = end
                for sid in [sid for sid, h in self._held.items() if h.end <= keep_from]:
                    del self._held[sid]
            self.last = stats
        return out


@dataclasses.dataclass
class RefreshResult:
    """What one refresh did (for logs, /metrics and tests)."""

    series: int = 0
    forecasts: int = 0
    fallbacks: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)


class ModelCache:
    """Loaded predictors of current registered models, reloaded when the current one changes."""

    def __init__(self) -> None:
        self._loaded: dict[str, tuple[int, Any]] = {}
        self._lock = threading.Lock()

    def current(self, store: Store, metrics: str | tuple[str, ...]
                ) -> tuple[Any, str] | None:
        """Return the current model of a metric or set: (predictor, ``name@version``) or None.

        Raises:
            Exception: the artifact cannot be loaded (the caller falls back).

        """
        name = daemon_model_name(metrics)
        with store.sessions() as session:
            rec = model_store.current_model(session, name)
        if rec is None:
            return None
        with self._lock:
            hit = self._loaded.get(name)
            if hit is None or hit[0] != rec.id:
                from models.base import load_predictor

                pred = load_predictor(rec.artifact_path)
                if hasattr(pred, "set_device"):
                    pred.set_device(store.settings.device)
                self._loaded[name] = (rec.id, pred)
            return self._loaded[name][1], f"{name}@{rec.version}"


def current_model_names(store: Store) -> set[str]:
    """Names of the daemon's models with a current version (one registry read)."""
    with store.sessions() as session:
        return {m.name for m in model_store.list_models(session)
                if m.is_current and m.name.startswith("daemon:")}


def _fallback(history: np.ndarray, start: float, step: float, horizon: int, reason: str,
              samples: int, indicators: tuple[str, ...] = ("value",)) -> Forecast:
    from models.base import fallback_samples

    hist = history[:, None] if history.ndim == 1 else history
    s = fallback_samples(hist, horizon, samples, "last")  # (S, H, M)
    return Forecast(s, start, step, indicators, model="fallback:last", info={"reason": reason})


@dataclasses.dataclass
class Unit:
    """One forecast to make: one series, or an entity's indicator set jointly.

    ``values`` is ``(T,)`` for one metric or ``(T, M)`` for the metrics ``metric`` names, in
    that order, on the bucket times ``ts`` ``(T,)``.
    """

    metric: str | tuple[str, ...]
    ts: np.ndarray
    values: np.ndarray
    entity: str = "entity"


def forecast_series(
    store: Store, cache: ModelCache, metric: str | tuple[str, ...], ts: np.ndarray,
    values: np.ndarray, horizon: int, entity: str = "entity",
) -> Forecast:
    """Forecast one bucketed series or one entity's indicator set jointly.

    The one-unit case of :func:`forecast_units` (see there).

    Raises:
        NoDataError: an indicator has no finite value in the history (nothing can be said).

    """
    out = forecast_units(store, cache, [Unit(metric, ts, values, entity)], horizon)[0]
    if isinstance(out, Exception):
        raise out
    return out


def forecast_units(
    store: Store, cache: ModelCache, units: list[Unit], horizon: int,
) -> list[Forecast | NoDataError]:
    """Forecast many units (series, or indicator sets jointly), a Forecast or a NoDataError each.

    The model of a unit is the current registered one of its metric (or of its indicator
    set), else ``TIDEWISE_FORECAST_MODEL`` fitted on the spot to this history, else the
    per-series fallback. The Forecast's indicators are ``("value",)`` for one metric, the
    metric names for several (sample ``s`` of every indicator is one joint draw).

    Units are forecast in batches: per metric set, one registry lookup and, for a registered
    model, one :meth:`models.base.Predictor.predict_batch` over all the set's units (one
    forward pass per batch of windows); the fitted-on-the-spot model is fitted once per
    history length when it learns nothing from the data (``window-mean``, ``last``), else
    per unit. Whatever fails — loading the artifact, fitting, predicting — gives that unit
    (or the units of that batch) the fallback forecast (``model = "fallback:last"``,
    ``info["reason"]`` says why), never an exception out of here; a unit with an indicator
    without any finite value gets a :class:`~common.errors.NoDataError` instead.
    """
    from models.base import fill_gaps, get_estimator, get_estimator_class
    from models.data import Series

    settings = store.settings
    step = float(settings.forecast_step_s)
    outs: list[Forecast | NoDataError | None] = [None] * len(units)
    prepared: dict[tuple[str, ...], list[tuple[int, Series, np.ndarray, float]]] = {}
    for i, u in enumerate(units):
        metrics = (u.metric,) if isinstance(u.metric, str) else tuple(u.metric)
        vals = np.asarray(u.values, dtype=np.float64)
        vals = vals[:, None] if vals.ndim == 1 else vals
        dead = [m for m, ok in zip(metrics, np.isfinite(vals).any(axis=0), strict=True)
                if not ok]
        if dead:
            outs[i] = NoDataError(f"{u.entity!r}/{', '.join(map(repr, dead))}: no sample in "
                                  f"the last {len(vals)} buckets")
            continue
        first = int(np.argmax(np.isfinite(vals).any(axis=1)))
        # the model reads the history with its gaps (NaN): it imputes and masks them itself
        # and falls back only when more than half of its context is missing
        series = Series(vals[first:], u.ts[first:].astype(np.float64),
                        indicator_names(metrics), entity=u.entity, step=step)
        prepared.setdefault(metrics, []).append((i, series, vals[first:],
                                                 float(u.ts[-1] + step)))

    def fallback(i: int, hist: np.ndarray, start: float, exc: Exception,
                 metrics: tuple[str, ...]) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        log.debug("forecast of %s/%s falls back: %s", units[i].entity, "+".join(metrics),
                  reason)
        outs[i] = _fallback(hist, start, step, horizon, reason, STORED_SAMPLES,
                            indicator_names(metrics))

    def finish(i: int, out: Any, label: str, hist: np.ndarray, start: float,  # noqa: ANN401
               metrics: tuple[str, ...]) -> None:
        from models.base import NoData

        try:
            if isinstance(out, NoData):
                raise NoDataError(out.reason)
            if out.horizon < horizon:
                raise ValueError(f"model forecasts {out.horizon} steps, {horizon} needed")
            samples = out.samples[:, :horizon, : len(metrics)]  # (S, H, M)
            outs[i] = Forecast(samples, start, step, indicator_names(metrics),
                               model=out.model if out.model.startswith("fallback") else label,
                               info=dict(out.info))
        except Exception as exc:  # noqa: BLE001 - any model failure: per-series fallback
            fallback(i, hist, start, exc, metrics)

    for metrics, items in prepared.items():
        try:
            current = cache.current(store, metrics if len(metrics) > 1 else metrics[0])
        except Exception as exc:  # noqa: BLE001 - an unloadable artifact: fallback
            for i, _, hist, start in items:
                fallback(i, hist, start, exc, metrics)
            continue
        if current is not None:
            predictor, label = current
            try:
                got = predictor.predict_batch([x[1] for x in items],
                                              num_samples=STORED_SAMPLES)
            except Exception as exc:  # noqa: BLE001 - the batch failed: each falls back
                for i, _, hist, start in items:
                    fallback(i, hist, start, exc, metrics)
                continue
            for (i, _, hist, start), out in zip(items, got, strict=True):
                finish(i, out, label, hist, start, metrics)
            continue
        # fitted on the spot: a model that learns nothing from the data is fitted once per
        # context length and forecasts all of them together; any other, unit by unit
        label = settings.forecast_model
        try:
            shared = not get_estimator_class(label).learns_from_data
        except Exception:  # noqa: BLE001 - an unknown model: each unit says so below
            shared = False
        by_ctx: dict[int, list[tuple[int, Series, np.ndarray, float]]] = {}
        for item in items:
            ctx = min(settings.forecast_context_steps, len(item[1]) - horizon)
            by_ctx.setdefault(ctx if shared else -1 - len(by_ctx), []).append(item)
        for group in by_ctx.values():
            try:
                series0 = group[0][1]
                ctx = min(settings.forecast_context_steps, len(series0) - horizon)
                if ctx < 2:
                    raise NoDataError(f"only {len(series0)} buckets of history")
                est = get_estimator(label, context_length=ctx, prediction_length=horizon,
                                    num_samples=STORED_SAMPLES, calibrate=False)
                # fitting needs complete rows, so it trains on the imputed copy
                predictor = est.fit(Series(fill_gaps(series0.values), series0.ts,
                                           series0.indicators, entity=series0.entity,
                                           step=step))
                got = predictor.predict_batch([x[1] for x in group])
            except Exception as exc:  # noqa: BLE001 - fitting or predicting failed
                for i, _, hist, start in group:
                    fallback(i, hist, start, exc, metrics)
                continue
            for (i, _, hist, start), out in zip(group, got, strict=True):
                finish(i, out, label, hist, start, metrics)
    return outs  # type: ignore[return-value]


def payload(fc: Forecast, j: int = 0,
            indicators: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Build the stored/served JSON form of indicator ``j`` of a Forecast (no sample paths).

    ``indicators`` names the metrics forecast jointly with this one (in the Forecast's
    column order). The paths go to the record's ``samples`` column (:func:`stored_samples`);
    the samples of every series of a joint forecast share their draw index, so
    :func:`joint_forecast` rebuilds the joint distribution from the stored records.

    One forecast at a time: the refresh builds its rows with :func:`stored_forms`, which
    is tested and benchmarked (``bench/stored_forms.py``) against this form.
    """
    qs = _quantiles(fc)  # (Q, H, M)
    out: dict[str, Any] = {
        "times": [float(t) for t in fc.times()],
        "mean": fc.mean[:, j].tolist(),
    }
    for k, name in enumerate(QUANTILES):
        out[name] = qs[k, :, j].tolist()
    out["indicators"] = list(indicators) if indicators is not None else [
        str(x) for x in fc.indicators]
    out["info"] = {k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v))
                   for k, v in fc.info.items()}
    return out


def stored_samples(fc: Forecast, j: int = 0) -> bytes:
    """Encode the paths ``(S, H)`` of indicator ``j`` of a Forecast for the ``samples`` column.

    One forecast at a time, as :func:`payload` (the refresh uses :func:`stored_forms`).
    """
    return forecast_store.encode_samples(fc.samples[:, :, j])


#: Sample values per batch of :func:`stored_forms` (1.6 MB of float64 per array).
_FORMS_VALUES = 200_000


def stored_forms(forecasts: Sequence[tuple[Forecast, tuple[str, ...] | None]],
                 ) -> list[list[tuple[dict[str, Any], bytes]]]:
    """``(payload(fc, j, names), stored_samples(fc, j))`` for every indicator j of each forecast.

    The same JSON (with the payload's columns as contiguous float64 arrays, which orjson,
    as :func:`~service.store.forecasts.save_forecasts` writes them, writes as it writes
    lists of floats) and the same bytes as those two functions give (a test compares them
    to the bit), computed for forecasts of one shape together, as the refresh stores
    thousands each period: one sort of all their paths for the quantile columns (the
    arithmetic of :func:`models.base.sorted_quantiles`), one mean and one ``float32``
    conversion per batch: a quarter less CPU than one forecast at a time, the JSON encoding
    included (``bench/stored_forms.py``: 31.8 against 42.1 µs per series).
    """
    out: list[list[tuple[dict[str, Any], bytes]]] = [[] for _ in forecasts]
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, (fc, _) in enumerate(forecasts):
        by_shape.setdefault(fc.samples.shape, []).append(i)
    levels = np.fromiter(QUANTILES.values(), dtype=np.float64)
    columns = ["mean", *QUANTILES]
    for (s, h, m), idx in by_shape.items():
        pos = levels * (s - 1)  # as sorted_quantiles: every row holds all s values
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, s - 1)
        frac = (pos - lo)[None, :, None, None]
        size = max(1, _FORMS_VALUES // (s * h * m))
        for c0 in range(0, len(idx), size):
            part = idx[c0:c0 + size]
            x = np.stack([forecasts[i][0].samples for i in part])  # (N, S, H, M)
            srt = np.sort(x, axis=1)
            a_lo, a_hi = srt[:, lo], srt[:, hi]  # (N, Q, H, M)
            d = a_hi - a_lo
            q = np.where(frac >= 0.5, a_hi - d * (1 - frac), a_lo + d * frac)
            table = np.concatenate([x.mean(axis=1)[:, None], q], axis=1)  # (N, 1 + Q, H, M)
            # [n, j, column] -> H contiguous floats, which orjson writes as it writes a list
            # of them, without a Python float per value
            rows = np.ascontiguousarray(table.transpose(0, 3, 1, 2))
            blobs = forecast_store.encode_many(
                np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(-1, s, h))
            for n, i in enumerate(part):
                fc, names = forecasts[i]
                times = np.ascontiguousarray(fc.times(), dtype=np.float64)
                indicators = (list(names) if names is not None
                              else [str(x) for x in fc.indicators])
                info = {k: (v if isinstance(v, (int, float, str, bool)) or v is None
                            else str(v)) for k, v in fc.info.items()}
                for j in range(m):
                    body: dict[str, Any] = {"times": times}
                    body.update(zip(columns, rows[n][j], strict=True))
                    body["indicators"] = list(indicators)
                    body["info"] = dict(info)
                    out[i].append((body, blobs[n * m + j]))
    return out


def _quantiles(fc: Forecast) -> np.ndarray:
    """Return the :data:`QUANTILES` of a Forecast, ``(Q, H, M)``, computed once per Forecast.

    Values equal to ``numpy.quantile(fc.samples, levels, axis=0)`` (numpy's ``linear``
    method; only a zero's sign may differ, as -0.0 and 0.0 sort alike), from one sort of
    the paths: ``numpy.quantile`` took about 130 µs per
    100 x 20 forecast, this about 30 µs. A joint forecast's payload is built once per member,
    so the result is kept on ``fc``.
    """
    got = fc.__dict__.get("_stored_quantiles")
    if got is None:
        s, h, m = fc.samples.shape  # float64 (a Forecast's samples always are)
        levels = np.fromiter(QUANTILES.values(), dtype=np.float64)
        rows = np.sort(fc.samples.reshape(s, h * m).T, axis=1)  # (H * M, S), each row sorted
        got = sorted_quantiles(rows, np.full(h * m, s), levels).T.reshape(len(levels), h, m)
        fc.__dict__["_stored_quantiles"] = got
    return got


class _MemberMissing(Exception):
    """A member of a joint forecast is not among the records given (read it instead)."""


def joint_forecast(session: Any, entity: str, metric: str,  # noqa: ANN401
                   got: dict[str, Any] | None = None) -> Forecast:
    """Rebuild the joint Forecast a series was stored with.

    All its indicators, one draw index (see :func:`payload`); a series forecast alone gives a
    one-indicator Forecast. ``info["computed_at"]`` is when the refresh made it. ``got``
    (optional): the entity's stored records, read beforehand
    (:func:`service.store.forecasts.entities_forecasts`); else they are read here.

    Raises:
        NotFoundError: no such series or no forecast of it yet.

    """
    if got is None:
        got = forecast_store.entity_forecasts(session, entity)  # one query for every member

    def latest(m: str) -> Any:  # noqa: ANN401
        # a member without a stored forecast: the per-series read says what is missing
        if m in got:
            return got[m]
        if session is None:
            raise _MemberMissing(m)
        return forecast_store.latest_forecast(session, entity, m)

    rec = latest(metric)
    names = [str(x) for x in rec.payload.get("indicators") or [metric]]
    info = {"computed_at": rec.computed_at}
    if len(names) <= 1 or metric not in names:
        return Forecast(forecast_store.samples_of(rec)[:, :, None],
                        rec.start, rec.step, (metric,), model=rec.model, info=info)
    cols = []
    for m in names:
        other = rec if m == metric else latest(m)
        if other.computed_at != rec.computed_at or other.start != rec.start:
            raise NotFoundError(
                f"the joint forecast of {entity!r} is incomplete ({m!r} was not refreshed "
                "with it)")
        cols.append(forecast_store.samples_of(other))
    return Forecast(np.stack(cols, axis=-1), rec.start, rec.step, tuple(names), model=rec.model,
                    info=info)


class StoredForecast:
    """Forecaster of a scaling target with ``forecaster: stored``.

    It reads the refresh's joint forecast of the entity, not a model fitted for the decision.

    Called like any forecaster (``(history, now, step, horizon) -> Forecast``), it reads the
    latest stored joint forecast of the target's demand metric (:func:`joint_forecast`),
    puts the demand metric first (the policy reads column 0; the other indicators follow),
    and re-aligns it to the decision's grid: step 0 begins at the end of the last complete
    bucket before ``now``; steps already past are dropped and a horizon beyond the stored one
    repeats its last step. A missing forecast, one older than ``max_age_s`` or on another
    step is no forecast (``NoDataError``: the policy falls back and says so).
    """

    def __init__(self, store: Store, entity: str, metric: str, max_age_s: float,
                 prefetched: dict[str, dict[str, Any]] | None = None) -> None:
        self.store, self.entity, self.metric, self.max_age_s = store, entity, metric, max_age_s
        #: the stored records by entity and metric, read for many targets at once
        #: (:func:`service.store.forecasts.entities_forecasts`); None: read them here
        self.prefetched = prefetched
        self.indicators: tuple[str, ...] = ()

    def _read(self) -> Forecast:
        got = self.prefetched.get(self.entity) if self.prefetched is not None else None
        if got:
            try:
                return joint_forecast(None, self.entity, self.metric, got)
            except _MemberMissing:
                pass  # the store says what is missing
        with self.store.sessions() as session:
            return joint_forecast(session, self.entity, self.metric)

    def __call__(self, history: np.ndarray, now: float, step: float, horizon: int) -> Forecast:
        """Return the stored joint forecast, demand first, on the decision's grid."""
        try:
            fc = self._read()
        except NotFoundError as exc:
            raise NoDataError(str(exc)) from None
        computed = fc.info["computed_at"]
        if now - computed > self.max_age_s:
            raise NoDataError(f"the stored forecast of {self.entity!r}/{self.metric!r} is "
                              f"{now - computed:.0f} s old (more than {self.max_age_s:g} s)")
        if abs(fc.step - step) > 1e-9:
            raise NoDataError(f"the stored forecast's step is {fc.step:g} s, the decision's "
                              f"{step:g} s")
        origin = float(now - now % step)
        skip = int(round((origin - fc.start) / step))
        if skip < 0 or skip >= fc.horizon:
            raise NoDataError(f"the stored forecast of {self.entity!r}/{self.metric!r} does "
                              f"not cover the decision's time {origin:.0f}")
        names = list(fc.indicators)
        order = [names.index(self.metric)] + [i for i in range(len(names))
                                              if names[i] != self.metric]
        samples = fc.samples[:, skip:, :][:, :, order]
        if samples.shape[1] < horizon:
            pad = np.repeat(samples[:, -1:], horizon - samples.shape[1], axis=1)
            samples = np.concatenate([samples, pad], axis=1)
        self.indicators = tuple(names[i] for i in order)
        return Forecast(samples[:, :horizon], origin, step, self.indicators, model=fc.model,
                        info={"source": "stored", "computed_at": computed})


def _observed_share(values: np.ndarray) -> float:
    ok = np.isfinite(values)
    if not ok.any():
        return 0.0
    return float(ok[int(np.argmax(ok)):].mean()) if len(values) else 0.0


def _units_of(group: Group, hist: dict[str, np.ndarray], names: set[str]
              ) -> list[tuple[Any, ...]]:
    """Split ``group`` into the members forecast together (a tuple each), see :func:`refresh`."""
    units: list[tuple[Any, ...]] = []
    joint = [a for a in group.items if a.metric in hist
             and _observed_share(hist[a.metric]) >= 0.5]
    alone = [a for a in group.items if a.metric in hist and a not in joint]
    if len(joint) > 1 and daemon_model_name(tuple(a.metric for a in joint)) not in names:
        own = [a for a in joint if daemon_model_name(a.metric) in names]
        alone += own
        joint = [a for a in joint if a not in own]
    if len(joint) > 1:
        units.append(tuple(joint))
    else:
        alone += joint
    units += [(a,) for a in sorted(alone, key=lambda a: a.metric)]
    return units


def _read_histories(history: History, groups: list[Group], now: int, step: int, n: int,
                    result: RefreshResult, buckets: BucketCache | None = None,
                    ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Bucketed histories of every series of ``groups``, by series id.

    The store's series come in one batched read (through ``buckets``, when given, which
    reads only what changed since its last read); a series a target reads from a
    Prometheus-compatible ``source`` is read through :meth:`History.buckets`, one request
    each. Should the batched read fail, each series is read alone, so one bad series costs
    only its own forecast (an error in ``result``).
    """
    items = [a for g in groups for a in g.items]
    sourced = [a for a in items if (a.entity, a.metric) in history.sources]
    stored = [a for a in items if (a.entity, a.metric) not in history.sources]
    end = now - now % step
    ts = (end - n * step) + step * np.arange(n, dtype=np.int64)
    hist: dict[int, np.ndarray] = {}
    one_by_one = list(sourced)
    if stored:
        try:
            ids = [a.series_id for a in stored]
            with history.store.sessions() as session:
                hist = (buckets.read(session, ids, now, step, n) if buckets is not None
                        else bucketed_many(session, ids, now, step, n)[1])
        except Exception:  # noqa: BLE001 - fall back to one read per series
            log.exception("reading %d series at once failed; reading them one by one",
                          len(stored))
            one_by_one += stored
    for a in one_by_one:
        try:
            _, hist[a.series_id] = history.buckets(a.entity, a.metric, now, step, n)
        except SourceError as exc:  # says where and why; no traceback to read
            log.warning("reading %s/%s failed: %s", a.entity, a.metric, exc)
            result.errors.append(f"{a.entity}/{a.metric}: {exc}")
        except Exception as exc:  # noqa: BLE001 - one bad series must not stop the others
            log.exception("reading %s/%s failed", a.entity, a.metric)
            result.errors.append(f"{a.entity}/{a.metric}: {type(exc).__name__}: {exc}")
    return ts, hist


def refresh(store: Store, now: int, cache: ModelCache | None = None,
            telemetry: Any = None, only: Callable[[str], bool] | None = None,  # noqa: ANN401
            buckets: BucketCache | None = None) -> RefreshResult:
    """Forecast every series with recent data and store the forecasts (see module doc).

    ``only`` (optional) keeps the entities it accepts: the forecast job's shards
    (:mod:`service.sharding`); an entity's series are always kept or left together.
    ``buckets`` (optional, kept by the daemon from run to run) reads only the buckets that
    changed since the previous run (:class:`BucketCache`); the forecasts are the same.

    Series are forecast jointly per entity (:func:`joint_groups`): one model call per group,
    its indicators sharing each sample path. A series with no sample in the context is an
    error of its own; one observed less than half of its context (since its first sample) is
    forecast alone, and a joint forecast that falls back is redone member by member, so one
    series cannot send its group to the fallback; a member with a current
    registered model of its own (``daemon:<metric>``) and no registered model of the group
    keeps that model.

    The work is batched: one read of every stored series' buckets (a sourced one is read
    from its source), forecasts per metric set together (:func:`forecast_units`), one write
    of all the forecasts.
    """
    cache = cache or ModelCache()
    s = store.settings
    step, n, horizon = s.forecast_step_s, s.forecast_context_steps, s.forecast_horizon_steps
    result = RefreshResult()
    records = []
    history = History.of(store)
    active = history.active(now - n * step, only)
    with store.sessions() as session:
        declared = declared_indicators(session) if s.forecast_joint else {}
    if only is not None:  # the sourced series
        active = [a for a in active if only(a.entity)]
    names = current_model_names(store) if s.forecast_joint else set()
    groups = joint_groups(active, s, declared)
    ts, by_id = _read_histories(history, groups, now, step, n, result, buckets)
    pending: list[tuple[Group, tuple[Any, ...]]] = []
    for group in groups:
        result.series += len(group.items)
        hist = {a.metric: by_id[a.series_id] for a in group.items if a.series_id in by_id}
        pending += [(group, unit) for unit in _units_of(group, hist, names)]
    while pending:
        units = []
        for group, unit in pending:
            metrics = tuple(a.metric for a in unit)
            values = np.stack([by_id[a.series_id] for a in unit], axis=1)  # (T, M)
            units.append(Unit(metrics if len(metrics) > 1 else metrics[0], ts, values,
                              group.entity))
        outs = forecast_units(store, cache, units, horizon)
        retry = []
        done: list[tuple[tuple[Any, ...], Forecast]] = []
        for (group, unit), fc in zip(pending, outs, strict=True):
            if isinstance(fc, NoDataError):
                result.errors.append(str(fc))
                continue
            if len(unit) > 1 and fc.model.startswith("fallback"):
                # one member's gaps (or failure) must not cost the others their model:
                # forecast each alone, so only the one that cannot be forecast falls back
                retry += [(group, (a,)) for a in unit]
                continue
            done.append((unit, fc))
        forms = stored_forms([(fc, tuple(a.metric for a in unit)) for unit, fc in done])
        for (unit, fc), stored in zip(done, forms, strict=True):
            is_fb = fc.model.startswith("fallback")
            for a, (body, blob) in zip(unit, stored, strict=True):
                result.forecasts += 1
                result.fallbacks += is_fb
                if telemetry is not None:
                    telemetry.forecast(fc.model, is_fb)
                if (a.entity, a.metric) in history.sources:
                    seen = np.flatnonzero(np.isfinite(by_id[a.series_id]))
                    if len(seen):
                        # no raw sample is kept of a sourced series: the freshness of its
                        # input (GET /v1/forecasts) is the last second of its newest bucket
                        # with a value
                        body["info"]["source_last_ts"] = int(ts[seen[-1]]) + step - 1
                records.append({
                    "series_id": a.series_id, "computed_at": now, "start": fc.start,
                    "step": fc.step, "model": fc.model[:128], "fallback": is_fb,
                    "payload": body, "samples": blob,
                })
        pending = retry
    forecast_store.save_forecasts(store, records)
    return result


# --------------------------------------------------------------------------- retraining

#: Share of the recent window held out to compare the candidate with the current model.
HOLDOUT_SHARE = 0.25
#: Forecast origins scored per series in the held-out part.
HOLDOUT_ORIGINS = 8


def _holdout_crps(predictor: Any, series: list[Any], origins: int, horizon: int) -> float:  # noqa: ANN401
    """Mean CRPS of ``predictor`` over origins in the held-out tail of each series."""
    from models.base import NoData
    from models.data import Series
    from models.metrics import crps_samples

    scores = []
    for s in series:
        n = len(s)
        # indicators in units of their own spread, so a large-valued one does not decide alone
        scale = np.nanstd(s.values, axis=0) + 1e-9
        first = int(n * (1 - HOLDOUT_SHARE))
        for o in np.linspace(first, n - horizon, origins).astype(int):
            if o < 2:
                continue
            past = Series(s.values[:o], s.ts[:o], s.indicators, entity=s.entity, step=s.step)
            out = predictor.predict_outcomes(past)[0]
            y = s.values[o:o + horizon]  # (H, M)
            if isinstance(out, NoData) or not np.isfinite(y).all():
                continue
            pred = out.samples[:, :horizon]  # (S, H, M)
            crps = crps_samples(pred.transpose(1, 0, 2), y)  # (H, M)
            scores.append(float((crps / scale).mean() if s.values.shape[1] > 1
                                else crps.mean()))
    if not scores:
        raise NoDataError("no scorable origin in the held-out data")
    return float(np.mean(scores))


def training_history(store: Store, group: Group, now: int,
                     history: History | None = None) -> Any | None:  # noqa: ANN401
    """Return the group's joint training series over ``TIDEWISE_TRAIN_HISTORY_S``, or None.

    Gaps hold the previous value.

    Buckets of ``forecast_step_s`` seconds up to the last complete one before ``now``, from
    the series' first sample in that span; the rollups serve buckets a multiple of a minute
    wide (:func:`service.store.samples.query_series`), so the span may then exceed the raw
    retention. None when fewer than four horizons of buckets are observed.
    """
    from models.base import fill_gaps
    from models.data import Series

    s = store.settings
    step, horizon = s.forecast_step_s, s.forecast_horizon_steps
    n = max(s.forecast_context_steps, int(s.train_window_s // step))
    history = history or History.of(store)
    cols = []
    ts = None
    for a in group.items:
        ts, v = history.buckets(a.entity, a.metric, now, step, n)
        cols.append(v)
    values = np.stack(cols, axis=1)  # (n, M)
    ok = np.isfinite(values).any(axis=1)
    if ok.sum() < 4 * horizon or not np.isfinite(values).any(axis=0).all():
        return None
    first = int(np.argmax(ok))
    return Series(fill_gaps(values[first:]), ts[first:].astype(np.float64),
                  indicator_names(group.metrics), entity=group.entity, step=float(step))


def retrain(store: Store, now: int, model: str | None = None) -> list[dict[str, Any]]:
    """Train a candidate per indicator set; register it only when it beats the current one.

    The groups are the forecast refresh's (:func:`joint_groups`: an entity's metrics
    together, or the ``indicators`` a scaling target names; each metric alone with
    ``TIDEWISE_FORECAST_JOINT=false``), and entities with the same set of metrics share one
    global model, trained on all of them. For every set the candidate (``model``, default
    ``TIDEWISE_RETRAIN_MODEL``, else ``TIDEWISE_FORECAST_MODEL``; HARMONY's indicator levels from
    ``TIDEWISE_FORECAST_HIERARCHY`` for the entities' kind) is trained on the first 75 % of
    each entity's history over ``TIDEWISE_TRAIN_HISTORY_S`` (:func:`training_history`), then
    the candidate and the current model (or, with none registered, the ``last`` fallback)
    are scored by CRPS over the held-out 25 %. A better candidate is saved under
    ``TIDEWISE_MODEL_DIR`` in the folder :func:`service.artifacts.artifact_folder` derives
    from its name and version (never the raw metric name) and registered as
    ``daemon:<metric>`` (one metric) or ``daemon:<m1>+<m2>+...``, current; otherwise nothing
    changes. A set whose candidate cannot be saved or registered is reported ``skipped`` and
    the others go on.

    Returns:
        one report per indicator set: ``metric`` (the set joined by ``+``), ``metrics``,
        ``outcome`` (``registered``, ``kept``, ``skipped``), scores.

    """
    import shutil

    from models.base import get_estimator, get_estimator_class, load_predictor
    from models.data import Series
    from service.artifacts import artifact_folder

    s = store.settings
    step, n, horizon = s.forecast_step_s, s.forecast_context_steps, s.forecast_horizon_steps
    model = model or s.retrain_model or s.forecast_model
    history = History.of(store)
    active = history.active(now - n * step)
    with store.sessions() as session:
        declared = declared_indicators(session) if s.forecast_joint else {}
    by_set: dict[tuple[str, ...], list[Any]] = {}
    kinds: dict[tuple[str, ...], str] = {}
    for group in joint_groups(active, s, declared):
        try:
            series = training_history(store, group, now, history)
        except SourceError as exc:  # this set waits for its source; the others go on
            log.warning("retrain: history of %s unreadable: %s", group.entity, exc)
            continue
        if series is not None:
            by_set.setdefault(group.metrics, []).append(series)
            kinds.setdefault(group.metrics, group.kind)
    reports = []
    for metrics, series in sorted(by_set.items()):
        name = daemon_model_name(metrics if len(metrics) > 1 else metrics[0])
        report: dict[str, Any] = {"metric": "+".join(metrics), "metrics": list(metrics),
                                  "series": len(series)}
        try:
            cut = [Series(x.values[: int(len(x) * (1 - HOLDOUT_SHARE))],
                          x.ts[: int(len(x) * (1 - HOLDOUT_SHARE))], x.indicators,
                          entity=x.entity, step=x.step) for x in series]
            ctx = max(2, min(n, min(len(c) for c in cut) - horizon))
            params: dict[str, Any] = {}
            if "device" in get_estimator_class(model).defaults:
                params["device"] = s.device
            levels = s.forecast_hierarchy.get(kinds[metrics])
            if levels and len(metrics) > 1 and "levels" in get_estimator_class(model).defaults:
                params["levels"] = {m: int(levels.get(m, 2)) for m in metrics}
            est = get_estimator(model, context_length=ctx, prediction_length=horizon,
                                num_samples=STORED_SAMPLES, calibrate=False, **params)
            candidate = est.fit(cut)
            cand_score = _holdout_crps(candidate, series, HOLDOUT_ORIGINS, horizon)
            with store.sessions() as session:
                current = model_store.current_model(session, name)
            if current is not None:
                incumbent = load_predictor(current.artifact_path)
                label = f"{current.name}@{current.version}"
            else:
                incumbent = get_estimator("last", context_length=ctx, prediction_length=horizon,
                                          num_samples=STORED_SAMPLES, calibrate=False).fit(cut)
                label = "fallback:last"
            inc_score = _holdout_crps(incumbent, series, HOLDOUT_ORIGINS, horizon)
        except Exception as exc:  # noqa: BLE001 - a failed retrain keeps the current model
            report.update(outcome="skipped", reason=f"{type(exc).__name__}: {exc}")
            reports.append(report)
            continue
        report.update(candidate=model, candidate_crps=cand_score, incumbent=label,
                      incumbent_crps=inc_score)
        if not beats(cand_score, inc_score):
            report["outcome"] = "kept"
            reports.append(report)
            continue
        version = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + f"-{model}"
        folder = artifact_folder(s.model_dir, name, version)
        span = int(len(series[0]) * step)
        try:
            candidate.save(folder)
            with store.write_sessions() as session, session.begin():
                model_store.register_model(
                    session, name, version, str(folder.resolve()),
                    trained_on=f"{len(series)} entities with {'+'.join(metrics)!r}, up to "
                    f"{span} s before {now}",
                    metrics={"holdout_crps": cand_score, "incumbent": label,
                             "incumbent_crps": inc_score, "model": model,
                             "indicators": list(metrics)},
                )
        except Exception as exc:  # noqa: BLE001 - one set must not stop the others
            log.warning("retrain of %r: candidate not saved: %s", name, exc)
            shutil.rmtree(folder, ignore_errors=True)
            report.update(outcome="skipped", reason=f"{type(exc).__name__}: {exc}")
            reports.append(report)
            continue
        report.update(outcome="registered", version=version, artifact=str(folder))
        reports.append(report)
    return reports
