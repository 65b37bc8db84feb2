"""Schema only through Alembic: models and migrations agree on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from service import migrate
from service.store.db import make_engine
from service.store.tables import metadata

ROOT = Path(__file__).resolve().parents[2]


def test_upgrade_matches_models_and_downgrade_empties(settings):
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            assert migrate.current_revisions(conn) == ()
        assert not migrate.at_head(engine)
        migrate.upgrade(settings)
        assert migrate.at_head(engine)
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, metadata) == []
            tables = set(inspect(conn).get_table_names())
        assert {
            "entities",
            "series",
            "samples",
            "rollups_1m",
            "models",
            "alembic_version",
        } <= tables
        migrate.downgrade(settings, "base")
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
            assert migrate.current_revisions(conn) == ()
    finally:
        engine.dispose()


def test_autogenerate_would_see_a_model_change(settings):
    """Guards the test above: the comparison does detect a difference when there is one."""
    from sqlalchemy import Column, Integer, MetaData, Table

    migrate.upgrade(settings)
    changed = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(changed)
    Table("extra", changed, Column("id", Integer, primary_key=True))
    engine = make_engine(settings)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), changed)
    finally:
        engine.dispose()
    assert [d[0] for d in diff] == ["add_table"]


def test_sqlite_runs_in_wal_with_the_configured_synchronous_level(tmp_path):
    from service.config import Settings

    for level, code in (("FULL", 2), ("NORMAL", 1)):
        s = Settings(db_url=f"sqlite:///{tmp_path}/{level}.db", sqlite_synchronous=level)
        engine = make_engine(s)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == code
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        engine.dispose()


def test_revision_files_are_dated():
    files = [
        p.name for p in (ROOT / "migrations" / "versions").glob("*.py") if p.name != "__init__.py"
    ]
    assert files
    assert all(re.match(r"^\d{4}_\d{2}_\d{2}_\d{4}-[0-9a-f]+_\w+\.py$", f) for f in files), files


def test_db_commands_from_the_cli(tmp_path):
    env = dict(os.environ, TIDEWISE_DB_URL=f"sqlite:///{tmp_path}/cli.db")

    def tw(*args):
        return subprocess.run(
            [sys.executable, "-m", "service.cli", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    up = tw("db", "upgrade")
    assert up.returncode == 0, up.stderr
    head = migrate.head_revisions()[0]
    assert f"{head} (up to date)" in tw("db", "current").stdout


def test_db_commands_report_bad_revision_and_unreachable_store_in_one_line(tmp_path):
    def tw(url, *args):
        return subprocess.run(
            [sys.executable, "-m", "service.cli", *args],
            env=dict(os.environ, TIDEWISE_DB_URL=url),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    bad_rev = tw(f"sqlite:///{tmp_path}/cli.db", "db", "upgrade", "nosuchrev")
    no_dir = tw(f"sqlite:///{tmp_path}/absent/cli.db", "db", "upgrade")
    # port 1 is reserved (tcpmux): nothing listens there
    no_server = tw("postgresql+psycopg://postgres@127.0.0.1:1/test", "db", "current")
    for proc in (bad_rev, no_dir, no_server):
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "'nosuchrev'" in bad_rev.stderr
    assert f"cannot open the store at sqlite:///{tmp_path}/absent/cli.db" in no_dir.stderr
    assert "cannot open the store at postgresql+psycopg://postgres@127.0.0.1:1/test" in (
        no_server.stderr
    )


def test_action_ack_counts_migrate_up_and_down_keeping_the_actions(settings):
    """697cdc5d6029 adds actions.applied/ready/counts_at (NULL on existing rows); going back
    drops them and keeps every action, its acknowledgement and the index."""
    from sqlalchemy import text

    before, counts = "be2f1ba0e9e4", "697cdc5d6029"
    migrate.upgrade(settings, before)
    engine = make_engine(settings)

    def columns() -> set[str]:
        with engine.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns("actions")}

    def rows(cols: str) -> list[tuple]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(f"SELECT {cols} FROM actions ORDER BY id"))]

    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO actions (target, kind, created_at, desired, why, acked_at, acked_by)"
                " VALUES ('web', 'vm', 100, '{}', 'w', 110, 'ops'),"
                " ('web', 'vm', 200, '{}', 'w', NULL, NULL)"
            ))
        assert not {"applied", "ready", "counts_at"} & columns()
        migrate.upgrade(settings, counts)
        assert {"applied", "ready", "counts_at"} <= columns()
        assert rows("id, applied, ready, counts_at, acked_at") == [
            (1, None, None, None, 110), (2, None, None, None, None)
        ]
        with engine.begin() as conn:
            conn.execute(text("UPDATE actions SET applied = 9, ready = 6, counts_at = 120 "
                              "WHERE id = 1"))
        assert rows("applied, ready, counts_at") == [(9, 6, 120), (None, None, None)]

        migrate.downgrade(settings, before)
        assert not {"applied", "ready", "counts_at"} & columns()
        assert rows("id, target, acked_at, acked_by") == [(1, "web", 110, "ops"),
                                                          (2, "web", None, None)]
        with engine.connect() as conn:
            indexes = {i["name"] for i in inspect(conn).get_indexes("actions")}
            assert "ix_actions_target_created" in indexes
            assert migrate.current_revisions(conn) == (before,)
        migrate.upgrade(settings)  # and forward again to the newest
        assert rows("applied, ready") == [(None, None), (None, None)]
    finally:
        engine.dispose()


def test_series_write_marks_migrate_up_and_down_keeping_the_samples(settings):
    """8b2d4e6f1a30 adds series.max_ts/late_count/late_from/late_to (NULL, 0 on existing
    rows); going back drops them and keeps every series and sample."""
    from sqlalchemy import text

    before, marks = "8b1e5d2c4a90", "8b2d4e6f1a30"
    cols = {"max_ts", "late_count", "late_from", "late_to"}
    migrate.upgrade(settings, before)
    engine = make_engine(settings)

    def columns() -> set[str]:
        with engine.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns("series")}

    def rows(sql: str) -> list[tuple]:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]

    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO entities (name, kind, labels) VALUES ('e', 'vm', '{}')"))
            conn.execute(text("INSERT INTO series (entity_id, metric, unit) VALUES (1, 'cpu', '')"))
            conn.execute(text("INSERT INTO samples (series_id, ts, value) VALUES (1, 10, 1.5), "
                              "(1, 11, 2.5)"))
        assert not cols & columns()
        migrate.upgrade(settings, marks)
        assert cols <= columns()
        assert rows("SELECT id, max_ts, late_count, late_from, late_to FROM series") == [
            (1, None, 0, None, None)]
        migrate.downgrade(settings, before)
        assert not cols & columns()
        assert rows("SELECT series_id, ts, value FROM samples ORDER BY ts") == [
            (1, 10, 1.5), (1, 11, 2.5)]
        assert rows("SELECT id, metric FROM series") == [(1, "cpu")]
        migrate.upgrade(settings)
        assert rows("SELECT count(*) FROM samples") == [(2,)]
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_forecasts_are_unlogged_and_lz4_on_postgresql_and_back_after_downgrade(settings):
    """9c4e7a1b2d58: ``forecasts`` is unlogged and a stored payload (above the TOAST
    threshold) is compressed with lz4; downgraded, the table is logged and the next write
    of the same row is pglz again (the server's default)."""
    from sqlalchemy import text

    from service.store import forecasts as forecast_store
    from service.store.db import Store

    before, lz4 = "8b2d4e6f1a30", "9c4e7a1b2d58"
    rng = np.random.default_rng(0)
    samples = np.round(rng.gamma(2.0, 10.0, size=(100, 20)), 6).tolist()  # ~20 kB of JSON

    def write_and_read() -> str:
        store = Store(settings)
        try:
            forecast_store.save_forecasts(store, [{
                "series_id": 1, "computed_at": 0, "start": 0.0, "step": 15.0,
                "model": "window-mean", "fallback": False,
                "payload": {"samples": samples}}])
            with store.engine.connect() as conn:
                how = conn.execute(
                    text("SELECT pg_column_compression(payload) FROM forecasts")).scalar_one()
                kept = conn.execute(text(
                    "SELECT relpersistence FROM pg_class WHERE oid = 'forecasts'::regclass"
                )).scalar_one()
                return f"{how} {kept}"
        finally:
            store.close()

    migrate.upgrade(settings, lz4)
    engine = make_engine(settings)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO entities (name, kind, labels) VALUES ('e', 'vm', '{}')"))
            conn.execute(text("INSERT INTO series (entity_id, metric, unit) VALUES (1, 'cpu', '')"))
    finally:
        engine.dispose()
    assert write_and_read() == "lz4 u"  # lz4, unlogged
    migrate.downgrade(settings, before)
    assert write_and_read() == "pglz p"  # the default, permanent (logged)
    migrate.upgrade(settings)
    assert write_and_read() == "lz4 u"


def test_forecast_samples_column_keeps_older_rows_readable(settings):
    """a4c2e9f7b1d3 adds forecasts.samples (binary paths); a row written before keeps its
    paths in the JSON and reads the same through ``samples_of`` and ``joint_forecast``;
    a row written after has them in the column only (lz4 on PostgreSQL); going back drops
    the column and the rows whose paths were in it, and keeps the others."""
    from sqlalchemy import text

    from service import forecasting
    from service.store import forecasts as forecast_store
    from service.store.db import Store

    before, binary = "9c4e7a1b2d58", "a4c2e9f7b1d3"
    rng = np.random.default_rng(3)
    old_paths = np.round(rng.gamma(2.0, 10.0, size=(100, 20)), 6)
    migrate.upgrade(settings, before)
    engine = make_engine(settings)

    def columns() -> set[str]:
        with engine.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns("forecasts")}

    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO entities (name, kind, labels) VALUES ('e', 'vm', '{}')"))
            conn.execute(text("INSERT INTO series (entity_id, metric, unit) VALUES (1, 'cpu', '')"))
        store = Store(settings)
        try:  # written by the code before: the paths in the JSON
            forecast_store.save_forecasts(store, [{
                "series_id": 1, "computed_at": 7, "start": 0.0, "step": 15.0,
                "model": "window-mean", "fallback": False,
                "payload": {"samples": old_paths.tolist(), "indicators": ["cpu"]}}])
        finally:
            store.close()
        assert "samples" not in columns()
        migrate.upgrade(settings, binary)
        assert "samples" in columns()
        store = Store(settings)
        try:
            with store.sessions() as session:
                rec = forecast_store.latest_forecast(session, "e", "cpu")
                assert rec.samples is None
                assert (forecast_store.samples_of(rec) == old_paths).all()
                fc = forecasting.joint_forecast(session, "e", "cpu")
                assert (fc.samples[:, :, 0] == old_paths).all()
            # each path one value over the horizon (window-mean's): compressible
            new_paths = np.repeat(rng.gamma(2.0, 10.0, size=(100, 1)), 20, axis=1)
            forecast_store.save_forecasts(store, [{
                "series_id": 1, "computed_at": 8, "start": 0.0, "step": 15.0,
                "model": "window-mean", "fallback": False, "payload": {"indicators": ["cpu"]},
                "samples": forecast_store.encode_samples(new_paths)}])
            with store.sessions() as session:
                fc = forecasting.joint_forecast(session, "e", "cpu")
            assert fc.info["computed_at"] == 8
            with store.engine.begin() as conn:  # a second series, its paths in the JSON
                conn.execute(text(
                    "INSERT INTO series (entity_id, metric, unit) VALUES (1, 'mem', '')"))
            forecast_store.save_forecasts(store, [{
                "series_id": 2, "computed_at": 8, "start": 0.0, "step": 15.0,
                "model": "window-mean", "fallback": False,
                "payload": {"samples": old_paths.tolist(), "indicators": ["mem"]}}])
            np.testing.assert_allclose(fc.samples[:, :, 0], new_paths, rtol=6e-8)
            if store.dialect == "postgresql":
                with store.engine.connect() as conn:
                    has_lz4 = conn.execute(text(
                        "SELECT count(*) FROM pg_settings WHERE name = "
                        "'default_toast_compression' AND 'lz4' = ANY(enumvals)")).scalar()
                    how = conn.execute(text(
                        "SELECT pg_column_compression(samples) FROM forecasts")).scalar()
                assert how == ("lz4" if has_lz4 else "pglz")
        finally:
            store.close()
        migrate.downgrade(settings, before)
        assert "samples" not in columns()
        with engine.connect() as conn:  # the row the code before could not read is gone
            assert conn.execute(text("SELECT series_id FROM forecasts")).scalars().all() == [2]
    finally:
        engine.dispose()
