"""The replay driver: load a trace, run policies (and their sweeps) through a scenario.

:func:`run_replay` is what ``tidewise replay`` calls. It is scenario-agnostic: it only
uses the :class:`~traces.replay.base.Scenario` seam (``prepare``/``run``,
``cost_figure``/``sla_figure``) and the policy registry. Every input is checked before
any simulation starts, and results are written to a temporary folder beside ``out_dir``
that is moved into place only when everything succeeded, so a failed run leaves nothing
half-written.

Output in ``out_dir``: ``report.json`` (``{"scenario", "trace", "config", "policies":
{name: [{"params", "totals"}, ...]}}``), ``config.json`` (the fully resolved
configuration), ``timeline.csv`` (each family's default run; long format),
``cost_vs_sla.png`` and ``timeline.png``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.errors import InputError, TidewiseError, TraceFormatError
from policies.forecasters import PredictorForecaster, TruthForecaster
from policies.pipeline import forecaster_for
from traces.replay.plots import knob_text


def parse_options(items: Iterable[str] | None) -> dict[str, Any]:
    """Parse ``key=value`` strings; values become int, float, bool, None or str.

    Raises:
        InputError: an item without ``=`` or with an empty key.

    """
    out: dict[str, Any] = {}
    for i, item in enumerate(items or ()):
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"expected key=value, got {item!r}", where=f"--option #{i + 1}")
        out[key] = _coerce(raw.strip())
    return out


def _coerce(raw: str) -> Any:
    low = raw.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw


def _jsonable(x: Any) -> Any:
    """Make numpy scalars, paths and tuples JSON-friendly; NaN/Inf become None."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, int | float | str | bool) or x is None:
        return x
    return str(x)


def resolve_policies(scenario: str, policies: Sequence[str] | str) -> list[type]:
    """Look up the policy classes for ``scenario``; unknown names raise InputError."""
    from policies import registry

    names = [p.strip() for p in (policies.split(",") if isinstance(policies, str) else policies)]
    names = [n for n in names if n]
    if not names:
        raise InputError("no policy given", where="--policy")
    if names == ["all"]:  # every policy registered for the scenario
        names = registry.names(scenario)
        if not names:
            raise InputError(f"no policy is registered for scenario {scenario!r}",
                             where="--policy")
    out = []
    for n in names:
        try:
            out.append(registry.get(n, scenario))
        except KeyError as exc:
            raise InputError(str(exc.args[0]), where="--policy") from None
    if len({c.name for c in out}) != len(out):
        raise InputError(f"a policy is named twice in {names}", where="--policy")
    return out


def make_scenario(name: str, options: dict[str, Any]) -> Any:
    """Instantiate scenario ``name`` with ``options``; errors name the option."""
    from traces.replay.base import get_scenario

    try:
        cls = get_scenario(name)
    except KeyError as exc:
        raise InputError(str(exc.args[0]), where="--scenario") from None
    try:
        return cls(**options)
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc), where="--option") from None


def param_sets(cls: type, sweep: bool) -> list[dict[str, Any]]:
    """List the parameter sets a family runs: its defaults, or each point of its grid."""
    if sweep and cls.sweep_param and cls.sweep_grid:
        return [{cls.sweep_param: v} for v in cls.sweep_grid]
    return [{}]


def _timeline_point(cls: type, sweep: bool) -> dict[str, Any]:
    """Pick the run whose timeline is kept: the default point, else the first."""
    sets = param_sets(cls, sweep)
    default = {cls.sweep_param: cls.defaults.get(cls.sweep_param)} if cls.sweep_param else {}
    return default if default in sets else sets[0]


def load_trace(trace: str | Path, fmt: str | None, step: float | None) -> pd.DataFrame:
    """Read a trace through :func:`traces.load`; every failure is an InputError."""
    import traces

    path = traces.resolve(trace)
    try:
        return traces.load(path, format=fmt, step=step)
    except TidewiseError:
        raise
    except (OSError, ValueError, KeyError, UnicodeDecodeError, EOFError) as exc:
        raise TraceFormatError(f"cannot read the trace: {exc}", str(path)) from None


