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
            str, typer.Option(help="Comma-separated model names (see --list-models).")
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
        typer.echo(f"{'model':<16}{'MSE':>9}{'MAE':>9}{'CRPS':>9}{'wQL':>9}{'cov90':>8}")
        for name, entry in report["models"].items():
            a = entry["average"]

            def f(v, w=9, p=4):
                return f"{v:>{w}.{p}f}" if v is not None else f"{'-':>{w}}"

            typer.echo(
                f"{name:<16}{f(a['mse'])}{f(a['mae'])}{f(a['crps'])}{f(a['wql_mean'])}"
                f"{f(a['coverage_90'], 8, 3)}"
            )
        typer.echo(f"wrote {out / 'report.json'} and {out / 'forecasts.npz'}")

