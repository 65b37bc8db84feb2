"""The forecast refresh: a Forecast for every series with recent data.

Every ``TIDEWISE_FORECAST_INTERVAL_S`` the scheduler calls :func:`refresh`. For each series
with a raw sample in the last ``forecast_context_steps x forecast_step_s`` seconds:

1. its history is averaged into epoch-aligned buckets of ``forecast_step_s`` seconds; only
   *complete* buckets (ending at or before ``now``) are used, and empty buckets are NaN (the
   models gap-fill or fall back, :mod:`models.base`);
2. the forecaster is the current registered model of the metric (model name
   ``daemon:<metric>`` in the ``models`` table, trained by :mod:`service.retrain`), else the
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
from typing import Any

import numpy as np

from common.errors import NoDataError
from models.forecast import Forecast
from models.training import beats
from service.store import forecasts as forecast_store
from service.store import model_registry as model_store
from service.store import samples as sample_store
from service.store.db import Store

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


def warm_up() -> None:
    """Import the model and policy registries (torch included) before serving.

    Done once at start-up so the first forecast run does not hold the interpreter for
    seconds of imports while requests are being served.
    """
    from models.base import available_models
    from policies import registry

    available_models()
    registry.load_all()


def daemon_model_name(metric: str) -> str:
    """Name under which the retraining job registers models of ``metric``."""
    return f"daemon:{metric}"


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

    def current(self, store: Store, metric: str) -> tuple[Any, str] | None:
        """Return the current model of ``metric`` (predictor, ``name@version``), or None.

        Raises:
            Exception: the artifact cannot be loaded (the caller falls back).

        """
        name = daemon_model_name(metric)
        with store.sessions() as session:
            rec = model_store.current_model(session, name)
        if rec is None:
            return None
        with self._lock:
            hit = self._loaded.get(name)
            if hit is None or hit[0] != rec.id:
                from models.base import load_predictor

                self._loaded[name] = (rec.id, load_predictor(rec.artifact_path))
            return self._loaded[name][1], f"{name}@{rec.version}"


def _fallback(history: np.ndarray, start: float, step: float, horizon: int, reason: str,
              samples: int) -> Forecast:
    from models.base import fallback_samples

    s = fallback_samples(history[:, None], horizon, samples, "last")  # (S, H, 1)
    return Forecast(s, start, step, ("value",), model="fallback:last", info={"reason": reason})


def forecast_series(
    store: Store, cache: ModelCache, metric: str, ts: np.ndarray, values: np.ndarray,
    horizon: int, entity: str = "entity",
) -> Forecast:
    """Forecast one bucketed series: current model, else the cheap model, else fallback.

    Raises:
        NoDataError: the history has no finite value (nothing can be said).

    """
    settings = store.settings
    step = float(settings.forecast_step_s)
    start = float(ts[-1] + step)
    if not np.isfinite(values).any():
        raise NoDataError(f"{entity!r}/{metric!r}: no sample in the last {len(values)} buckets")
    from models.base import NoData, get_estimator
    from models.data import Series

    first = int(np.argmax(np.isfinite(values)))
    series = Series(values[first:, None], ts[first:].astype(np.float64), ("value",),
                    entity=entity, step=step)
    try:
        current = cache.current(store, metric)
        if current is not None:
            predictor, label = current
            out = predictor.predict_outcomes(series, num_samples=STORED_SAMPLES)[0]
        else:
            ctx = min(settings.forecast_context_steps, len(series) - horizon)
            if ctx < 2:
                raise NoDataError(f"only {len(series)} buckets of history")
            est = get_estimator(settings.forecast_model, context_length=ctx,
                                prediction_length=horizon, num_samples=STORED_SAMPLES,
                                calibrate=False)
            predictor = est.fit(series)
            label = settings.forecast_model
            out = predictor.predict_outcomes(series)[0]
        if isinstance(out, NoData):
            raise NoDataError(out.reason)
        if out.horizon < horizon:
            raise ValueError(f"model forecasts {out.horizon} steps, {horizon} needed")
        samples = out.samples[:, :horizon, :1]  # (S, H, 1)
        fc = Forecast(samples, start, step, ("value",), model=out.model
                      if out.model.startswith("fallback") else label, info=dict(out.info))
        return fc
    except Exception as exc:  # noqa: BLE001 - any model failure: per-series fallback
        reason = f"{type(exc).__name__}: {exc}"
        log.debug("forecast of %s/%s falls back: %s", entity, metric, reason)
        return _fallback(values[first:], start, step, horizon, reason, STORED_SAMPLES)


def payload(fc: Forecast) -> dict[str, Any]:
    """Build the stored/served form of a one-indicator Forecast."""
    out: dict[str, Any] = {
        "times": [float(t) for t in fc.times()],
        "mean": [float(v) for v in fc.mean[:, 0]],
    }
    for name, q in QUANTILES.items():
        out[name] = [float(v) for v in fc.quantile(q)[:, 0]]
    out["samples"] = np.round(fc.samples[:, :, 0], 6).tolist()  # (S, H)
    out["info"] = {k: (v if isinstance(v, (int, float, str, bool)) or v is None else str(v))
                   for k, v in fc.info.items()}
    return out


def to_forecast(rec: Any, indicator: str = "demand") -> Forecast:  # noqa: ANN401 - a ForecastRecord
    """Rebuild the joint Forecast from a stored record (one indicator)."""
    samples = np.asarray(rec.payload["samples"], dtype=np.float64)[:, :, None]  # (S, H, 1)
    return Forecast(samples, rec.start, rec.step, (indicator,), model=rec.model)


def refresh(store: Store, now: int, cache: ModelCache | None = None,
            telemetry: Any = None) -> RefreshResult:  # noqa: ANN401
    """Forecast every series with recent data and store the forecasts (see module doc)."""
    cache = cache or ModelCache()
    s = store.settings
    step, n, horizon = s.forecast_step_s, s.forecast_context_steps, s.forecast_horizon_steps
    result = RefreshResult()
    records = []
    with store.sessions() as session:
        active = sample_store.active_series(session, now - n * step)
    for a in active:
        result.series += 1
        try:
            with store.sessions() as session:
                ts, values = bucketed(session, a.entity, a.metric, now, step, n)
            fc = forecast_series(store, cache, a.metric, ts, values, horizon, a.entity)
        except NoDataError as exc:
            result.errors.append(str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - one bad series must not stop the others
            log.exception("forecast of %s/%s failed", a.entity, a.metric)
            result.errors.append(f"{a.entity}/{a.metric}: {type(exc).__name__}: {exc}")
            continue
        is_fb = fc.model.startswith("fallback")
        result.forecasts += 1
        result.fallbacks += is_fb
        if telemetry is not None:
            telemetry.forecast(fc.model, is_fb)
        records.append({
            "series_id": a.series_id, "computed_at": now, "start": fc.start, "step": fc.step,
            "model": fc.model[:128], "fallback": is_fb, "payload": payload(fc),
        })
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
        first = int(n * (1 - HOLDOUT_SHARE))
        for o in np.linspace(first, n - horizon, origins).astype(int):
            if o < 2:
                continue
            past = Series(s.values[:o], s.ts[:o], s.indicators, entity=s.entity, step=s.step)
            out = predictor.predict_outcomes(past)[0]
            y = s.values[o:o + horizon, 0]
            if isinstance(out, NoData) or not np.isfinite(y).all():
                continue
            pred = out.samples[:, :horizon, 0]  # (S, H)
            scores.append(float(crps_samples(pred.T[:, :, None], y[:, None]).mean()))
    if not scores:
        raise NoDataError("no scorable origin in the held-out data")
    return float(np.mean(scores))


def retrain(store: Store, now: int, model: str | None = None) -> list[dict[str, Any]]:
    """Train a candidate per metric on recent data; register it only when it beats the current.

    For every metric with recent data the candidate (``model``, default
    ``TIDEWISE_FORECAST_MODEL``) is trained on the first 75 % of each active series' last
    ``forecast_context_steps`` buckets, then the candidate and the current model (or, with
    none registered, the per-series ``last`` fallback) are scored by CRPS over the held-out
    25 %. A better candidate is saved under ``TIDEWISE_MODEL_DIR`` in the folder
    :func:`service.artifacts.artifact_folder` derives from its name and version (never the
    raw metric name) and registered as ``daemon:<metric>``, current; otherwise nothing
    changes. A metric whose candidate cannot be saved or registered is reported ``skipped``
    and the others go on.

    Returns:
        one report per metric: ``metric``, ``outcome`` (``registered``, ``kept``,
        ``skipped``), scores.

    """
    import shutil

    from models.base import get_estimator, load_predictor
    from models.data import Series
    from service.artifacts import artifact_folder

    s = store.settings
    step, n, horizon = s.forecast_step_s, s.forecast_context_steps, s.forecast_horizon_steps
    model = model or s.forecast_model
    with store.sessions() as session:
        active = sample_store.active_series(session, now - n * step)
    by_metric: dict[str, list[Any]] = {}
    for a in active:
        with store.sessions() as session:
            ts, values = bucketed(session, a.entity, a.metric, now, step, n)
        ok = np.isfinite(values)
        if ok.sum() < 4 * horizon:
            continue
        first = int(np.argmax(ok))
        v = values[first:].copy()
        idx = np.where(np.isfinite(v), np.arange(len(v)), 0)  # hold over gaps
        np.maximum.accumulate(idx, out=idx)
        by_metric.setdefault(a.metric, []).append(
            Series(v[idx][:, None], ts[first:].astype(np.float64), ("value",), entity=a.entity,
                   step=float(step)))
    reports = []
    for metric, series in sorted(by_metric.items()):
        report: dict[str, Any] = {"metric": metric, "series": len(series)}
        try:
            cut = [Series(x.values[: int(len(x) * (1 - HOLDOUT_SHARE))],
                          x.ts[: int(len(x) * (1 - HOLDOUT_SHARE))], x.indicators,
                          entity=x.entity, step=x.step) for x in series]
            ctx = max(2, min(n, min(len(c) for c in cut) - horizon))
            est = get_estimator(model, context_length=ctx, prediction_length=horizon,
                                num_samples=STORED_SAMPLES, calibrate=False)
            candidate = est.fit(cut)
            cand_score = _holdout_crps(candidate, series, HOLDOUT_ORIGINS, horizon)
            with store.sessions() as session:
                current = model_store.current_model(session, daemon_model_name(metric))
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
        folder = artifact_folder(s.model_dir, daemon_model_name(metric), version)
        try:
            candidate.save(folder)
            with store.write_sessions() as session, session.begin():
                model_store.register_model(
                    session, daemon_model_name(metric), version, str(folder.resolve()),
                    trained_on=f"{len(series)} series of {metric!r}, last {n} x {step} s "
                    f"before {now}",
                    metrics={"holdout_crps": cand_score, "incumbent": label,
                             "incumbent_crps": inc_score, "model": model},
                )
        except Exception as exc:  # noqa: BLE001 - one metric must not stop the others
            log.warning("retrain of %r: candidate not saved: %s", metric, exc)
            shutil.rmtree(folder, ignore_errors=True)
            report.update(outcome="skipped", reason=f"{type(exc).__name__}: {exc}")
            reports.append(report)
            continue
        report.update(outcome="registered", version=version, artifact=str(folder))
        reports.append(report)
    return reports
