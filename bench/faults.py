"""Faults: SIGKILL mid-stream loses no acknowledged sample; concurrent writers, no 5xx.

    PYTHONPATH=$PWD .venv/bin/python bench/faults.py [--rounds 3] [--writers 8]
        [--seconds 20] [--batch 1000] [--seed 12] [--postgres [URL]] [--no-scheduler]

Runs ``tidewise serve`` as a real subprocess on 127.0.0.1 (loopback only) in production mode
with scoped tokens (an ingest-only token writes, a read-only token reads back), on a fresh
SQLite file in a temporary folder — and, with ``--postgres``, again on a fresh PostgreSQL
schema (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``), dropped afterwards.
For each store it prints:

1. **SIGKILL rounds** (``--rounds``): a client streams JSON batches of ``--batch`` samples
   (unique keys, unique values) over one connection; a seeded random 0.3-1.5 s after the
   first batch is acknowledged the daemon is killed with SIGKILL mid-stream. The daemon is
   restarted on the same store and *every* sample acknowledged so far (all rounds) is read
   back through ``GET /v1/series``: ``lost`` counts acknowledged samples missing or with
   another value (must be 0). The batch in flight at the kill was not acknowledged: it may
   be stored wholly or not at all; ``partial`` counts in-flight batches stored in part
   (must be 0).
2. **Concurrent writers**: ``--writers`` client processes, each on its own connection and
   entities, post batches for ``--seconds`` seconds: stored samples/s (acknowledged samples
   from the first request to the last answer), request latency p50 / p99, the count of 5xx
   answers, of other non-200 answers and of connection errors; then the samples in the
   store are counted and compared with those acknowledged (``missing`` must be 0).

Bounded: at most 20 rounds and 120 s of writing per store, every request with a timeout.
Prints the machine's load average before and after (the machine may be shared; rates
depend on it, the loss and 5xx counts must not).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
INGEST_TOKEN = "faults-ingest-0123456789abcdef"
READ_TOKEN = "faults-read-0123456789abcdef01"
TOKENS = f"ing:{INGEST_TOKEN}:ingest,rd:{READ_TOKEN}:read"
#: Entities per batch; each batch holds ``batch / ENTITIES`` consecutive seconds of each.
ENTITIES = 20
MAX_ROUNDS, MAX_SECONDS = 20, 120.0


def free_port() -> int:
    """Return a loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """``tidewise serve`` on one store, started and killed at will."""

    def __init__(self, db_url: str, schema: str | None, log: Path, scheduler: bool) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = dict(
            os.environ,
            TIDEWISE_DB_URL=db_url,
            TIDEWISE_HOST="127.0.0.1",
            TIDEWISE_PORT=str(self.port),
            TIDEWISE_ENVIRONMENT="production",
            TIDEWISE_TOKENS=TOKENS,
            TIDEWISE_LOG_LEVEL="warning",
            TIDEWISE_SCHEDULER_ENABLED="true" if scheduler else "false",
            PYTHONPATH=str(ROOT),
        )
        if schema:
            self.env["TIDEWISE_DB_SCHEMA"] = schema
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Start and wait for /readyz; return the seconds it took."""
        t0 = time.monotonic()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "serve"],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        while time.monotonic() - t0 < 60:
            if self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise SystemExit(f"tidewise serve exited ({self.proc.returncode}):\n{tail}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return time.monotonic() - t0
            time.sleep(0.05)
        self.stop()
        raise SystemExit("tidewise serve not ready after 60 s")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM (then SIGKILL after 30 s) if running."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def make_batch(prefix: str, seq: int, size: int, t0: int) -> tuple[bytes, list[tuple]]:
    """Batch ``seq`` of a stream: (body, [(entity, ts, value)]); keys and values unique."""
    per = max(1, size // ENTITIES)
    rows = []
    for e in range(ENTITIES):
        for k in range(per):
            ts = t0 + seq * per + k
            rows.append((f"{prefix}-{e}", ts, float(seq * size + e * per + k)))
    body = orjson.dumps(
        {
            "samples": [
                {"entity": n, "kind": "vm", "metric": "cpu_util", "ts": t, "value": v}
                for n, t, v in rows
            ]
        }
    )
    return body, rows


def stream_until_killed(url: str, prefix: str, size: int, t0: int, acked: list, inflight: list,
                        stop: threading.Event) -> None:  # fmt: skip
    """Post batches one after another until a request fails (the daemon was killed)."""
    headers = {"authorization": f"Bearer {INGEST_TOKEN}", "content-type": "application/json"}
    with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
        seq = 0
        while not stop.is_set():
            body, rows = make_batch(prefix, seq, size, t0)
            inflight[:] = [rows]
            try:
                r = http.post("/v1/metrics", content=body)
            except httpx.TransportError:
                return
            if r.status_code != 200 or r.json() != {"stored": len(rows)}:
                raise SystemExit(f"unexpected answer {r.status_code}: {r.text[:300]}")
            acked.extend(rows)
            inflight[:] = []
            seq += 1


def read_back(url: str, entities: set[str], start: int, end: int) -> dict[tuple[str, int], float]:
    """Every stored (entity, ts) -> value of ``entities``, through the read API."""
    out = {}
    headers = {"authorization": f"Bearer {READ_TOKEN}"}
    with httpx.Client(base_url=url, timeout=60, headers=headers) as http:
        for name in sorted(entities):
            r = http.get(f"/v1/series/{name}/cpu_util", params={"start": start, "end": end})
            if r.status_code == 404:
                continue
            r.raise_for_status()
            for t, v in r.json()["points"]:
                out[(name, int(t))] = float(v)
    return out


def kill_rounds(daemon: Daemon, rounds: int, size: int, rng: random.Random) -> None:
    """SIGKILL mid-stream ``rounds`` times; check every acknowledged sample after restart."""
    t0 = int(time.time()) - 40_000  # inside raw retention, never in the future
    acked: list[tuple] = []
    for r in range(rounds):
        ready_s = daemon.start()
        prefix = f"kill{r}"
        inflight: list = []
        before = len(acked)
        stop = threading.Event()
        th = threading.Thread(
            target=stream_until_killed,
            args=(daemon.url, prefix, size, t0, acked, inflight, stop),
            daemon=True,
        )
        th.start()
        first = time.monotonic() + 60
        while len(acked) == before and th.is_alive() and time.monotonic() < first:
            time.sleep(0.01)  # the first batch is acknowledged: now stream for a while
        delay = rng.uniform(0.3, 1.5)
        time.sleep(delay)
        daemon.kill()
        th.join(timeout=60)
        stop.set()
        acked_round = len(acked) - before
        restart_s = daemon.start()
        entities = {e for e, _, _ in acked} | {e for rows in inflight for e, _, _ in rows}
        entities |= {f"{prefix}-{e}" for e in range(ENTITIES)}
        stored = read_back(daemon.url, entities, t0, int(time.time()))
        lost = sum(stored.get((e, t)) != v for e, t, v in acked)
        partial = 0
        for rows in inflight:
            n = sum(stored.get((e, t)) == v for e, t, v in rows)
            partial += 0 < n < len(rows)
            state = "stored" if n == len(rows) else "not stored" if n == 0 else f"{n} stored"
        flight = f"in-flight batch {state}" if inflight else "no batch in flight"
        print(
            f"  round {r + 1}: killed {delay:.2f} s after the first ack, {acked_round:,} "
            f"samples acked this round ({len(acked):,} in all); restart ready in {restart_s:.1f} s "
            f"(first start {ready_s:.1f} s); lost {lost}, partial batches {partial} ({flight})",
            flush=True,
        )
        daemon.stop()


def writer(url: str, k: int, size: int, seconds: float, t0: int, q: mp.Queue) -> None:
    """One client process: post batches for ``seconds``; report counts and latencies."""
    headers = {"authorization": f"Bearer {INGEST_TOKEN}", "content-type": "application/json"}
    groups = 10  # entity groups: the timestamps advance once per 10 batches
    lat, acked, codes, errors = [], 0, {}, 0
    began = time.time()
    deadline = time.monotonic() + seconds
    seq = 0
    with httpx.Client(base_url=url, timeout=60, headers=headers) as http:
        while time.monotonic() < deadline:
            body, rows = make_batch(f"w{k}g{seq % groups}", seq // groups, size, t0)
            t = time.perf_counter()
            try:
                r = http.post("/v1/metrics", content=body)
            except httpx.TransportError:
                errors += 1
                continue
            lat.append(time.perf_counter() - t)
            codes[r.status_code] = codes.get(r.status_code, 0) + 1
            if r.status_code == 200:
                acked += r.json()["stored"]
            seq += 1
    q.put((k, acked, lat, codes, errors, began, time.time()))


def count_samples(db_url: str, schema: str | None) -> int:
    """Samples in the store (read directly, the daemon stopped)."""
    from sqlalchemy import text

    from service.config import Settings
    from service.store.db import make_engine

    engine = make_engine(Settings(db_url=db_url, db_schema=schema))
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM samples")).scalar_one())
    finally:
        engine.dispose()


def concurrent_writers(daemon: Daemon, db_url: str, schema: str | None, writers: int,
                       seconds: float, size: int) -> None:  # fmt: skip
    """``writers`` processes for ``seconds``: samples/s, p50/p99, 5xx; then count the store."""
    before = count_samples(db_url, schema)
    daemon.start()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    t0 = int(time.time()) - 40_000
    procs = [
        ctx.Process(target=writer, args=(daemon.url, k, size, seconds, t0, q))
        for k in range(writers)
    ]
    start = time.perf_counter()
    for p in procs:
        p.start()
    results = [q.get(timeout=seconds + 300) for _ in procs]
    wall = time.perf_counter() - start
    for p in procs:
        p.join(timeout=30)
    daemon.stop()
    acked = sum(r[1] for r in results)
    lat = sorted(x for r in results for x in r[2])
    codes: dict[int, int] = {}
    for r in results:
        for c, n in r[3].items():
            codes[c] = codes.get(c, 0) + n
    errors = sum(r[4] for r in results)
    five = sum(n for c, n in codes.items() if c >= 500)
    other = sum(n for c, n in codes.items() if c != 200 and c < 500)
    stored = count_samples(db_url, schema) - before
    span = max(r[6] for r in results) - min(r[5] for r in results)  # first to last request

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    print(
        f"  {writers} writers x {seconds:.0f} s, batches of {size}: {acked:,} samples "
        f"acknowledged in {len(lat):,} requests over {span:.1f} s: {acked / span:,.0f} "
        f"samples/s ({acked / wall:,.0f} over the wall {wall:.1f} s with process start-up)\n"
        f"  latency p50 {pct(0.5):.0f} ms, p99 {pct(0.99):.0f} ms, max {pct(1.0):.0f} ms; "
        f"5xx {five}, other non-200 {other}, connection errors {errors}; "
        f"in the store {stored:,} (missing {acked - stored:,})",
        flush=True,
    )


@contextlib.contextmanager
def store(kind: str, pg_url: str, tmp: Path) -> Iterator[tuple[str, str | None]]:
    """A fresh migrated store: (db_url, schema)."""
    from service import migrate
    from service.config import Settings

    if kind == "sqlite":
        url = f"sqlite:///{tmp / 'faults.db'}"
        migrate.upgrade(Settings(db_url=url))
        yield url, None
        return
    from sqlalchemy import create_engine, text

    schema = f"tw_faults_{os.getpid()}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        migrate.upgrade(Settings(db_url=pg_url, db_schema=schema))
        yield pg_url, schema
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help=f"SIGKILL rounds (<= {MAX_ROUNDS})")
    ap.add_argument("--writers", type=int, default=8, help="concurrent writer processes")
    ap.add_argument("--seconds", type=float, default=20.0, help=f"writing time (<= {MAX_SECONDS})")
    ap.add_argument("--batch", type=int, default=1000, help="samples per batch")
    ap.add_argument("--seed", type=int, default=12, help="seed of the kill times")
    ap.add_argument(
        "--postgres",
        nargs="?",
        const=PG_DEFAULT,
        metavar="URL",
        help=f"also on PostgreSQL (default {PG_DEFAULT})",
    )
    ap.add_argument(
        "--no-scheduler",
        action="store_true",
        help="run the daemon without its jobs (default: jobs on, as deployed)",
    )
    args = ap.parse_args()
    if not 1 <= args.rounds <= MAX_ROUNDS or not 0 < args.seconds <= MAX_SECONDS:
        sys.exit(f"--rounds must be 1..{MAX_ROUNDS} and --seconds in (0, {MAX_SECONDS}]")
    if args.batch < ENTITIES or args.writers < 1:
        sys.exit(f"--batch must be >= {ENTITIES} and --writers >= 1")

    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f};"
        f" daemon: production mode, scoped tokens, jobs {'off' if args.no_scheduler else 'on'}"
    )
    kinds = ["sqlite"] + (["postgresql"] if args.postgres else [])
    for kind in kinds:
        with tempfile.TemporaryDirectory(prefix="tidewise-faults-") as tmp_s:
            tmp = Path(tmp_s)
            with store(kind, args.postgres or PG_DEFAULT, tmp) as (db_url, schema):
                label = "SQLite (WAL, synchronous=FULL)" if kind == "sqlite" else "PostgreSQL"
                print(f"{label}:")
                daemon = Daemon(db_url, schema, tmp / "daemon.log", not args.no_scheduler)
                try:
                    rng = random.Random(args.seed)
                    kill_rounds(daemon, args.rounds, args.batch, rng)
                    concurrent_writers(
                        daemon, db_url, schema, args.writers, args.seconds, args.batch
                    )
                finally:
                    daemon.stop()
                if kind == "sqlite":
                    shutil.rmtree(tmp, ignore_errors=True)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
