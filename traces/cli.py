"""Commands of this area for the ``tidewise`` CLI (see :mod:`service.cli`).

``tidewise replay`` replays a public trace through policies on a simulated clock
(:func:`traces.replay.core.run_replay`). Heavy imports stay inside the command body.
"""

from __future__ import annotations

from pathlib import Path

import typer


def replay(
    trace: Path = typer.Option(..., "--trace", help="Trace file or folder, as published."),
    format: str | None = typer.Option(  # noqa: A002 - the CLI flag is --format
        None, "--format", help="Trace format name (detected when omitted)."
    ),
    scenario: str = typer.Option(..., "--scenario", help="serverless, vm or power."),
    policy: str = typer.Option(..., "--policy", help="Comma-separated policy names."),
    sweep: bool = typer.Option(False, "--sweep", help="Run each policy over its sweep grid."),
    out: Path = typer.Option(..., "--out", help="Output folder (report.json, plots)."),
    step: float | None = typer.Option(
        None, "--step", help="Resample the trace to this many seconds per step."
    ),
    option: list[str] | None = typer.Option(  # noqa: B008 - typer declares options so
        None, "--option", help="Scenario option key=value (repeatable), e.g. boot_s=120."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of every run."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
) -> None:
    """Replay a trace through policies; write report.json and plots to --out."""
    from service.errors import TidewiseError

    try:
        from traces.replay.core import parse_options, run_replay

        report = run_replay(
            trace, scenario, policy, sweep=sweep, out_dir=out, seed=seed,
            options=parse_options(option), fmt=format, step=step, progress=progress,
        )
    except TidewiseError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    cost, sla = report["config"]["cost_figure"], report["config"]["sla_figure"]
    for name, runs in report["policies"].items():
        for r in runs:
            knob = ""
            from policies import registry

            param = registry.get(name, scenario).sweep_param
            if sweep and param:
                knob = f" {param}={r['params'].get(param)}"
            typer.echo(
                f"{name}{knob}: {cost}={r['totals'].get(cost):.6g} "
                f"{sla}={r['totals'].get(sla):.6g}"
            )
    typer.echo(f"wrote {out / 'report.json'}")


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("replay")(replay)
