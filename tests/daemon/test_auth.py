"""Bearer tokens with scopes: 401/403 answers, no-token policy, tokens kept out of logs."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from common.errors import ConfigError
from service.api import create_app
from service.auth import TokenBook, parse_tokens
from service.config import Settings, load_settings
from tests.daemon.conftest import TOKENS, bearer, serve_in_thread

SAMPLE = {"samples": [{"entity": "vm-1", "kind": "vm", "metric": "cpu_util",
                       "ts": int(time.time()) - 5, "value": 1.0}]}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_ingest_needs_a_token_with_the_ingest_scope(anon, live_url, caplog):
    caplog.set_level(logging.DEBUG)
    r = anon.post("/v1/metrics", json=SAMPLE)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["scope"] == "ingest" and "ingest" in r.json()["detail"]

    wrong = "not-a-token-but-long-enough"
    r = anon.post("/v1/metrics", json=SAMPLE, headers={"Authorization": f"Bearer {wrong}"})
    assert r.status_code == 401
    assert wrong not in r.text

    r = anon.post("/v1/metrics", json=SAMPLE, headers=bearer("read"))
    assert r.status_code == 403
    body = r.json()
    assert body["scope"] == "ingest" and "'keda'" in body["detail"]
    assert TOKENS["read"] not in r.text

    r = anon.post("/v1/metrics", json=SAMPLE, headers=bearer("ingest"))
    assert r.status_code == 200 and r.json() == {"stored": 1}
    # reading needs read: the ingest token is refused, the read token admitted
    assert anon.get("/v1/entities", headers=bearer("ingest")).status_code == 403
    assert anon.get("/v1/entities", headers=bearer("read")).status_code == 200
    assert anon.get("/healthz").status_code == 200  # probes stay open
    for token in TOKENS.values():
        assert token not in caplog.text


def test_token_book_checks_every_token():
    book = TokenBook(f"a:{'x' * 16}:read,b:{'y' * 16}:read+act")
    assert book.lookup("y" * 16).name == "b"
    assert book.lookup("y" * 16).scopes == {"read", "act"}
    assert book.lookup("x" * 15) is None
    assert book.lookup("") is None
    json_form = TokenBook('[{"name": "k", "token": "zzzzzzzzzzzzzzzzzz", "scopes": ["ingest"]}]')
    assert json_form.lookup("z" * 18).scopes == {"ingest"}


@pytest.mark.parametrize(
    ("raw", "phrase"),
    [
        ("a:short:read", "shorter than 16"),
        (f"a:{'x' * 16}:write", "unknown scope(s) ['write']"),
        (f"a:{'x' * 16}", "NAME:TOKEN:SCOPE"),
        (f"a:{'x' * 16}:read,a:{'y' * 16}:read", "used twice"),
        (f"a:{'x' * 16}:read,b:{'x' * 16}:read", "same token"),
        ("[{", "not valid JSON"),
    ],
)
def test_malformed_tokens_are_refused_without_echoing_them(raw, phrase):
    with pytest.raises(ConfigError) as info:
        load_settings(tokens=raw)
    assert "TIDEWISE_TOKENS" in str(info.value) and phrase in str(info.value)
    assert "x" * 16 not in str(info.value)
    assert "q" * 16 not in repr(Settings(tokens=f"a:{'q' * 16}:read"))


def test_no_tokens_is_refused_in_production_and_warned_in_development(tmp_path, caplog):
    db = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(ConfigError, match="TIDEWISE_TOKENS is empty"):
        create_app(Settings(db_url=db, environment="production"))
    caplog.set_level(logging.WARNING, logger="tidewise.auth")
    app = create_app(Settings(db_url=db))
    assert app.state.tokens.open
    assert "API is open" in caplog.text
    assert parse_tokens(None) == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_open_api_in_development_admits_requests_without_token(settings_factory):
    from service import migrate

    settings = settings_factory(tokens=None)
    migrate.upgrade(settings)
    with serve_in_thread(settings) as url:
        r = httpx.post(f"{url}/v1/metrics", json=SAMPLE, timeout=10)
        assert r.status_code == 200


def test_serve_refuses_to_start_in_production_without_tokens(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from service import migrate

    db = f"sqlite:///{tmp_path / 'p.db'}"
    migrate.upgrade(Settings(db_url=db))
    env = dict(os.environ, TIDEWISE_DB_URL=db, TIDEWISE_ENVIRONMENT="production")
    env.pop("TIDEWISE_TOKENS", None)
    proc = subprocess.run([sys.executable, "-m", "service.cli", "serve"], env=env,
                          cwd=Path(__file__).resolve().parents[2], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "TIDEWISE_TOKENS is empty" in proc.stderr and "Traceback" not in proc.stderr
