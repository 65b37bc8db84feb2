"""Load on a real ``tidewise serve``: recommendations and ingest, p50 / p99 latency, throughput.

Run from the repository root::

    .venv/bin/python bench/api.py                     # 500 recommendations/s for 20 s, then ingest
    .venv/bin/python bench/api.py --rate 1000 --seconds 10 --targets 50
    .venv/bin/python bench/api.py --db-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/api.py --retrain harmony   # p99 again while harmony trains in-process

What it does:

1. creates a fresh store (a temporary SQLite file, or a fresh schema on the PostgreSQL URL
   given), migrates it, writes an hour of per-second demand for ``--targets`` entities,
   declares one HPA scaling target per entity and stores one decision each (the same
   functions the scheduler runs), so every recommendation is a stored-decision read;
2. starts ``python -m service.cli serve`` (tokens on, scheduler on, access log off) as a
   separate process;
3. **recommendations**: an open-loop generator in this process sends
   ``GET /v1/recommendations/{target}`` (targets in turn) at ``--rate`` requests/s for
   ``--seconds`` over ``--connections`` keep-alive connections; latency is measured from
   the moment each request is sent to the end of its response; requests the generator
   itself sent more than 5 ms late are counted and printed;
4. **ingest**: ``--ingest-clients`` closed-loop clients each POST batches of
   ``--batch`` samples to ``/v1/metrics`` for ``--ingest-seconds``;
5. prints p50 / p99 / max latency (ms), achieved requests/s (and samples/s for ingest) and
   the error count, and stops the server.

Nothing here is a test: the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKEN = "bench-token-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare(db_url: str, schema: str | None, targets: int, now: int,
             history_s: int = 3600) -> None:
    """Migrate, write demand, declare targets and store one decision each."""
    from service import decisions, migrate
    from service.config import Settings
    from service.ingest import validate
    from service.store import samples as sample_store
    from service.store import targets as target_store
    from service.store.db import Store

    settings = Settings(db_url=db_url, db_schema=schema, scheduler_enabled=False)
    migrate.upgrade(settings)
    store = Store(settings)
    try:
        rng = np.random.default_rng(0)
        for i in range(targets):
            level = 2 + 10 * rng.random()
            for start in range(0, history_s, 3600):  # an hour per batch
                samples = [{"entity": f"svc-{i}", "kind": "vm", "metric": "cpu_cores",
                            "ts": now - history_s + k, "value": float(level + rng.normal(0, 0.3))}
                           for k in range(start, min(start + 3600, history_s))]
                sample_store.ingest(store, validate(samples, now, 300))
            target_store.upsert_target(
                store, f"svc-{i}", "vm", "hpa",
                {"entity": f"svc-{i}", "metric": "cpu_cores", "capacity": 1.0,
                 "min_replicas": 1, "max_replicas": 100, "target_violation": 0.01,
                 "boot_s": 30.0}, {}, now)
        decisions.decide_all(store, now)
    finally:
        store.close()


@contextlib.contextmanager
def _server(env: dict[str, str], url: str):  # noqa: ANN202
    proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _summary(name: str, lat_s: list[float], errors: int, wall_s: float, extra: str = "") -> None:
    a = np.asarray(lat_s) * 1000.0
    if a.size == 0:
        print(f"{name}: no successful request ({errors} errors)")
        return
    print(f"{name}: {a.size} ok, {errors} errors in {wall_s:.1f} s = {a.size / wall_s:.0f} req/s"
          f"{extra}; latency p50 {np.percentile(a, 50):.2f} ms, p99 {np.percentile(a, 99):.2f} ms,"
          f" max {a.max():.2f} ms")


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               request: bytes) -> int:
    """Send one prebuilt HTTP/1.1 request on a keep-alive connection; return the status."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def _recommendations(url: str, rate: float, seconds: float, targets: int,
                           connections: int) -> None:
    """Open loop: requests are due at ``i / rate``; ``connections`` workers send them.

    A minimal keep-alive HTTP/1.1 client (prebuilt requests, Content-Length framing) keeps
    the generator's own CPU cost far below the server's, which matters on a small machine.
    Latency runs from sending a request to the end of its response; a request whose worker
    was busy past its due time is sent late, and that lateness is printed separately.
    """
    host, port = url.removeprefix("http://").split(":")
    reqs = [(f"GET /v1/recommendations/svc-{i} HTTP/1.1\r\nHost: {host}\r\n"
             f"Authorization: Bearer {TOKEN}\r\n\r\n").encode() for i in range(targets)]
    conns = [await asyncio.open_connection(host, int(port)) for _ in range(connections)]
    for r, w in conns:  # warm up
        assert await _get(r, w, reqs[0]) == 200
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    lat: list[float] = []
    lateness: list[float] = []
    errors = 0

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal errors
        while (item := await queue.get()) is not None:
            i, due = item
            t0 = time.perf_counter()
            lateness.append(t0 - due)
            try:
                ok = await _get(reader, writer, reqs[i % targets]) == 200
            except (OSError, asyncio.IncompleteReadError, ValueError):
                ok = False
            if ok:
                lat.append(time.perf_counter() - t0)
            else:
                errors += 1

    workers = [asyncio.create_task(worker(r, w)) for r, w in conns]
    n = int(rate * seconds)
    start = time.perf_counter()
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((i, due))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    wall = time.perf_counter() - start
    for _, w in conns:
        w.close()
    late = np.asarray(lateness) * 1000.0
    _summary(f"recommendations at {rate:.0f}/s offered", lat, errors, wall,
             f"; send delay past due p50 {np.percentile(late, 50):.2f} ms, "
             f"p99 {np.percentile(late, 99):.2f} ms")


