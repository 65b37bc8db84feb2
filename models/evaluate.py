"""Offline evaluation of forecasters on a trace (what ``tidewise evaluate`` runs).

Protocol (HARMONY's, the default for every dataset): per dataset (one file), each
entity's rows are split chronologically 70% train / 10% validation / 20% test; a
MinMax scaler per entity is fitted on its training rows and applied to every column;
models are trained on the training split (the validation split drives early stopping and
recalibration), then forecast from every test position: the windows whose H target rows
lie in the test split (their context may reach back into the validation split, as in
HARMONY's loaders). Metrics (:mod:`models.metrics`) are computed on the scaled values,
averaged over indicators and windows; over several datasets (a folder of files), figures
are averaged over datasets.

A folder given as ``--data`` is evaluated file by file, one model per file (as HARMONY
trains one model per container); within one file, a single model is trained on all its
entities.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import InputError, NoDataError, TraceFormatError
from models.base import NoData, get_estimator
from models.data import Series, make_windows, window_entities
from models.metrics import evaluate_samples

TRAIN_FRACTION, TEST_FRACTION = 0.7, 0.2


@dataclass
class Dataset:
    """One file's entities, wide: ``series`` hold raw values in the file's units."""

    name: str
    series: list[Series]
    source: str
    notes: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- loading


def _read_wide_csv(path: Path) -> Dataset:
    """Read a wide CSV with a ``date`` column (HARMONY/Fisher layout) into one entity.

    Raises:
        TraceFormatError: no ``date`` column, unparsable dates, or a non-numeric cell.

    """
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TraceFormatError(f"not a readable CSV ({exc})", where=str(path)) from None
    except pd.errors.EmptyDataError:
        raise TraceFormatError("file is empty", where=str(path)) from None
    if "date" not in df.columns:
        raise TraceFormatError(
            f"no 'date' column (columns: {list(df.columns)[:8]}); a wide CSV needs a 'date' "
            "column and one numeric column per indicator, or pass --format",
            where=str(path),
        )
    ts = pd.to_datetime(df["date"], errors="coerce", utc=True)
    if ts.isna().any():
        row = int(np.argmax(ts.isna().to_numpy()))
        raise TraceFormatError(
            f"unparsable date {df['date'].iloc[row]!r}", where=f"{path} row {row + 2}, column date"
        )
    cols = [c for c in df.columns if c != "date"]
    if not cols:
        raise TraceFormatError("no indicator columns besides 'date'", where=str(path))
    values = np.empty((len(df), len(cols)))
    for j, c in enumerate(cols):
        v = pd.to_numeric(df[c], errors="coerce")
        bad = v.isna() & df[c].notna()
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise TraceFormatError(
                f"non-numeric value {df[c].iloc[row]!r}", where=f"{path} row {row + 2}, column {c}"
            )
        values[:, j] = v.to_numpy(dtype=np.float64)
    t = (ts - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()
    order = np.argsort(t, kind="stable")
    return Dataset(path.stem, [Series(values[order], t[order], tuple(cols), path.stem)], str(path))


#: An entity with more than this fraction of missing cells (after alignment to the
#: trace's grid) is left out of the evaluation; shorter gaps are forward/backward filled.
MAX_MISSING_FRACTION = 0.2


def _from_long(frame, name: str, source: str) -> Dataset:
    """Canonical long frame (entity, metric, ts, value) -> one wide Series per entity.

    Rows are snapped to the frame's step (``attrs["step"]``) when it has one, counted
    from each entity's first timestamp (values falling in one slot are averaged); gaps are
    forward- then backward-filled; entities with more than
    :data:`MAX_MISSING_FRACTION` missing cells are dropped (listed in the notes).
    """
    series, dropped, filled = [], [], 0
    metrics = list(dict.fromkeys(frame["metric"]))  # order of first appearance
    step = frame.attrs.get("step")
    for ent, g in frame.groupby("entity", sort=True):
        if step:  # snap jittered timestamps (e.g. 299 s, 301 s gaps) to the entity's grid
            t0 = float(g["ts"].min())
            g = g.assign(ts=t0 + np.round((g["ts"].to_numpy() - t0) / step) * step)
        w = g.pivot_table(index="ts", columns="metric", values="value", aggfunc="mean")
        w = w.reindex(columns=metrics).sort_index()
        if step and len(w) > 1:
            grid = np.arange(w.index[0], w.index[-1] + step / 2, step)
            w = w.reindex(grid)
        miss = float(w.isna().to_numpy().mean())
        if miss > MAX_MISSING_FRACTION:
            dropped.append(str(ent))
            continue
        filled += int(w.isna().to_numpy().sum())
        w = w.ffill().bfill()
        series.append(Series(w.to_numpy(), w.index.to_numpy(float), tuple(metrics), str(ent)))
    if not series:
        raise NoDataError(
            f"{source}: every entity has more than {MAX_MISSING_FRACTION:.0%} missing values"
        )
    notes = {k: v for k, v in frame.attrs.items() if isinstance(v, str | int | float | bool)}
    notes.update({"entities": len(series), "dropped_entities": dropped, "filled_cells": filled})
    return Dataset(name, series, source, notes)


def _is_wide_date_csv(path: Path) -> bool:
    if path.suffix != ".csv":
        return False
    with open(path, encoding="utf-8", errors="replace") as fh:
        return "date" in fh.readline().strip().split(",")


def load_dataset(path: Path, fmt: str | None = None, step: float | None = None) -> Dataset:
    """Load one trace file as a :class:`Dataset` through ``traces.load``.

    A wide CSV with a ``date`` column and one numeric column per indicator (the Fisher
    layout) that no trace format recognises is read directly (``step`` must be None then).
    """
    import traces

    path = Path(path)
    try:
        frame = traces.load(path, format=fmt, step=step)
    except TraceFormatError:
        if fmt is None and step is None and _is_wide_date_csv(path):
            return _read_wide_csv(path)
        raise
    return _from_long(frame, path.name.split(".")[0], str(path))


def load_datasets(
    path: str | Path, fmt: str | None = None, step: float | None = None
) -> list[Dataset]:
    """One dataset per file: ``path`` itself, or each data file in the folder ``path``."""
    import traces

    p = traces.resolve(path)  # a path, or a bundled slice name
    if p.is_dir():
        files = sorted(
            f for f in p.iterdir() if f.is_file() and f.suffix in (".csv", ".gz", ".parquet")
        )
        if not files:
            raise InputError(f"folder {p} holds no .csv/.csv.gz/.parquet file", where="--data")
        return [load_dataset(f, fmt, step) for f in files]
    return [load_dataset(p, fmt, step)]


# --------------------------------------------------------------------------- protocol


@dataclass
class Split:
    """A dataset after the protocol: scaled train/validation/test series per entity."""

    train: list[Series]
    validation: list[Series]
    test: list[Series]
    indicators: tuple[str, ...]


def split_dataset(ds: Dataset, context: int, horizon: int) -> Split:
    """Chronological 70/10/20 split and per-entity MinMax scaling (fitted on train rows).

    The validation and test series start ``context`` rows before their first target row.

    Raises:
        NoDataError: an entity is too short for one test window.
        InputError: NaN/Inf values (the protocol needs complete rows).

    """
    tr, va, te = [], [], []
    for s in ds.series:
        bad = ~np.isfinite(s.values)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise InputError(
                "NaN or Inf value; the evaluation protocol needs complete rows",
                where=f"{ds.source} entity {s.entity!r} row {r}, indicator {s.indicators[c]!r}",
            )
        n = len(s)
        n_tr, n_te = int(n * TRAIN_FRACTION), int(n * TEST_FRACTION)
        n_va = n - n_tr - n_te
        if n_te < horizon or n_va < horizon or n_tr < context + horizon or n_tr < context:
            raise NoDataError(
                f"{ds.source} entity {s.entity!r}: {n} rows are too few for context {context} "
                f"and horizon {horizon} under the 70/10/20 split (need about "
                f"{math.ceil((context + horizon) / TRAIN_FRACTION)} rows)"
            )
        lo = s.values[:n_tr].min(axis=0)
        rng = s.values[:n_tr].max(axis=0) - lo
        rng = np.where(rng > 0, rng, 1.0)  # a constant training column maps to 0 (sklearn)
        z = (s.values - lo) / rng

        def part(a: int, b: int, s=s, z=z) -> Series:
            return Series(z[a:b], s.ts[a:b], s.indicators, s.entity, s.step)

        tr.append(part(0, n_tr))
        va.append(part(n_tr - context, n_tr + n_va))
        te.append(part(n - n_te - context, n))
    return Split(tr, va, te, ds.series[0].indicators)


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["harmony.max_epochs=5", ...]`` -> ``{"harmony": {"max_epochs": 5}}`` (JSON values).

    Raises:
        InputError: an item is not ``model.key=value``.

    """
    out: dict[str, dict[str, Any]] = {}
    for it in items:
        if "=" not in it or "." not in it.split("=", 1)[0]:
            raise InputError(f"expected MODEL.KEY=VALUE, got {it!r}", where="--set")
        key, raw = it.split("=", 1)
        model, param = key.split(".", 1)
        try:
            val = json.loads(raw)
        except json.JSONDecodeError:
            val = raw
        out.setdefault(model, {})[param] = val
    return out


