"""What sharding costs per period: the latency of one daemon's claim, on SQLite and PostgreSQL.

Usage:
    .venv/bin/python bench/sharding.py --daemons 3 --shards 16 --periods 200 [--no-postgres]

K holders (each its own engine, as K daemons would have) claim on a fake clock, one after
the other, in each of ``--periods`` periods (:func:`service.sharding.claim`: heartbeat,
read of the alive set, plan, conditional UPDATE of the planned leases). Prints the median
and 99th percentile of one claim in milliseconds, and checks on the way that every period's
claims are disjoint and cover every shard (after the first, when the others join). The
forecast work itself is not included: ``bench/daemon.py`` measures it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def run(settings: object, daemons: int, periods: int) -> tuple[float, float]:
    """Claim ``periods`` times with ``daemons`` holders; return (median, p99) in ms."""
    from service import migrate, sharding
    from service.store.db import Store

    migrate.upgrade(settings)
    stores = [Store(settings) for _ in range(daemons)]
    period_s, total = settings.forecast_interval_s, settings.shards
    took = []
    try:
        for k in range(periods):
            p = 1_000_000 + k
            got = []
            for j, store in enumerate(stores):
                t0 = time.perf_counter()
                c = sharding.claim(store, f"bench-{j}", p * period_s + 0.01 * j, 0.0)
                took.append(time.perf_counter() - t0)
                got.append(c.shards)
            if k and sorted(i for g in got for i in g) != list(range(total)):
                raise SystemExit(f"period {p}: claims {got} are not a disjoint cover")
    finally:
        for s in stores:
            s.close()
    ms = np.asarray(took[daemons:]) * 1000  # the first period's claims create the rows
    return float(np.median(ms)), float(np.percentile(ms, 99))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--daemons", type=int, default=3)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--periods", type=int, default=200)
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()

    from sqlalchemy import create_engine, text

    from service.config import Settings

    with tempfile.TemporaryDirectory() as tmp:
        s = Settings(db_url=f"sqlite:///{tmp}/bench.db", shards=args.shards,
                     scheduler_enabled=False)
        med, p99 = run(s, args.daemons, args.periods)
        print(f"sqlite      K={args.daemons} S={args.shards}: claim median {med:.2f} ms, "
              f"p99 {p99:.2f} ms over {args.periods} periods")
    if args.no_postgres:
        return
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL)
    try:
        s = Settings(db_url=PG_URL, db_schema=schema, shards=args.shards,
                     scheduler_enabled=False)
        med, p99 = run(s, args.daemons, args.periods)
        print(f"postgresql  K={args.daemons} S={args.shards}: claim median {med:.2f} ms, "
              f"p99 {p99:.2f} ms over {args.periods} periods")
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
