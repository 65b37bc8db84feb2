"""Helpers of the daemon I/O tests: real subprocesses (tidewise serve, Prometheus, the node
exporter, headless Chromium), each stopped when its ``with`` block ends.

A plain module, not a conftest: the tests import what they use.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_binaries(*names: str) -> dict[str, str]:
    """Paths of ``names``; skip the test when one is missing, fail instead under ``CI``.

    ``scripts/system-deps.sh`` installs them (Debian packages).
    """
    found = {n: shutil.which(n) for n in names}
    missing = [n for n, p in found.items() if p is None]
    if missing:
        msg = f"{', '.join(missing)} not installed; run scripts/system-deps.sh"
        if os.environ.get("CI"):
            pytest.fail(msg + " (CI is set: the end-to-end tests must run)")
        pytest.skip(msg)
    return {n: p for n, p in found.items() if p is not None}


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the test process dies (even by SIGKILL).

    The ``with`` blocks stop every process on a normal exit or a failure; this covers a
    test runner killed from outside (a CI timeout), which would otherwise orphan them.
    """
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:  # not glibc/Linux: the with blocks still stop the processes
        pass


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@contextlib.contextmanager
def process(
    argv: list[str],
    log: Path,
    ready_url: str | None,
    env: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> Iterator[subprocess.Popen]:
    """Run ``argv`` (output to ``log``) until the block ends; wait for ``ready_url`` to answer 200.

    The process is terminated (SIGTERM, then SIGKILL after 10 s) however the block ends, so a
    failing test leaks nothing.
    """
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    try:
        if ready_url is not None:
            deadline = time.monotonic() + timeout_s
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{argv[0]} exited with {proc.returncode}:\n{_tail(log)}")
                try:
                    if httpx.get(ready_url, timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{argv[0]} not ready after {timeout_s} s:\n{_tail(log)}")
                time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextlib.contextmanager
def tidewise_daemon(tmp: Path, **env_vars: str) -> Iterator[str]:
    """Run ``tidewise serve`` on a fresh migrated SQLite file in ``tmp``; yield its base URL."""
    from service import migrate
    from service.config import Settings

    db = tmp / "tidewise.db"
    migrate.upgrade(Settings(db_url=f"sqlite:///{db}"))
    port = free_port()
    env = dict(
        os.environ,
        TIDEWISE_DB_URL=f"sqlite:///{db}",
        TIDEWISE_PORT=str(port),
        TIDEWISE_HOST="127.0.0.1",
        TIDEWISE_LOG_LEVEL="info",
        TIDEWISE_ENVIRONMENT="development",
        **env_vars,
    )
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "service.cli", "serve"]
    with process(argv, tmp / "tidewise.log", url + "/readyz", env=env):
        yield url


def wait_for(predicate, timeout_s: float, interval_s: float = 0.5, what: str = "condition"):  # noqa: ANN001, ANN201
    """Poll ``predicate`` until it returns a truthy value (returned) or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")
