"""Commands of this area for the ``tidewise`` CLI (see :mod:`service.cli`).

``tidewise serve``, ``tidewise db upgrade|downgrade|current|revision`` and
``tidewise feed``. Heavy imports (uvicorn, FastAPI, pandas) stay inside the bodies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated

import typer

from common.errors import ConfigError, InputError

db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command()(serve)
    app.command()(feed)
    app.add_typer(db_app, name="db")


def _settings(**overrides: object):  # noqa: ANN202 - Settings, imported lazily
    from service.config import load_settings

    return load_settings(**{k: v for k, v in overrides.items() if v is not None})


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (TIDEWISE_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (TIDEWISE_PORT).")] = None,
    access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
) -> None:
    """Run the HTTP API and the scheduled jobs in one process until Ctrl-C.

    The jobs (periods from the settings, shared with other daemons on one PostgreSQL through
    leases): rollups, retention, forecast (a joint forecast per entity, then a decision per
    target), retrain (a candidate model per indicator set, in a child process) and choose
    (each auto scaling target's forecaster, backtested on its own history).
    """
    import logging

    import uvicorn

    from service import migrate
    from service.api import create_app
    from service.store.db import make_engine

    settings = _settings(host=host, port=port)
    missing = _missing_sqlite_file(settings)
    if missing:
        raise ConfigError(f"no database at {missing}; run `tidewise db upgrade` first")
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            current = migrate.current_revisions(conn)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is reported plainly
        raise ConfigError(f"cannot open the store at {_safe_url(settings)}: {exc}") from None
    finally:
        engine.dispose()
    if current != migrate.head_revisions():
        raise ConfigError(
            f"the store at {_safe_url(settings)} is at revision {list(current) or 'none'}, "
            f"not {list(migrate.head_revisions())}; run `tidewise db upgrade` first"
        )
    _check_listen(settings.host, settings.port)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=access_log,
        timeout_graceful_shutdown=10,
    )


def _check_listen(host: str, port: int) -> None:
    """Refuse an address that cannot be bound now, before the app starts up.

    uvicorn would otherwise start the app (and its jobs), log the bind error and exit 3.

    Raises:
        ConfigError: the host does not resolve or the address is taken.

    """
    import socket

    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ConfigError(f"TIDEWISE_HOST={host}: cannot resolve it ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(addr)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}); choose another "
                "--port/TIDEWISE_PORT or stop the process using it"
            ) from None


def _missing_sqlite_file(settings) -> str | None:  # noqa: ANN001
    """Return the path of an SQLite store not created yet (connecting would create it)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url

    if not settings.is_sqlite:
        return None
    path = make_url(settings.db_url).database or ""
    return None if Path(path).exists() else str(Path(path).resolve())


def _safe_url(settings) -> str:  # noqa: ANN001
    from sqlalchemy.engine import make_url

    return make_url(settings.db_url).render_as_string(hide_password=True)


@contextlib.contextmanager
def _store_errors(settings) -> Iterator[None]:  # noqa: ANN001
    """Turn an unknown revision or an unreachable store into one ``error:`` line (exit 2)."""
    from alembic.util import CommandError
    from sqlalchemy.exc import OperationalError

    try:
        yield
    except CommandError as exc:
        raise InputError(f"{exc}; `tidewise db current` shows where the store is") from None
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise ConfigError(f"cannot open the store at {_safe_url(settings)}: {reason}") from None


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create or migrate the schema (TIDEWISE_DB_URL) to the newest revision."""
    from service import migrate

    settings = _settings()
    with _store_errors(settings):
        migrate.upgrade(settings, revision)
    typer.echo(f"{_safe_url(settings)}: at {', '.join(migrate.head_revisions())}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target revision (`base` drops all).")],
) -> None:
    """Migrate the schema back to REVISION."""
    from service import migrate

    settings = _settings()
    with _store_errors(settings):
        migrate.downgrade(settings, revision)


@db_app.command("current")
def db_current() -> None:
    """Print the database's revision and whether it is the newest."""
    from service import migrate
    from service.store.db import make_engine

    settings = _settings()
    missing = _missing_sqlite_file(settings)
    if missing:
        typer.echo(f"{_safe_url(settings)}: empty (no file at {missing} yet)")
        return
    engine = make_engine(settings)
    try:
        with _store_errors(settings), engine.connect() as conn:
            current = migrate.current_revisions(conn)
    finally:
        engine.dispose()
    heads = migrate.head_revisions()
    state = "up to date" if current == heads else f"behind; newest is {', '.join(heads)}"
    typer.echo(f"{_safe_url(settings)}: {', '.join(current) or 'empty'} ({state})")


@db_app.command("revision")
def db_revision(
    message: Annotated[str, typer.Option("-m", "--message", help="What the revision does.")],
    autogenerate: Annotated[bool, typer.Option(help="Diff models against the DB.")] = True,
) -> None:
    """(Developers) write a new dated migration from the models in service/tables.py."""
    from service import migrate

    settings = _settings()
    with _store_errors(settings):
        migrate.revision(settings, message, autogenerate)


def feed(
    trace: Annotated[
        str, typer.Option(help="Trace file/folder, or a bundled slice name (traces.BUNDLED).")
    ],
    format: Annotated[  # noqa: A002 - the user-facing option name
        str | None, typer.Option(help="Trace format (detected when omitted).")
    ] = None,
    url: Annotated[str, typer.Option(help="Base URL of `tidewise serve`.")] = "",
    shift_to_now: Annotated[
        bool, typer.Option(help="Shift timestamps so the trace ends now.")
    ] = False,
    step: Annotated[
        float | None,
        typer.Option(
            help="Resample to this many seconds (default: the trace's own grid, "
            "1 s for event traces)."
        ),
    ] = None,
    window: Annotated[
        float | None, typer.Option(help="Send only the trace's last WINDOW seconds.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=100_000, help="Samples per POST.")] = 5000,
) -> None:
    """Load a trace and POST it to a running daemon in batches."""
    import httpx

    import traces
    from service.feed import feed_frame

    path = traces.resolve(trace)
    frame = traces.load(path, format=format, step=step)
    if frame.attrs.get("step") is None and step is None:
        # Event traces (one row per request) are binned to the store's 1-second resolution;
        # otherwise rows in the same second would overwrite each other.
        frame = traces.load(path, format=format, step=1)
    if not url:
        s = _settings()
        url = f"http://{s.host}:{s.port}"
    with httpx.Client(timeout=60) as client:
        res = feed_frame(
            frame,
            client,
            url=url,
            batch_size=batch_size,
            shift_to_now=shift_to_now,
            window_s=window,
        )
    typer.echo(feed_message(res, url))


def feed_message(res, url: str) -> str:  # noqa: ANN001 - service.feed.FeedResult
    """``fed 12,345 samples of 1 entity in 3 batches to URL (...)``: counts with their nouns."""
    from common.units import count, utc

    span = "no samples" if res.samples == 0 else f"{utc(res.first_ts)} .. {utc(res.last_ts)}"
    return (
        f"fed {count(res.samples, 'sample')} of {count(res.entities, 'entity')} in "
        f"{count(res.batches, 'batch')} to {url} ({span}, shifted by {res.shift_s:,} s)"
    )
