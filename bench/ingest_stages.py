"""Where an ingest batch's time goes, stage by stage, in process (no HTTP).

    PYTHONPATH=$PWD .venv/bin/python bench/ingest_stages.py [--postgres URL] [--batches 40]
        [--batch-size 5000] [--series 500]

Feeds the same JSON bodies as ``bench/ingest.py`` (``--series`` series x consecutive
seconds) through :func:`service.intake.store_body`, the ingest route's service, on a fresh
store (SQLite file, or a fresh PostgreSQL schema dropped afterwards), and times each stage
by wrapping the functions that make it: parsing, validation, the write transaction's begin
(pool checkout, pre-ping, BEGIN) and commit, entity and series resolution, the series lock
and dirty marks, and on PostgreSQL the dedup, the COPY stream's building, the check for
stored keys, the COPY straight into ``samples`` and the staging upsert. Prints the mean
milliseconds per batch of each stage (the first batch, which creates the entities and
series, not counted) and the load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class Stages:
    """Seconds spent in each wrapped function, summed over the timed batches."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}
        self.on = False

    def add(self, name: str, seconds: float) -> None:
        if self.on:
            self.total[name] = self.total.get(name, 0.0) + seconds

    def wrap(self, module: Any, attr: str, name: str) -> None:  # noqa: ANN401
        real: Callable[..., Any] = getattr(module, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401
            t = time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - t)

        setattr(module, attr, timed)

    def wrap_tx(self, module: Any) -> None:  # noqa: ANN401
        real = module.write_tx

        @contextlib.contextmanager
        def timed(engine: Any) -> Iterator[Any]:  # noqa: ANN401
            t = time.perf_counter()
            with real(engine) as conn:
                self.add("begin (pool checkout, pre-ping, BEGIN)", time.perf_counter() - t)
                yield conn
                t = time.perf_counter()
            self.add("commit", time.perf_counter() - t)

        module.write_tx = timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres", metavar="URL", help="measure on this PostgreSQL")
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--series", type=int, default=500)
    args = ap.parse_args()

    from bench.ingest import drop_store, make_bodies
    from service import ingest, intake, migrate
    from service.config import Settings
    from service.store import samples
    from service.store.db import Store

    stages = Stages()
    stages.wrap(ingest, "fast_batch", "parse and validate (msgspec, columns)")
    stages.wrap(ingest, "parse_body", "parse (orjson; bodies fast_batch steps aside for)")
    stages.wrap(ingest, "validate", "validate (sample by sample; the same)")
    stages.wrap_tx(samples)
    for attr, name in (
        ("_resolve_entities", "entities"),
        ("_resolve_series", "series"),
        ("_lock_series", "lock series (and savepoint)"),
        ("_widen_dirty", "widen dirty marks"),
        ("_last_per_key", "dedup (numpy)"),
        ("_copy_payload", "COPY stream (numpy)"),
        ("_copy_direct", "COPY into samples (savepoint)"),
        ("_copy_upsert", "staging COPY + upsert"),
        ("_upsert_executemany", "executemany upsert"),
    ):
        stages.wrap(samples, attr, name)
    stages.wrap(samples, "_upsert_copy", "_upsert_copy")
    stages.wrap(intake, "store_body", "store_body (all of the above)")

    schema = f"tw_stages_{os.getpid()}" if args.postgres else None
    tmp = None if args.postgres else Path(tempfile.mkdtemp(prefix="tidewise-stages-"))
    db_url = args.postgres or f"sqlite:///{tmp / 'stages.db'}"
    settings = Settings(db_url=db_url, db_schema=schema, scheduler_enabled=False)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    migrate.upgrade(settings)
    store = Store(settings)
    t0 = int(time.time()) - 3600
    try:
        todo = make_bodies(args.batches, args.batch_size, args.series, t0)
        now = int(time.time())
        intake.store_body(store, settings, todo[0], "json", "identity", now)  # creates ids
        stages.on = True
        for body in todo[1:]:
            intake.store_body(store, settings, body, "json", "identity", now)
    finally:
        store.close()
        drop_store(db_url, schema, tmp)
    print(f"load average after : {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    n = args.batches
    total = stages.total.pop("store_body (all of the above)")
    copy_all = stages.total.pop("_upsert_copy", None)
    if copy_all is not None:  # what _upsert_copy does besides its wrapped parts
        parts = ("dedup (numpy)", "COPY stream (numpy)", "COPY into samples (savepoint)",
                 "staging COPY + upsert")
        stages.total["rest of the COPY path (cursor)"] = copy_all - sum(
            stages.total.get(p, 0.0) for p in parts)
    print(f"{n} batches of {args.batch_size} samples ({args.series} series), "
          f"{'PostgreSQL' if args.postgres else 'SQLite'}; mean ms per batch:")
    for name, sec in stages.total.items():
        print(f"  {name:40s} {sec / n * 1e3:7.2f}")
    rest = total - sum(stages.total.values())
    print(f"  {'other (ingest glue)':40s} {rest / n * 1e3:7.2f}")
    print(f"  {'total':40s} {total / n * 1e3:7.2f}  -> {args.batch_size * n / total:,.0f} "
          "samples/s in process")


if __name__ == "__main__":
    main()
