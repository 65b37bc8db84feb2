"""Orchestrators never act on a stale or (by setting) fallback decision; /readyz sees the jobs.

KEDA's ``fallback:`` block and the HPA's "keep the current scale" only trigger on an error, so
a decision that must not drive scaling is answered 503 (with the usual JSON body) instead of
200 with ``"stale": true``.
"""

from __future__ import annotations

import contextlib
import time

import httpx
import pytest

from policies import registry
from service import decisions, forecasting, migrate
from service.api import create_app
from service.scheduler import DaemonContext, JobHealth, run_once
from service.store import model_registry as model_store
from service.store.db import Store
from tests.daemon.conftest import bearer, scaling_target, send, serve_in_thread

SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

EXT = "/apis/external.metrics.k8s.io/v1beta1/namespaces/prod/tidewise-desired-replicas"


def _flat(now: int, seconds: int, value: float) -> list[tuple[int, float]]:
    return [(now - seconds + i, value) for i in range(seconds)]


@SQLITE
def test_a_stale_decision_is_503_for_keda_and_the_external_metrics_api(http, store):
    now = int(time.time())
    send(http, "web-vm", "vm", "cpu_cores", _flat(now, 600, 7.0))
    assert http.post("/v1/targets", json=scaling_target()).status_code == 201
    decisions.decide_all(store, now - 100)  # > 3 forecast periods (15 s) ago: jobs stopped

    r = http.get("/v1/keda/web")
    assert r.status_code == 503
    body = r.json()
    assert body["error"] == "StaleDecision" and body["stale"] is True
    assert body["desiredReplicas"] == 4 and body["target"] == "web"  # the JSON body stays
    assert "/readyz" in body["detail"] and "three forecast periods" in body["detail"]
    r = http.get(EXT, params={"labelSelector": "target=web"})
    assert r.status_code == 503 and r.json()["error"] == "StaleDecision"
    assert "'web'" in r.json()["detail"]
    # the recommendation itself is still readable, flagged stale
    rec = http.get("/v1/recommendations/web")
    assert rec.status_code == 200 and rec.json()["stale"] is True

    decisions.decide_all(store, int(time.time()))  # the jobs run again
    r = http.get("/v1/keda/web")
    assert r.status_code == 200 and r.json()["desiredReplicas"] == 4
    assert http.get(EXT, params={"labelSelector": "target=web"}).status_code == 200


@contextlib.contextmanager
def _live(settings_factory, **kw):  # noqa: ANN001, ANN202
    """A migrated store with settings ``kw``, its app served over a socket, and a client."""
    s = settings_factory(**kw)
    migrate.upgrade(s)
    store = Store(s)
    app = create_app(store=store)
    try:
        with (
            serve_in_thread(app) as url,
            httpx.Client(base_url=url, headers=bearer("all"), timeout=30) as http,
        ):
            yield store, app, http
    finally:
        store.close()


def _boom(self, spec, obs, forecast, now, memory=None):  # noqa: ANN001, ANN202
    raise RuntimeError("model exploded")


@SQLITE
def test_a_policy_fallback_is_503_only_with_the_setting(settings_factory, monkeypatch):
    with _live(settings_factory, refuse_fallback_decisions=True) as (store, _app, http):
        now = int(time.time())
        send(http, "web-vm", "vm", "cpu_cores", _flat(now, 600, 7.0))
        http.post("/v1/targets", json=scaling_target())
        decisions.decide_all(store, now)
        assert http.get("/v1/keda/web").status_code == 200  # a valid, model-based decision

        def boom(self, spec, obs, forecast, now, memory=None):  # noqa: ANN001, ANN202
            raise RuntimeError("model exploded")

        monkeypatch.setattr(registry.get("hpa", "vm"), "decide", boom)
        decisions.decide_all(store, int(time.time()))
        r = http.get("/v1/keda/web")
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["error"] == "FallbackDecision" and body["fallback"] is True
        assert "model exploded" in body["detail"]
        assert "TIDEWISE_REFUSE_FALLBACK_DECISIONS" in body["detail"]
        r = http.get(EXT, params={"labelSelector": "target=web"})
        assert r.status_code == 503 and r.json()["error"] == "FallbackDecision"


