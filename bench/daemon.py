"""How much one (or K) real ``tidewise serve`` daemon(s) keep up with: series, targets, ingest.

Run from the repository root::

    .venv/bin/python bench/daemon.py --entities 200 --metrics 5 --targets 20 --duration 90
    .venv/bin/python bench/daemon.py --db postgres --entities 400     # fresh schema in db test
    .venv/bin/python bench/daemon.py --forecaster harmony --entities 100
    .venv/bin/python bench/daemon.py --db postgres --daemons 2 --entities 400
    .venv/bin/python bench/daemon.py --find-max                        # default, then harmony

What one run does:

1. a fresh store (a temporary SQLite file, or a fresh schema of the PostgreSQL database at
   ``--pg-url``, dropped afterwards), migrated; ``--entities`` N VM entities with
   ``--metrics`` M metrics each are created through the store's ingest, and ``--history-s``
   seconds of 1-second history are written for every series by one SQL statement (the
   forecast context is 240 buckets of 15 s, an hour); with ``--forecaster harmony`` a
   ``harmony`` model of the M metrics jointly is trained briefly on a few of those
   histories and registered as the current model (``daemon:<m1>+...``), so the daemon's
   refresh forecasts every entity with it (batched inference);
2. starts ``--daemons`` K ``python -m service.cli serve`` processes on that store (tokens on,
   debug log, forecast period ``--period`` s; /metrics' store-read series off, so scraping
   costs nothing), declares ``--targets`` T scaling targets over the API (policy ``bayes``
   reading the refresh's stored forecast of its entity's first metric);
3. for ``--duration`` s: a feeder process POSTs every second's N x M samples to
   ``/v1/metrics`` (``--batch`` samples per request, the daemons in turn, one request in
   flight per daemon); a thread GETs
   ``/v1/recommendations/{target}`` at ``--rec-rate`` requests/s;
4. reads each forecast-job run from the daemon's log (``forecast refresh: ... in x s;
   ... decisions in y s``, written by :func:`service.scheduler.forecast_job`) and the
   job-duration and forecast families from ``/metrics``, then prints: the sustained ingest
   rate, forecast-job time per period (refresh and decisions apart), series and decisions
   per second of job time, model vs fallback forecasts, the recommendations' p50/p99
   (overall and while a forecast job ran), whether the daemon kept up, and the load
   (``os.getloadavg()``) before and after. The last line is ``RESULT {json}``.

The daemons *keep up* when, in every period wholly inside the measured window (after each
daemon's cold first run), their runs for that period (read from the log line's ``period``)
forecast every series and decided every target between them, and each daemon's work for
it took less than the period; with one daemon that is every run, and no period skipped;
and ingest kept up: the feeder was never a period or more behind in the measured window.
With ``--warmup`` the window starts once every daemon's first (cold) run has ended, the
feeder is back on time (a cold run over many series leaves it behind, and its catch-up
would load the window with more than a second's samples per second), and a run of every
daemon begun after that has ended.
The run also prints the CPU used over the measured window, in cores, from ``/proc``: the
whole machine, the daemons (with their children), PostgreSQL's processes, the feeder, the
bench itself and the rest, to tell a daemon bound by its own thread from a machine with no
core left.

``--find-max`` runs that for growing N (doubling from ``--entities``, then bisecting to
``--resolution``), for the default forecaster and for ``harmony`` (``--forecasters``), each
trial on a fresh store, and prints the largest N x M that kept up.

Nothing here is a test: the figures depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKEN = "bench-token-0123456789abcdef"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: The feeder is on time when it starts each second's requests less than this late.
CAUGHT_UP_S = 2.0
METRICS = ["cpu_util", "mem_util", "net_in", "net_out", "disk_io", "cpu_cores", "requests",
           "latency_ms"]
RUN_LINE = re.compile(
    r"forecast refresh: (\d+) series, (\d+) forecasts, (\d+) fallbacks, (\d+) errors in "
    r"([\d.]+) s \(cpu ([\d.]+) s\); (\d+) decisions in ([\d.]+) s \(cpu ([\d.]+) s\)"
    r"(?:; period (\d+))?")


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def proc_snapshot() -> tuple[float, dict[int, tuple[str, int, float]]]:
    """The machine's busy CPU seconds (all cores) and every process's (name, parent, CPU s).

    From ``/proc`` (Linux): ``/proc/stat``'s first line less idle and iowait, and each
    ``/proc/<pid>/stat``'s utime + stime. Empty on other systems.
    """
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    try:
        f = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return math.nan, {}
    busy = (sum(f[:8]) - f[3] - f[4]) / tick
    procs: dict[int, tuple[str, int, float]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            raw = (d / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2 :].split()
        procs[int(d.name)] = (comm, int(rest[1]), (float(rest[11]) + float(rest[12])) / tick)
    return busy, procs


def cpu_split(before: tuple[float, dict], after: tuple[float, dict], wall: float,
              daemon_pids: list[int], feeder_pid: int | None) -> dict[str, float]:
    """Cores used over ``wall`` seconds: the machine, and the daemons (with their children),
    PostgreSQL's processes, the feeder, this bench, and everything else."""
    (b0, p0), (b1, p1) = before, after
    if not p1:
        return {}
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in p1.items():
        children.setdefault(ppid, []).append(pid)

    def tree(root: int) -> set[int]:
        out, todo = set(), [root]
        while todo:
            pid = todo.pop()
            if pid not in out:
                out.add(pid)
                todo += children.get(pid, [])
        return out

    groups = {"daemons": set().union(*(tree(p) for p in daemon_pids)),
              "feeder": tree(feeder_pid) if feeder_pid else set(),
              "bench": {os.getpid()}}
    groups["postgres"] = {pid for pid, (comm, _, _) in p1.items()
                          if comm.startswith("postgres")} - set().union(*groups.values())

    def used(pids: set[int]) -> float:
        return sum(p1[p][2] - (p0[p][2] if p in p0 and p0[p][0] == p1[p][0] else 0.0)
                   for p in pids if p in p1)

    out = {"machine": (b1 - b0) / wall}
    for name, pids in groups.items():
        out[name] = used(pids) / wall
    out["other"] = out["machine"] - sum(out[k] for k in groups)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric_names(m: int) -> list[str]:
    if not 1 <= m <= len(METRICS):
        raise SystemExit(f"--metrics must be 1 to {len(METRICS)}, got {m}")
    return sorted(METRICS[:m])


