"""CPU of the forecast refresh, in-process, for one or more source trees on the same store.

    .venv/bin/python bench/refresh.py --entities 100 --trees /path/to/main-copy . --repeat 2
    .venv/bin/python bench/refresh.py --db postgres --entities 100 --trees ../old .
    .venv/bin/python bench/refresh.py --forecaster harmony --entities 100 --trees ../old .
    .venv/bin/python bench/refresh.py --entities 100 --periods 4 --trees .@full .

Makes a fresh store as ``bench/daemon.py`` does (N entities x M metrics, ``--history-s`` of
1-s history, optionally ``--gaps``: every 7th series loses 60 s of every 97 and every 11th its
last 1,600 s, so joint groups break up and some series fall back), optionally registers a
briefly trained ``harmony`` for the metric set, then for each tree in turn (``--repeat``
rounds) runs ``service.forecasting.refresh`` in a fresh process with that tree first on
``sys.path``, at the same ``now``, and prints the process's CPU seconds and wall seconds.
With ``--periods P`` the store also holds the next P - 1 periods' samples, and the process
refreshes P times, one forecast period apart, as a daemon does: the first run reads every
series' whole window, the later ones (where the tree has ``BucketCache``) only what is new;
the first run's figure and the mean of the later ones are printed. ``TREE@full`` runs TREE
with ``TIDEWISE_FORECAST_INCREMENTAL=false`` (every run reads the whole window), for a
ratio within one tree. ``--targets T`` declares T scaling targets (``bayes`` on the stored
forecast) and decides them after every refresh (each process starts from no decision). It
then says whether every tree stored the same forecasts, decisions and actions (every
period's rows, payloads and sample paths compared as JSON; a sampling model such as
``harmony`` draws differently in a batch from one draw at a time); where they differ, it
says how many stored numbers of the last period differ and by how much at most. On
PostgreSQL the server's own CPU is not in the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = """
import hashlib, json, os, struct, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
from service import forecasting
assert forecasting.__file__.startswith(sys.argv[1]), forecasting.__file__
from service.config import Settings
from service.store.db import Store
from sqlalchemy import text
store = Store(Settings(db_url=sys.argv[2], db_schema=sys.argv[3] or None, scheduler_enabled=False))
forecasting.warm_up()
now, periods = int(sys.argv[4]), int(sys.argv[5])
step = int(store.settings.forecast_interval_s)
from service import decisions
cache = forecasting.ModelCache()
kw = {}
if hasattr(forecasting, "BucketCache") and store.settings.forecast_incremental:
    kw["buckets"] = forecasting.BucketCache()
with store.engine.begin() as conn:  # every tree decides from the same (empty) past
    conn.execute(text("DELETE FROM actions"))
    conn.execute(text("DELETE FROM decisions"))
runs, decs, digests = [], [], []
for p in range(periods):
    c0, t0 = time.process_time(), time.perf_counter()
    r = forecasting.refresh(store, now + p * step, cache, **kw)
    runs.append((time.process_time() - c0, time.perf_counter() - t0))
    c0 = time.process_time()
    out = decisions.decide_all(store, now + p * step, **kw)
    decs.append((time.process_time() - c0, len(out)))
    with store.engine.connect() as conn:
        got = conn.execute(text("SELECT * FROM forecasts ORDER BY series_id"))
        cols, rows = list(got.keys()), []
        for one in got.all():
            d = dict(zip(cols, one))
            body = d["payload"] if isinstance(d["payload"], dict) else json.loads(d["payload"])
            # the paths in binary (a4c2e9f7b1d3), read by hand so that a tree from before that
            # column runs this script too; paths in the JSON are the latest where present
            # (service.store.forecasts.samples_of: the trees share the store)
            blob = None if "samples" in body else d.get("samples")
            if blob is not None:
                blob = bytes(blob)
                n, h = struct.unpack_from("<II", blob, 4)
                body["samples"] = np.frombuffer(blob, "<f%d" % blob[2], n * h, 12).reshape(
                    n, h).astype(float).tolist()
            rows.append([d[k] for k in ("series_id", "computed_at", "start", "step", "model",
                                        "fallback")] + [body])
        payloads = {str(r[0]): r[6] for r in rows}
        acted = []  # decisions and actions, digested apart from the forecasts
        for table, key in (("decisions", "target_id"), ("actions", "id")):
            got = conn.execute(text(f"SELECT * FROM {table} ORDER BY {key}"))
            # an action's id comes from a PostgreSQL sequence, which each tree's run advances
            keep = [i for i, c in enumerate(got.keys()) if (table, c) != ("actions", "id")]
            acted.append([[json.loads(row[i]) if isinstance(row[i], str) and row[i][:1] in "[{"
                           else row[i] for i in keep] for row in got.all()])
    digests.append([hashlib.sha256(json.dumps(x, default=str, sort_keys=True).encode())
                    .hexdigest() for x in (rows, acted)])  # key order is not content
