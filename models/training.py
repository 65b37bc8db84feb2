"""Train one forecaster on a trace, score it, save it and register it in the store.

What ``tidewise train`` runs. The rows of each entity are split chronologically by
:func:`models.evaluate.split_dataset` (70 % train / 10 % validation / 20 % test, the
validation part starting ``context`` rows before its first target row). The model is fitted
on the *raw* training rows (not the MinMax-scaled ones the offline evaluation uses), because
the saved predictor is served on raw values by the daemon; it is then scored on every window
of the validation part with :func:`models.metrics.evaluate_samples` — CRPS, MSE, MAE, wQL and
90 % coverage, in the data's own units, averaged over indicators.

With ``make_current``, the new model becomes the current version of its name only when its
validation CRPS is strictly lower than the current version's on the same windows (the rule of
the daemon's retraining, :func:`service.forecasting.retrain`), or when there is no current
version; ``force`` skips the comparison.

A model trained with ``indicator`` set is univariate and stored with the indicator name
``value``, the column the daemon's forecast refresh feeds; its default registered name is
``daemon:<indicator>`` (:func:`service.forecasting.daemon_model_name`), so the refresh
forecasts that metric with it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.data import Series, make_windows, window_entities
from service.errors import ConfigError, InputError, ModelError, NoDataError

#: Metrics kept in the registry's ``metrics.validation`` (averaged over indicators).
KEPT_METRICS = ("crps", "mse", "mae", "wql_mean", "coverage_90")


@dataclass
class TrainResult:
    """What :func:`train_and_register` did."""

    id: int
    name: str
    version: str
    artifact: str
    metrics: dict[str, Any]
    trained_on: dict[str, Any]
    current: bool
    reason: str
    incumbent: dict[str, Any] | None = field(default=None)


# --------------------------------------------------------------------------- store


def open_store(settings: Any) -> Any:  # noqa: ANN401 - Settings -> Store, imported lazily
    """Open the store of ``settings`` after checking that it exists and is migrated.

    Raises:
        ConfigError: no SQLite file, an unreachable database, or a schema not at the newest
            revision (the message says to run ``tidewise db upgrade``).

    """
    from sqlalchemy.engine import make_url

    from service import migrate
    from service.db import Store, make_engine

    safe = make_url(settings.db_url).render_as_string(hide_password=True)
    if settings.is_sqlite:
        path = make_url(settings.db_url).database or ""
        if not Path(path).exists():
            raise ConfigError(
                f"no database at {Path(path).resolve()}; run `tidewise db upgrade` first"
            )
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            current = migrate.current_revisions(conn)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is reported plainly
        engine.dispose()
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(f"cannot open the store at {safe}: {reason}") from None
    if current != migrate.head_revisions():
        engine.dispose()
        raise ConfigError(
            f"the store at {safe} is at revision {list(current) or 'none'}, not "
            f"{list(migrate.head_revisions())}; run `tidewise db upgrade` first"
        )
    return Store(settings, engine)


# --------------------------------------------------------------------------- data


def _raw_parts(raw: list[Series], scaled: list[Series]) -> list[Series]:
    """Return the raw rows of each entity at the timestamps of its split part."""
    out = []
    for r, s in zip(raw, scaled, strict=True):
        idx = np.searchsorted(r.ts, s.ts)  # the part's rows are a contiguous slice of r
        out.append(Series(r.values[idx], r.ts[idx], r.indicators, r.entity, r.step))
    return out


def load_split(
    data: Path,
    fmt: str | None,
    step: float | None,
    context: int,
    horizon: int,
    indicator: str | None,
) -> tuple[list[Series], list[Series], dict[str, Any]]:
    """Load one trace file and split it; return raw train and validation series and provenance.

    Raises:
        InputError: ``data`` is missing or a folder, or lacks ``indicator``.
        TraceFormatError: the file cannot be read as a trace.
        NoDataError: an entity is too short for the split.

    """
    import traces
    from models.evaluate import load_dataset, split_dataset

    data = traces.resolve(data)  # a path, or a bundled slice name
    if data.is_dir():
        raise InputError(f"{data} is a folder; train on one trace file", where="--data")
    ds = load_dataset(data, fmt, step)
    if indicator is not None:
        have = ds.series[0].indicators
        if indicator not in have:
            raise InputError(
                f"{data} has no indicator {indicator!r}; it has {list(have)}", where="--indicator"
            )
        ds.series = [
            Series(s.select([indicator]).values, s.ts, ("value",), s.entity, s.step)
            for s in ds.series
        ]
    sp = split_dataset(ds, context, horizon)
    train, val = _raw_parts(ds.series, sp.train), _raw_parts(ds.series, sp.validation)
    t0 = min(float(s.ts[0]) for s in ds.series)
    t1 = max(float(s.ts[-1]) for s in ds.series)
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))  # noqa: E731
    trained_on = {
        "path": str(data.resolve()),
        "format": fmt or ds.notes.get("format"),
        "step_s": step if step is not None else float(ds.series[0].step),
        "rows": int(sum(len(s) for s in ds.series)),
        "train_rows": int(sum(len(s) for s in train)),
        "entities": len(ds.series),
        "indicators": [indicator] if indicator else list(ds.series[0].indicators),
        "start": iso(t0),
        "end": iso(t1),
        "train_end": iso(max(float(s.ts[-1]) for s in train)),
    }
    if indicator:
        trained_on["served_as"] = "value"
    return train, val, trained_on


# --------------------------------------------------------------------------- scoring


def score(predictor: Any, validation: list[Series], context: int, horizon: int) -> dict[str, Any]:  # noqa: ANN401
    """Score ``predictor`` on every window of ``validation`` (data units).

    Returns:
        ``{"crps", "mse", "mae", "wql_mean", "coverage_90", "windows", "fallbacks",
        "per_indicator"}``.

    Raises:
        ModelError: the predictor cannot forecast these windows (indicators, horizon).

    """
    from models.base import NoData
    from models.metrics import evaluate_samples

    names = validation[0].indicators
    if tuple(predictor.indicators) != tuple(names):
        raise ModelError(
            f"model forecasts indicators {list(predictor.indicators)}, the data has {list(names)}"
        )
    if predictor.prediction_length < horizon:
        raise ModelError(f"model forecasts {predictor.prediction_length} rows, {horizon} needed")
    x, y, t = make_windows(validation, context, horizon)  # (N, L, M), (N, H, M), (N, L + H)
    ents = window_entities(validation, context, horizon)
    if predictor.prediction_length > horizon:  # its own horizon: extend the time grid
        extra = t[:, -1:] + (t[:, -1:] - t[:, -2:-1]) * np.arange(
            1, predictor.prediction_length - horizon + 1
        )
        t = np.concatenate([t, extra], axis=1)
    outs = predictor.predict_windows(x, t, entities=ents)
    nodata = [o for o in outs if isinstance(o, NoData)]
    if nodata:
        raise NoDataError(f"validation window of {nodata[0].entity!r}: {nodata[0].reason}")
    samples = np.stack([o.samples[:, :horizon] for o in outs])  # (N, S, H, M)
    res = evaluate_samples(samples, y, names)
    out = {k: res["average"][k] for k in KEPT_METRICS}
    out["windows"] = int(y.shape[0])
    out["fallbacks"] = int(sum(o.model.startswith("fallback:") for o in outs))
    out["per_indicator"] = {
        ind: {k: v[k] for k in KEPT_METRICS} for ind, v in res["per_indicator"].items()
    }
    return out


def beats(candidate_crps: float | None, incumbent_crps: float | None) -> bool:
    """Apply the daemon's retraining rule: strictly lower CRPS, or no incumbent at all."""
    if candidate_crps is None:  # non-finite score: never replaces anything
        return False
    return incumbent_crps is None or candidate_crps < incumbent_crps


