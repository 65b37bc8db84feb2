"""PostgreSQL: the ``forecasts`` table is unlogged, and its payloads compressed with lz4.

Every forecast period rewrites one ``forecasts`` row per series, and its ``payload`` (the
samples, about 21 kB of JSON for 100 paths x 20 steps) is above PostgreSQL's TOAST threshold,
so the server compresses every one of them and writes it to the WAL. Measured by
``bench/forecast_payload.py`` for 14,000 series (one period; docs/scale.md):

* compression: with the default ``pglz`` the upsert took 10.64 s of server CPU where the
  paths vary over the horizon (trained and online models) and 2.67 s where each path is
  constant (``window-mean``); with ``lz4`` 2.70 s and 1.12 s, for about the same size;
* WAL: 273-394 MB per period with varied paths (18-26 MB/s, 1.6-2.3 TB a day), none for an
  unlogged table.

A stored forecast is a cache the refresh rewrites every period, not a record: after a server
crash PostgreSQL empties an unlogged table, and a standby has none of it, so forecasts are
missing until the next refresh (one period; the forecast job refreshes before it decides,
and ``GET /v1/forecasts`` answers 404 meanwhile). Decisions, actions and samples stay logged.

lz4 only where the server has it (built with it, PostgreSQL 14+: its
``default_toast_compression`` setting lists it); only values written after the change are
lz4, older ones stay readable. Nothing changes on SQLite. Downgrading makes the table logged
again (a rewrite) and restores the server's default compression for the column.

Revision ID: 9c4e7a1b2d58
Revises: 8b2d4e6f1a30
Create Date: 2026-12-06 19:30:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '9c4e7a1b2d58'
down_revision: str | Sequence[str] | None = '8b2d4e6f1a30'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Whether this server can compress with lz4 (PostgreSQL 14+, built with it).
HAS_LZ4 = sa.text(
    "SELECT count(*) FROM pg_settings "
    "WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
)


def _lz4_server() -> bool:
    bind = op.get_bind()
    return bind.dialect.name == 'postgresql' and bool(bind.execute(HAS_LZ4).scalar())


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute('ALTER TABLE forecasts SET UNLOGGED')
    if _lz4_server():
        op.execute('ALTER TABLE forecasts ALTER COLUMN payload SET COMPRESSION lz4')


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute('ALTER TABLE forecasts SET LOGGED')
    if _lz4_server():
        op.execute('ALTER TABLE forecasts ALTER COLUMN payload SET COMPRESSION default')
