"""Action acknowledgements carry the applied and ready replica counts.

Three nullable columns on ``actions``: ``applied`` and ``ready`` (replicas) and ``counts_at``
(unix s), as an actuator reports them with ``POST /v1/actions/{id}/ack``. Existing rows keep
NULL (no counts reported). Downgrading drops the columns and the counts with them.

Revision ID: 697cdc5d6029
Revises: be2f1ba0e9e4
Create Date: 2026-11-28 09:01:35.889848+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '697cdc5d6029'
down_revision: str | Sequence[str] | None = 'be2f1ba0e9e4'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('applied', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('ready', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('counts_at', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # SQLite: batch mode copies the table without the columns (the index is recreated).
    with op.batch_alter_table('actions', schema=None) as batch_op:
        batch_op.drop_column('counts_at')
        batch_op.drop_column('ready')
        batch_op.drop_column('applied')