def split_frame(frame: pd.DataFrame, until: float | str) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                 dict[str, Any]]:
    """Split a frame at ``until`` (a share of its span, a unix time or an ISO date).

    Raises:
        InputError: an unreadable ``until``, or one that leaves either part empty.

    """
    ts = frame["ts"].to_numpy(dtype=np.float64)
    t0, t1 = float(ts.min()), float(ts.max())
    try:
        value = float(until)
    except (TypeError, ValueError):
        try:
            stamp = pd.Timestamp(str(until))
            value = (stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp).timestamp()
        except (ValueError, TypeError):
            raise InputError(f"expected a share (0.5), a unix time or an ISO date, got "
                             f"{until!r}", where="--train-until") from None
    cut = t0 + value * (t1 - t0) if 0 < value < 1 else value
    if not t0 < cut <= t1:
        raise InputError(f"{until!r} leaves nothing to train on or nothing to score (the trace "
                         f"spans {t0:.0f}..{t1:.0f})", where="--train-until")
    train, test = frame[ts < cut], frame[ts >= cut]
    for part in (train, test):
        part.attrs.update(frame.attrs)
    return train, test, {"train_span": [t0, cut], "scored_span": [cut, t1]}


def model_forecaster(model: str, sc: Any, train_frame: pd.DataFrame, data: Any,  # noqa: ANN401
                     classes: list[type], overrides: dict[str, dict[str, Any]], seed: int,
                     params: dict[str, Any], progress: bool = False) -> tuple[Any, dict[str, Any]]:
    """Load or train the model fed to the policies; return it and what the report says of it.

    A saved artifact folder is loaded; a registered model name is trained on the scenario's
    forecast series of the training part (its last fifth as validation), with a horizon that
    covers every chosen policy, and scored (CRPS, MSE, coverage) on the scored part;
    ``progress`` shows the training's epochs / quantile models on a bar.

    Raises:
        InputError: an unknown model, a bad parameter, or too little data to train or score.

    """
    from models.base import available_models, get_estimator, load_predictor
    from models.training import score

    horizons = [sc.forecast_horizon(cls(**overrides.get(cls.name, {})), data)
                for cls in classes if getattr(cls, "needs_forecast", False)]
    need = max(horizons, default=1)
    scored = sc.forecast_series(data)
    params = dict(params)
    context = int(params.pop("context_length", 72))
    if model == "truth":  # perfect foresight over the scored part (no training)
        cols = [s.values[:, 0] for s in scored]
        if len({len(c) for c in cols}) != 1:
            raise InputError("the truth forecaster needs series of one length (vm: "
                             "entities=aggregate)", where="--forecaster")
        info = {"name": "truth", "model": "truth", "horizon_needed": need}
        return TruthForecaster(np.column_stack(cols)), info
    try:
        if Path(model).is_dir():
            predictor = load_predictor(model)
            info: dict[str, Any] = {"name": f"model:{Path(model).name}", "artifact": model}
            context = predictor.context_length
        else:
            if model not in available_models():
                raise InputError(f"no model {model!r}; known: {', '.join(available_models())}"
                                 " (or give a saved artifact folder)", where="--forecaster")
            est = get_estimator(model, context_length=context, prediction_length=need,
                                seed=seed, **params)
            series = sc.forecast_series(sc.prepare(train_frame))
            cut = [int(len(s) * 0.8) for s in series]
            train = [_rows(s, 0, c) for s, c in zip(series, cut, strict=True)]
            val = [_rows(s, max(0, c - context), len(s)) for s, c in zip(series, cut, strict=True)]
            t0 = time.perf_counter()
            from models.progress import FitBar

            with FitBar(1, "train forecaster", enabled=progress, lazy=True) as bar:
                bar.start(model)
                predictor = est.fit(train, val, progress=bar.event)
                bar.done()
            info = {"name": f"model:{model}", "model": model, "params": _jsonable(params),
                    "train_seconds": round(time.perf_counter() - t0, 3)}
        metrics = score(predictor, scored, context, min(need, predictor.prediction_length))
    except TidewiseError as exc:
        if isinstance(exc, InputError) and exc.where == "--forecaster":
            raise
        raise InputError(str(exc), where="--forecaster") from None
    info.update(context_length=context, prediction_length=predictor.prediction_length,
                horizon_needed=need, scored={k: metrics[k] for k in
                                             ("crps", "mse", "mae", "coverage_90",
                                              "coverage_upper_99", "windows")})
    return predictor, _jsonable(info)


