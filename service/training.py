"""Train a forecaster on a trace, save it and register it in the store (``tidewise train``).

The model-side work (the chronological split, fitting, scoring and the replacement rule
:func:`models.training.beats`) lives in :mod:`models.training`; this module adds what needs
the store: opening a migrated store, saving the artifact under ``TIDEWISE_MODEL_DIR``,
registering it and making it current.

With ``make_current``, the new model becomes the current version of its name only when its
validation CRPS is strictly lower than the current version's on the same windows (the rule of
the daemon's retraining, :func:`service.forecasting.retrain`), or when there is no current
version; ``force`` skips the comparison.
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

from common.errors import ConfigError, ModelError
from models.progress import ProgressFn
from models.training import beats, load_split, score
from service.artifacts import artifact_folder


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


def open_store(settings: Any) -> Any:  # noqa: ANN401 - Settings -> Store, imported lazily
    """Open the store of ``settings`` after checking that it exists and is migrated.

    Raises:
        ConfigError: no SQLite file, an unreachable database, or a schema not at the newest
            revision (the message says to run ``tidewise db upgrade``).

    """
    from sqlalchemy.engine import make_url

    from service import migrate
    from service.store.db import Store, make_engine

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


def _version(model: str, existing: set[str]) -> str:
    base = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{model}"
    version, k = base, 2
    while version in existing:
        version, k = f"{base}-{k}", k + 1
    return version


def train_and_register(
    store: Any,  # noqa: ANN401 - service.store.db.Store
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
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Fit ``model`` on the training split of ``data``, score, save and register it.

    The artifact is written under ``model_dir`` (default: the store's ``TIDEWISE_MODEL_DIR``)
    in the folder :func:`service.artifacts.artifact_folder` derives from name and version,
    and removed again if registering fails. ``progress`` gets the fit's
    :class:`models.progress.FitEvent` as training goes.

    Raises:
        ConfigError: unknown model or parameter.
        InputError / TraceFormatError / NoDataError: unusable data.
        ModelError: training failed.

    """
    from models.base import get_estimator, load_predictor
    from service.store import model_registry as model_store

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
    predictor = est.fit(train, val, progress=progress)
    metrics = score(predictor, val, context, horizon)

    with store.sessions() as session:
        current = model_store.current_model(session, name)
        existing = {r.version for r in model_store.list_models(session, name)}
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
            now_current = model_store.current_model(session, name)
            compared = None if current is None else current.id
            if becomes and not force and (now_current and now_current.id) != compared:
                # another process changed the current version while this one trained: the
                # comparison no longer holds, so leave the choice to `tidewise models use`
                becomes = False
                reason = "the current model changed while training; not compared with it"
                doc["decision"] = reason
            rec = model_store.register_model(
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
    from service.store import model_registry as model_store

    with store.sessions() as session:
        rec = model_store.get_model(session, model_id)
    if not Path(rec.artifact_path, "config.json").exists():
        raise ModelError(
            f"model {model_id} ({rec.name} {rec.version}): artifact {rec.artifact_path} is "
            "missing; retrain it or pick another id"
        )
    pred = load_predictor(rec.artifact_path)  # raises ModelError with the reason
    with store.write_sessions() as session, session.begin():
        rec = model_store.set_current_model(session, model_id)
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
