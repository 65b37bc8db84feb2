"""SQL helpers the store's modules share: the dialect's upsert, and ``IN`` lists in chunks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

#: Names per ``IN (...)`` list: far below every database's bound-parameter limit.
CHUNK = 500


def insert_for(dialect: str, table: Table) -> Any:  # a dialect's Insert
    """Return an INSERT of ``table`` for ``dialect`` (both have ``on_conflict_do_*``)."""
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)


def chunks(seq: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    """Consecutive slices of ``seq`` of at most ``size`` items."""
    for i in range(0, len(seq), size):
        yield seq[i : i + size]
