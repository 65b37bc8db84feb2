"""Forecasts keep their sample paths in binary, in a ``samples`` column, not in the JSON.

The refresh rewrites one ``forecasts`` row per series every period. Its sample paths
(100 x 20 values) were most of the row: about 21 kB of JSON that the refresh encoded, the
server compressed and stored, and every decision on a stored forecast decoded again. They
are now a ``samples`` column of little-endian ``float32`` with a 12-byte header
(:func:`service.store.forecasts.encode_samples`), about 8 kB, and the JSON keeps the times,
mean, quantiles, indicators and info (about 3 kB). Figures: ``bench/forecast_payload.py``
(docs/scale.md).

Rows written before this revision keep their paths in ``payload["samples"]`` and stay
readable until the next refresh rewrites them; so do rows an older daemon writes during a
rolling upgrade (its upsert leaves this column as it was): paths in the JSON win
(:func:`service.store.forecasts.samples_of`).
On PostgreSQL the column is lz4-compressed where the server has it (as ``payload`` since
``9c4e7a1b2d58``: a ``window-mean`` path repeats one value over the horizon). Downgrading
drops the column and the rows that kept their paths there (the code before would find no
paths in them); the next refresh writes them again.

The other way round does not hold: a daemon of the code before reads no paths in a row a
newer daemon wrote, and its decisions on stored forecasts fail for that target until it
refreshes the row itself. During a rolling upgrade, replace the older daemons promptly.

Revision ID: a4c2e9f7b1d3
Revises: 9c4e7a1b2d58
Create Date: 2026-12-07 01:10:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'a4c2e9f7b1d3'
down_revision: str | Sequence[str] | None = '9c4e7a1b2d58'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Whether this server can compress with lz4 (PostgreSQL 14+, built with it).
HAS_LZ4 = sa.text(
    "SELECT count(*) FROM pg_settings "
    "WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)"
)


def upgrade() -> None:
    with op.batch_alter_table('forecasts') as batch:
        batch.add_column(sa.Column('samples', sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql' and bool(bind.execute(HAS_LZ4).scalar()):
        op.execute('ALTER TABLE forecasts ALTER COLUMN samples SET COMPRESSION lz4')


def downgrade() -> None:
    # a row whose paths are in the column would have none for the code before: drop it
    # (forecasts are a cache the next refresh rewrites; until then a read says "not yet")
    op.execute('DELETE FROM forecasts WHERE samples IS NOT NULL')
    with op.batch_alter_table('forecasts') as batch:
        batch.drop_column('samples')
