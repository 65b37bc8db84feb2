"""PostgreSQL: the samples key groups 64 series, so ingest writes one index page per group.

The key ``(series_id, ts)`` kept each series' seconds together in the index, and each series
appended to a page of its own: at 36,000 series 288 MB of pages being written, which 128 MB
of ``shared_buffers`` cannot hold, so every ingested sample read an index page back and
wrote another out, doubling the server's CPU per sample (10.2-11.5 us at 36,000 series,
5.1-5.2 us at 3,600; ``bench/ingest_cost.py``, docs/scale.md "A seventh window"). The key
is now a unique index on ``(series_id / 64, ts, series_id)`` (:data:`service.store.tables.
SERIES_GROUP`): the 64 series of a group append to one page, 563 pages at 36,000 series
(5.1-6.1 us a sample). The same rows are unique, so last-write-wins is unchanged; every
read names its series' group (``series_id / 64 = ...``) so that the index serves it.

SQLite keeps its clustered ``(series_id, ts)`` key (one writer; its pages are the file's).

During a rolling upgrade, replace the older daemons promptly: their upserts name the old
key as their conflict target, which no longer exists, so a batch over stored seconds fails
on them (new seconds go in by COPY and do not).

Revision ID: b7d41e9c2a60
Revises: a4c2e9f7b1d3
Create Date: 2026-12-07 13:30:00.000000+00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = 'b7d41e9c2a60'
down_revision: str | Sequence[str] | None = 'a4c2e9f7b1d3'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The group size, as written into the index (the code's ``SERIES_GROUP`` must equal it).
GROUP = 64
INDEX = 'samples_group_ts_series'
TRIGGER = 'series_delete_samples'

# The deletion trigger of 8b1e5d2c4a90, its DELETE naming the group (else a scan of the table)
PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'DELETE FROM %I.samples WHERE series_id / {GROUP} = $1 / {GROUP} AND series_id = $1',
        TG_TABLE_SCHEMA) USING OLD.id;
    RETURN OLD;
END
$$
"""
PG_FUNCTION_BEFORE = f"""
CREATE OR REPLACE FUNCTION {TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DELETE FROM %I.samples WHERE series_id = $1', TG_TABLE_SCHEMA)
        USING OLD.id;
    RETURN OLD;
END
$$
"""
#: The primary key's name, whatever created it.
PKEY = "SELECT conname FROM pg_constraint WHERE conrelid = 'samples'::regclass AND contype = 'p'"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    pkey = bind.exec_driver_sql(PKEY).scalar()
    op.execute(f'CREATE UNIQUE INDEX {INDEX} ON samples ((series_id / {GROUP}), ts, series_id)')
    if pkey is not None:
        op.execute(f'ALTER TABLE samples DROP CONSTRAINT "{pkey}"')
    op.execute(PG_FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute('ALTER TABLE samples ADD CONSTRAINT pk_samples PRIMARY KEY (series_id, ts)')
    op.execute(f'DROP INDEX {INDEX}')
    op.execute(PG_FUNCTION_BEFORE)
