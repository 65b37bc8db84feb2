"""Ingest throughput: samples/s through the HTTP API vs. raw executemany (and raw COPY).

    .venv/bin/python bench/ingest.py [--batches 40] [--batch-size 5000] [--series 500]
                                     [--repeat 3] [--postgres URL] [--synchronous NORMAL]

With ``--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test`` the same is measured
on PostgreSQL, in a fresh schema dropped afterwards, and a third rate besides: raw COPY.

1. Creates a fresh SQLite file in a temp dir, migrates it, starts ``tidewise serve`` on a
   free port (scheduler on, default settings: WAL, synchronous=FULL).
2. A separate client process pre-serialises ``--batches`` JSON bodies of ``--batch-size``
   samples (``--series`` series x consecutive seconds, near now), then POSTs them one after
   the other over one keep-alive connection and reports samples/s (first batch = warm-up,
   not timed).
3. In the same run (after the daemon stopped), the same number of samples is inserted into
   the same ``samples`` table with SQLAlchemy Core ``executemany`` (INSERT ... ON CONFLICT DO
   UPDATE, one transaction per batch, parameters prepared beforehand) with the daemon's
   engine settings.
4. PostgreSQL only, in the same run and on the same data (fresh seconds, same series and
   values): psycopg 3's binary ``COPY samples FROM STDIN`` with ``write_row``, one
   transaction per batch, rows prepared beforehand. A plain COPY cannot upsert, so it is
   the ceiling of any write into ``samples``, not a like-for-like rival of the daemon (which
   also parses, validates, locks the batch's series, marks them dirty and checks for stored
   keys, then COPYs new seconds straight in, or upserts through a staging table).

Repeats this ``--repeat`` times, each on a fresh database, and prints every run and the
medians of the rates and their ratios (the machine is shared, single runs vary a lot).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_bodies(batches: int, batch_size: int, n_series: int, t0: int) -> list[bytes]:
    """``batches + 1`` JSON bodies of ``batch_size`` samples (the first is the warm-up).

    ``n_series`` series (``n_series / 5`` entities x 5 metrics) x consecutive seconds from
    ``t0``: each body covers every series over ``batch_size / n_series`` seconds.
    """
    import orjson

    n_entities = max(1, n_series // 5)
    metrics = ["cpu_util", "mem_util", "net_in", "net_out", "disk_io"]
    bodies = []
    k = 0
    for _ in range(batches + 1):
        samples = []
        while len(samples) < batch_size:
            sec = t0 + k // n_series
            j = k % n_series
            samples.append(
                {
                    "entity": f"vm-{j % n_entities}",
                    "kind": "vm",
                    "metric": metrics[(j // n_entities) % len(metrics)],
                    "ts": sec,
                    "value": (k * 7919 % 1000) / 10.0,
                }
            )
            k += 1
        bodies.append(orjson.dumps({"samples": samples}))
    return bodies


def drop_store(db_url: str, schema: str | None, tmp: Path | None) -> None:
    """Drop the bench's PostgreSQL ``schema``, or delete its SQLite folder ``tmp``."""
    if schema:
        from sqlalchemy import create_engine, text

        admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def client(  # noqa: PLR0913
    url: str, batches: int, batch_size: int, n_series: int, t0: int, connections: int, out
) -> None:  # noqa: ANN001
    import threading

    import httpx

    bodies = make_bodies(batches, batch_size, n_series, t0)
    headers = {"content-type": "application/json"}
    clients = [httpx.Client(timeout=120) for _ in range(connections)]
    r = clients[0].post(url + "/v1/metrics", content=bodies[0], headers=headers)  # warm-up
    r.raise_for_status()
    stored = [0] * connections

    def post_share(i: int) -> None:
        # connection i sends batches i, i + connections, ... one after the other
        for body in bodies[1 + i :: connections]:
            resp = clients[i].post(url + "/v1/metrics", content=body, headers=headers)
            resp.raise_for_status()
            stored[i] += resp.json()["stored"]

    threads = [threading.Thread(target=post_share, args=(i,)) for i in range(connections)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    for c in clients:
        c.close()
    stored = sum(stored)
    out.put((stored, elapsed, sum(len(b) for b in bodies[1:]) / batches))


def raw_rate(  # noqa: PLR0913
    settings, batches: int, batch_size: int, n_series: int, t0: int, copy: bool = False  # noqa: ANN001
) -> float:
    """Samples/s of raw executemany (or, with ``copy``, raw binary COPY) into ``samples``."""
    from sqlalchemy import insert, select
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from service.store.db import make_engine, write_tx
    from service.store.tables import Entity, Sample, Series

    engine = make_engine(settings)
    prefix = "copy" if copy else "raw"  # series of their own: the same data, fresh keys
    with write_tx(engine) as conn:
        conn.execute(
            insert(Entity.__table__),
            [{"name": f"{prefix}-{i}", "kind": "vm", "labels": {}} for i in range(n_series)],
        )
        ids = [
            r[0]
            for r in conn.execute(
                select(Entity.id).where(Entity.name.like(f"{prefix}-%")).order_by(Entity.id)
            )
        ]
        conn.execute(
            insert(Series.__table__),
            [{"entity_id": e, "metric": "cpu_util", "unit": "percent"} for e in ids],
        )
        sids = [
            r[0]
            for r in conn.execute(
                select(Series.id).where(Series.entity_id.in_(ids)).order_by(Series.id)
            )
        ]
    table = Sample.__table__
    stmt = (sqlite_insert if settings.is_sqlite else pg_insert)(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["series_id", "ts"], set_={"value": stmt.excluded.value}
    )
    params = []
    k = 0
    for _ in range(batches):
        rows = []
        for _ in range(batch_size):
            rows.append(
                {
                    "series_id": sids[k % n_series],
                    "ts": t0 + k // n_series,
                    "value": (k * 7919 % 1000) / 10.0,
                }
            )
            k += 1
        params.append(rows)
    if copy:
        tuples = [[(r["series_id"], r["ts"], r["value"]) for r in rows] for rows in params]
        sql = "COPY samples (series_id, ts, value) FROM STDIN (FORMAT BINARY)"
        start = time.perf_counter()
        for rows in tuples:
            with write_tx(engine) as conn:
                with conn.connection.driver_connection.cursor() as cur, cur.copy(sql) as cp:
                    cp.set_types(["int4", "int8", "float8"])
                    for row in rows:
                        cp.write_row(row)
        elapsed = time.perf_counter() - start
    else:
        start = time.perf_counter()
        for rows in params:
            with write_tx(engine) as conn:
                conn.execute(stmt, rows)
        elapsed = time.perf_counter() - start
    engine.dispose()
    return batches * batch_size / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--series", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3, help="runs, each on a fresh database")
    ap.add_argument("--connections", type=int, default=1, help="concurrent client connections")
    ap.add_argument("--postgres", metavar="URL", help="measure on this PostgreSQL instead")
    ap.add_argument(
        "--synchronous",
        default="FULL",
        choices=["NORMAL", "FULL", "EXTRA"],
        help="SQLite synchronous level of the daemon and of the raw baseline",
    )
    args = ap.parse_args()

    runs = [measure(args, r) for r in range(args.repeat)]
    store = "PostgreSQL" if args.postgres else f"SQLite WAL synchronous={args.synchronous}"
    print(
        f"batches: {args.batches} x {args.batch_size} samples over {args.series} series "
        f"(JSON body {runs[0][2] / 1e3:.0f} kB each), {store}, "
        f"{args.connections} client connection(s), {args.repeat} runs on fresh databases"
    )
    for r, (http_rate, raw, _, copy) in enumerate(runs):
        line = (
            f"run {r + 1}: HTTP {http_rate:10,.0f} samples/s, raw {raw:10,.0f} samples/s, "
            f"ratio {http_rate / raw:.2f}"
        )
        if copy is not None:
            line += f"; raw COPY {copy:10,.0f} samples/s, ratio {http_rate / copy:.2f}"
        print(line)
    http_med = statistics.median(h for h, _, _, _ in runs)
    raw_med = statistics.median(r for _, r, _, _ in runs)
    print(f"HTTP API end to end : {http_med:12,.0f} samples/s (median)")
    print(f"raw Core executemany: {raw_med:12,.0f} samples/s (median)")
    if args.postgres:
        copy_med = statistics.median(c for _, _, _, c in runs)
        print(f"raw COPY            : {copy_med:12,.0f} samples/s (median)")
    print(f"ratio HTTP / raw    : {http_med / raw_med:12.2f} (of the medians)")
    if args.postgres:
        print(f"ratio HTTP / COPY   : {http_med / copy_med:12.2f} (of the medians)")


def measure(args: argparse.Namespace, run: int) -> tuple[float, float, float, float | None]:
    """One run on a fresh database.

    Returns (HTTP samples/s, raw executemany samples/s, mean body bytes, raw COPY samples/s
    or None on SQLite).
    """
    from service import migrate
    from service.config import Settings

    schema = None
    if args.postgres:
        db_url = args.postgres
        schema = f"tw_bench_{os.getpid()}_{run}"
    else:
        tmp = Path(tempfile.mkdtemp(prefix="tidewise-bench-"))
        db_url = f"sqlite:///{tmp / 'bench.db'}"
    settings = Settings(db_url=db_url, db_schema=schema, sqlite_synchronous=args.synchronous)
    migrate.upgrade(settings)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ, TIDEWISE_DB_URL=db_url, TIDEWISE_PORT=str(port), TIDEWISE_LOG_LEVEL="warning"
    )
    env["TIDEWISE_SQLITE_SYNCHRONOUS"] = args.synchronous
    if schema:
        env["TIDEWISE_DB_SCHEMA"] = schema
    server = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], env=env, cwd=ROOT)
    try:
        import httpx

        for _ in range(300):
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        else:
            raise SystemExit("the daemon did not become ready")
        # Timestamps: the last hour, so they are inside retention and not in the future.
        t0 = int(time.time()) - 3600
        q: mp.Queue = mp.get_context("spawn").Queue()
        proc = mp.get_context("spawn").Process(
            target=client,
            args=(url, args.batches, args.batch_size, args.series, t0, args.connections, q),
        )
        proc.start()
        stored, elapsed, body_bytes = q.get(timeout=600)
        proc.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    copy = None
    try:
        raw = raw_rate(settings, args.batches, args.batch_size, args.series, t0)
        if schema:
            copy = raw_rate(settings, args.batches, args.batch_size, args.series, t0, copy=True)
    finally:
        drop_store(db_url, schema, None if schema else tmp)
    return stored / elapsed, raw, body_bytes, copy


if __name__ == "__main__":
    main()
