"""Fixtures of the service tests: one isolated store per test on SQLite and PostgreSQL.

* SQLite: a fresh file in the test's tmp dir.
* PostgreSQL (127.0.0.1:5432, user postgres, database ``test``): a fresh schema per test,
  selected through ``search_path`` (``Settings.db_schema``) and dropped afterwards.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import create_engine, text

from service import migrate
from service.config import Settings
from service.store.db import Store

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pg_available() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


PG_AVAILABLE = _pg_available()
BACKENDS = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(not PG_AVAILABLE, reason="no PostgreSQL at 127.0.0.1:5432"),
        ],
    ),
]


@contextlib.contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped on exit."""
    name = f"tw_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


def make_settings(backend: str, tmp_path, schema: str | None = None, **kw) -> Settings:  # noqa: ANN001
    """Settings for one test's store (scheduler off unless asked for)."""
    kw.setdefault("scheduler_enabled", False)
    kw.setdefault("sqlite_cache_mib", 4)
    if backend == "sqlite":
        return Settings(db_url=f"sqlite:///{tmp_path / 'tidewise.db'}", **kw)
    return Settings(db_url=PG_URL, db_schema=schema, **kw)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    """``sqlite`` or ``postgresql``."""
    return request.param


@pytest.fixture
def settings_defaults() -> dict:
    """Overrides every :func:`settings_factory` call starts from (a directory may override)."""
    return {}


@pytest.fixture
def settings_factory(backend, tmp_path, settings_defaults):  # noqa: ANN001, ANN201
    """Build settings for this test's isolated database, with overrides."""
    stack = contextlib.ExitStack()
    schema = stack.enter_context(pg_schema()) if backend == "postgresql" else None

    def factory(**kw) -> Settings:
        return make_settings(backend, tmp_path, schema, **{**settings_defaults, **kw})

    yield factory
    stack.close()


@pytest.fixture
def settings(settings_factory) -> Settings:  # noqa: ANN001
    """Settings of this test's isolated, not yet migrated database."""
    return settings_factory()


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """An open store on a freshly migrated database."""
    migrate.upgrade(settings)
    s = Store(settings)
    yield s
    s.close()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_in_thread(settings_or_app) -> Iterator[str]:  # noqa: ANN001
    """Run the real app (or one built from settings) under uvicorn on a free port in a thread.

    Yields its base URL.
    """
    import uvicorn

    from service.api import create_app

    app = create_app(settings_or_app) if isinstance(settings_or_app, Settings) else settings_or_app
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def live_url(store: Store) -> Iterator[str]:
    """Base URL of the API served over a real socket on this test's migrated store."""
    with serve_in_thread(store.settings) as url:
        yield url


@pytest.fixture
def http(live_url: str) -> Iterator[httpx.Client]:
    """An HTTP client bound to :func:`live_url`."""
    with httpx.Client(base_url=live_url, timeout=30) as client:
        yield client


@pytest.fixture
def port() -> int:
    """A free TCP port for a daemon started by the test."""
    return free_port()


@pytest.fixture
def serve():  # noqa: ANN201
    """The :func:`serve_in_thread` context manager, for tests that need their own settings."""
    return serve_in_thread
