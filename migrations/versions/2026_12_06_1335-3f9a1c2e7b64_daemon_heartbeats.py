"""Daemon heartbeats for the sharded forecast job.

One row per daemon running the forecast job (``holder``), rewritten every quarter of a
forecast period: ``seen_at`` (unix s), ``started_at`` (unix s) and ``shards`` (its
``TIDEWISE_SHARDS``). The daemons seen recently share the shards (:mod:`service.sharding`).
The shard leases themselves are rows of ``job_leases`` named ``forecast:shard:<i>``; no
column changes there. Downgrading drops the table (a daemon of the older version runs the
forecast job under its whole-job lease again).

Revision ID: 3f9a1c2e7b64
Revises: 697cdc5d6029
Create Date: 2026-12-06 13:35:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '3f9a1c2e7b64'
down_revision: str | Sequence[str] | None = '697cdc5d6029'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'daemon_heartbeats',
        sa.Column('holder', sa.String(length=128), nullable=False),
        sa.Column('seen_at', sa.Double(), nullable=False),
        sa.Column('started_at', sa.Double(), nullable=False),
        sa.Column('shards', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('holder', name=op.f('pk_daemon_heartbeats')),
    )


def downgrade() -> None:
    op.drop_table('daemon_heartbeats')