# --------------------------------------------------------------------------- the store


@contextlib.contextmanager
def fresh_store(db: str, pg_url: str, tmp: Path):  # noqa: ANN201
    """Yield (db_url, schema) of a fresh store, removed on exit."""
    if db == "sqlite":
        yield f"sqlite:///{tmp}/bench-{uuid.uuid4().hex[:6]}.db", None
        return
    from sqlalchemy import create_engine, text

    schema = f"bench_daemon_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield pg_url, schema
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def prefill(db_url: str, schema: str | None, entities: int, metrics: list[str],
            history_s: int, now: int, analyze: bool = True) -> float:
    """Create the entities and series and write ``history_s`` s of history; return seconds.

    ``analyze`` (PostgreSQL): then ``ANALYZE`` the store, as autovacuum does after a bulk
    load where it runs (this machine's server runs with it off). Without statistics the
    planner estimated a chunk's bucket read at nearly six times its rows, and planned it parallel
    and JIT-compiled (docs/scale.md "A sixth window: JIT and stale statistics").
    """
    from sqlalchemy import text

    from service import migrate
    from service.config import Settings
    from service.ingest import validate
    from service.store import samples as sample_store
    from service.store.db import Store

    t0 = time.perf_counter()
    settings = Settings(db_url=db_url, db_schema=schema, scheduler_enabled=False)
    migrate.upgrade(settings)
    store = Store(settings)
    try:
        first = now - history_s
        for lo in range(0, entities, 1000):  # creates entities and series (the store's ingest)
            items = [{"entity": f"vm-{e:06d}", "kind": "vm", "metric": m, "ts": first,
                      "value": 1.0} for e in range(lo, min(entities, lo + 1000)) for m in metrics]
            sample_store.ingest(store, validate(items, now, 300, oldest=first))
        # one level per series plus uniform noise; the rollup job is not asked to summarise
        # the prefilled hour (dirty marks cleared), as for history rolled up long ago
        with store.engine.begin() as conn:
            if store.dialect == "postgresql":
                conn.execute(text(
                    "INSERT INTO samples (series_id, ts, value) SELECT s.id, t, "
                    "1 + (s.id % 7) + random() FROM series s CROSS JOIN generate_series(:a, :b) t "
                    "ON CONFLICT DO NOTHING"), {"a": first + 1, "b": now - 1})
            else:
                conn.execute(text(
                    "INSERT OR IGNORE INTO samples (series_id, ts, value) "
                    "WITH RECURSIVE t(x) AS (SELECT :a UNION ALL SELECT x + 1 FROM t "
                    "WHERE x < :b) SELECT s.id, t.x, 1 + (s.id % 7) + "
                    "(abs(random()) % 1000000) / 1000000.0 FROM series s CROSS JOIN t"),
                    {"a": first + 1, "b": now - 1})
            # what ingest would have marked: the newest second written (the forecast cache
            # re-reads from there; see service.forecasting.BucketCache)
            conn.execute(text("UPDATE series SET dirty_from = NULL, dirty_to = NULL, "
                              "max_ts = :b"), {"b": now - 1})
        if analyze and store.dialect == "postgresql":
            with store.engine.connect() as conn:
                conn.execute(text("ANALYZE entities, series, samples"))  # this schema's
                conn.commit()
    finally:
        store.close()
    return time.perf_counter() - t0


def pg_settings(pg_url: str) -> dict[str, str]:
    """The server settings that shape these figures (the daemons turn ``jit`` off for
    themselves unless ``TIDEWISE_PG_JIT`` is set)."""
    from sqlalchemy import create_engine, text

    eng = create_engine(pg_url)
    try:
        with eng.connect() as conn:
            return dict(conn.execute(text(
                "SELECT name, current_setting(name) FROM pg_settings WHERE name IN ('autovacuum', "
                "'jit', 'max_parallel_workers_per_gather', 'shared_buffers', "
                "'synchronous_commit') ORDER BY name")).all())
    finally:
        eng.dispose()


