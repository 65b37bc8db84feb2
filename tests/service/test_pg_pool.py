"""PostgreSQL pool: a connection idle past ``db_ping_idle_s`` is pinged (and replaced if the
server dropped it) before use; one used a moment ago is not (real server, real backends)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from service.store.db import Store, make_engine

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])


def _pid(store: Store) -> int:
    with store.sessions() as session:
        return session.execute(text("SELECT pg_backend_pid()")).scalar_one()


def _terminate(settings, pid: int) -> None:  # noqa: ANN001
    admin = make_engine(settings)
    try:
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
    finally:
        admin.dispose()


def test_an_idle_connection_the_server_dropped_is_replaced_before_use(settings_factory):
    settings = settings_factory(db_ping_idle_s=0.0, db_pool_size=1)  # ping at every checkout
    store = Store(settings)
    try:
        first = _pid(store)
        _terminate(settings, first)
        second = _pid(store)  # no error: the ping found the connection gone
        assert second != first
    finally:
        store.close()


def test_a_connection_used_a_moment_ago_is_not_pinged(settings_factory):
    settings = settings_factory(db_ping_idle_s=3600.0, db_pool_size=1)
    store = Store(settings)
    try:
        first = _pid(store)
        _terminate(settings, first)
        with pytest.raises(OperationalError):  # not pinged: its next statement fails once
            _pid(store)
        assert _pid(store) != first  # and the pool has replaced it
    finally:
        store.close()


@pytest.mark.parametrize("jit", [False, True])
def test_jit_is_off_for_tidewise_connections_unless_asked_for(settings_factory, jit):
    settings = settings_factory(pg_jit=jit)
    store = Store(settings)
    try:
        with store.sessions() as session:
            value, source = session.execute(
                text("SELECT setting, source FROM pg_settings WHERE name = 'jit'")).one()
            schema = session.execute(text("SELECT current_schema()")).scalar_one()
    finally:
        store.close()
    if jit:  # the server's own setting, not one the connection asked for
        assert source != "client"
    else:
        assert (value, source) == ("off", "client")
    assert schema == settings.db_schema  # the schema option still reaches the server


def test_options_in_the_url_are_kept_beside_tidewises_own(settings_factory):
    """An ``options`` parameter of ``db_url`` (here a statement timeout) still reaches the
    server: Tidewise adds ``jit`` and ``search_path`` to it rather than replacing it."""
    base = settings_factory()
    settings = base.model_copy(
        update={"db_url": base.db_url + "?options=-c%20statement_timeout%3D4321"})
    store = Store(settings)
    try:
        with store.sessions() as session:
            timeout = session.execute(text("SHOW statement_timeout")).scalar_one()
            jit = session.execute(text("SHOW jit")).scalar_one()
            schema = session.execute(text("SELECT current_schema()")).scalar_one()
    finally:
        store.close()
    assert (timeout, jit, schema) == ("4321ms", "off", settings.db_schema)
