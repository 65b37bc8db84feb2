"""What one ingested sample costs the PostgreSQL server at a fleet's number of series.

    PYTHONPATH=$PWD .venv/bin/python bench/ingest_cost.py [--entities 7200] [--metrics 5]
        [--history-s 600] [--seconds 20] [--variants as-is,no-row-locks,as-is,no-row-locks]
        [--pg-url URL] [--keep SCHEMA] [--grouped-key G]

``bench/daemon.py`` measures a whole daemon; ``bench/ingest.py`` and
``bench/ingest_stages.py`` a few hundred series, where every page the writes touch stays in
the server's buffers. This one asks what a sample costs when the store holds as many series
as one daemon serves: a fresh schema (or ``--keep``'s, made by an earlier run and kept)
is filled like ``bench/daemon.py``'s (``--entities`` x ``--metrics`` series, ``--history-s``
seconds each, then ``ANALYZE``), and every series then gets ``--seconds`` new seconds
through :func:`service.store.samples.ingest`, in process (no HTTP), one second at a time in
batches of 5,000 samples (validated beforehand: not timed), as a per-second feed sends them.

Per variant it prints, per sample: wall time, the client's CPU, the server's CPU (every
``postgres`` process on this machine, from /proc), WAL records, full-page images and bytes
(``pg_stat_wal``), and buffers allocated and written by backends (``pg_stat_bgwriter``):
one of each per sample means each sample's index page was not in ``shared_buffers`` and
another dirty page had to be written out to make room.

Variants: ``as-is``, the store's ingest; ``no-row-locks``, the same without ``FOR NO KEY
UPDATE`` on the batch's series rows (the lock that keeps concurrent batches, rollups and
deletions of a series apart: NOT a correct mode, a measurement of what the locks cost).
Alternate them (the default does) to see the noise. Nothing else should run meanwhile.

``--grouped-key G`` measures another layout of ``samples`` (a counterfactual, not what the
migrations build): after the fill its key (series, second) is rebuilt as a unique index on
(series // G, second, series), so the G series of a group append to one index page instead
of one page each: the pages being written number the series / G, not the series
(``G = 1`` rebuilds the store's own key). Only the ingest runs on it (a COPY of new seconds
never needs the key by name); the store's reads do not name a group, and would walk the
whole index on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import daemon as bench_daemon  # noqa: E402 - after the path: the store's fill and /proc reading

VARIANTS = ("as-is", "no-row-locks")


def server_cpu_s() -> float:
    """CPU seconds (user + system) of every ``postgres`` process now running here."""
    _, procs = bench_daemon.proc_snapshot()
    return sum(cpu for comm, _, cpu in procs.values() if comm.startswith("postgres"))


def server_counters(conn) -> np.ndarray:  # noqa: ANN001 - a SQLAlchemy connection
    """WAL records, full-page images, WAL bytes, backend writes, buffers allocated."""
    from sqlalchemy import text

    wal = conn.execute(text("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal")).one()
    buf = conn.execute(text("SELECT buffers_backend, buffers_alloc FROM pg_stat_bgwriter")).one()
    conn.commit()  # statistics are a snapshot per transaction: the next read must see new ones
    return np.array([*wal, *buf], dtype=float)


@contextlib.contextmanager
def store_schema(pg_url: str, keep: str | None, entities: int, metrics: list[str],
                 history_s: int, end: int) -> Iterator[tuple[str, float | None]]:
    """Yield (schema, prefill seconds or None when an earlier run's ``--keep`` is reused).

    Without ``keep``: ``bench/daemon.py``'s fresh schema, dropped on exit; with it, that
    schema, filled the first time and kept.
    """
    if keep is None:
        with bench_daemon.fresh_store("postgres", pg_url, ROOT) as (_, schema):
            yield schema, bench_daemon.prefill(pg_url, schema, entities, metrics, history_s, end)
        return
    from sqlalchemy import create_engine, text

    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": keep}).first()
            if not exists:
                conn.execute(text(f'CREATE SCHEMA "{keep}"'))
    finally:
        admin.dispose()
    yield keep, (None if exists else
                 bench_daemon.prefill(pg_url, keep, entities, metrics, history_s, end))


def regroup(store, group: int) -> None:  # noqa: ANN001 - a service.store.db.Store
    """Rebuild the ``samples`` key on (series // group, ts, series); ``group = 1``: (series, ts)."""
    from sqlalchemy import text

    with store.engine.begin() as conn:
        pkey = conn.execute(text(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'samples'::regclass "
            "AND contype = 'p'")).scalar()
        if pkey is not None:
            conn.execute(text(f'ALTER TABLE samples DROP CONSTRAINT "{pkey}"'))
        for name in conn.execute(text(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'samples' "
                "AND schemaname = current_schema()")).scalars().all():
            conn.execute(text(f'DROP INDEX "{name}"'))
        if group == 1:
            conn.execute(text("ALTER TABLE samples ADD CONSTRAINT pk_samples "
                              "PRIMARY KEY (series_id, ts)"))
        else:
            conn.execute(text(f"CREATE UNIQUE INDEX samples_grouped_{int(group)} ON samples "
                              f"((series_id / {int(group)}), ts, series_id)"))
    with store.engine.connect() as conn:
        conn.execute(text("ANALYZE samples"))
        conn.commit()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--entities", type=int, default=7200)
    ap.add_argument("--metrics", type=int, default=5)
    ap.add_argument("--history-s", type=int, default=600,
                    help="seconds of history per series before the measured writes")
    ap.add_argument("--seconds", type=int, default=20, help="seconds written per variant")
    ap.add_argument("--variants", default="as-is,no-row-locks,as-is,no-row-locks")
    ap.add_argument("--pg-url", default=bench_daemon.PG_URL)
    ap.add_argument("--keep", help="fill this schema and keep it (reused when it exists)")
    ap.add_argument("--grouped-key", type=int, default=0, metavar="G",
                    help="rebuild the samples key on (series // G, second, series) first; "
                    "1: (series, second), the store's own")
    args = ap.parse_args()
    variants = args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"--variants: unknown {v!r}; use {', '.join(VARIANTS)}")
    if args.entities < 1 or args.seconds < 1 or args.history_s < 1:
        ap.error("--entities, --seconds and --history-s must be >= 1")
    if args.grouped_key < 0:
        ap.error("--grouped-key must be >= 1 (0, the default: the store's own key)")

    from sqlalchemy import text

    from service.config import Settings
    from service.ingest import validate
    from service.store import samples as sample_store
    from service.store.db import Store

    metrics = bench_daemon.metric_names(args.metrics)
    now = int(time.time())
    end = now - 3600  # the history ends an hour ago: the measured seconds follow it
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with store_schema(args.pg_url, args.keep, args.entities, metrics, args.history_s,
                      end) as (schema, took):
        store = Store(Settings(db_url=args.pg_url, db_schema=schema, scheduler_enabled=False))
        try:
            if args.grouped_key:
                regroup(store, args.grouped_key)
            with store.engine.connect() as conn:
                second = int(conn.execute(text("SELECT max(ts) FROM samples")).scalar())
                shared = conn.execute(text("SHOW shared_buffers")).scalar()
            keys = [(f"vm-{e:06d}", m) for e in range(args.entities) for m in metrics]
            print(f"store: {len(keys)} series, "
                  + (f"{args.history_s} s of history each (filled in {took:.0f} s)"
                     if took is not None else f"schema {schema} reused")
                  + f"; shared_buffers {shared}; key "
                  + ("(series, second)" if args.grouped_key <= 1
                     else f"(series // {args.grouped_key}, second, series)"), flush=True)
            locked = sample_store._LOCK_SERIES
            rng = np.random.default_rng(0)
            rows = []
            for variant in variants:
                batches = []
                for _ in range(args.seconds):
                    second += 1
                    for lo in range(0, len(keys), 5000):
                        part = keys[lo:lo + 5000]
                        items = [{"entity": e, "kind": "vm", "metric": m, "ts": second,
                                  "value": float(v)}
                                 for (e, m), v in zip(part, rng.random(len(part)), strict=True)]
                        batches.append(validate(items, now, 300, oldest=0))
                sample_store._LOCK_SERIES = (
                    locked if variant == "as-is" else locked.replace(" FOR NO KEY UPDATE", ""))
                try:
                    with store.engine.connect() as conn:
                        c0, s0 = server_counters(conn), server_cpu_s()
                        p0, w0 = time.process_time(), time.perf_counter()
                        for b in batches:
                            sample_store.ingest(store, b)
                        w1, p1 = time.perf_counter(), time.process_time()
                        s1, c1 = server_cpu_s(), server_counters(conn)
                finally:
                    sample_store._LOCK_SERIES = locked
                n = args.seconds * len(keys)
                d = (c1 - c0) / n
                row = {"variant": variant, "samples": n,
                       "wall_us": (w1 - w0) / n * 1e6, "client_cpu_us": (p1 - p0) / n * 1e6,
                       "server_cpu_us": (s1 - s0) / n * 1e6, "wal_records": d[0],
                       "wal_fpi": d[1], "wal_bytes": d[2], "backend_writes": d[3],
                       "buffers_alloc": d[4]}
                rows.append(row)
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                  for k, v in row.items()}), flush=True)
        finally:
            store.close()
    print("\n| variant | wall µs | client CPU µs | server CPU µs | WAL records | WAL bytes "
          "| buffers allocated | backend writes |  (per sample)")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['variant']} | {r['wall_us']:.2f} | {r['client_cpu_us']:.2f} | "
              f"{r['server_cpu_us']:.2f} | {r['wal_records']:.2f} | {r['wal_bytes']:.0f} | "
              f"{r['buffers_alloc']:.3f} | {r['backend_writes']:.3f} |")
    print(f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
