"""A real ``tidewise serve`` process: it decides on its own, and a restart loses nothing."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from service import migrate
from service.config import Settings
from tests.daemon.conftest import (
    TOKENS_SETTING,
    bearer,
    free_port,
    scaling_target,
    send,
    wait_ready,
)

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def daemon(env: dict[str, str], url: str, log: Path) -> Iterator[subprocess.Popen]:
    """Run ``tidewise serve`` until the block ends (SIGTERM, then wait)."""
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], env=env,
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(url, proc, log, time.monotonic() + 60)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for(check, timeout: float = 60.0):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError("condition not met in time")


def test_serve_decides_on_its_own_and_a_restart_loses_nothing(tmp_path):
    db = tmp_path / "tidewise.db"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, TIDEWISE_DB_URL=f"sqlite:///{db}", TIDEWISE_PORT=str(port),
               TIDEWISE_TOKENS=TOKENS_SETTING, TIDEWISE_FORECAST_INTERVAL_S="1",
               TIDEWISE_MODEL_DIR=str(tmp_path / "models"), TIDEWISE_LOG_LEVEL="warning")
    migrate.upgrade(Settings(db_url=f"sqlite:///{db}"))
    log = tmp_path / "serve.log"
    now = int(time.time())
    with daemon(env, url, log), httpx.Client(base_url=url, timeout=10,
                                              headers=bearer("all")) as c:
        send(c, "web-vm", "vm", "cpu_cores", [(now - 900 + i, 7.0) for i in range(900)])
        assert c.post("/v1/targets", json=scaling_target()).status_code == 201
        # the scheduler's forecast job (every 1 s) decides and logs the first action
        actions = _wait_for(lambda: c.get("/v1/actions").json()["actions"])
        assert len(actions) == 1, actions
        assert actions[0]["changes"] == {"replicas": {"from": None, "to": 4}}
        assert c.post(f"/v1/actions/{actions[0]['id']}/ack").json()["acked"]
        fc = c.get("/v1/forecasts/web-vm", params={"metric": "cpu_cores"}).json()
        assert fc["model"] == "window-mean"
        before = c.get("/v1/recommendations/web").json()

    with daemon(env, url, log), httpx.Client(base_url=url, timeout=10,
                                              headers=bearer("all")) as c:
        assert [t["name"] for t in c.get("/v1/targets").json()["targets"]] == ["web"]
        after = c.get("/v1/actions").json()["actions"]
        assert [(a["id"], a["acked"], a["acked_by"]) for a in after] == [
            (actions[0]["id"], True, "admin")
        ]
        pts = c.get("/v1/series/web-vm/cpu_cores",
                    params={"start": now - 900, "end": now - 1}).json()["points"]
        assert len(pts) == 900 and all(v == 7.0 for _, v in pts)
        rec = c.get("/v1/recommendations/web").json()
        assert rec["desired"] == before["desired"] == {"replicas": 4}
    text = log.read_text()
    assert "Traceback" not in text, text[-4000:]