def _rows(s: Any, a: int, b: int) -> Any:  # noqa: ANN401
    from models.data import Series

    return Series(s.values[a:b], s.ts[a:b], s.indicators, s.entity, s.step)


def run_replay(
    trace: str | Path | pd.DataFrame,
    scenario: str,
    policies: Sequence[str] | str,
    *,
    sweep: bool = False,
    out_dir: str | Path | None = None,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    fmt: str | None = None,
    step: float | None = None,
    progress: bool = False,
    forecaster: Callable | None | str = "auto",
    plots: bool = True,
    model: str | None = None,
    train_until: float | str = 0.5,
    model_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Replay ``trace`` through each policy (or each point of its sweep) and report.

    Args:
        trace: a trace path (read with :func:`traces.load`) or a canonical long frame.
        scenario: ``vm``, ``serverless`` or ``power``.
        policies: policy names registered for the scenario (list or comma-separated), or
            ``"all"``.
        sweep: run each policy over its ``sweep_grid`` instead of its defaults only.
        out_dir: folder for report.json, config.json, timeline.csv and the plots; None
            writes nothing.
        seed: seed of every run (runs are deterministic for a seed).
        options: scenario options (``--option key=value``), checked against its defaults;
            a key ``policy.param`` sets that parameter of a chosen policy instead (a sweep
            still walks the family's grid for its sweep parameter).
        fmt: trace format name (None: detected).
        step: resample the trace to this many seconds per step when loading.
        progress: show a tqdm progress bar over the runs.
        forecaster: for ``needs_forecast`` policies: ``"auto"`` (the policy's or the
            scenario's default), None (no forecast: the policy falls back) or a callable.
        plots: draw the plots when writing ``out_dir``.
        model: feed ``needs_forecast`` policies a trained model instead of their online
            forecaster: a registered model name (trained here on the part of the trace before
            ``train_until``), a saved artifact folder, or ``truth`` (perfect foresight: the
            realised future as a one-sample Forecast). Every policy, the peers included, is
            then replayed and scored on the part after ``train_until`` only, and the report
            records the model, the two spans and the model's own CRPS on the scored part.
        train_until: where training ends: a share of the trace's span (0 < x < 1), a unix
            time, or an ISO date.
        model_params: ``context_length`` (default 72) and the model's own parameters.

    Returns:
        The report dict (also written as ``out_dir/report.json``).

    Raises:
        InputError: unknown scenario/policy/option, unreadable trace or unusable data.

    """
    options = dict(options or {})
    # "policy.param" options set a policy's parameter; the rest configure the scenario
    overrides: dict[str, dict[str, Any]] = {}
    for key in [k for k in options if "." in k]:
        pname, _, param = key.partition(".")
        overrides.setdefault(pname, {})[param] = options.pop(key)
    sc = make_scenario(scenario, options)
    classes = resolve_policies(scenario, policies)
    chosen = {c.name for c in classes}
    for pname, params in overrides.items():
        if pname not in chosen:
            raise InputError(f"policy {pname!r} is not among --policy {sorted(chosen)}",
                             where=f"--option {pname}.{next(iter(params))}")
    for cls in classes:  # refuse unknown or invalid parameters before any work
        try:
            cls(**overrides.get(cls.name, {}))
        except (ValueError, TypeError) as exc:
            raise InputError(str(exc), where=f"--option {cls.name}.*") from None
    out_path = Path(out_dir) if out_dir is not None else None
    if out_path is not None and out_path.exists() and not out_path.is_dir():
        raise InputError("exists and is not a folder", where=str(out_path))
    if out_path is not None:
        _check_writable(out_path)
    if isinstance(trace, pd.DataFrame):
        frame, trace_name = trace, str(trace.attrs.get("source", "<frame>"))
    else:
        frame, trace_name = load_trace(trace, fmt, step), str(trace)
    model_info: dict[str, Any] | None = None
    if model is not None:
        train_frame, frame, spans = split_frame(frame, train_until)
    try:
        data = sc.prepare(frame)
    except TidewiseError:
        raise
    except (ValueError, KeyError) as exc:
        raise InputError(f"cannot prepare the trace for scenario {scenario!r}: {exc}",
                         where=trace_name) from None
    if model is not None:
        predictor, model_info = model_forecaster(
            model, sc, train_frame, data, classes, overrides, seed, model_params or {},
            progress=progress)
        model_info.update(spans)
        forecaster = "model"
        if not isinstance(predictor, TruthForecaster):  # one shared instance, its windows
            predictor = PredictorForecaster(predictor, seed, model_info["name"])  # batched
            series = sc.forecast_series(data)
            if len({len(s) for s in series}) == 1 and len(series[0]) * len(series) <= 200_000:
                predictor.precompute(np.column_stack([s.values[:, 0] for s in series]),
                                     float(series[0].ts[0]), float(series[0].step))

    jobs = [(cls, ps) for cls in classes for ps in param_sets(cls, sweep)]
    report_policies: dict[str, list[dict[str, Any]]] = {cls.name: [] for cls in classes}
    timelines: dict[str, pd.DataFrame] = {}
    panel_labels: dict[str, str] = {}  # family -> "hpa target=0.7" (the run drawn)
    resolved_params: dict[str, list[dict[str, Any]]] = {cls.name: [] for cls in classes}
    wall: dict[str, float] = {}
    steps_done: dict[str, int] = {}
    forecasters_used: dict[str, str] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc=f"replay {scenario}", unit="run")
        if hasattr(sc, "progress"):  # a scenario that can show progress within a run
            sc.progress = True
    try:
        for cls, ps in jobs:
            try:
                pol = cls(**{**overrides.get(cls.name, {}), **ps})
            except (ValueError, TypeError) as exc:
                raise InputError(str(exc), where=f"policy {cls.name} {ps}") from None
            if forecaster == "model":
                fc = forecaster_for(pol, seed, predictor)
            else:
                fc = forecaster_for(pol, seed, None if forecaster == "auto" else forecaster)
            if isinstance(fc, PredictorForecaster):
                # an online model streams each run from its start, a caller's own object too:
                # a sweep point must not see what the previous point's run taught it
                fc.restart()
            want_tl = ps == _timeline_point(cls, sweep)
            t0 = time.perf_counter()
            res = sc.run(pol, data, seed=seed, timeline=want_tl, forecaster=fc)
            elapsed = time.perf_counter() - t0
            wall.setdefault(cls.name, 0.0)
            wall[cls.name] += elapsed
            steps_done[cls.name] = steps_done.get(cls.name, 0) + int(
                (res.extra or {}).get("entity_steps", 0))
            if fc is not None:
                forecasters_used[cls.name] = getattr(fc, "name", type(fc).__name__)
            totals = {k: float(v) if isinstance(v, int | float | np.number) else v
                      for k, v in res.totals.items()}
            entry = {"params": _jsonable(dict(pol.params)), "totals": _jsonable(totals)}
            report_policies[cls.name].append(entry)
            resolved_params[cls.name].append(_jsonable(dict(pol.params)))
            if want_tl and res.timeline is not None:
                timelines[cls.name] = res.timeline
                panel_labels[cls.name] = " ".join(
                    [cls.name, *(f"{k}={knob_text(v)}" for k, v in ps.items())])
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(cls.name)
    finally:
        if bar is not None:
            bar.close()
    config = {
        "scenario": scenario,
        "scenario_options": _jsonable(sc.config),
        "resolved": _jsonable(getattr(data, "resolved", {}) or {}),
        "policies": resolved_params,
        "sweep": bool(sweep),
        "seed": int(seed),
        "trace": trace_name,
        "format": fmt if fmt is not None else frame.attrs.get("format"),
        "step_s": step,
        "forecaster": (forecaster if isinstance(forecaster, str) or forecaster is None
                       else getattr(forecaster, "name", type(forecaster).__name__)),
        "forecasters_used": forecasters_used,  # family -> forecaster, needs_forecast only
        "model": model_info,  # the trained model fed to the policies (None: online ones)
        "cost_figure": sc.cost_figure,
        "sla_figure": sc.sla_figure,
        # figures the CLI prints per run (a scenario may name more with summary_figures)
        "summary_figures": list(getattr(sc, "summary_figures", None)
                                or (sc.cost_figure, sc.sla_figure)),
        # unit of each figure and timeline column (common.units.human; "%": a fraction)
        "units": sc.units_for(data),
    }
    report = {"scenario": scenario, "trace": trace_name, "config": config,
              "policies": report_policies}
    if out_path is not None:
        meta = {"python": platform.python_version(), "numpy": np.__version__,
                "pandas": pd.__version__,
                "wall_s": {k: round(v, 4) for k, v in wall.items()},
                "entity_steps": steps_done}
        _write_outputs(out_path, report, {**config, "run": meta}, timelines, sc, plots,
                       panel_labels)
    return report


def _check_writable(out_path: Path) -> None:
    """Refuse an --out that cannot be written before the replay runs, not after it.

    Probes with an empty temporary folder (removed at once) in ``out_path`` when it exists,
    and in its nearest existing ancestor otherwise, so nothing is left behind.

    Raises:
        InputError: naming ``out_path`` and the operating system's reason.

    """
    probes = [out_path.parent]
    while not probes[0].exists() and probes[0] != probes[0].parent:
        probes[0] = probes[0].parent
    if out_path.exists():
        probes.append(out_path)
    for where in probes:
        try:
            os.rmdir(tempfile.mkdtemp(prefix=".tidewise-probe-", dir=where))
        except OSError as exc:
            raise InputError(f"cannot write the outputs there ({exc.strerror or exc}: {where})",
                             where=str(out_path)) from None


def _write_outputs(out_path: Path, report: dict, config: dict,
                   timelines: dict[str, pd.DataFrame], sc: Any, plots: bool,
                   panel_labels: dict[str, str] | None = None) -> None:
    """Write everything into a temp folder beside ``out_path``, then move it in place."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.tmp-", dir=out_path.parent))
    try:
        (tmp / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "config.json").write_text(json.dumps(_jsonable(config), indent=2) + "\n")
        if timelines:
            long = pd.concat(
                [tl.assign(policy=name) for name, tl in timelines.items()], ignore_index=True
            )
            long.to_csv(tmp / "timeline.csv", index=False)
        if plots:
            from traces.replay import plots as plots_mod

            plots_mod.cost_vs_sla(report, sc.cost_figure, sc.sla_figure,
                                  tmp / "cost_vs_sla.png")
            plots_mod.timeline(timelines, tmp / "timeline.png",
                               title=f"{report['scenario']}: {Path(report['trace']).name}",
                               units=report["config"].get("units"), labels=panel_labels)
        if not out_path.exists():
            os.replace(tmp, out_path)
        else:
            for f in tmp.iterdir():
                os.replace(f, out_path / f.name)
            tmp.rmdir()
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
