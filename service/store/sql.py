"""SQL helpers the store's modules share.

The dialect's upsert, ``IN`` lists in chunks, and SQLAlchemy's exceptions for raw driver
calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError

#: Names per ``IN (...)`` list: far below every database's bound-parameter limit.
CHUNK = 500


def insert_for(dialect: str, table: Table) -> Any:  # a dialect's Insert
    """Return an INSERT of ``table`` for ``dialect`` (both have ``on_conflict_do_*``)."""
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)


def chunks(seq: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    """Consecutive slices of ``seq`` of at most ``size`` items."""
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


@contextlib.contextmanager
def driver_errors(conn: Connection, statement: str) -> Iterator[None]:
    """Raise the driver's errors inside as SQLAlchemy's, as ``conn.execute`` would.

    For calls SQLAlchemy cannot make (psycopg's COPY): the callers map
    :class:`sqlalchemy.exc.OperationalError` (a deadlock, a lost connection) to 503 and let
    a dead pooled connection be found by the pool's pre-ping; a raw ``psycopg`` error would
    surface as a 500 instead.
    """
    dbapi = conn.dialect.loaded_dbapi
    try:
        yield
    except dbapi.Error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi.Error, dialect=conn.dialect) from exc
