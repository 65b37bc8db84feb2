"""Bytes per stored sample: Tidewise's own store (PostgreSQL, SQLite) against VictoriaMetrics.

What a fleet's history costs on disk decides where it should live (docs/scale.md). The same
synthetic per-second series (an AR(1) around a level with noise, rounded to 2 decimals as
exporters report CPU) is written to:

* PostgreSQL: a fresh schema migrated to head (the real ``samples`` and ``rollups_1m``
  tables), filled with one INSERT … SELECT per series; ``pg_total_relation_size`` (heap,
  primary-key index, TOAST) after ``VACUUM ANALYZE``.
* SQLite: a fresh file migrated to head, filled through the same tables; the file's growth.
* VictoriaMetrics single-node (Debian's ``victoria-metrics``, when installed): ``/api/v1/import``,
  then a forced flush and merge; the size of its data folder, and a count query proving every
  sample is there.

Then the arithmetic for ``--fleet`` series at 1 s (samples/s, bytes/day per store, rollups).

    .venv/bin/python bench/storage.py --series 100 --seconds 10000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
T0 = 1_700_000_000


def series_values(n_series: int, seconds: int, seed: int = 0) -> np.ndarray:
    """``(n_series, seconds)`` CPU-like values: AR(1) around 50 with noise, 2 decimals."""
    rng = np.random.default_rng(seed)
    x = np.empty((n_series, seconds))
    x[:, 0] = 50.0
    e = rng.normal(0.0, 2.0, size=(n_series, seconds))
    for i in range(1, seconds):
        x[:, i] = 0.95 * x[:, i - 1] + 0.05 * 50.0 + e[:, i]
    return np.round(np.clip(x, 0.0, 100.0), 2)


def _fill_store(url: str, schema: str | None, values: np.ndarray) -> None:
    """Migrate a store to head and write ``values`` as samples (and their minute rollups)."""
    from sqlalchemy import insert

    from service.config import Settings
    from service.migrate import upgrade
    from service.store.db import Store
    from service.store.tables import Entity, Rollup, Sample, Series

    settings = Settings(db_url=url, db_schema=schema)
    upgrade(settings)
    store = Store(settings)
    n, t = values.shape
    ts = np.arange(T0, T0 + t)
    with store.engine.begin() as conn:
        for s in range(n):
            eid = conn.execute(insert(Entity).values(name=f"vm-{s}", kind="vm")
                               .returning(Entity.id)).scalar_one()
            sid = conn.execute(insert(Series).values(entity_id=eid, metric="cpu_util")
                               .returning(Series.id)).scalar_one()
            conn.execute(insert(Sample), [
                {"series_id": sid, "ts": int(a), "value": float(v)}
                for a, v in zip(ts, values[s], strict=True)])
            minutes = values[s, : t - t % 60].reshape(-1, 60)
            conn.execute(insert(Rollup), [
                {"series_id": sid, "ts": int(T0 + 60 * i), "min": float(m.min()),
                 "mean": float(m.mean()), "max": float(m.max()), "count": 60}
                for i, m in enumerate(minutes)])
    store.engine.dispose()


def postgres(values: np.ndarray) -> dict[str, float]:
    """Bytes per sample and per rollup row in a fresh PostgreSQL schema."""
    from sqlalchemy import create_engine, text

    schema = f"bench_storage_{uuid.uuid4().hex[:8]}"
    eng = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        _fill_store(PG_URL, schema, values)
        with eng.connect() as conn:
            conn.execute(text(f'VACUUM ANALYZE "{schema}".samples'))
            conn.execute(text(f'VACUUM ANALYZE "{schema}".rollups_1m'))
            size = {name: conn.execute(text(
                f"SELECT pg_total_relation_size('\"{schema}\".{name}')")).scalar_one()
                for name in ("samples", "rollups_1m")}
            rows = {name: conn.execute(text(f'SELECT count(*) FROM "{schema}".{name}'))
                    .scalar_one() for name in ("samples", "rollups_1m")}
    finally:
        with eng.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        eng.dispose()
    return {"bytes_per_sample": size["samples"] / rows["samples"],
            "bytes_per_rollup": size["rollups_1m"] / rows["rollups_1m"],
            "samples": rows["samples"]}


def sqlite(values: np.ndarray) -> dict[str, float]:
    """Bytes per sample of a SQLite file: its size with samples and rollups, over samples."""
    with tempfile.TemporaryDirectory() as d:
        empty, full = Path(d) / "empty.db", Path(d) / "full.db"
        _fill_store(f"sqlite:///{empty}", None, values[:0])
        _fill_store(f"sqlite:///{full}", None, values)
        for p in (empty, full):  # fold the WAL into the file
            import sqlite3

            with sqlite3.connect(p) as c:
                c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        grown = full.stat().st_size - empty.stat().st_size
    return {"bytes_per_sample_with_rollups": grown / values.size, "samples": values.size}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def victoria(values: np.ndarray) -> dict[str, float] | None:
    """Bytes per sample in a VictoriaMetrics single-node data folder (None: not installed)."""
    binary = shutil.which("victoria-metrics")
    if binary is None:
        return None
    import httpx

    port = _free_port()
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen(
            [binary, f"-storageDataPath={d}", f"-httpListenAddr=127.0.0.1:{port}",
             "-retentionPeriod=100y"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            n, t = values.shape
            stamps = [1000 * (T0 + i) for i in range(t)]
            body = "\n".join(json.dumps({"metric": {"__name__": "cpu_util", "entity": f"vm-{s}"},
                                         "values": values[s].tolist(), "timestamps": stamps})
                             for s in range(n))
            httpx.post(f"{base}/api/v1/import", content=body, timeout=120).raise_for_status()
            httpx.get(f"{base}/internal/force_flush", timeout=60).raise_for_status()
            httpx.get(f"{base}/internal/force_merge", timeout=60).raise_for_status()
            time.sleep(5)  # the merge runs in the background
            q = httpx.get(f"{base}/api/v1/query", timeout=60, params={
                "query": f"sum(count_over_time(cpu_util[{t + 60}s]))",
                "time": str(T0 + t), "nocache": "1"}).json()
            stored = int(float(q["data"]["result"][0]["value"][1]))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        size = sum(f.stat().st_size for f in Path(d, "data").rglob("*") if f.is_file())
    return {"bytes_per_sample": size / values.size, "samples": stored}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=100)
    ap.add_argument("--seconds", type=int, default=10_000)
    ap.add_argument("--fleet", type=float, default=1e6, help="series at 1 s for the arithmetic")
    ap.add_argument("--skip", default="", help="comma list of postgres,sqlite,victoria to skip")
    a = ap.parse_args(argv)
    skip = set(filter(None, a.skip.split(",")))
    values = series_values(a.series, a.seconds)
    print(f"{a.series} series x {a.seconds} s = {values.size:,} samples; "
          f"load {os.getloadavg()[0]:.1f}")
    out: dict[str, dict | None] = {}
    if "postgres" not in skip:
        out["postgres"] = postgres(values)
    if "sqlite" not in skip:
        out["sqlite"] = sqlite(values)
    if "victoria" not in skip:
        out["victoria"] = victoria(values)
    day = a.fleet * 86400
    for name, r in out.items():
        if r is None:
            print(f"{name}: not installed")
            continue
        b = r.get("bytes_per_sample", r.get("bytes_per_sample_with_rollups"))
        extra = (f", {r['bytes_per_rollup']:.1f} B per minute rollup"
                 if "bytes_per_rollup" in r else "")
        if "bytes_per_sample_with_rollups" in r:
            extra = ", the file's growth with its rollups"
        print(f"{name}: {b:.2f} B/sample ({r['samples']:,} samples stored){extra}; "
              f"{a.fleet:,.0f} series at 1 s: {day * b / 1e12:.2f} TB/day")
    pg = out.get("postgres")
    if pg:
        gb = a.fleet * 1440 * pg["bytes_per_rollup"] / 1e9
        print(f"rollups for {a.fleet:,.0f} series: {gb:.0f} GB/day on PostgreSQL")
    print(f"ingest for {a.fleet:,.0f} series at 1 s: {a.fleet:,.0f} samples/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
