"""Storing and reading a period's forecasts on PostgreSQL: sample paths in JSON or binary.

    .venv/bin/python bench/forecast_payload.py [--series 14000] [--repeat 3]

Every forecast period the refresh upserts one ``forecasts`` row per series
(:func:`service.store.forecasts.save_forecasts`), and each decision on a stored forecast
reads its entity's rows back. In a fresh schema of the local PostgreSQL (migrated to head,
dropped afterwards: ``forecasts`` unlogged, lz4), this stores ``--series`` forecasts built
from two kinds of Forecast, ``--repeat`` periods each, in two layouts, alternated:

* ``JSON``: the sample paths inside the JSON payload, rounded to 6 decimals (the layout
  before migration ``a4c2e9f7b1d3``);
* ``binary``: the JSON without the paths, the paths in the ``samples`` column
  (:func:`service.forecasting.stored_samples`, float32): what the refresh writes now.

For each it prints the bytes per row, then per period (medians): the wall time and this
process's CPU of building the records and storing them, the CPU seconds of the server's
processes (``/proc``), and the wall and client CPU of reading every row back with its
paths decoded (:func:`service.store.forecasts.entities_forecasts` and ``samples_of``, what
a decision reads). Kinds of Forecast:

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


def records(layout: str, ids: list[int], fcs: list, rep: int) -> list[dict]:
    """One period's rows in ``layout`` (``JSON``: the paths in the payload, as before)."""
    from service.forecasting import payload, stored_samples

    out = []
    for sid, fc in zip(ids, fcs, strict=True):
        row = {"series_id": sid, "computed_at": rep, "start": 0.0, "step": 15.0,
               "model": "bench", "fallback": False, "payload": payload(fc, 0, ("cpu",))}
        if layout == "JSON":  # and no paths left in the column by the other layout's run
            row["payload"]["samples"] = np.round(fc.samples[:, :, 0], 6)
            row["samples"] = None
        else:
            row["samples"] = stored_samples(fc, 0)
        out.append(row)
    return out


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
        print(f"{args.series:,} series, {args.paths} paths x {args.horizon} steps per forecast, "
              f"{args.repeat} periods each, layouts alternated; load "
              f"{os.getloadavg()[0]:.2f}", flush=True)
        print("| paths | layout | bytes per row (JSON + binary) | store: wall | store: client "
              "CPU | store: server CPU | read back: wall | read back: client CPU |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for kind in ("constant", "varied"):
            fcs = forecasts(kind, args.series, args.paths, args.horizon)
            got: dict[str, dict[str, list[float]]] = {
                lay: {k: [] for k in ("wall", "cpu", "server", "rwall", "rcpu")}
                for lay in ("JSON", "binary")}
            for rep in range(args.repeat):
                for layout in ("JSON", "binary"):
                    t0, p0, c0 = time.perf_counter(), time.process_time(), server_cpu_s()
                    forecast_store.save_forecasts(store, records(layout, ids, fcs, rep))
                    g = got[layout]
                    g["wall"].append(time.perf_counter() - t0)
                    g["cpu"].append(time.process_time() - p0)
                    g["server"].append(server_cpu_s() - c0)
                    t0, p0 = time.perf_counter(), time.process_time()
                    with store.sessions() as session:
                        back = forecast_store.entities_forecasts(session, ["e"])["e"]
                    n = sum(forecast_store.samples_of(r).shape[0] for r in back.values())
                    g["rwall"].append(time.perf_counter() - t0)
                    g["rcpu"].append(time.process_time() - p0)
                    assert n == args.series * args.paths, n
            for layout in ("JSON", "binary"):
                row = records(layout, ids[:1], fcs[:1], 0)[0]
                size = len(orjson.dumps(row["payload"], option=orjson.OPT_SERIALIZE_NUMPY))
                blob = len(row.get("samples") or b"")
                med = {k: statistics.median(v) for k, v in got[layout].items()}
                print(f"| {kind} | {layout} | {size + blob:,} ({size:,} + {blob:,}) | "
                      f"{med['wall']:.2f} s | {med['cpu']:.2f} s | {med['server']:.2f} s | "
                      f"{med['rwall']:.2f} s | {med['rcpu']:.2f} s |", flush=True)
        store.close()


if __name__ == "__main__":
    main()
