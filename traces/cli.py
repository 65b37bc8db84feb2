"""Commands of this area for the ``tidewise`` CLI (see :mod:`service.cli`).

``tidewise replay`` replays a public trace through policies on a simulated clock
(:func:`traces.replay.core.run_replay`). Heavy imports stay inside the command body.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def replay(
    trace: Annotated[Path, typer.Option("--trace", help="Trace file or folder, as published.")],
    scenario: Annotated[str, typer.Option("--scenario", help="serverless, vm or power.")],
    policy: Annotated[str, typer.Option("--policy", help="Comma-separated policy names, or all.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (report.json, plots).")],
    format: Annotated[  # noqa: A002 - the flag is --format
        str | None, typer.Option("--format", help="Trace format name (detected if omitted).")
    ] = None,
    sweep: Annotated[
        bool, typer.Option("--sweep", help="Run each policy over its sweep grid.")
    ] = False,
    step: Annotated[
        float | None, typer.Option("--step", help="Resample the trace to S seconds per step.")
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            help="Scenario option key=value, or policy.param=value (repeatable), "
            "e.g. boot_s=120 or hpa.target=0.6.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every run.")] = 0,
    forecaster: Annotated[
        str | None,
        typer.Option("--forecaster", help="Feed forecast-reading policies a trained model: a "
                     "model name (trained on the trace before --train-until) or an artifact "
                     "folder; all policies are then scored after --train-until only."),
    ] = None,
    train_until: Annotated[
        str, typer.Option("--train-until", help="End of training: a share (0.5), a unix time "
                          "or an ISO date.")
    ] = "0.5",
    forecaster_param: Annotated[
        list[str] | None,
        typer.Option("--forecaster-param", help="context_length=N or a model parameter "
                     "key=value (repeatable)."),
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")
    ] = True,
) -> None:
    """Replay a trace through policies; write report.json, config.json and plots to --out."""
    from common.errors import TidewiseError

    try:
        from traces.replay.core import parse_options, run_replay

        report = run_replay(
            trace, scenario, policy, sweep=sweep, out_dir=out, seed=seed,
            options=parse_options(option), fmt=format, step=step, progress=progress,
            model=forecaster, train_until=train_until,
            model_params=parse_options(forecaster_param),
        )
    except TidewiseError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    for line in summary_lines(report, sweep):
        typer.echo(line)
    info = report["config"].get("model")
    if info:
        typer.echo(forecaster_line(info))
    typer.echo(f"wrote {out / 'report.json'}")


def forecaster_line(info: dict) -> str:
    """Say where the replay's trained forecaster was scored and how well.

    CRPS and MAE are in the units of the series the policies read, MSE in their square.
    """
    from common.units import count, human, utc

    span = (f"scored {utc(info['scored_span'][0])} .. {utc(info['scored_span'][1])}"
            if "scored_span" in info else "scored on the whole trace")
    sc = info.get("scored")
    if sc:
        figures = (f", crps={human(sc['crps'], digits=4)} mse={human(sc['mse'], digits=4)}"
                   f" (the forecast series' units, squared for mse) coverage_90="
                   f"{human(sc['coverage_90'], '%')}"
                   + (f" coverage_upper_99={human(sc['coverage_upper_99'], '%')}"
                      if "coverage_upper_99" in sc else "")
                   + f" over {count(sc['windows'], 'window')}")
    elif info.get("model") == "truth":
        figures = " (perfect foresight: nothing to score)"
    else:
        figures = ""
    return f"forecaster {info['name']}: {span}{figures}"


def summary_lines(report: dict, sweep: bool) -> list[str]:
    """One line per run: the policy, its knob when swept, each summary figure with its unit.

    ``keepalive-10m: wasted_memory_gb_s=1.56 M GB·s, cold_start_rate=1.72 %`` (figures in
    :func:`common.units.human`'s form, units from the report's config).
    """
    from common.units import human
    from policies import registry

    cfg = report["config"]
    units = cfg.get("units") or {}
    lines = []
    for name, runs in report["policies"].items():
        param = registry.get(name, report["scenario"]).sweep_param
        for r in runs:
            knob = f" {param}={r['params'].get(param)}" if sweep and param else ""
            shown = ", ".join(
                f"{f}={human(r['totals'][f], units.get(f, ''))}"
                for f in cfg["summary_figures"] if r["totals"].get(f) is not None
            )
            lines.append(f"{name}{knob}: {shown}")
    return lines


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("replay")(replay)