# --------------------------------------------------------------------------- train


def _version(model: str, existing: set[str]) -> str:
    base = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{model}"
    version, k = base, 2
    while version in existing:
        version, k = f"{base}-{k}", k + 1
    return version


def train_and_register(
    store: Any,  # noqa: ANN401 - service.db.Store
    data: Path,
    *,
    model: str,
    context: int,
    horizon: int,
    fmt: str | None = None,
    step: float | None = None,
    indicator: str | None = None,
    params: dict[str, Any] | None = None,
    name: str | None = None,
    model_dir: str | Path | None = None,
    make_current: bool = True,
    force: bool = False,
    seed: int = 0,
    num_samples: int = 100,
) -> TrainResult:
    """Fit ``model`` on the training split of ``data``, score, save and register it.

    The artifact is written under ``model_dir`` (default: the store's ``TIDEWISE_MODEL_DIR``)
    in the folder :func:`service.artifacts.artifact_folder` derives from name and version,
    and removed again if registering fails.

    Raises:
        ConfigError: unknown model or parameter.
        InputError / TraceFormatError / NoDataError: unusable data.
        ModelError: training failed.

    """
    from models.base import get_estimator, load_predictor
    from service import repository
    from service.artifacts import artifact_folder

    est = get_estimator(
        model,
        context_length=context,
        prediction_length=horizon,
        num_samples=num_samples,
        seed=seed,
        **(params or {}),
    )
    train, val, trained_on = load_split(data, fmt, step, context, horizon, indicator)
    name = name or (f"daemon:{indicator}" if indicator else f"{model}:{Path(data).name}")
    predictor = est.fit(train, val)
    metrics = score(predictor, val, context, horizon)

    with store.sessions() as session:
        current = repository.current_model(session, name)
        existing = {r.version for r in repository.list_models(session, name)}
    incumbent: dict[str, Any] | None = None
    if current is not None:
        incumbent = {"id": current.id, "version": current.version}
        try:
            inc = score(load_predictor(current.artifact_path), val, context, horizon)
            if inc["crps"] is None:
                raise ModelError("its validation CRPS is not finite")
            incumbent["crps"] = inc["crps"]
        except Exception as exc:  # noqa: BLE001 - an unscorable incumbent is reported
            incumbent["error"] = f"{type(exc).__name__}: {exc}"
    if not make_current:
        becomes, reason = False, "--no-current"
    elif force:
        becomes, reason = True, "--force"
    elif metrics["crps"] is None:
        becomes, reason = False, "validation CRPS is not finite"
    elif incumbent is None:
        becomes, reason = True, "no current model of this name"
    elif "crps" not in incumbent:
        becomes = False
        reason = f"current model {current.version} cannot be scored ({incumbent['error']}); --force"
    else:
        becomes = beats(metrics["crps"], incumbent["crps"])
        cmp = "<" if becomes else ">="
        reason = f"validation CRPS {metrics['crps']:.6g} {cmp} current {incumbent['crps']:.6g}"

    version = _version(model, existing)
    root = Path(model_dir if model_dir is not None else store.settings.model_dir)
    folder = artifact_folder(root, name, version)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{version}."))
    try:
        predictor.save(tmp)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    doc = {
        "model": model,
        "params": est.params,
        "context": context,
        "horizon": horizon,
        "units": "data units (raw values), averaged over indicators",
        "validation": {k: v for k, v in metrics.items() if k != "per_indicator"},
        "per_indicator": metrics["per_indicator"],
        "incumbent": incumbent,
        "decision": reason,
    }
    try:
        with store.write_sessions() as session, session.begin():
            now_current = repository.current_model(session, name)
            compared = None if current is None else current.id
            if becomes and not force and (now_current and now_current.id) != compared:
                # another process changed the current version while this one trained: the
                # comparison no longer holds, so leave the choice to `tidewise models use`
                becomes = False
                reason = "the current model changed while training; not compared with it"
                doc["decision"] = reason
            rec = repository.register_model(
                session,
                name,
                version,
                str(folder.resolve()),
                trained_on=json.dumps(trained_on),
                metrics=json.loads(json.dumps(doc)),
                make_current=becomes,
            )
            rid = rec.id
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # nothing half-written
        raise
    return TrainResult(
        rid, name, version, str(folder.resolve()), metrics, trained_on, becomes, reason, incumbent
    )


