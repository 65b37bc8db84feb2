"""Engines and transactions for the store (SQLite in WAL mode, or PostgreSQL).

SQLite: every connection sets ``journal_mode=WAL``, ``synchronous`` (FULL by default, see
:class:`service.config.Settings`), ``foreign_keys=ON`` and a busy timeout. Python's sqlite3
module is switched to autocommit so that SQLAlchemy's ``begin`` emits the ``BEGIN`` itself:
write transactions use ``BEGIN IMMEDIATE`` (take the write lock up front, so two writers
queue on the busy timeout instead of failing with "database is locked" half-way), reads a
plain deferred ``BEGIN``.

PostgreSQL: ``db_schema`` becomes the connection's ``search_path`` and ``jit`` is off unless
``pg_jit`` (see :class:`service.config.Settings`); a pooled connection is
pinged before use only when it sat idle longer than ``db_ping_idle_s``
(:func:`_install_idle_ping`).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import sessionmaker

from service.config import Settings

#: Execution option that marks a transaction as a writer (BEGIN IMMEDIATE on SQLite).
WRITE_OPTION = "tidewise_write"


def make_engine(settings: Settings) -> Engine:
    """Create the engine described by ``settings`` (nothing is connected yet)."""
    url = make_url(settings.db_url)
    if settings.is_sqlite:
        engine = create_engine(
            url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_pool_size,
            connect_args={
                "timeout": settings.sqlite_busy_timeout_ms / 1000,
                "check_same_thread": False,
            },
        )
        _install_sqlite_hooks(engine, settings)
        return engine
    # libpq's ``options``: what the URL or PGOPTIONS already asks for (either is replaced by
    # an ``options`` connect argument), then Tidewise's own
    given = url.query.get("options") or os.environ.get("PGOPTIONS")
    options = [given] if isinstance(given, str) else list(given or ())  # repeated in the URL
    if not settings.pg_jit:
        options.append("-c jit=off")
    if settings.db_schema:
        options.append(f"-c search_path={settings.db_schema}")
    connect_args = {"options": " ".join(options)} if options else {}
    engine = create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        connect_args=connect_args,
    )
    _install_idle_ping(engine, settings.db_ping_idle_s)
    return engine


def _install_idle_ping(engine: Engine, idle_s: float) -> None:
    """Ping a pooled connection before use when it sat idle longer than ``idle_s``.

    SQLAlchemy's ``pool_pre_ping`` pings at every checkout: a round trip before every
    transaction, 5 % of the ingest worker's time and 4 % of the forecast job's on
    PostgreSQL (py-spy, docs/ingest.md). A connection checked in a moment ago is as alive as
    one just pinged, so only one idle longer than ``idle_s`` (or never used) is pinged; a
    dead one is replaced before use (the pool retries the checkout on
    ``DisconnectionError``). A server restart within ``idle_s`` of a connection's last use
    fails that connection's next statement once (503 over HTTP); SQLAlchemy then discards
    the pool's other connections.
    """

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn, record) -> None:  # noqa: ANN001 - pool objects
        record.info["tidewise_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn, record, _proxy) -> None:  # noqa: ANN001 - pool objects
        since = record.info.get("tidewise_idle_since")
        if since is not None and time.monotonic() - since <= idle_s:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            if engine.dialect.is_disconnect(exc, dbapi_conn, None):
                raise DisconnectionError(f"pooled connection is gone: {exc}") from exc
            raise


def _install_sqlite_hooks(engine: Engine, settings: Settings) -> None:
    sync = settings.sqlite_synchronous
    busy = settings.sqlite_busy_timeout_ms
    cache_kib = settings.sqlite_cache_mib * 1024
    checkpoint = settings.sqlite_wal_autocheckpoint_pages

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # noqa: ANN001 - DB-API object
        # Autocommit at the driver: SQLAlchemy's "begin" event below emits BEGIN itself.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={sync}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy)}")
        cur.execute(f"PRAGMA cache_size=-{int(cache_kib)}")  # negative: KiB, not pages
        cur.execute(f"PRAGMA wal_autocheckpoint={int(checkpoint)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextlib.contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """One write transaction: commits on success, rolls back on any exception."""
    with engine.connect().execution_options(**{WRITE_OPTION: True}) as conn:
        with conn.begin():
            yield conn


def ensure_schema(engine: Engine, settings: Settings) -> None:
    """Create the PostgreSQL schema named by ``db_schema`` when missing (no-op on SQLite)."""
    if settings.is_sqlite or not settings.db_schema:
        return
    with engine.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{settings.db_schema}"'))
        conn.commit()


class IdCache:
    """Committed entity and series ids of this process, filled lazily, thread-safe."""

    def __init__(self) -> None:
        self.entities: dict[str, tuple[int, str, dict[str, Any]]] = {}  # name -> (id, kind, labels)
        self.series: dict[tuple[str, str], int] = {}  # (entity, metric) -> id
        self.lock = threading.Lock()


class Store:
    """The open store of one process: engine, session factory and the id cache.

    Entity and series rows are never deleted by the daemon (retention removes samples and
    rollups only), so their ids, once committed, can be cached for the life of the process.
    """

    def __init__(self, settings: Settings, engine: Engine | None = None) -> None:
        self.settings = settings
        self.engine = engine or make_engine(settings)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        #: Sessions that take the write lock up front (BEGIN IMMEDIATE on SQLite).
        self.write_sessions = sessionmaker(
            self.engine.execution_options(**{WRITE_OPTION: True}), expire_on_commit=False
        )
        self.cache = IdCache()

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