@SQLITE
def test_a_policy_fallback_is_served_by_default(http, store, monkeypatch):
    now = int(time.time())
    send(http, "web-vm", "vm", "cpu_cores", _flat(now, 600, 7.0))
    http.post("/v1/targets", json=scaling_target())
    decisions.decide_all(store, now)
    monkeypatch.setattr(registry.get("hpa", "vm"), "decide", _boom)
    decisions.decide_all(store, int(time.time()))
    r = http.get("/v1/keda/web")
    assert r.status_code == 200 and r.json()["fallback"] is True


@SQLITE
def test_a_decision_on_the_fallback_forecast_is_503_with_the_setting(settings_factory, tmp_path):
    with _live(settings_factory, refuse_fallback_decisions=True) as (store, _app, http):
        now = int(time.time())
        send(http, "web-vm", "vm", "cpu_cores", _flat(now, 600, 5.0))
        # a target deciding on the refresh's stored forecast, and one on its online forecaster
        http.post("/v1/targets", json=scaling_target(policy="bayes", params={},
                                                     forecaster="stored"))
        http.post("/v1/targets", json=scaling_target("web-online", policy="bayes", params={}))
        with store.write_sessions() as session, session.begin():  # artifact missing
            model_store.register_model(
                session,
                forecasting.daemon_model_name("cpu_cores"),
                "v1",
                str(tmp_path / "missing"),
            )
        assert run_once(DaemonContext(store), "forecast", now) == "ok"
        rec = http.get("/v1/recommendations/web").json()
        assert rec["valid"] is True and rec["fallback"] is False  # the policy did not fall back
        r = http.get("/v1/keda/web")
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "FallbackDecision"
        assert "'fallback:last'" in r.json()["detail"]
        assert rec["details"]["forecast_model"] == "fallback:last"
        # the online target never read the stored forecast: its decision stands
        assert http.get("/v1/keda/web-online").status_code == 200


@SQLITE
def test_readyz_and_keda_with_the_jobs_stopped(settings_factory):
    with _live(
        settings_factory,
        scheduler_enabled=True,
        forecast_interval_s=1,
        rollup_interval_s=1,
        retention_interval_s=10,
    ) as (_store, app, http):
        now = int(time.time())
        send(http, "web-vm", "vm", "cpu_cores", _flat(now, 300, 7.0))
        http.post("/v1/targets", json=scaling_target())
        deadline = time.monotonic() + 30
        while http.get("/v1/keda/web").status_code != 200:  # the jobs decide on their own
            assert time.monotonic() < deadline, "the forecast job never decided"
            time.sleep(0.2)
        ready = http.get("/readyz")
        assert ready.status_code == 200, ready.text
        jobs = ready.json()["jobs"]
        assert jobs["running"] and jobs["jobs"]["forecast"]["last_outcome"] == "ok"

        app.state.scheduler.pause()  # the jobs stop
        ready = http.get("/readyz")
        assert ready.status_code == 503
        assert "the scheduler is not running" in ready.json()["detail"]
        time.sleep(3.5)  # three forecast periods of 1 s pass without a decision
        r = http.get("/v1/keda/web")
        assert r.status_code == 503 and r.json()["error"] == "StaleDecision"
        detail = http.get("/readyz").json()["detail"]
        assert "job 'forecast' has not succeeded" in detail


def test_job_health_counts_periods_without_success():
    health = JobHealth({"forecast": 15.0, "retrain": 3600.0})
    health.start(1000.0)
    ok, report = health.report(1040.0, True, 3)
    assert ok and report["problems"] == []  # within 3 periods of the start, nothing ran yet
    ok, report = health.report(1046.0, True, 3)
    assert not ok and "job 'forecast' has not run successfully since start" in report["problems"][0]
    health.record("forecast", "skipped", 1050.0)  # another daemon holds the lease: it runs
    assert health.report(1090.0, True, 3)[0]
    health.record("forecast", "failed", 1095.0)
    health.record("forecast", "failed", 1110.0)
    ok, report = health.report(1096.0, True, 3)
    assert not ok and "last outcome: failed" in report["problems"][0]
    assert report["jobs"]["forecast"]["last_success_unix"] == 1050.0
    health.record("forecast", "ok", 1120.0)
    assert health.report(1125.0, True, 3)[0]
    ok, report = health.report(1125.0, False, 3)
    assert not ok and report["problems"] == ["the scheduler is not running"]
