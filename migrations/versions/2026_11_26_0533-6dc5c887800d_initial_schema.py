"""Initial schema: entities, series, samples (1 s), per-minute rollups, models.

Revision ID: 6dc5c887800d
Revises:
Create Date: 2026-11-26 05:33:03+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6dc5c887800d"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "entities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entities")),
        sa.UniqueConstraint("name", name=op.f("uq_entities_name")),
    )
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("trained_on", sa.Text(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("artifact_path", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_models_name_version")),
    )
    op.create_index("ix_models_name_is_current", "models", ["name", "is_current"], unique=False)
    op.create_table(
        "series",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("entity_id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=128), nullable=False),
        sa.Column("unit", sa.String(length=64), nullable=False),
        sa.Column("dirty_from", sa.BigInteger(), nullable=True),
        sa.Column("dirty_to", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["entity_id"],
            ["entities.id"],
            name=op.f("fk_series_entity_id_entities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_series")),
        sa.UniqueConstraint("entity_id", "metric", name=op.f("uq_series_entity_id_metric")),
    )
    for table, value_columns in (
        ("samples", [sa.Column("value", sa.Double(), nullable=False)]),
        (
            "rollups_1m",
            [
                sa.Column("min", sa.Double(), nullable=False),
                sa.Column("mean", sa.Double(), nullable=False),
                sa.Column("max", sa.Double(), nullable=False),
                sa.Column("count", sa.Integer(), nullable=False),
            ],
        ),
    ):
        op.create_table(
            table,
            sa.Column("series_id", sa.Integer(), nullable=False),
            sa.Column("ts", sa.BigInteger(), nullable=False),
            *value_columns,
            sa.ForeignKeyConstraint(
                ["series_id"],
                ["series.id"],
                name=op.f(f"fk_{table}_series_id_series"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("series_id", "ts", name=op.f(f"pk_{table}")),
            sqlite_with_rowid=False,
        )


def downgrade() -> None:
    op.drop_table("samples")
    op.drop_table("rollups_1m")
    op.drop_table("series")
    op.drop_index("ix_models_name_is_current", table_name="models")
    op.drop_table("models")
    op.drop_table("entities")