# --------------------------------------------------------------------------- run


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_evaluation(
    data: str | Path,
    out: str | Path,
    *,
    models: list[str],
    context: int,
    horizon: int = 1,
    fmt: str | None = None,
    step: float | None = None,
    num_samples: int = 100,
    seed: int = 0,
    overrides: dict[str, dict[str, Any]] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and evaluate ``models`` on every dataset under ``data``; write the report.

    Writes ``out/report.json`` and ``out/forecasts.npz`` (``y_true (N, H, M)``,
    ``samples (N, S, H, M)`` of the first model, ``samples__<model>`` for each model,
    ``indicators``, ``models``, ``dataset (N,)``, ``entity (N,)``), in the scaled units the
    metrics use. Both are written only when everything succeeded.

    Returns:
        The report as a dict.

    """
    from models.base import get_estimator_class
    from models.progress import FitBar

    overrides = overrides or {}
    for name in models:  # unknown names / params fail before any training
        unknown = set(overrides.get(name, {})) - set(get_estimator_class(name).defaults)
        if unknown:
            raise InputError(f"model {name!r} has no parameter(s) {sorted(unknown)}", where="--set")
    for name in overrides:
        if name not in models:
            raise InputError(f"--set names model {name!r}, which is not in --models", where="--set")
    if num_samples < 100:
        raise InputError(f"need at least 100 samples, got {num_samples}", where="--samples")
    datasets = load_datasets(data, fmt, step)
    splits = [split_dataset(ds, context, horizon) for ds in datasets]

    report: dict[str, Any] = {
        "protocol": {
            "name": "harmony",
            "split": [TRAIN_FRACTION, 1 - TRAIN_FRACTION - TEST_FRACTION, TEST_FRACTION],
            "scaling": "minmax fitted on each entity's training rows, applied to all columns",
            "context": context,
            "horizon": horizon,
            "num_samples": num_samples,
            "seed": seed,
            "metrics": "on scaled values; mse of the sample mean, mae of the median, crps "
            "(energy form, samples), wql at 0.1/0.5/0.9, coverage of the 5-95% interval",
        },
        "data": str(data),
        "datasets": [ds.name for ds in datasets],
        "dataset_notes": {ds.name: ds.notes for ds in datasets},
        "models": {},
    }
    y_all, samples_all = [], {m: [] for m in models}
    ds_col, ent_col = [], []
    total = len(datasets) * len(models)
    bar = FitBar(total, "evaluate", enabled=progress)
    try:
        for ds, sp in zip(datasets, splits, strict=True):
            x, y, t = make_windows(sp.test, context, horizon)
            ents = window_entities(sp.test, context, horizon)
            y_all.append(y)
            ds_col += [ds.name] * y.shape[0]
            ent_col += ents
            for name in models:
                label = f"{ds.name}:{name}" if len(datasets) > 1 else name
                bar.start(label)
                est = get_estimator(
                    name,
                    context_length=context,
                    prediction_length=horizon,
                    num_samples=num_samples,
                    seed=seed,
                    **overrides.get(name, {}),
                )
                t0 = time.perf_counter()
                pred = est.fit(sp.train, sp.validation, progress=bar.event)
                fit_s = time.perf_counter() - t0
                bar.start(f"{label} forecasting {y.shape[0]:,} windows")
                t0 = time.perf_counter()
                outs = pred.predict_windows(x, t, entities=ents)
                pred_s = time.perf_counter() - t0
                nodata = [o for o in outs if isinstance(o, NoData)]
                if nodata:
                    raise NoDataError(f"{ds.name}: {nodata[0].entity}: {nodata[0].reason}")
                samples = np.stack([o.samples for o in outs])  # (N, S, H, M)
                fallbacks = sum(o.model.startswith("fallback:") for o in outs)
                res = evaluate_samples(samples, y, sp.indicators)
                res.update(
                    {
                        "windows": int(y.shape[0]),
                        "fit_seconds": round(fit_s, 2),
                        "predict_ms_per_window": round(1000 * pred_s / max(len(outs), 1), 3),
                        "fallbacks": int(fallbacks),
                        "fit_info": {
                            k: v
                            for k, v in pred.fit_info.items()
                            if k in ("epochs", "best_loss", "calibration", "train_seconds")
                        },
                    }
                )
                report["models"].setdefault(name, {"per_dataset": {}})["per_dataset"][ds.name] = res
                samples_all[name].append(samples.astype(np.float32))
                bar.done()
    finally:  # an error line then starts on a line of its own
        bar.close()

    for entry in report["models"].values():
        per = entry["per_dataset"]
        keys = next(iter(per.values()))["average"].keys()
        entry["average"] = {k: _mean([d["average"][k] for d in per.values()]) for k in keys}
        inds: dict[str, list[dict]] = {}
        for d in per.values():
            for ind, v in d["per_indicator"].items():
                inds.setdefault(ind, []).append(v)
        entry["per_indicator"] = {
            ind: {k: _mean([v[k] for v in vs]) for k in keys} for ind, vs in inds.items()
        }
        fit_s = [d["fit_seconds"] for d in per.values()]
        entry["fit_seconds_mean"] = round(float(np.mean(fit_s)), 2)

    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    same = all(sp.indicators == splits[0].indicators for sp in splits)
    arrays: dict[str, np.ndarray] = {}
    if same:
        arrays["y_true"] = np.concatenate(y_all).astype(np.float32)
        for name in models:
            arrays[f"samples__{name}"] = np.concatenate(samples_all[name])
        arrays["samples"] = arrays[f"samples__{models[0]}"]
        arrays["indicators"] = np.asarray(splits[0].indicators)
        arrays["models"] = np.asarray(models)
        arrays["dataset"] = np.asarray(ds_col)
        arrays["entity"] = np.asarray(ent_col)
    else:
        report["forecasts_npz"] = "not written: datasets have different indicators"
    if arrays:
        _atomic_write(outdir / "forecasts.npz", lambda p: _savez(p, arrays))
    _atomic_write(
        outdir / "report.json",
        lambda p: Path(p).write_text(json.dumps(report, indent=2, allow_nan=False)),
    )
    return report


def _savez(path: str, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _mean(vals: list[float | None]) -> float | None:
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else None
