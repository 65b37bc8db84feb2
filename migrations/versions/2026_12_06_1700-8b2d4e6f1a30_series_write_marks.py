"""Write marks on series for the forecast refresh's cache of bucketed history.

Four columns on ``series``: ``max_ts`` (the last second of the newest minute written, NULL
before the first write after this migration), ``late_count`` (writes that started in an
earlier minute, and retention deletes; 0 on existing rows) and ``late_from``/``late_to`` (the
range of the last such change). Ingest and retention keep them in the transaction that
changes the samples; a daemon's cache of bucketed history re-reads what they say changed
(:class:`service.forecasting.BucketCache`). ``max_ts`` is not filled from the existing
samples: a series whose ``max_ts`` is NULL is read in full, and its next write sets it.
Downgrading drops the columns (the older version reads every period in full).

Revision ID: 8b2d4e6f1a30
Revises: 8b1e5d2c4a90
Create Date: 2026-12-06 17:00:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '8b2d4e6f1a30'
down_revision: str | Sequence[str] | None = '8b1e5d2c4a90'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('series', schema=None) as batch_op:
        batch_op.add_column(sa.Column('max_ts', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('late_count', sa.BigInteger(), server_default='0',
                                      nullable=False))
        batch_op.add_column(sa.Column('late_from', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('late_to', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN, also on SQLite (3.35+): a batch operation would copy and
    # drop ``series``, and with foreign keys on, dropping it deletes every sample (cascade)
    for col in ('late_to', 'late_from', 'late_count', 'max_ts'):
        op.drop_column('series', col)