def train_harmony(db_url: str, schema: str | None, metrics: list[str], now: int,
                  folder: Path) -> dict[str, Any]:
    """Train a small-budget ``harmony`` on the first entities' histories; save it in ``folder``.

    Training quality is not the point (the bench measures inference); the architecture is
    the default one, so a forward pass costs what a fully trained model's does.
    """
    from models.base import get_estimator
    from models.data import Series
    from service import forecasting
    from service.config import Settings
    from service.store import samples as sample_store
    from service.store.db import Store

    settings = Settings(db_url=db_url, db_schema=schema, scheduler_enabled=False)
    store = Store(settings)
    try:
        step, ctx = settings.forecast_step_s, settings.forecast_context_steps
        horizon = settings.forecast_horizon_steps
        with store.sessions() as session:
            names = sorted({a.entity for a in sample_store.active_series(
                session, now - ctx * step)})[:8]
            hist = {(e, m): forecasting.bucketed(session, e, m, now, step, ctx)
                    for e in names for m in metrics}
        train = []
        for e in names:
            ts = hist[(e, metrics[0])][0]
            values = np.stack([hist[(e, m)][1] for m in metrics], axis=1)
            ok = np.isfinite(values).all(axis=1)
            train.append(Series(values[ok], ts[ok].astype(float), tuple(metrics)
                                if len(metrics) > 1 else ("value",), entity=e,
                                step=float(step)))
        n = min(len(s) for s in train)
        est = get_estimator("harmony", context_length=min(ctx, n - horizon - 1),
                            prediction_length=horizon, num_samples=100, calibrate=False,
                            max_epochs=1, max_windows=256, max_train_seconds=60.0)
        t0 = time.perf_counter()
        pred = est.fit(train)
        pred.save(folder)
        return {"train_s": time.perf_counter() - t0, "context": pred.context_length}
    finally:
        store.close()


def register_model(db_url: str, schema: str | None, metrics: list[str], folder: Path) -> str:
    """Register the saved model at ``folder`` as the current one of the metric set."""
    from service import forecasting
    from service.config import Settings
    from service.store import model_registry as model_store
    from service.store.db import Store

    store = Store(Settings(db_url=db_url, db_schema=schema, scheduler_enabled=False))
    name = forecasting.daemon_model_name(tuple(metrics) if len(metrics) > 1 else metrics[0])
    try:
        with store.write_sessions() as session, session.begin():
            model_store.register_model(session, name, "bench", str(folder.resolve()),
                                       trained_on="bench/daemon.py")
    finally:
        store.close()
    return name


# --------------------------------------------------------------------------- the daemons


@dataclass
class Run:
    """One forecast-job run, read from a daemon's log."""

    end: float  # when the bench read the line (time.time())
    series: int
    forecasts: int
    fallbacks: int
    errors: int
    refresh_s: float
    refresh_cpu_s: float
    decisions: int
    decide_s: float
    decide_cpu_s: float
    period: int | None = None  # the sharded period the run did (None: an older daemon)
    daemon: int = 0  # which of the K daemons

    @property
    def total_s(self) -> float:
        return self.refresh_s + self.decide_s


@dataclass
class Daemon:
    proc: subprocess.Popen
    url: str
    runs: list[Run] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    failures: int = 0
    index: int = 0
    log_file: Path | None = None

    def read_log(self) -> None:
        keep = (None if self.log_file is None
                else self.log_file.open("a", encoding="utf-8", buffering=1))
        for raw in self.proc.stderr:  # type: ignore[union-attr]
            line = raw.decode(errors="replace").rstrip()
            if keep is not None:
                keep.write(line + "\n")
            m = RUN_LINE.search(line)
            if m:
                g = m.groups()
                self.runs.append(Run(time.time(), int(g[0]), int(g[1]), int(g[2]), int(g[3]),
                                     float(g[4]), float(g[5]), int(g[6]), float(g[7]),
                                     float(g[8]), None if g[9] is None else int(g[9]),
                                     self.index))
            elif "job failed" in line:
                self.failures += 1
            if " DEBUG " not in line:
                self.tail = (self.tail + [line])[-40:]


def start_daemons(k: int, env: dict[str, str], log_dir: Path | None = None) -> list[Daemon]:
    """Start ``k`` ``tidewise serve`` processes; ``log_dir``: keep each one's whole log there."""
    import httpx

    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)

    daemons = []
    for _ in range(k):
        port = free_port()
        e = dict(env, TIDEWISE_PORT=str(port))
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], env=e, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        d = Daemon(proc, f"http://127.0.0.1:{port}", index=len(daemons),
                   log_file=None if log_dir is None else log_dir / f"daemon-{len(daemons)}.log")
        threading.Thread(target=d.read_log, daemon=True).start()
        daemons.append(d)
    deadline = time.monotonic() + 120
    for d in daemons:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{d.url}/readyz", timeout=2).status_code == 200:
                    break
            if d.proc.poll() is not None or time.monotonic() > deadline:
                stop_daemons(daemons)
                raise SystemExit("serve did not start:\n" + "\n".join(d.tail[-20:]))
            time.sleep(0.2)
    return daemons


def stop_daemons(daemons: list[Daemon]) -> None:
    for d in daemons:
        if d.proc.poll() is None:
            d.proc.send_signal(signal.SIGTERM)
    for d in daemons:
        try:
            d.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            d.proc.kill()