async def _ingest(url: str, seconds: float, clients: int, batch: int) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    base = int(time.time()) - 30 * 3600

    async def client_loop(c: int, client: httpx.AsyncClient) -> None:
        nonlocal errors
        k = 0
        while time.perf_counter() < stop:
            ts0 = base + (k * batch) % (24 * 3600)
            body = {"samples": [{"entity": f"ing-{c}", "kind": "vm", "metric": "cpu_util",
                                 "ts": ts0 + j, "value": float(j % 100)} for j in range(batch)]}
            t0 = time.perf_counter()
            try:
                r = await client.post("/v1/metrics", json=body)
                ok = r.status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                lat.append(time.perf_counter() - t0)
            else:
                errors += 1
            k += 1

    start = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        await asyncio.gather(*(client_loop(c, client) for c in range(clients)))
    wall = time.perf_counter() - start
    _summary(f"ingest ({clients} clients x {batch}-sample batches)", lat, errors, wall,
             f", {len(lat) * batch / wall:,.0f} samples/s")


def _retrain_status(url: str) -> None:
    """Say whether the retraining job was still running when the phase ended."""
    body = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"},
                     timeout=10).text
    done = [ln for ln in body.splitlines()
            if ln.startswith('tidewise_job_runs_total{job="retrain"')]
    print("   retrain runs finished by the end of that phase: "
          + (", ".join(ln.split("{", 1)[1] for ln in done) if done else "none (still training)"))


def main() -> None:
    """Parse the options, run both phases and print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=500.0, help="recommendations per second")
    ap.add_argument("--seconds", type=float, default=20.0, help="recommendation phase (s)")
    ap.add_argument("--targets", type=int, default=20, help="targets declared")
    ap.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    ap.add_argument("--ingest-seconds", type=float, default=10.0, help="ingest phase (s)")
    ap.add_argument("--ingest-clients", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1000, help="samples per ingest batch")
    ap.add_argument("--db-url", default=None, help="PostgreSQL URL (default: temp SQLite)")
    ap.add_argument("--history-s", type=int, default=3600,
                    help="seconds of per-second demand written per target")
    ap.add_argument("--retrain", default=None, metavar="MODEL",
                    help="also measure the recommendations while the daemon's retraining job "
                    "trains MODEL (e.g. harmony) in the same process: the job runs 60 s after "
                    "start; the phase is repeated from 65 s and both are printed")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="tidewise-bench-")
    schema = None
    if args.db_url:
        from sqlalchemy import create_engine, text

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        eng = create_engine(args.db_url, isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        db_url = args.db_url
    else:
        db_url = f"sqlite:///{tmp}/bench.db"
    now = int(time.time())
    t0 = time.perf_counter()
    _prepare(db_url, schema, args.targets, now, args.history_s)
    print(f"prepared {args.targets} targets x {args.history_s} samples in "
          f"{time.perf_counter() - t0:.1f} s ({db_url.split(':')[0]})")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, TIDEWISE_DB_URL=db_url, TIDEWISE_PORT=str(port),
               TIDEWISE_TOKENS=f"bench:{TOKEN}:ingest+read+act", TIDEWISE_LOG_LEVEL="warning",
               TIDEWISE_MODEL_DIR=f"{tmp}/models")
    if schema:
        env["TIDEWISE_DB_SCHEMA"] = schema
    if args.retrain:
        env.update(TIDEWISE_RETRAIN_MODEL=args.retrain, TIDEWISE_RETRAIN_INTERVAL_S="60")
    try:
        with _server(env, url):
            started = time.monotonic()
            asyncio.run(_recommendations(url, args.rate, args.seconds, args.targets,
                                         args.connections))
            if args.retrain:
                time.sleep(max(0.0, 65 - (time.monotonic() - started)))
                print(f"-- while the retraining job trains {args.retrain} "
                      f"(from {time.monotonic() - started:.0f} s after start):")
                asyncio.run(_recommendations(url, args.rate, args.seconds, args.targets,
                                             args.connections))
                _retrain_status(url)
            asyncio.run(_ingest(url, args.ingest_seconds, args.ingest_clients, args.batch))
    finally:
        if schema:
            with eng.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))


if __name__ == "__main__":
    main()
