"""Scheduled jobs: leases across daemons, the job store in the database, retraining."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from sqlalchemy import select, text

from service import forecasting
from service.scheduler import DaemonContext, make_scheduler, run_once
from service.store import model_registry as model_store
from service.store.db import Store
from service.store.tables import JobLease
from tests.daemon.conftest import PG_AVAILABLE, bearer, scaling_target, send


def test_two_daemons_run_each_job_once_per_period(store):
    """Two daemons (own engines and holders) on one database race for the same period."""
    other = Store(store.settings)
    try:
        a, b = DaemonContext(store), DaemonContext(other)
        now = 1_000_000.0
        period = store.settings.rollup_interval_s
        results: list[str] = []
        barrier = threading.Barrier(2)

        def race(ctx: DaemonContext) -> None:
            barrier.wait()
            results.append(run_once(ctx, "rollups", now))

        threads = [threading.Thread(target=race, args=(c,)) for c in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["ok", "skipped"]
        # later in the same period: still taken; the next period: free again
        assert run_once(b, "rollups", now + 0.5 * period) == "skipped"
        assert run_once(a, "rollups", now + 0.5 * period) == "skipped"
        assert run_once(b, "rollups", now + period) == "ok"
        with store.sessions() as session:
            lease = session.get(JobLease, "rollups")
        assert lease.holder == b.holder and lease.last_run == now + period
        assert lease.expires_at == pytest.approx(now + period + 0.8 * period)
    finally:
        other.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_jobs_live_in_the_database_and_keep_their_next_run_across_restarts(store):
    sched = make_scheduler(store)
    sched.start(paused=True)
    first = {j.id: j.next_run_time for j in sched.get_jobs()}
    local = {j.id for j in sched.get_jobs("local")}
    sched.shutdown(wait=False)
    assert set(first) == {"rollups", "retention", "forecast", "retrain", "choose", "heartbeat"}
    # the sharded forecast job runs in every daemon, so it is each daemon's own
    assert local == {"forecast", "heartbeat"}
    period = store.settings.forecast_interval_s
    assert first["forecast"].timestamp() % period == 0  # epoch-aligned: same instants everywhere
    with store.engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT id, next_run_time FROM apscheduler_jobs")).all())
    assert set(rows) == set(first) - local
    assert rows["retrain"] == pytest.approx(first["retrain"].timestamp())

    # a restarted daemon finds the jobs (same ids, replaced with its own context)
    again = make_scheduler(Store(store.settings))
    again.start(paused=True)
    try:
        assert {j.id for j in again.get_jobs()} == set(first)
    finally:
        again.shutdown(wait=False)


@pytest.mark.postgres
@pytest.mark.skipif(not PG_AVAILABLE, reason="no PostgreSQL at 127.0.0.1:5432")
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_two_real_schedulers_on_postgresql_share_the_jobs_and_run_each_once(settings_factory):
    from service import migrate
    from service.promexport import Telemetry

    settings = settings_factory(rollup_interval_s=1)
    migrate.upgrade(settings)
    stores = [Store(settings), Store(settings)]
    telemetry = Telemetry()  # one process: both schedulers count into one registry
    scheds = [make_scheduler(s, telemetry, jobs=("rollups",)) for s in stores]
    t0 = time.time()
    for s in scheds:
        s.start()
    time.sleep(4.2)
    for s in scheds:
        s.shutdown(wait=True)
    elapsed = time.time() - t0

    def runs(outcome: str) -> float:
        v = telemetry.registry.get_sample_value(
            "tidewise_job_runs_total", {"job": "rollups", "outcome": outcome})
        return v or 0.0

    # one run per 1-s period at most, whichever scheduler fired; without the lease both
    # would run it in most periods
    assert 2 <= runs("ok") <= elapsed + 1
    assert runs("failed") == 0
    with stores[0].engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM apscheduler_jobs")).scalar() == 1
    with stores[0].sessions() as session:
        lease = session.scalars(select(JobLease)).one()
    assert lease.name == "rollups" and t0 <= lease.last_run <= t0 + elapsed
    for s in stores:
        s.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_retrain_registers_only_a_model_that_beats_the_current_one(http, store):
    now = int(time.time())
    now -= now % 15
    rng = np.random.default_rng(0)
    # a noisy level: the window mean beats "last value" (which chases the noise)
    values = 10 + rng.normal(0, 1, 3600)
    send(http, "web-vm", "vm", "cpu_cores", [(now - 3600 + i, float(v))
                                              for i, v in enumerate(values)])
    first = forecasting.retrain(store, now)
    assert [r["outcome"] for r in first] == ["registered"]
    assert first[0]["candidate_crps"] < first[0]["incumbent_crps"]
    assert first[0]["incumbent"] == "fallback:last"
    with store.sessions() as session:
        current = model_store.current_model(session, "daemon:cpu_cores")
    assert current is not None and current.metrics["model"] == "window-mean"
    # the same model again does not beat itself: nothing new registered
    second = forecasting.retrain(store, now + 15)
    assert [r["outcome"] for r in second] == ["kept"]
    assert second[0]["incumbent"].startswith("daemon:cpu_cores@")
    with store.sessions() as session:
        assert len(model_store.list_models(session, "daemon:cpu_cores")) == 1
    # the refresh now uses the registered model
    forecasting.refresh(store, now)
    fc = http.get("/v1/forecasts/web-vm", params={"metric": "cpu_cores"}).json()
    assert fc["model"] == f"daemon:cpu_cores@{current.version}"
    assert not fc["fallback"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_metrics_endpoint_counts_ingest_jobs_and_decisions(store):
    import httpx

    from service.api import create_app
    from tests.daemon.conftest import serve_in_thread

    app = create_app(store.settings, store)
    now = int(time.time())
    now -= now % int(store.settings.forecast_interval_s)  # now and now + 1: one period
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        send(c, "web-vm", "vm", "cpu_cores", [(now - 900 + i, 7.0) for i in range(900)])
        c.post("/v1/targets", json=scaling_target(), headers=bearer("act"))
        bad = c.post("/v1/metrics", json={"samples": [{"entity": "x"}]}, headers=bearer("ingest"))
        assert bad.status_code == 422
        ctx = DaemonContext(store, app.state.telemetry)
        assert run_once(ctx, "forecast", now) == "ok"
        assert run_once(ctx, "forecast", now + 1) == "skipped"
        assert c.get("/metrics").status_code == 401
        r = c.get("/metrics", headers=bearer("read"))
    assert r.headers["content-type"].startswith("text/plain")
    body = r.text
    for line in (
        'tidewise_ingest_requests_total{outcome="stored"} 1.0',
        'tidewise_ingest_requests_total{outcome="refused"} 1.0',
        "tidewise_ingest_samples_total 900.0",
        'tidewise_job_runs_total{job="forecast",outcome="ok"} 1.0',
        'tidewise_job_runs_total{job="forecast",outcome="skipped"} 1.0',
        'tidewise_job_duration_seconds_count{job="forecast"} 1.0',
        'tidewise_forecasts_total{source="model"} 1.0',
        'tidewise_decisions_total{outcome="valid",policy="hpa"} 1.0',
        "tidewise_actions_total 1.0",
    ):
        assert line in body, line


@pytest.mark.parametrize("isolation", ["process", "thread"])
def test_the_retrain_job_registers_from_a_child_process_or_in_process(http, settings_factory,
                                                                      isolation):
    from service.store.db import Store

    store = Store(settings_factory(retrain_isolation=isolation))
    try:
        now = int(time.time())
        now -= now % 15
        rng = np.random.default_rng(0)
        send(http, "web-vm", "vm", "cpu_cores", [(now - 3600 + i, float(10 + rng.normal()))
                                                  for i in range(3600)])
        assert run_once(DaemonContext(store), "retrain", now) == "ok"
        with store.sessions() as session:
            current = model_store.current_model(session, "daemon:cpu_cores")
        assert current is not None and current.metrics["model"] == "window-mean"
    finally:
        store.close()


def test_serve_help_lists_every_scheduled_job():
    from typer.testing import CliRunner

    from service.cli import app
    from service.scheduler import JOBS

    r = CliRunner().invoke(app, ["serve", "--help"])
    assert r.exit_code == 0
    assert all(job in r.output for job in JOBS), (sorted(JOBS), r.output)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_choose_job_runs_in_a_child_process(http, store):
    """No auto target without history: the child process runs, backtests nothing, reports ok."""
    now = int(time.time())
    send(http, "web-vm", "vm", "cpu_cores", [(now - 60 + i, 3.0) for i in range(60)])
    http.post("/v1/targets", json=scaling_target(policy="bayes", params={}))
    assert store.settings.retrain_isolation == "process"
    assert run_once(DaemonContext(store), "choose", now) == "ok"
    with store.sessions() as session:
        assert model_store.current_model(session, "target:web") is None  # too little history


def test_a_training_child_ends_when_its_daemon_is_killed(tmp_path):
    """A daemon killed mid-retrain leaves no orphan: the child notices its parent is gone."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import multiprocessing, os, sys, time

        def child(parent):
            from service.scheduler import exit_with_parent
            exit_with_parent(parent, interval_s=0.2)
            time.sleep(60)

        if __name__ == "__main__":
            p = multiprocessing.get_context("spawn").Process(target=child, args=(os.getpid(),))
            p.start()
            print(p.pid, flush=True)
            time.sleep(60)
    """)
    path = tmp_path / "daemon_like.py"
    path.write_text(script)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, str(path)], stdout=subprocess.PIPE, text=True,
                            env=env)
    child = int(proc.stdout.readline())
    time.sleep(1.0)  # the child is up and watching
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        with open(f"/proc/{child}/stat") as f:  # a zombie (exited, not reaped) counts as gone
            if f.read().split()[2] == "Z":
                break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the child outlived its parent by 10 s")
