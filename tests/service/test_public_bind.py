"""In production, every spelling of "all interfaces" needs TIDEWISE_ALLOW_PUBLIC_BIND."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import ConfigError
from service.config import Settings, load_settings, unspecified_addresses

ROOT = Path(__file__).resolve().parents[2]

#: Spellings that bind every interface (as uvicorn's bind resolves them).
EVERY_INTERFACE = [
    "0.0.0.0",
    "::",
    "0",
    "0.0.0.00",
    "000.000.000.000",
    "0x0",
    "0.0",
    "::0",
    "0:0:0:0:0:0:0:0",
    "::ffff:0.0.0.0",
]


@pytest.mark.parametrize("host", EVERY_INTERFACE)
def test_every_spelling_of_all_interfaces_is_refused_in_production(host):
    assert unspecified_addresses(host), host
    with pytest.raises(ConfigError) as info:
        load_settings(environment="production", host=host)
    message = str(info.value)
    assert f"host={host} resolves to" in message
    assert "TIDEWISE_ALLOW_PUBLIC_BIND=true" in message


@pytest.mark.parametrize("host", EVERY_INTERFACE)
def test_every_spelling_is_allowed_with_the_opt_in_or_in_development(host):
    assert Settings(environment="production", host=host, allow_public_bind=True).host == host
    assert Settings(host=host).host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "10.1.2.3", "0.0.0.1"])
def test_specific_addresses_need_no_opt_in(host):
    assert unspecified_addresses(host) == []
    assert Settings(environment="production", host=host).host == host


def test_serve_refuses_a_numeric_spelling_of_all_interfaces(tmp_path):
    env = dict(
        os.environ,
        TIDEWISE_ENVIRONMENT="production",
        TIDEWISE_HOST="000.000.000.000",
        TIDEWISE_DB_URL=f"sqlite:///{tmp_path}/x.db",
    )
    env.pop("TIDEWISE_ALLOW_PUBLIC_BIND", None)
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "resolves to 0.0.0.0" in proc.stderr and "TIDEWISE_ALLOW_PUBLIC_BIND" in proc.stderr
    assert "Traceback" not in proc.stderr