if len(sys.argv) > 6:  # the last period's forecast payloads, for the numeric comparison
    with open(sys.argv[6], "w") as fh:
        json.dump(payloads, fh)
print(json.dumps({"series": r.series, "forecasts": r.forecasts, "fallbacks": r.fallbacks,
                  "runs": runs, "decisions": decs, "digests": digests}))
"""


def main() -> None:
    from bench.daemon import (
        PG_URL,
        fresh_store,
        load,
        metric_names,
        prefill,
        register_model,
        train_harmony,
    )

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--pg-url", default=PG_URL)
    ap.add_argument("--entities", type=int, default=100)
    ap.add_argument("--metrics", type=int, default=5)
    ap.add_argument("--history-s", type=int, default=3600)
    ap.add_argument("--forecaster", choices=("default", "harmony"), default="default")
    ap.add_argument("--gaps", action="store_true", help="cut gaps (some series fall back)")
    ap.add_argument("--trees", nargs="+", default=["."],
                    help="source trees to compare (TREE@full: without the bucket cache)")
    ap.add_argument("--targets", type=int, default=0,
                    help="scaling targets (bayes on the stored forecast), decided every period")
    ap.add_argument("--periods", type=int, default=1,
                    help="refreshes per process, one forecast period apart")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    metrics = metric_names(args.metrics)
    with tempfile.TemporaryDirectory(prefix="tidewise-refresh-") as tmp, \
            fresh_store(args.db, args.pg_url, Path(tmp)) as (db_url, schema):
        # the samples of the later periods are written up front (ending at the last run's
        # ``now``): a run reads only complete buckets before its own ``now``
        ahead = (args.periods - 1) * 15
        now = int(time.time()) - ahead
        now -= now % 15
        took = prefill(db_url, schema, args.entities, metrics, args.history_s + ahead,
                       now + ahead)
        if args.gaps:
            from sqlalchemy import create_engine, text

            eng = create_engine(db_url, connect_args={"options": f"-c search_path={schema}"}
                                if schema else {})
            with eng.begin() as conn:
                conn.execute(text("DELETE FROM samples WHERE series_id % 7 = 3 AND "
                                  "ts % 97 < 60"))
                conn.execute(text("DELETE FROM samples WHERE series_id % 11 = 5 AND "
                                  f"ts > {now - 1600}"))
            eng.dispose()
        if args.targets:
            from service import targets as target_api
            from service.config import Settings
            from service.store.db import Store

            store = Store(Settings(db_url=db_url, db_schema=schema, scheduler_enabled=False))
            for i in range(args.targets):
                target_api.declare(store, target_api.ScalingTarget(
                    kind="scaling", name=f"t-{i:05d}", entity=f"vm-{i:06d}", metric=metrics[0],
                    capacity=2.0, min_replicas=1, max_replicas=50, boot_s=30, policy="bayes",
                    params={}, forecaster="stored"))
            store.close()
        if args.forecaster == "harmony":
            train_harmony(db_url, schema, metrics, now, Path(tmp) / "harmony")
            register_model(db_url, schema, metrics, Path(tmp) / "harmony")
        print(f"{args.db}: {args.entities} entities x {len(metrics)} metrics, "
              f"{args.history_s} s of history (written in {took:.1f} s), forecaster "
              f"{args.forecaster}{', gaps' if args.gaps else ''}")
        stored: dict[str, list] = {}
        dumps: dict[str, Path] = {}
        for _ in range(args.repeat):
            for spec in args.trees:
                tree, _, mode = spec.partition("@")
                env = dict(os.environ)
                if mode == "full":
                    env["TIDEWISE_FORECAST_INCREMENTAL"] = "false"
                elif mode:
                    raise SystemExit(f"--trees {spec!r}: only TREE or TREE@full")
                # one file per tree (the last repeat's): the gap below compares two trees
                dump = Path(tmp) / f"payloads-{args.trees.index(spec)}.json"
                out = subprocess.run([sys.executable, "-c", CHILD, str(Path(tree).resolve()),
                                      db_url, schema or "", str(now), str(args.periods),
                                      str(dump)],
                                     capture_output=True, text=True, cwd=tmp, env=env)
                if out.returncode:
                    raise SystemExit(f"{spec}: {out.stderr[-2000:]}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                stored[spec] = r["digests"]
                dumps[spec] = dump
                n = max(1, r["series"])
                (c1, w1), later = r["runs"][0], r["runs"][1:]
                line = (f"{spec}: {r['series']} series, {r['forecasts']} forecasts, "
                        f"{r['fallbacks']} fallbacks: first run CPU {c1:.2f} s "
                        f"({1000 * c1 / n:.2f} ms/series), wall {w1:.2f} s")
                if later:
                    c = sum(x[0] for x in later) / len(later)
                    w = sum(x[1] for x in later) / len(later)
                    line += (f"; later {len(later)} runs, mean CPU {c:.2f} s "
                             f"({1000 * c / n:.2f} ms/series), wall {w:.2f} s")
                if args.targets:
                    d1, later_d = r["decisions"][0], r["decisions"][1:] or r["decisions"]
                    cd = sum(x[0] for x in later_d) / len(later_d)
                    line += (f"; decisions CPU first {1000 * d1[0] / max(1, d1[1]):.1f}, later "
                             f"{1000 * cd / max(1, d1[1]):.1f} ms each")
                print(f"{line}; load {load()}", flush=True)
        first = next(iter(stored.values()))
        for spec, digests in stored.items():
            said = []
            for k, what in enumerate(("stored forecasts", "decisions and actions")):
                if k and not args.targets:
                    continue
                differ = [p for p, (a, b) in enumerate(zip(digests, first, strict=True))
                          if a[k] != b[k]]
                said.append(f"{what} " + (
                    f"identical to {args.trees[0]}'s in all {len(first)} periods"
                    if not differ else f"DIFFER from {args.trees[0]}'s in periods {differ}") + (
                    f" (last period: {payload_gap(dumps[args.trees[0]], dumps[spec])})"
                    if differ and not k else ""))
            print(f"{spec}: " + "; ".join(said))


def payload_gap(a: Path, b: Path) -> str:
    """Say how far two trees' stored forecasts (last period) are apart, number by number."""
    import numpy as np

    pa, pb = json.loads(a.read_text()), json.loads(b.read_text())
    if pa.keys() != pb.keys():
        return f"different series ({len(pa)} and {len(pb)})"
    worst, n_diff, n_all, scale = 0.0, 0, 0, 0.0
    for sid, x in pa.items():
        y = pb[sid]
        for key in sorted(k for k in x if k not in ("info", "indicators", "times")):
            u, v = np.asarray(x[key], dtype=float), np.asarray(y[key], dtype=float)
            if u.shape != v.shape:
                return f"series {sid} {key!r}: shapes {u.shape} and {v.shape}"
            d = np.abs(u - v)
            worst, n_diff, n_all = max(worst, float(d.max(initial=0))), n_diff + int(
                (d > 0).sum()), n_all + d.size
            scale = max(scale, float(np.abs(u).max(initial=0)))
    return (f"{n_diff:,} of {n_all:,} stored numbers differ, max abs difference {worst:.3g} "
            f"(largest value {scale:.3g})")

if __name__ == "__main__":
    main()
