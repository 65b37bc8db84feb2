"""Fixtures of the daemon tests: a migrated store per test, tokens, a live server.

The store fixtures are those of ``tests/service`` (one fresh SQLite file or PostgreSQL schema
per test); this module adds settings with tokens and an authenticated HTTP client.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest

from service import migrate
from service.config import Settings
from service.db import Store
from tests.service.conftest import (  # noqa: F401 - fixtures re-exported for this directory
    BACKENDS,
    PG_AVAILABLE,
    PG_URL,
    free_port,
    make_settings,
    pg_schema,
    serve_in_thread,
)

#: Tokens used by the daemon tests (``name:token:scopes``).
TOKENS = {
    "ingest": "ingest-token-0123456789",
    "read": "read-token-0123456789ab",
    "act": "act-token-0123456789abcd",
    "all": "all-token-0123456789abcd",
}
TOKENS_SETTING = (
    f"prom:{TOKENS['ingest']}:ingest,keda:{TOKENS['read']}:read,"
    f"ops:{TOKENS['act']}:act,admin:{TOKENS['all']}:ingest+read+act"
)


def bearer(kind: str = "all") -> dict[str, str]:
    """Authorization header for one of :data:`TOKENS`."""
    return {"Authorization": f"Bearer {TOKENS[kind]}"}


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:  # noqa: ANN001
    """``sqlite`` or ``postgresql``."""
    return request.param


@pytest.fixture
def settings_factory(backend, tmp_path):  # noqa: ANN001, ANN201
    """Build settings (with tokens) for this test's isolated database."""
    stack = contextlib.ExitStack()
    schema = stack.enter_context(pg_schema()) if backend == "postgresql" else None

    def factory(**kw) -> Settings:
        kw.setdefault("tokens", TOKENS_SETTING)
        kw.setdefault("model_dir", str(tmp_path / "models"))
        return make_settings(backend, tmp_path, schema, **kw)

    yield factory
    stack.close()


@pytest.fixture
def settings(settings_factory) -> Settings:  # noqa: ANN001
    """Settings of this test's isolated, not yet migrated database (tokens on)."""
    return settings_factory()


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """An open store on a freshly migrated database."""
    migrate.upgrade(settings)
    s = Store(settings)
    yield s
    s.close()


@pytest.fixture
def live_url(store: Store) -> Iterator[str]:
    """Base URL of the real app served over a socket on this test's store."""
    with serve_in_thread(store.settings) as url:
        yield url


@pytest.fixture
def http(live_url: str) -> Iterator[httpx.Client]:
    """An HTTP client with the all-scopes token."""
    with httpx.Client(base_url=live_url, timeout=30, headers=bearer("all")) as client:
        yield client


@pytest.fixture
def anon(live_url: str) -> Iterator[httpx.Client]:
    """An HTTP client without a token."""
    with httpx.Client(base_url=live_url, timeout=30) as client:
        yield client


def send(client: httpx.Client, entity: str, kind: str, metric: str,
         points: list[tuple[int, float]]) -> None:
    """Ingest ``points`` (ts, value) of one series through the real API."""
    samples = [{"entity": entity, "kind": kind, "metric": metric, "ts": t, "value": v}
               for t, v in points]
    r = client.post("/v1/metrics", json={"samples": samples}, headers=bearer("ingest"))
    assert r.status_code == 200, r.text


def scaling_target(name: str = "web", **kw) -> dict:
    """A scaling target body on entity ``web-vm``/``cpu_cores`` (capacity 2 cores/replica)."""
    body = {"kind": "scaling", "name": name, "entity": "web-vm", "metric": "cpu_cores",
            "capacity": 2.0, "min_replicas": 1, "max_replicas": 20, "boot_s": 30,
            "policy": "hpa", "params": {"target": 1.0, "tolerance": 0.0}}
    body.update(kw)
    return body
