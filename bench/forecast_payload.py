"""PostgreSQL server CPU of storing a period's forecasts: ``pglz`` against ``lz4`` payloads.

    .venv/bin/python bench/forecast_payload.py [--series 14000] [--repeat 3]

Every forecast period the refresh upserts one ``forecasts`` row per series
(:func:`service.store.forecasts.save_forecasts`); its ``payload`` (the sample paths, about
20 kB of JSON for 100 paths x 20 steps) is above the TOAST threshold, so the server
compresses each one. In a fresh schema of the local PostgreSQL (migrated to head, dropped
afterwards), this stores ``--series`` payloads built by :func:`service.forecasting.payload`
from two kinds of Forecast, with the column's compression set to ``pglz`` (the server's
default) and to ``lz4`` (what migration ``9c4e7a1b2d58`` sets), ``--repeat`` periods each,
and prints the wall time and the CPU seconds of the server's processes (``/proc``) per period:

* ``constant paths``: each path one value over the horizon, as ``window-mean`` draws them;
* ``varied paths``: a random walk per path (as the trained and online models' paths vary).

Figures depend on the machine and its load (printed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.daemon import PG_URL, fresh_store, proc_snapshot  # noqa: E402 - after the path


def server_cpu_s() -> float:
    """CPU seconds used so far by every process named ``postgres`` (Linux ``/proc``)."""
    return sum(cpu for comm, _, cpu in proc_snapshot()[1].values()
               if comm.startswith("postgres"))


def forecasts(kind: str, n: int, paths: int, horizon: int) -> list:
    """``n`` one-indicator Forecasts of ``kind`` (a pool of 200 reused round-robin)."""
    from models.forecast import Forecast

    rng = np.random.default_rng(0)
    pool = []
    for _ in range(min(n, 200)):
        level = 1 + rng.integers(0, 7) + rng.random()
        if kind == "constant":
            x = np.repeat(level + rng.normal(0, 0.3, (paths, 1)), horizon, axis=1)
        else:
            x = level + np.cumsum(rng.normal(0, 0.1, (paths, horizon)), axis=1)
        pool.append(Forecast(samples=x[:, :, None], start=0.0, step=15.0, model=kind,
                             indicators=("cpu",)))
    return [pool[i % len(pool)] for i in range(n)]


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=14000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--paths", type=int, default=100)
    ap.add_argument("--horizon", type=int, default=20)
    ap.add_argument("--pg-url", default=PG_URL)
    args = ap.parse_args(argv)

    import orjson
    from sqlalchemy import text

    from service import migrate
    from service.config import Settings
    from service.forecasting import payload
    from service.store import forecasts as forecast_store
    from service.store.db import Store

    with fresh_store("postgres", args.pg_url, Path(".")) as (url, schema):
        settings = Settings(db_url=url, db_schema=schema, scheduler_enabled=False)
        migrate.upgrade(settings)
        store = Store(settings)
        with store.engine.begin() as conn:
            conn.execute(text("INSERT INTO entities (name, kind, labels) VALUES ('e', 'vm', '{}')"))
            conn.execute(text(
                "INSERT INTO series (entity_id, metric, unit) SELECT 1, 'm' || g, '' "
                "FROM generate_series(1, :n) g"), {"n": args.series})
            ids = [r[0] for r in conn.execute(text("SELECT id FROM series ORDER BY id"))]
        print(f"{args.series:,} series, {args.paths} paths x {args.horizon} steps per payload, "
              f"{args.repeat} periods each; load {os.getloadavg()[0]:.2f}", flush=True)
        print("| payload | compression | JSON bytes each | wall per period | server CPU per "
              "period | WAL per period |")
        print("|---|---|---:|---:|---:|---:|")
        for kind in ("constant", "varied"):
            fcs = forecasts(kind, args.series, args.paths, args.horizon)
            for method in ("pglz", "lz4", "lz4, unlogged"):
                with store.engine.begin() as conn:
                    conn.execute(text("ALTER TABLE forecasts ALTER COLUMN payload SET "
                                      f"COMPRESSION {method.split(',')[0]}"))
                    conn.execute(text("ALTER TABLE forecasts SET " + (
                        "UNLOGGED" if "unlogged" in method else "LOGGED")))
                    wal0 = conn.execute(text("SELECT pg_current_wal_lsn()")).scalar_one()
                walls, cpus = [], []
                for rep in range(args.repeat):
                    records = [{"series_id": sid, "computed_at": rep, "start": 0.0,
                                "step": 15.0, "model": kind, "fallback": False,
                                "payload": payload(fc, 0, ("cpu",), samples_array=True)}
                               for sid, fc in zip(ids, fcs, strict=True)]
                    c0, t0 = server_cpu_s(), time.perf_counter()
                    forecast_store.save_forecasts(store, records)
                    walls.append(time.perf_counter() - t0)
                    cpus.append(server_cpu_s() - c0)
                with store.engine.begin() as conn:
                    wal = conn.execute(text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), "
                                            ":a)"), {"a": wal0}).scalar_one()
                size = len(orjson.dumps(payload(fcs[0], 0, ("cpu",)),
                                        option=orjson.OPT_SERIALIZE_NUMPY))
                print(f"| {kind} paths | {method} | {size:,} | "
                      f"{statistics.median(walls):.2f} s | {statistics.median(cpus):.2f} s | "
                      f"{float(wal) / args.repeat / 1e6:,.1f} MB |", flush=True)
        store.close()


if __name__ == "__main__":
    main()
