"""Settings: defaults, environment, refusal of nonsense, and README agreement."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import ConfigError
from service.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_valid_and_documented_values():
    s = load_settings()
    assert s.db_url == "sqlite:///./tidewise.db"
    assert s.is_sqlite
    assert s.raw_retention_s == int(s.raw_retention_hours * 3600)
    assert s.rollup_retention_s == int(s.rollup_retention_days * 86400)


def test_environment_prefix_is_read(monkeypatch):
    monkeypatch.setenv("TIDEWISE_PORT", "9123")
    monkeypatch.setenv("TIDEWISE_RAW_RETENTION_HOURS", "6")
    monkeypatch.setenv("TIDEWISE_DB_URL", "postgresql+psycopg://u@h:5432/d")
    s = load_settings()
    assert (s.port, s.raw_retention_hours, s.is_sqlite) == (9123, 6.0, False)


@pytest.mark.parametrize(
    ("overrides", "variable", "phrase"),
    [
        ({"port": 0}, "TIDEWISE_PORT", "greater than or equal to 1"),
        ({"port": 70000}, "TIDEWISE_PORT", "less than or equal to 65535"),
        ({"max_body_bytes": 10}, "TIDEWISE_MAX_BODY_BYTES", "greater than or equal to 1024"),
        ({"raw_retention_hours": 0}, "TIDEWISE_RAW_RETENTION_HOURS", "greater than 0"),
        ({"db_url": "postgresql://u@h/d"}, "TIDEWISE_DB_URL", "postgresql+psycopg://u@h/d"),
        ({"db_url": "mysql://u@h/d"}, "TIDEWISE_DB_URL", "unsupported database 'mysql'"),
        ({"db_url": "sqlite://"}, "TIDEWISE_DB_URL", "in-memory"),
        ({"db_url": "sqlite:///:memory:"}, "TIDEWISE_DB_URL", "in-memory"),
        ({"db_url": "tidewise.db"}, "TIDEWISE_DB_URL", "not a URL"),
        ({"db_schema": "x; drop"}, "TIDEWISE_DB_SCHEMA", "letters, digits"),
        ({"sqlite_synchronous": "OFF"}, "TIDEWISE_SQLITE_SYNCHRONOUS", "NORMAL"),
        ({"log_level": "loud"}, "TIDEWISE_LOG_LEVEL", "debug"),
        (
            {"raw_retention_hours": 48, "rollup_retention_days": 1},
            "settings",
            "rollups must outlive",
        ),
        (
            {"environment": "production", "sqlite_synchronous": "NORMAL"},
            "settings",
            "use FULL in production",
        ),
        (
            {"environment": "production", "host": "0.0.0.0"},
            "settings",
            "TIDEWISE_ALLOW_PUBLIC_BIND",
        ),
    ],
)
def test_nonsense_and_unsafe_values_are_refused(overrides, variable, phrase):
    with pytest.raises(ConfigError) as info:
        load_settings(**overrides)
    assert variable in str(info.value)
    assert phrase in str(info.value)


def test_public_bind_allowed_in_development_and_with_opt_in():
    assert Settings(host="0.0.0.0").host == "0.0.0.0"
    s = Settings(environment="production", host="0.0.0.0", allow_public_bind=True)
    assert s.allow_public_bind


def _documented_settings_table() -> dict[str, str]:
    """The settings table of the docs' Service page (docs/service.md, section Configuration)."""
    text = (ROOT / "docs" / "service.md").read_text()
    section = text.split("\n## Configuration\n")[1].split("\n## ")[0]
    # default column: `value`, or (unset) for None
    rows = re.findall(
        r"^\| `TIDEWISE_([A-Z_]+)` \| (?:`([^`]*)`|\(unset\)) \|", section, flags=re.M
    )
    return {name.lower(): default for name, default in rows}


def test_docs_table_lists_every_setting_with_its_default():
    documented = _documented_settings_table()
    fields = Settings.model_fields
    assert set(documented) == set(fields)
    for name, field in fields.items():
        default = "" if field.default is None else str(field.default)
        if isinstance(field.default, bool):
            default = str(field.default).lower()
        assert documented[name] == default, name
        assert field.description, f"{name} has no description (with its unit)"


def test_cli_reports_bad_configuration_without_traceback(tmp_path):
    env = dict(os.environ, TIDEWISE_PORT="0", TIDEWISE_DB_URL=f"sqlite:///{tmp_path}/x.db")
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "TIDEWISE_PORT" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_refuses_a_store_that_is_missing_or_not_migrated(tmp_path):
    import sqlite3

    def serve(db: Path) -> subprocess.CompletedProcess:
        env = dict(os.environ, TIDEWISE_DB_URL=f"sqlite:///{db}")
        return subprocess.run(
            [sys.executable, "-m", "service.cli", "serve"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    missing = serve(tmp_path / "absent.db")
    assert missing.returncode == 2 and "no database at" in missing.stderr
    assert not (tmp_path / "absent.db").exists()  # not created as a side effect
    sqlite3.connect(tmp_path / "empty.db").close()
    empty = serve(tmp_path / "empty.db")
    assert empty.returncode == 2 and "run `tidewise db upgrade` first" in empty.stderr
    assert "Traceback" not in missing.stderr + empty.stderr


def test_serve_on_a_taken_port_is_one_error_line(tmp_path):
    import socket

    from service import migrate

    db = tmp_path / "t.db"
    migrate.upgrade(Settings(db_url=f"sqlite:///{db}"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "service.cli", "serve", "--port", str(port)],
            env=dict(os.environ, TIDEWISE_DB_URL=f"sqlite:///{db}"),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port} (Address already in use); choose another "
        "--port/TIDEWISE_PORT or stop the process using it"
    ]