def scrape(url: str) -> dict[str, float]:
    """The forecast job's and forecasts' families of a daemon's /metrics."""
    import httpx

    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"},
                     timeout=30).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        for key in ('tidewise_job_duration_seconds_sum{job="forecast"}',
                    'tidewise_job_duration_seconds_count{job="forecast"}',
                    'tidewise_job_runs_total{job="forecast",outcome="ok"}',
                    'tidewise_job_runs_total{job="forecast",outcome="skipped"}',
                    'tidewise_job_runs_total{job="forecast",outcome="failed"}',
                    'tidewise_forecasts_total{source="model"}',
                    'tidewise_forecasts_total{source="fallback"}'):
            if line.startswith(key + " "):
                out[key] = float(line.split()[-1])
    return out


# --------------------------------------------------------------------------- load


def feeder(urls: list[str], entities: int, metrics: list[str], batch: int, seconds: float,
           out: Any, stop: Any = None, lag: Any = None) -> None:  # noqa: ANN401 - mp objects
    """POST every second's samples of every series until ``seconds`` have passed (or ``stop``).

    A second's requests go to the daemons in turn, one request in flight per daemon: each
    daemon's requests are sent one after the other, as with a single daemon, but the daemons
    are fed side by side (one client in a loop would hold each daemon idle while another
    answers, so K daemons could never ingest more than one). The next second starts when
    all of this one's requests are answered.

    ``lag`` (a shared double): how far behind the feeder is, set as it starts each second's
    requests (seconds past the moment that second was complete; 0 when on time).
    """
    from concurrent.futures import ThreadPoolExecutor

    import httpx
    import orjson

    rng = np.random.default_rng(1)
    names = [f"vm-{e:06d}" for e in range(entities)]
    keys = [(e, m) for e in names for m in metrics]
    level = 1 + rng.integers(0, 7, len(keys))
    clients = [httpx.Client(base_url=u, headers={"Authorization": f"Bearer {TOKEN}",
                                                 "Content-Type": "application/json"},
                            timeout=60) for u in urls]
    lanes = [ThreadPoolExecutor(1) for _ in clients]  # one request in flight per daemon

    def post(i: int, body: bytes, n: int) -> tuple[float, int]:
        t0 = time.perf_counter()
        try:
            ok = clients[i].post("/v1/metrics", content=body).status_code == 200
        except httpx.HTTPError:
            ok = False
        return time.perf_counter() - t0, (n if ok else -1)

    acked = errors = requests = 0
    behind_max = 0.0
    lat: list[float] = []
    start = time.time()
    sec = int(start)
    k = 0
    while time.time() < start + seconds and not (stop is not None and stop.is_set()):
        wait = sec + 1 - time.time()  # second ``sec`` is complete at sec + 1
        if wait > 0:
            time.sleep(wait)
        behind = time.time() - (sec + 1)
        behind_max = max(behind_max, behind)
        if lag is not None:
            lag.value = max(0.0, behind)
        values = level + rng.random(len(keys))
        sent = []
        for lo in range(0, len(keys), batch):
            body = orjson.dumps({"samples": [
                {"entity": e, "kind": "vm", "metric": m, "ts": sec, "value": float(v)}
                for (e, m), v in zip(keys[lo:lo + batch], values[lo:lo + batch], strict=True)]})
            i = k % len(clients)
            sent.append(lanes[i].submit(post, i, body, min(batch, len(keys) - lo)))
            k += 1
        for f in sent:
            took, n = f.result()
            requests += 1
            lat.append(took)
            if n >= 0:
                acked += n
            else:
                errors += 1
        sec += 1
    wall = time.time() - start
    for lane in lanes:
        lane.shutdown()
    for c in clients:
        c.close()
    out.send({"acked": acked, "errors": errors, "requests": requests, "wall": wall,
              "behind_max": behind_max, "p99_ms": float(np.percentile(lat, 99) * 1000)
              if lat else None})


def watch_lag(lag: Any, stop: threading.Event, out: list[tuple[float, float]]) -> None:  # noqa: ANN401
    """Record the feeder's lag every 0.2 s until ``stop``."""
    while not stop.is_set():
        out.append((time.time(), float(lag.value)))
        time.sleep(0.2)


def recommendations(urls: list[str], targets: list[str], rate: float, stop: threading.Event,
                    got: list[tuple[float, float, bool]]) -> None:
    """GET recommendations in turn at ``rate``/s; record (sent at, seconds, ok)."""
    import httpx

    clients = [httpx.Client(base_url=u, headers={"Authorization": f"Bearer {TOKEN}"},
                            timeout=30) for u in urls]
    i = 0
    due = time.time()
    while not stop.is_set():
        due += 1.0 / rate
        pause = due - time.time()
        if pause > 0:
            time.sleep(pause)
        sent = time.time()
        t0 = time.perf_counter()
        try:
            ok = clients[i % len(clients)].get(
                f"/v1/recommendations/{targets[i % len(targets)]}").status_code == 200
        except httpx.HTTPError:
            ok = False
        got.append((sent, time.perf_counter() - t0, ok))
        i += 1
    for c in clients:
        c.close()


def declare_targets(url: str, n: int, metric: str) -> list[str]:
    import httpx

    names = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"},
                      timeout=30) as c:
        for i in range(n):
            name = f"t-{i:05d}"
            r = c.post("/v1/targets", json={
                "kind": "scaling", "name": name, "entity": f"vm-{i:06d}", "metric": metric,
                "capacity": 2.0, "min_replicas": 1, "max_replicas": 50, "boot_s": 30,
                "policy": "bayes", "params": {}, "forecaster": "stored"})
            if r.status_code not in (200, 201):
                raise SystemExit(f"declaring target {name}: {r.status_code} {r.text[:300]}")
            names.append(name)
    return names


