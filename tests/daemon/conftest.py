"""Fixtures of the daemon tests: a migrated store per test, tokens, a live server.

The store fixtures are those of ``tests/service`` (one fresh SQLite file or PostgreSQL schema
per test); this module adds settings with tokens and an authenticated HTTP client.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service import conftest as _service
from tests.service.conftest import (  # noqa: F401 - fixtures re-exported for this directory
    BACKENDS,
    PG_AVAILABLE,
    PG_URL,
    free_port,
    make_settings,
    pg_schema,
    serve_in_thread,
)

# The store fixtures of tests/service, re-used here (settings_defaults below adds the tokens).
backend = _service.backend
settings_factory = _service.settings_factory
settings = _service.settings
store = _service.store
live_url = _service.live_url

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


@pytest.fixture
def settings_defaults(tmp_path: Path) -> dict:
    """Every daemon test's settings have tokens on and their own model folder."""
    return {"tokens": TOKENS_SETTING, "model_dir": str(tmp_path / "models")}


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


def wait_ready(url: str, proc: subprocess.Popen, log: Path, deadline: float) -> None:
    """Wait until ``url``/readyz answers 200; raise with the log's tail if ``proc`` exits or
    ``deadline`` (``time.monotonic()``) passes first."""
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
