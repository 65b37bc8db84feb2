"""Fit one forecaster on a trace's training split and score it on its validation split.

The model side of ``tidewise train`` (the store side is :mod:`service.training`). The rows
of each entity are split chronologically by :func:`models.evaluate.split_dataset` (70 %
train / 10 % validation / 20 % test, the validation part starting ``context`` rows before its
first target row). The model is fitted on the *raw* training rows (not the MinMax-scaled ones
the offline evaluation uses), because the saved predictor is served on raw values by the
daemon; it is then scored on every window of the validation part with
:func:`models.metrics.evaluate_samples` — CRPS, MSE, MAE, wQL and 90 % coverage, in the data's
own units, averaged over indicators.

:func:`beats` is the one replacement rule: a candidate replaces the current model only when
its validation CRPS is strictly lower (``tidewise train`` and the daemon's retraining).

A model trained with ``indicator`` set is univariate and stored with the indicator name
``value``, the column the daemon's forecast refresh feeds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import InputError, ModelError, NoDataError
from models.data import Series, make_windows, window_entities

#: Metrics kept in the registry's ``metrics.validation`` (averaged over indicators).
KEPT_METRICS = ("crps", "mse", "mae", "wql_mean", "coverage_90", "coverage_upper_99")


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
        ``{"crps", "mse", "mae", "wql_mean", "coverage_90", "coverage_upper_99", "windows",
        "fallbacks", "per_indicator"}``.

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