# --------------------------------------------------------------------------- one run


def run_once(args: argparse.Namespace, entities: int, forecaster: str, tmp: Path,
             quiet: bool = False) -> dict[str, Any]:
    """One measured run; returns the figures (also printed unless ``quiet``)."""
    metrics = metric_names(args.metrics)
    n_series = entities * len(metrics)
    targets = min(entities, args.targets if args.targets is not None
                  else max(1, entities // 10))
    say = (lambda *a: None) if quiet else print
    res: dict[str, Any] = {"db": args.db, "entities": entities, "metrics": len(metrics),
                           "series": n_series, "targets": targets, "daemons": args.daemons,
                           "forecaster": forecaster, "period_s": args.period,
                           "history_s": args.history_s, "load_before": load()}
    with fresh_store(args.db, args.pg_url, tmp) as (db_url, schema):
        now = int(time.time())
        res["prefill_s"] = prefill(db_url, schema, entities, metrics, args.history_s, now,
                                   analyze=args.analyze)
        if args.db == "postgres":
            res["pg_settings"] = pg_settings(args.pg_url)
            res["analyzed"] = args.analyze
            say("PostgreSQL: " + ", ".join(f"{k}={v}" for k, v in res["pg_settings"].items())
                + ("; store analyzed after the prefill" if args.analyze
                   else "; store NOT analyzed after the prefill (--no-analyze)"))
        model_name = None
        if forecaster == "harmony":
            folder = tmp / "harmony"
            if not (folder / "config.json").exists():
                info = train_harmony(db_url, schema, metrics, now, folder)
                say(f"trained harmony (1 epoch, 256 windows) in {info['train_s']:.1f} s, "
                    f"context {info['context']} buckets")
            model_name = register_model(db_url, schema, metrics, folder)
        env = dict(os.environ, TIDEWISE_DB_URL=db_url,
                   TIDEWISE_TOKENS=f"bench:{TOKEN}:ingest+read+act",
                   TIDEWISE_LOG_LEVEL="debug", TIDEWISE_MODEL_DIR=str(tmp / "models"),
                   TIDEWISE_FORECAST_INTERVAL_S=str(args.period),
                   TIDEWISE_EXPORT_MAX_SERIES="0",
                   PYTHONPATH=str(ROOT))
        if schema:
            env["TIDEWISE_DB_SCHEMA"] = schema
        say(f"load before: {res['load_before']} (1, 5, 15 min; {os.cpu_count()} CPUs)")
        say(f"store: {args.db}, {entities} entities x {len(metrics)} metrics = {n_series} "
            f"series at 1 s, {args.history_s} s of history each (written in "
            f"{res['prefill_s']:.1f} s); {targets} targets (bayes on the stored forecast)")
        say(f"daemons: {args.daemons}, forecast period {args.period:g} s, forecaster "
            f"{model_name + ' (harmony, registered)' if model_name else 'window-mean (default)'}")
        daemons = start_daemons(args.daemons, env, args.log_dir)
        try:
            names = declare_targets(daemons[0].url, targets, metrics[0])
            before = [scrape(d.url) for d in daemons]
            ctx = mp.get_context("spawn")
            recv, send = ctx.Pipe(duplex=False)
            feed_stop = ctx.Event()
            lag = ctx.Value("d", 0.0)
            feed = ctx.Process(
                target=feeder, args=([d.url for d in daemons], entities, metrics, args.batch,
                                     args.duration + args.warmup_max, send, feed_stop, lag))
            t_start = time.time()
            feed.start()
            stop = threading.Event()
            rec: list[tuple[float, float, bool]] = []
            rt = threading.Thread(target=recommendations, args=(
                [d.url for d in daemons], names, args.rec_rate, stop, rec), daemon=True)
            rt.start()
            lags: list[tuple[float, float]] = []  # (when, feeder lag) every 0.2 s
            lt = threading.Thread(target=watch_lag, args=(lag, stop, lags), daemon=True)
            lt.start()
            if args.warmup:
                # measure in steady state: from the end of every daemon's first (cold) run,
                # and, since a cold run of many series leaves the feeder behind (its catch-up
                # would load the measured window with more than one second's samples per
                # second), once the feeder is back on time
                while (time.time() < t_start + args.warmup_max
                       and not all(d.runs for d in daemons)):
                    time.sleep(0.2)
                first = time.time() - t_start
                while time.time() < t_start + args.warmup_max and lag.value >= CAUGHT_UP_S:
                    time.sleep(0.2)
                on_time = time.time()
                # and a run of every daemon that started after that has ended (the runs in
                # flight then still carry the cold start's backlog)
                while time.time() < t_start + args.warmup_max and not all(
                        any(r.end - r.total_s >= on_time for r in d.runs) for d in daemons):
                    time.sleep(0.2)
                res["warmup_s"] = time.time() - t_start
                say(f"warm-up: every daemon's first forecast run ended after {first:.1f} s, "
                    f"the feeder was on time (< {CAUGHT_UP_S:g} s behind) after "
                    f"{on_time - t_start:.1f} s, a run begun after that ended on every daemon "
                    f"after {res['warmup_s']:.1f} s; measuring from here")
                t_start = time.time()
            cpu0 = proc_snapshot()
            time.sleep(max(0.0, t_start + args.duration - time.time()))
            cpu1 = proc_snapshot()
            window_lag = [v for t, v in lags if t_start <= t <= t_start + args.duration]
            res["cores"] = cpu_split(cpu0, cpu1, time.time() - t_start,
                                     [d.proc.pid for d in daemons], feed.pid)
            feed_stop.set()
            fed = recv.recv() if recv.poll(120) else None
            feed.join(timeout=30)
            stop.set()
            rt.join(timeout=30)
            lt.join(timeout=5)
            t_end = time.time()
            after = [scrape(d.url) for d in daemons]
        finally:
            stop_daemons(daemons)
        res["load_after"] = load()
    # ------------------------------------------------------------------ figures
    runs = sorted((r for d in daemons for r in d.runs if t_start <= r.end <= t_end),
                  key=lambda r: r.end)
    res["runs_seen"] = len(runs)
    # each daemon's first run starts cold (and on partly live data): left out, unless no
    # other run was seen
    cold = {id(d.runs[0]) for d in daemons if d.runs}
    measured = [r for r in runs if id(r) not in cold] or runs
    res["runs_measured"] = len(measured)
    expected = max(0, int((t_end - t_start) // args.period) - 1)
    if fed:
        res["ingest_samples_per_s"] = fed["acked"] / fed["wall"]
        res["ingest_due_per_s"] = n_series
        res["ingest_errors"] = fed["errors"]
        res["feeder_behind_max_s"] = fed["behind_max"]
        res["ingest_request_p99_ms"] = fed["p99_ms"]
        say(f"ingest: {fed['acked']:,} samples stored in {fed['wall']:.1f} s = "
            f"{res['ingest_samples_per_s']:,.0f} samples/s (due {n_series:,}/s); "
            f"{fed['errors']} failed requests of {fed['requests']}; request p99 "
            f"{fed['p99_ms']:.0f} ms; feeder at most {fed['behind_max']:.1f} s behind")
    if measured:
        tot = np.array([r.total_s for r in measured])
        ref = np.array([r.refresh_s for r in measured])
        dec = np.array([r.decide_s for r in measured])
        ref_cpu = np.array([r.refresh_cpu_s for r in measured])
        dec_cpu = np.array([r.decide_cpu_s for r in measured])
        fcs = sum(r.forecasts for r in measured)
        fbs = sum(r.fallbacks for r in measured)
        nd = sum(r.decisions for r in measured)
        res.update(
            job_mean_s=float(tot.mean()), job_max_s=float(tot.max()),
            refresh_mean_s=float(ref.mean()), decide_mean_s=float(dec.mean()),
            series_per_s=fcs / max(ref.sum(), 1e-9), decisions_per_s=nd / max(dec.sum(), 1e-9),
            ms_per_series=1000 * ref.sum() / max(1, sum(r.series for r in measured)),
            model_share=(fcs - fbs) / max(1, fcs), forecasts=fcs, fallbacks=fbs,
            errors=sum(r.errors for r in measured),
            refresh_cpu_mean_s=float(ref_cpu.mean()), decide_cpu_mean_s=float(dec_cpu.mean()),
            cpu_ms_per_series=1000 * ref_cpu.sum() / max(1, sum(r.series for r in measured)),
            cpu_ms_per_decision=1000 * dec_cpu.sum() / max(1, nd))
        say(f"forecast job per period ({len(measured)} runs"
            f"{' after the first' if len(runs) > 1 else ', the only one'}): mean "
            f"{tot.mean():.2f} s, max {tot.max():.2f} s of {args.period:g} s (refresh "
            f"{ref.mean():.2f} s, decisions {dec.mean():.2f} s)")
        say(f"CPU of the job's thread per period: refresh {ref_cpu.mean():.2f} s "
            f"({res['cpu_ms_per_series']:.2f} ms/series), decisions {dec_cpu.mean():.2f} s "
            f"({res['cpu_ms_per_decision']:.1f} ms/decision); wall/CPU "
            f"{tot.sum() / max(1e-9, ref_cpu.sum() + dec_cpu.sum()):.1f} (the machine is shared)")
        say(f"throughput: {res['series_per_s']:,.0f} series/s of refresh time "
            f"({res['ms_per_series']:.2f} ms/series), {res['decisions_per_s']:,.0f} "
            f"decisions/s of decision time")
        say(f"forecasts: {fcs - fbs:,} model ({100 * res['model_share']:.1f} %), {fbs:,} "
            f"fallback; {res['errors']} series without any data")
    jobs = [(r.end - r.total_s, r.end) for r in runs]
    ok_lat = np.array([s for _, s, ok in rec if ok]) * 1000
    during = np.array([s for t, s, ok in rec if ok and any(a <= t <= b for a, b in jobs)]) * 1000
    res["rec_errors"] = sum(1 for *_, ok in rec if not ok)
    if ok_lat.size:
        res["rec_p50_ms"] = float(np.percentile(ok_lat, 50))
        res["rec_p99_ms"] = float(np.percentile(ok_lat, 99))
        msg = (f"/v1/recommendations at {args.rec_rate:g}/s: {ok_lat.size} ok, "
               f"{res['rec_errors']} errors; p50 {res['rec_p50_ms']:.1f} ms, p99 "
               f"{res['rec_p99_ms']:.1f} ms")
        if during.size:
            res["rec_p99_during_job_ms"] = float(np.percentile(during, 99))
            msg += (f"; while a forecast job ran: {during.size} requests, p99 "
                    f"{res['rec_p99_during_job_ms']:.1f} ms")
        say(msg)
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        def delta(key: str, a: dict = a, b: dict = b) -> float:
            return a.get(key, 0.0) - b.get(key, 0.0)
        n = delta('tidewise_job_duration_seconds_count{job="forecast"}')
        s = delta('tidewise_job_duration_seconds_sum{job="forecast"}')
        runs_by = {o: delta(f'tidewise_job_runs_total{{job="forecast",outcome="{o}"}}')
                   for o in ("ok", "skipped", "failed")}
        src = {o: delta(f'tidewise_forecasts_total{{source="{o}"}}') for o in ("model", "fallback")}
        say(f"/metrics of daemon {i}: forecast runs ok {runs_by['ok']:.0f}, skipped "
            f"{runs_by['skipped']:.0f}, failed {runs_by['failed']:.0f}; job duration mean "
            f"{s / n if n else float('nan'):.2f} s; forecasts model {src['model']:.0f}, "
            f"fallback {src['fallback']:.0f}")
    # Every period wholly inside the measured window (and after each daemon's cold first
    # run): the runs that did it (one per daemon holding shards, two where a sweep took
    # over unclaimed shards) forecast all series and decided all targets between them, and
    # each daemon's work for it took less than the period. With one daemon: every run.
    by_period: dict[int, list[Run]] = {}
    for r in runs:
        p = r.period if r.period is not None else int((r.end - r.total_s) // args.period)
        by_period.setdefault(p, []).append(r)
    warm_from = max([r.end for d in daemons for r in d.runs[:1]] + [t_start])
    checked = range(math.ceil(warm_from / args.period), int(t_end // args.period))
    short = []
    for p in checked:
        rs = by_period.get(p, [])
        per_daemon: dict[int, float] = {}
        for r in rs:
            per_daemon[r.daemon] = per_daemon.get(r.daemon, 0.0) + r.total_s
        if not (sum(r.series for r in rs) == n_series and sum(r.forecasts for r in rs) == n_series
                and sum(r.decisions for r in rs) == targets
                and all(t < args.period for t in per_daemon.values())):
            short.append(p)
    res["periods_checked"] = len(checked)
    res["periods_short"] = len(short)
    complete = len(checked) >= min(2, expected) and not short
    # ingest kept up too: the feeder never fell a period behind in the measured window (a
    # forecast that runs in time on samples still queued at the daemons is not keeping up)
    res["feeder_lag_max_window_s"] = max(window_lag, default=0.0)
    res["ingest_keeps_up"] = res["feeder_lag_max_window_s"] < args.period
    res["keeps_up"] = bool(measured) and complete and res["ingest_keeps_up"]
    res["job_failures"] = sum(d.failures for d in daemons)
    say(f"keeps up: {'yes' if res['keeps_up'] else 'NO'} ({len(checked)} whole periods after "
        f"the cold first runs; in {len(checked) - len(short)} of them the daemons' runs "
        f"forecast all {n_series} series and decided all {targets} targets between them, "
        f"each daemon within {args.period:g} s; the feeder at most "
        f"{res['feeder_lag_max_window_s']:.1f} s behind in the window, "
        f"{'under' if res['ingest_keeps_up'] else 'NOT under'} the period)")
    cores = res.get("cores") or {}
    if cores:
        say("CPU over the measured window, in cores of " + str(os.cpu_count()) + ": "
            + ", ".join(f"{k} {v:.2f}" for k, v in cores.items()))
        ceiling(res, n_series, say)
    say(f"load after: {res['load_after']}")
    if res["job_failures"]:
        say(f"{res['job_failures']} failed job runs; daemon log tail:")
        for d in daemons:
            for line in d.tail[-10:]:
                say("   " + line)
    say("RESULT " + json.dumps(res))
    return res


def ceiling(res: dict[str, Any], n_series: int, say: Any) -> None:  # noqa: ANN401 - print
    """Add and print the machine's CPU per 1,000 series and the series its cores hold at it.

    Everything the machine ran over the window (daemons, PostgreSQL, the feeder, the rest) in
    cores per 1,000 series, and ``cpu_count / that``: how many series all its cores, fully
    busy, would hold at the measured rate. Not a capacity: no queueing is counted (a machine
    near fully busy lengthens every run). Across 1 and 2 daemons the rate stays about the same
    (sharding adds little per series), so K daemons on this one machine hold at most about
    this many series, whatever K.
    """
    machine = (res.get("cores") or {}).get("machine")
    if not machine or not n_series:
        return
    per_k = machine / (n_series / 1000)
    res["cores_per_1000_series"] = per_k
    res["series_at_all_cores"] = int((os.cpu_count() or 1) / per_k * 1000)
    say(f"machine CPU per 1,000 series: {per_k:.4f} cores; all {os.cpu_count()} cores at "
        f"this rate, with no queueing: {res['series_at_all_cores']:,} series")


def trial(forecaster: str, n: int, r: dict[str, Any]) -> None:
    """Print one trial of :func:`find_max`."""
    print(f"  {forecaster}: {n} entities = {r['series']} series -> keeps up "
          f"{'yes' if r['keeps_up'] else 'NO'} (job mean {r.get('job_mean_s', math.nan):.2f} s, "
          f"max {r.get('job_max_s', math.nan):.2f} s, refresh CPU "
          f"{r.get('cpu_ms_per_series', math.nan):.2f} ms/series; load {r['load_after']}; "
          f"cores: " + ", ".join(f"{k} {v:.2f}" for k, v in (r.get("cores") or {}).items())
          + ")", flush=True)


def find_max(args: argparse.Namespace, forecaster: str, tmp: Path) -> dict[str, Any]:
    """Largest N (entities) that keeps up: doubling, then bisection to ``--resolution``."""
    good: dict[str, Any] | None = None
    bad_n: int | None = None
    n = args.entities
    while bad_n is None and n <= args.max_entities:
        r = run_once(args, n, forecaster, tmp, quiet=True)
        trial(forecaster, n, r)
        if r["keeps_up"]:
            good, n = r, n * 2
        else:
            bad_n = n
    while good is None and n > 1:  # even the first N failed: halve until one keeps up
        bad_n, n = n, n // 2
        r = run_once(args, n, forecaster, tmp, quiet=True)
        trial(forecaster, n, r)
        if r["keeps_up"]:
            good = r
    if good is None:
        return {"forecaster": forecaster, "max_entities": 0, "note": "1 entity failed"}
    lo, hi = good["entities"], bad_n
    while hi is not None and (hi - lo) / lo > args.resolution:
        mid = (lo + hi) // 2
        r = run_once(args, mid, forecaster, tmp, quiet=True)
        trial(forecaster, mid, r)
        if r["keeps_up"]:
            good, lo = r, mid
        else:
            hi = mid
    return {"forecaster": forecaster, "max_entities": good["entities"],
            "max_series": good["series"], "first_failing_entities": hi, "at": good}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--pg-url", default=PG_URL, help="PostgreSQL URL (a fresh schema is used)")
    ap.add_argument("--entities", type=int, default=200, help="N entities (VMs)")
    ap.add_argument("--metrics", type=int, default=5, help="M metrics per entity")
    ap.add_argument("--targets", type=int, default=None,
                    help="T scaling targets (default N / 10)")
    ap.add_argument("--history-s", type=int, default=3600,
                    help="seconds of 1-s history prefilled per series (the context is 1 h)")
    ap.add_argument("--duration", type=float, default=90.0, help="measured seconds")
    ap.add_argument("--period", type=float, default=15.0, help="forecast period (s)")
    ap.add_argument("--daemons", type=int, default=1, help="K daemons on the same store")
    ap.add_argument("--forecaster", choices=("default", "harmony"), default="default")
    ap.add_argument("--no-analyze", dest="analyze", action="store_false",
                    help="PostgreSQL: do not ANALYZE the store after the prefill (as before "
                    "session 12: the planner then has no statistics of the bulk load)")
    ap.add_argument("--batch", type=int, default=5000, help="samples per ingest request")
    ap.add_argument("--log-dir", type=Path, default=None,
                    help="keep each daemon's whole log (debug level) in this folder")
    ap.add_argument("--rec-rate", type=float, default=10.0, help="recommendations/s")
    ap.add_argument("--warmup", action="store_true",
                    help="start the measured --duration when every daemon's first (cold) "
                    "forecast run has ended (feeding from the start)")
    ap.add_argument("--warmup-max", type=float, default=600.0,
                    help="with --warmup: the longest wait for the first runs (s)")
    ap.add_argument("--find-max", action="store_true",
                    help="find the largest N that keeps up (see --forecasters)")
    ap.add_argument("--forecasters", default="default,harmony",
                    help="with --find-max: which, comma-separated")
    ap.add_argument("--max-entities", type=int, default=20000)
    ap.add_argument("--resolution", type=float, default=0.15,
                    help="with --find-max: stop bisecting when (bad - good) / good is below")
    args = ap.parse_args(argv)
    for name in ("entities", "metrics", "daemons", "batch", "history_s"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    if args.duration <= 0 or args.period <= 0 or args.rec_rate <= 0:
        raise SystemExit("--duration, --period and --rec-rate must be > 0")
    if args.daemons > 1 and args.db != "postgres":
        raise SystemExit("--daemons > 1 needs --db postgres (several daemons share one "
                         "PostgreSQL)")
    tmp = Path(tempfile.mkdtemp(prefix="tidewise-dbench-"))
    try:
        if not args.find_max:
            run_once(args, args.entities, args.forecaster, tmp)
            return
        print(f"find-max on {args.db}, {args.metrics} metrics per entity, period "
              f"{args.period:g} s, {args.duration:g} s per trial; load {load()}", flush=True)
        found = [find_max(args, f.strip(), tmp) for f in args.forecasters.split(",")]
        for f in found:
            at = f.get("at") or {}
            print(f"largest N that keeps up, {f['forecaster']}: {f['max_entities']} entities "
                  f"= {f.get('max_series', 0)} series (first failing: "
                  f"{f.get('first_failing_entities')}); job mean "
                  f"{at.get('job_mean_s', math.nan):.2f} s, max {at.get('job_max_s', math.nan):.2f}"
                  f" s; load {at.get('load_after')}")
        print("RESULT " + json.dumps(found))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