def use_model(store: Any, model_id: int) -> tuple[Any, Any]:  # noqa: ANN401
    """Make ``model_id`` current after checking its artifact loads; return (row, predictor).

    Raises:
        NotFoundError: no such id.
        ModelError: the artifact is missing or unreadable.

    """
    from models.base import load_predictor
    from service import repository

    with store.sessions() as session:
        rec = repository.get_model(session, model_id)
    if not Path(rec.artifact_path, "config.json").exists():
        raise ModelError(
            f"model {model_id} ({rec.name} {rec.version}): artifact {rec.artifact_path} is "
            "missing; retrain it or pick another id"
        )
    pred = load_predictor(rec.artifact_path)  # raises ModelError with the reason
    with store.write_sessions() as session, session.begin():
        rec = repository.set_current_model(session, model_id)
    return rec, pred


def daemon_warnings(
    settings: Any,
    name: str,
    step_s: float,
    context: int,
    horizon: int,  # noqa: ANN401
) -> list[str]:
    """Say why the daemon would not serve a ``daemon:`` model as trained (empty when it would).

    The forecast refresh feeds ``forecast_context_steps`` buckets of ``forecast_step_s``
    seconds and needs ``forecast_horizon_steps`` steps; a model that forecasts fewer steps
    always gets the fallback, one with a longer context too.
    """
    if not name.startswith("daemon:"):
        return []
    out = []
    if abs(step_s - settings.forecast_step_s) > 1e-9:
        out.append(
            f"trained on {step_s:g} s rows, the daemon forecasts {settings.forecast_step_s} s "
            "buckets (TIDEWISE_FORECAST_STEP_S); retrain with --step to match"
        )
    if horizon < settings.forecast_horizon_steps:
        out.append(
            f"the model forecasts {horizon} steps, the daemon needs "
            f"{settings.forecast_horizon_steps} (TIDEWISE_FORECAST_HORIZON_STEPS); the refresh "
            "will use the fallback forecast; retrain with --horizon "
            f"{settings.forecast_horizon_steps}"
        )
    if context > settings.forecast_context_steps:
        out.append(
            f"the model reads {context} rows of context, the daemon keeps "
            f"{settings.forecast_context_steps} (TIDEWISE_FORECAST_CONTEXT_STEPS); the refresh "
            "will use the fallback forecast; retrain with a shorter --context"
        )
    return out


def record_dict(rec: Any) -> dict[str, Any]:  # noqa: ANN401
    """Return a registry row as a JSON-ready dict (``trained_on`` parsed when JSON)."""
    try:
        trained = json.loads(rec.trained_on) if rec.trained_on else {}
    except json.JSONDecodeError:
        trained = rec.trained_on  # the daemon's retraining writes a sentence
    return {
        "id": rec.id,
        "name": rec.name,
        "version": rec.version,
        "current": bool(rec.is_current),
        "created_at": rec.created_at.isoformat() if rec.created_at else None,
        "artifact_path": rec.artifact_path,
        "artifact_present": Path(rec.artifact_path, "config.json").exists(),
        "trained_on": trained,
        "metrics": rec.metrics,
    }
