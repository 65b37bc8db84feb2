"""Alembic environment of Tidewise.

The database URL comes from the settings object (``TIDEWISE_DB_URL``), never from an ini
file: :func:`service.migrate.alembic_config` passes the settings (and, in tests, an open
connection) through ``config.attributes``.
"""

from __future__ import annotations

from alembic import context

from service.config import get_settings
from service.store.db import ensure_schema, make_engine
from service.store.tables import metadata

config = context.config


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=False,
    )


def run_migrations_offline() -> None:
    settings = config.attributes.get("settings") or get_settings()
    context.configure(
        url=settings.db_url,
        target_metadata=metadata,
        compare_type=True,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    settings = config.attributes.get("settings") or get_settings()
    engine = make_engine(settings)
    try:
        ensure_schema(engine, settings)
        with engine.connect().execution_options(tidewise_write=True) as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
