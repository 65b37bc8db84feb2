"""The ``tidewise`` command line.

Each area registers its own commands (``service.commands``, ``traces.cli``,
``models.cli``) and keeps heavy imports (torch, pandas) inside the command bodies so
``tidewise --help`` stays fast; the thread pools are sized (:mod:`common.threads`) before
any of them is imported. Errors a user can cause (:class:`TidewiseError`) are
printed as one clear line on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import sys

import typer

from common.errors import ConfigError, TidewiseError
from common.threads import apply_thread_defaults

app = typer.Typer(
    name="tidewise",
    help="Cloud resource forecasting and autoscaling.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help texts carry units in brackets, "[rows]": text, not markup
)


@app.callback()
def _root() -> None:
    """Cloud resource forecasting and autoscaling."""


@app.command()
def version() -> None:
    """Print the installed Tidewise version."""
    from importlib.metadata import version as _v

    typer.echo(_v("tidewise"))


def _size_threads() -> ConfigError | None:
    """Size the thread pools (:mod:`common.threads`) before any command imports numpy.

    Runs when this module is imported, since the console script imports it (and the
    commands' modules with it) before calling :func:`main`; a bad setting is kept and
    reported by :func:`main` as one ``error:`` line.
    """
    try:
        apply_thread_defaults()
    except ConfigError as exc:
        return exc
    return None


_THREADS_ERROR = _size_threads()


def _register() -> None:
    from models import cli as models_cli
    from service import backtest as backtest_cli
    from service import commands as service_commands
    from service import models_cli as train_cli
    from traces import cli as traces_cli

    service_commands.register(app)
    traces_cli.register(app)
    models_cli.register(app)
    train_cli.register(app)
    backtest_cli.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``tidewise`` console script."""
    try:
        if _THREADS_ERROR is not None:
            raise _THREADS_ERROR
        app(args=argv)
    except TidewiseError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":
    main()
