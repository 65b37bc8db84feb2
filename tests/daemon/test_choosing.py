"""Evidence picks the forecaster per target: candidates backtested on the target's history."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from service import choosing, decisions
from service.choosing import Trial, pick
from service.store import model_registry as model_store
from service.store import targets as target_store
from tests.daemon.conftest import scaling_target, send


def test_pick_takes_the_cheapest_within_the_sla_else_the_safest():
    a = Trial("online", 0.008, 100.0)
    b = Trial("quantile-gbm", 0.009, 90.0)
    c = Trial("harmony", 0.03, 50.0)
    broken = Trial("broken", error="ModelError: boom")
    assert pick([a, b, c, broken], 0.01).name == "quantile-gbm"  # cheapest within 1 %
    assert pick([a, b, c], 0.0085).name == "online"
    # none within the SLA: the lowest violation rate, whatever it costs
    assert pick([Trial("x", 0.05, 10.0), Trial("y", 0.02, 99.0)], 0.01).name == "y"
    assert pick([broken, Trial("nan", math.nan, 1.0)], 0.01) is None


def _bursty(now: int, seconds: int, seed: int = 0) -> list[tuple[int, float]]:
    rng = np.random.default_rng(seed)
    t = np.arange(seconds)
    level = 6 + 3 * np.sin(2 * np.pi * t / 1800) + (rng.random(seconds) < 0.002) * 8
    return [(now - seconds + int(i), float(v + rng.normal(0, 0.3)))
            for i, v in zip(t, level, strict=True)]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_choose_job_backtests_registers_the_pick_and_decisions_read_it(http, store):
    now = int(time.time())
    now -= now % 15
    send(http, "web-vm", "vm", "cpu_cores", _bursty(now, 3 * 3600))
    assert http.post("/v1/targets", json=scaling_target(policy="bayes", params={})
                     ).status_code == 201
    # before any choice: the online forecaster, as in the replay (nothing chosen to report)
    decisions.decide_all(store, now)
    rec = http.get("/v1/recommendations/web").json()
    assert "forecaster" not in rec["details"]
    assert rec["details"]["forecast_model"] == "growth-bootstrap"

    reports = choosing.choose_all(store, now)
    assert len(reports) == 1 and reports[0]["outcome"] == "chosen", reports
    rep = reports[0]
    assert [t["name"] for t in rep["trials"]] == ["online", "quantile-gbm"]
    trials = [Trial(t["name"], t["violation_rate"], t["replica_seconds"])
              for t in rep["trials"] if "error" not in t]
    assert rep["chosen"] == pick(trials, 0.01).name  # the rule, on the figures it stored
    with store.sessions() as session:
        current = model_store.current_model(session, "target:web")
    assert current.metrics["chosen"] == rep["chosen"]
    assert bool(current.artifact_path) == (rep["chosen"] != "online")

    decisions.decide_all(store, now + 15)
    rec = http.get("/v1/recommendations/web").json()
    assert rec["valid"] and rec["details"]["forecaster"] == rep["chosen"]
    assert rec["details"]["forecaster_chosen"] == current.version
    if rep["chosen"] != "online":
        assert rec["details"]["forecast_model"].startswith(rep["chosen"])


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_model_that_wins_is_what_the_decision_reads(http, store, monkeypatch):
    now = int(time.time())
    now -= now % 15
    send(http, "web-vm", "vm", "cpu_cores", _bursty(now, 3 * 3600, seed=1))
    http.post("/v1/targets", json=scaling_target(policy="bayes", params={}))
    # whatever the figures, let window-mean win: the decision must then read that model
    monkeypatch.setattr(choosing, "pick", lambda trials, sla: next(
        t for t in trials if t.name == "window-mean"))
    rep = choosing.choose_target(store, _target(store), now, ["online", "window-mean"])
    assert rep["outcome"] == "chosen" and rep["chosen"] == "window-mean"
    decisions.decide_all(store, now)
    rec = http.get("/v1/recommendations/web").json()
    assert rec["details"]["forecaster"] == "window-mean"
    assert rec["details"]["forecast_model"] == f"window-mean@{rep['version']}"


def _target(store):  # noqa: ANN001, ANN202
    with store.sessions() as session:
        return target_store.get_target(session, "web")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_too_little_history_keeps_the_online_forecaster(http, store):
    now = int(time.time())
    send(http, "web-vm", "vm", "cpu_cores", _bursty(now, 1800))
    http.post("/v1/targets", json=scaling_target(policy="bayes", params={}))
    rep = choosing.choose_all(store, now)[0]
    assert rep["outcome"] == "skipped" and "buckets of history" in rep["reason"]
    with store.sessions() as session:
        assert model_store.current_model(session, "target:web") is None
    # targets that are not auto are not backtested
    http.post("/v1/targets", json=scaling_target("pinned", policy="bayes", params={},
                                                 forecaster="online"))
    assert [r["target"] for r in choosing.choose_all(store, now)] == ["web"]
