"""PostgreSQL: stored forecast payloads are compressed with lz4 instead of pglz.

Every forecast period rewrites one ``forecasts`` row per series, and its ``payload`` (the
samples, about 20 kB of JSON for 100 paths x 20 steps) is above PostgreSQL's TOAST threshold,
so the server compresses every one of them. With the default ``pglz`` that cost more server
CPU than anything else in a forecast period: upserting 14,000 payloads took 10.64 s of server
CPU with ``pglz`` and 2.70 s with ``lz4`` where the paths vary over the horizon (trained and
online models), 2.67 s and 1.12 s where each path is constant (``window-mean``)
(``bench/forecast_payload.py``, docs/scale.md).
Only values written after the change are lz4; older ones stay readable as they are.

Nothing changes where the server lacks lz4 (built without it, or before PostgreSQL 14: its
``default_toast_compression`` setting does not list it), nor on SQLite. Downgrading restores
the server's default compression for the column.

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
    if _lz4_server():
        op.execute('ALTER TABLE forecasts ALTER COLUMN payload SET COMPRESSION lz4')


def downgrade() -> None:
    if _lz4_server():
        op.execute('ALTER TABLE forecasts ALTER COLUMN payload SET COMPRESSION default')
