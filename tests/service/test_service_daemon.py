"""The real daemon as a subprocess: durability across SIGKILL, and the demo script."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.service.conftest import make_settings, pg_schema

ROOT = Path(__file__).resolve().parents[2]


def start_daemon(env: dict[str, str], url: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("daemon did not become ready")


STORED = (
    "SELECT e.name, s.ts, s.value FROM samples s JOIN series r ON r.id = s.series_id "
    "JOIN entities e ON e.id = r.entity_id"
)


def test_acknowledged_batches_survive_sigkill(tmp_path, port, backend):
    # PostgreSQL: every batch but the first is COPYed straight into samples (new seconds).
    with contextlib.ExitStack() as stack:
        schema = stack.enter_context(pg_schema()) if backend == "postgresql" else None
        sigkill_round(tmp_path, port, make_settings(backend, tmp_path, schema))


def stored_after_kill(settings) -> list[tuple[str, int, float]]:  # noqa: ANN001
    """Every stored sample, read without the daemon (what is on disk right after the kill)."""
    if settings.is_sqlite:
        with sqlite3.connect(settings.db_url.removeprefix("sqlite:///")) as conn:
            return conn.execute(STORED).fetchall()
    import psycopg

    url = settings.db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, options=f"-c search_path={settings.db_schema}") as conn:
        return conn.execute(STORED).fetchall()


def sigkill_round(tmp_path, port, settings) -> None:  # noqa: ANN001
    from service import migrate

    migrate.upgrade(settings)
    url = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        TIDEWISE_DB_URL=settings.db_url,
        TIDEWISE_PORT=str(port),
        TIDEWISE_LOG_LEVEL="warning",
    )
    if settings.db_schema:
        env["TIDEWISE_DB_SCHEMA"] = settings.db_schema
    proc = start_daemon(env, url)
    acked: dict[tuple[str, int], float] = {}
    t0 = int(time.time()) - 1000
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            for b in range(30):
                samples = [
                    {
                        "entity": f"vm-{i % 7}",
                        "kind": "vm",
                        "metric": "cpu_util",
                        "ts": t0 + b * 30 + i // 7,
                        "value": b * 1000.0 + i,
                    }
                    for i in range(200)
                ]
                r = http.post(
                    "/v1/metrics",
                    content=orjson.dumps({"samples": samples}),
                    headers={"content-type": "application/json"},
                )
                assert r.status_code == 200 and r.json() == {"stored": 200}
                for s in samples:
                    acked[(s["entity"], s["ts"])] = s["value"]
        proc.send_signal(signal.SIGKILL)  # right after the last acknowledgement
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    # what is on disk (WAL included) right after the kill, read without the daemon
    assert {(n, t): v for n, t, v in stored_after_kill(settings)} == acked
    # and the restarted daemon serves every acknowledged sample
    proc = start_daemon(env, url)
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            got = http.get(
                "/v1/series/vm-3/cpu_util", params={"start": t0, "end": t0 + 2000}
            ).json()["points"]
        want = sorted((t, v) for (n, t), v in acked.items() if n == "vm-3")
        assert [tuple(p) for p in got] == want
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.slow
def test_demo_script_feeds_the_bundled_trace(tmp_path, port):
    env = dict(
        os.environ,
        TIDEWISE_DEMO_EXIT="1",
        TIDEWISE_DEMO_SETUP="0",
        # this interpreter runs the CLI (`-m service.cli`): no .venv/bin/tidewise needed in the
        # checkout, and the code under test is this checkout's whatever the install points at
        TIDEWISE_DEMO_PYTHON=sys.executable,
        TIDEWISE_PORT=str(port),
        TIDEWISE_DB_URL=f"sqlite:///{tmp_path}/demo.db",
        TIDEWISE_DEMO_REPLAY=str(tmp_path / "replay"),
    )
    proc = subprocess.run(
        ["bash", "scripts/demo.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"http://127.0.0.1:{port}/docs" in proc.stdout
    assert "/v1/series/azure-llm-code/requests?step=60" in proc.stdout
    assert f"file {tmp_path}/demo.db" in proc.stdout
    with sqlite3.connect(tmp_path / "demo.db") as conn:
        n, last = conn.execute("SELECT count(*), max(ts) FROM samples").fetchone()
        metrics = {m for (m,) in conn.execute("SELECT metric FROM series")}
    assert n == 10311  # 3 metrics x 3,437 seconds of the Azure LLM code trace
    assert metrics == {"requests", "tokens_in", "tokens_out"}
    assert time.time() - 60 < last <= time.time()  # shifted to end now
    with sqlite3.connect(tmp_path / "demo.db") as conn:
        targets = [name for (name,) in conn.execute("SELECT name FROM targets")]
    assert targets == ["llm-api"]  # the demo declares a scaling target
    report = json.loads((tmp_path / "replay" / "report.json").read_text())
    assert report["scenario"] == "vm"
    assert set(report["policies"]) == {"hpa", "kpa", "bayes", "oracle"}
    assert f"http://127.0.0.1:{port}/dashboard/" in proc.stdout
