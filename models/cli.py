"""Commands of this area for the ``tidewise`` CLI (see :mod:`service.cli`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

TraceFormat = Annotated[
    str | None, typer.Option("--format", help="Trace format name for traces.load.")
]
Step = Annotated[
    float | None, typer.Option(help="Resample the trace to this many seconds per row.")
]


def _list_models(value: bool) -> None:
    """Print every registered model name, one per line, and stop (``--list-models``)."""
    if not value:
        return
    from models.base import available_models

    for name in available_models():
        typer.echo(name)
    raise typer.Exit(0)


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""

    @app.command()
    def evaluate(
        data: Annotated[Path, typer.Option(help="Trace file, or a folder evaluated file by file.")],
        context: Annotated[int, typer.Option(help="Context length L [rows].", min=1)],
        horizon: Annotated[int, typer.Option(help="Forecast horizon H [rows].", min=1)] = 1,
        models: Annotated[
            str, typer.Option(help="Comma-separated model names (see --list-models or "
                               "`tidewise models available`).")
        ] = "last,window-mean,seasonal-naive,quantile-gbm,harmony",
        out: Annotated[
            Path, typer.Option(help="Output folder for report.json and forecasts.npz.")
        ] = Path("evaluation"),
        format: TraceFormat = None,
        step: Step = None,
        samples: Annotated[int, typer.Option(help="Samples per forecast (S >= 100).")] = 100,
        seed: Annotated[int, typer.Option(help="Seed of training and sampling.")] = 0,
        set_: Annotated[
            list[str] | None,
            typer.Option("--set", help="Model parameter MODEL.KEY=VALUE (JSON value); repeatable."),
        ] = None,
        progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
        list_models: Annotated[
            bool,
            typer.Option("--list-models", is_eager=True, callback=_list_models,
                         help="Print the registered model names and exit."),
        ] = False,
    ) -> None:
        """Train and score forecasters under HARMONY's protocol (70/10/20, MinMax on train).

        Writes OUT/report.json (MSE, MAE, CRPS, wQL 0.1/0.5/0.9, 90% coverage per model,
        per indicator and averaged) and OUT/forecasts.npz (y_true, samples, indicators).
        """
        from common.errors import InputError
        from models.base import available_models
        from models.evaluate import parse_overrides, run_evaluation

        names = [m.strip() for m in models.split(",") if m.strip()]
        if not names:
            raise InputError("no model named", where="--models")
        known = available_models()
        bad = [m for m in names if m not in known]
        if bad:
            raise InputError(f"unknown model(s) {bad}; known: {known}", where="--models")
        if len(set(names)) != len(names):
            raise InputError(f"a model is listed twice in {names}", where="--models")
        report = run_evaluation(
            data,
            out,
            models=names,
            context=context,
            horizon=horizon,
            fmt=format,
            step=step,
            num_samples=samples,
            seed=seed,
            overrides=parse_overrides(set_ or []),
            progress=progress,
        )
        typer.echo(evaluation_table(report))
        typer.echo(f"wrote {out / 'report.json'} and {out / 'forecasts.npz'}")


def evaluation_table(report: dict) -> str:
    """Return the table ``tidewise evaluate`` prints: a row per model, units in the header.

    MSE, MAE, CRPS and wQL are on the protocol's MinMax-scaled values (1 = an indicator's
    training range), so they are given as plain numbers with 4 decimals, comparable down
    the column; coverage is a percentage; fit time in seconds.
    """
    from common.units import human

    head = (f"{'model':<20}{'MSE':>9}{'MAE':>9}{'CRPS':>9}{'wQL':>9}{'cov90':>9}"
            f"{'fit':>10}{'forecast':>17}")
    lines = [head]
    for name, entry in report["models"].items():
        a = entry["average"]

        def f(v: float | None, w: int = 9) -> str:
            return f"{v:>{w}.4f}" if v is not None else f"{'-':>{w}}"

        per_window = _mean_of(entry, "predict_ms_per_window")
        lines.append(
            f"{name:<20}{f(a['mse'])}{f(a['mae'])}{f(a['crps'])}{f(a['wql_mean'])}"
            f"{human(a['coverage_90'], '%'):>9}{human(entry['fit_seconds_mean'], 's'):>10}"
            f"{human(per_window, 'ms/window'):>17}"
        )
    lines.append("MSE, MAE, CRPS, wQL: on MinMax-scaled values (1 = an indicator's training "
                 "range); cov90: targets inside the 5-95 % interval; fit: mean per dataset.")
    return "\n".join(lines)


def _mean_of(entry: dict, key: str) -> float | None:
    vals = [d[key] for d in entry["per_dataset"].values() if d.get(key) is not None]
    return sum(vals) / len(vals) if vals else None

