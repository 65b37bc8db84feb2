"""Samples lose their foreign key to series; a trigger on series deletes their samples.

The foreign key ``samples.series_id -> series.id`` checked every inserted sample: on
PostgreSQL one locking lookup of the series row per sample, about half the time of a COPY of
5,000 samples (measured: 62-68 ms with it, 27-28 ms without, per batch; docs/ingest.md).
Ingest writes only series ids it read or created in the same transaction, and locks those
series rows (FOR NO KEY UPDATE, checking that each exists) before it writes a sample, so the
check is made once per series and batch instead of once per sample. The daemon never
deletes series; a delete by hand (of a series, or of an entity and so its series) still
deletes their samples, as ``ON DELETE CASCADE`` did, through an AFTER DELETE trigger on
``series``. ``rollups_1m`` keeps its foreign key (one row per minute, written by the rollup
job).

SQLite copies ``samples`` into a table without the constraint (batch mode, WITHOUT ROWID
kept). Downgrading deletes samples of series that no longer exist, then restores the
foreign key and drops the trigger.

Revision ID: 8b1e5d2c4a90
Revises: 3f9a1c2e7b64
Create Date: 2026-12-06 16:40:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '8b1e5d2c4a90'
down_revision: str | Sequence[str] | None = '3f9a1c2e7b64'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = 'fk_samples_series_id_series'
TRIGGER = 'series_delete_samples'

# PostgreSQL: the samples table of the trigger's own schema (TG_TABLE_SCHEMA), whatever the
# search_path of the session that deletes.
PG_FUNCTION = f"""
CREATE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DELETE FROM %I.samples WHERE series_id = $1', TG_TABLE_SCHEMA)
        USING OLD.id;
    RETURN OLD;
END
$$
"""
PG_TRIGGER = (
    f"CREATE TRIGGER {TRIGGER} AFTER DELETE ON series FOR EACH ROW EXECUTE FUNCTION {TRIGGER}()"
)
SQLITE_TRIGGER = (
    f"CREATE TRIGGER {TRIGGER} AFTER DELETE ON series FOR EACH ROW "
    "BEGIN DELETE FROM samples WHERE series_id = OLD.id; END"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint(FK, 'samples', type_='foreignkey')
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)
        return
    with op.batch_alter_table(
        'samples', recreate='always', table_kwargs={'sqlite_with_rowid': False}
    ) as batch_op:
        batch_op.drop_constraint(FK, type_='foreignkey')
    op.execute(SQLITE_TRIGGER)


def downgrade() -> None:
    op.execute('DELETE FROM samples WHERE series_id NOT IN (SELECT id FROM series)')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f'DROP TRIGGER {TRIGGER} ON series')
        op.execute(f'DROP FUNCTION {TRIGGER}()')
        op.create_foreign_key(FK, 'samples', 'series', ['series_id'], ['id'], ondelete='CASCADE')
        return
    op.execute(f'DROP TRIGGER {TRIGGER}')
    with op.batch_alter_table(
        'samples', recreate='always', table_kwargs={'sqlite_with_rowid': False}
    ) as batch_op:
        batch_op.create_foreign_key(FK, 'series', ['series_id'], ['id'], ondelete='CASCADE')
