"""Guards of the decision job that a one-line change used to slip past (issue 12, item 11).

Tested through public behaviour only — ingest over HTTP, the forecast job, the decision job
(:func:`service.decisions.decide_all`) and the recommendation/action endpoints — so the
module's internals may move freely.
"""

from __future__ import annotations

import time

from policies import registry
from policies.base import Decision
from service import decisions, forecasting
from tests.daemon.conftest import scaling_target, send


def _flat(now: int, seconds: int, value: float) -> list[tuple[int, float]]:
    return [(now - seconds + i, value) for i in range(seconds)]


def test_an_invalid_first_decision_recommends_nothing_even_with_data(http, store, monkeypatch):
    """README: invalid before any setting -> no recommendation, never a scale to a guess.

    With demand stored, the daemon's own starting point would be ceil(7 / 2) = 4 replicas;
    recommending it would make an orchestrator scale an existing deployment to 4 on a
    decision the policy itself called invalid.
    """
    now = int(time.time())
    send(http, "web-vm", "vm", "cpu_cores", _flat(now, 600, 7.0))
    assert http.post("/v1/targets", json=scaling_target()).status_code == 201

    def invalid(self, spec, obs, forecast, now, memory=None):  # noqa: ANN001, ANN202
        return Decision(action={"replicas": 1}, valid=False, why="cannot tell", state=memory)

    monkeypatch.setattr(registry.get("hpa", "vm"), "decide", invalid)
    out = decisions.decide_all(store, now)
    assert [(o.valid, o.desired, o.action_id) for o in out] == [(False, {}, None)]
    rec = http.get("/v1/recommendations/web").json()
    assert rec["valid"] is False and rec["desired"] == {}
    assert http.get("/v1/actions").json()["actions"] == []
    r = http.get("/v1/keda/web")
    assert r.status_code == 404 and "no valid decision yet" in r.json()["detail"]

    # once a valid setting exists, a later invalid decision keeps it (no action either)
    monkeypatch.undo()
    decisions.decide_all(store, now + 15)
    assert http.get("/v1/recommendations/web").json()["desired"] == {"replicas": 4}
    monkeypatch.setattr(registry.get("hpa", "vm"), "decide", invalid)
    out = decisions.decide_all(store, now + 30)
    assert [(o.valid, o.desired) for o in out] == [(False, {"replicas": 4})]
    assert len(http.get("/v1/actions").json()["actions"]) == 1


def _bayes_forecast_model(http, store, stored_at: int, decide_at: int) -> str:  # noqa: ANN001
    """Store a forecast at ``stored_at``, decide at ``decide_at``; the model bayes used."""
    send(http, "web-vm", "vm", "cpu_cores", _flat(stored_at, 900, 5.0))
    res = forecasting.refresh(store, stored_at)
    assert (res.forecasts, res.fallbacks) == (1, 0)
    assert (
        http.post("/v1/targets", json=scaling_target(policy="bayes", params={})).status_code == 201
    )
    decisions.decide_all(store, decide_at)
    rec = http.get("/v1/recommendations/web").json()
    assert rec["valid"] is True and rec["desired"]["replicas"] >= 3, rec  # 5 cores / 2
    return rec["details"]["forecast_model"]


def test_bayes_decides_on_its_replay_forecaster_even_beside_a_fresh_stored_forecast(
    http, store  # noqa: ANN001
):
    """One pipeline: the daemon feeds bayes the forecaster the replay feeds it (the online
    growth bootstrap), not the refresh's stored forecast of TIDEWISE_FORECAST_MODEL, which
    /v1/forecasts serves. (This replaced the three-period stale-forecast rule.)"""
    now = int(time.time())
    now -= now % 15
    used = _bayes_forecast_model(http, store, now, now)
    assert used == "growth-bootstrap" != store.settings.forecast_model


def test_a_target_on_a_missing_metric_does_not_warn_every_period(http, store, caplog):  # noqa: ANN001
    """The collector reads a series that does not exist as no data: an invalid decision that
    says so, never a failed decision logged at WARNING each period."""
    import logging

    now = int(time.time())
    body = scaling_target(metric="no_such_metric")
    assert http.post("/v1/targets", json=body).status_code == 201
    with caplog.at_level(logging.WARNING, logger="tidewise.decisions"):
        for k in range(3):
            out = decisions.decide_all(store, now + 15 * k)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert [(o.valid, o.desired) for o in out] == [(False, {})]
    rec = http.get("/v1/recommendations/web").json()
    assert rec["valid"] is False and "no" in rec["why"].lower() and rec["fallback"] is False


def test_the_clusters_replica_counts_are_used_while_at_most_ten_minutes_old(http, store):  # noqa: ANN001
    """ready/requested come from the named metrics when a sample is at most 600 s old; an
    older one is ignored and the daemon assumes its own starting point (ceil(7 / 2) = 4)."""
    now = int(time.time())
    now -= now % 15
    send(http, "web-vm", "vm", "cpu_cores", _flat(now, 600, 7.0))
    for age, expect in ((600, "9 -> 4: "), (601, "hold 4: ")):
        deploy = f"web-deploy-{age}"  # its own series: only the sample of this age exists
        body = scaling_target(ready_metric="ready", requested_metric="requested",
                              replicas_entity=deploy)
        assert http.post("/v1/targets", json=body).status_code in (200, 201)
        send(http, deploy, "vm", "requested", [(now - age, 9.0)])
        send(http, deploy, "vm", "ready", [(now - age, 9.0)])
        with store.write_sessions() as session, session.begin():
            from sqlalchemy import delete

            from service.store.tables import DecisionRecord

            session.execute(delete(DecisionRecord))
        decisions.decide_all(store, now)
        rec = http.get("/v1/recommendations/web").json()
        # hpa: 7 cores at 2 per replica need 4; from the cluster's 9 it scales down, from its
        # own starting point (ceil(7 / 2) = 4) it holds
        assert rec["why"].startswith(expect), (age, rec["why"])


def test_serverless_history_is_the_replays_required_concurrency(http, store):  # noqa: ANN001
    """One invocation of a 100 ms function needs one instance; 700 of 100 ms in a minute
    need ceil(70 s / 60 s) = 2 (the replay's reference model, one function shared)."""
    now = int(time.time())
    now -= now % 60
    send(http, "fn", "function", "invocations",
         [(now - 180, 1.0), (now - 120, 0.0), (now - 60, 700.0)])
    body = {"kind": "serverless", "name": "f", "entity": "fn", "memory_mb": 128,
            "duration_ms": 100, "policy": "keepalive-10m"}
    assert http.post("/v1/targets", json=body).status_code == 201
    from service.store import targets as target_store

    with store.sessions() as session:
        target = target_store.get_target(session, "f")
    _, obs, step_start = decisions.collect_serverless(store, target, now + 5, None)
    assert obs.history[:, 0].tolist() == [1, 0, 2] and step_start == now
    assert obs.invocations_last.tolist() == [700] and obs.current is None

    body["metric"] = "no_such_metric"
    assert http.post("/v1/targets", json=body).status_code == 200
    with store.sessions() as session:
        target = target_store.get_target(session, "f")
    _, obs, _ = decisions.collect_serverless(store, target, now + 5, None)
    assert obs.t == 0 and obs.history.shape == (0, 1)
    assert obs.invocations_last.tolist() == [0]  # nothing seen, not a negative count


def test_a_serverless_decision_reads_six_hours_of_minutes(http, store):  # noqa: ANN001
    """The hybrid histogram's 4 h range plus margin: the last 360 whole minutes before now.
    An invocation in the oldest of them is seen; one a minute earlier is not."""
    now = int(time.time())
    now -= now % 60
    send(http, "fn", "function", "invocations",
         [(now - 361 * 60, 5.0), (now - 360 * 60, 1.0), (now - 60, 1.0)])
    body = {"kind": "serverless", "name": "f", "entity": "fn", "memory_mb": 128,
            "duration_ms": 100, "policy": "keepalive-10m"}
    assert http.post("/v1/targets", json=body).status_code == 201
    from service.store import targets as target_store

    with store.sessions() as session:
        target = target_store.get_target(session, "f")
    _, obs, step_start = decisions.collect_serverless(store, target, now + 5, None)
    assert step_start == now and obs.start_s == now
    assert obs.t == 360
    assert obs.history[:, 0].tolist() == [1] + [0] * 358 + [1]


def test_a_power_decision_is_for_the_step_that_holds_now(http, store):  # noqa: ANN001
    """Mid-step, the row is decided for the step that started at or before now (once per
    step: the same step start is re-affirmed, not decided again)."""
    now = int(time.time())
    step = int(store.settings.forecast_step_s)
    now -= now % step
    body = {"kind": "power", "name": "row", "servers": ["s1", "s2"], "budget_w": 600,
            "p_max_w": 300, "priorities": {"s1": "low"}, "policy": "polca"}
    assert http.post("/v1/targets", json=body).status_code == 201
    send(http, "s1", "server", "power_w", _flat(now, 120, 250.0))
    send(http, "s2", "server", "power_w", _flat(now, 120, 250.0))
    from service.store import targets as target_store

    with store.sessions() as session:
        target = target_store.get_target(session, "row")
    for t in (now, now + 1, now + step - 1):
        _, obs, step_start = decisions.collect_power(store, target, t, None)
        assert step_start == now and obs.start_s == now, t
    _, _, step_start = decisions.collect_power(store, target, now + step, None)
    assert step_start == now + step


def test_a_power_rows_history_starts_at_its_first_reported_step(http, store):  # noqa: ANN001
    """Servers that report only the last two steps give two steps of history, not a whole
    decision window of idle power in front of them."""
    now = int(time.time())
    step = int(store.settings.forecast_step_s)
    now -= now % step
    assert store.settings.decision_window_s // step > 2
    body = {"kind": "power", "name": "row", "servers": ["s1", "s2"], "budget_w": 600,
            "p_max_w": 300, "p_idle_w": 100, "policy": "polca"}
    assert http.post("/v1/targets", json=body).status_code == 201
    send(http, "s1", "server", "power_w", _flat(now, 2 * step, 250.0))
    send(http, "s2", "server", "power_w", _flat(now, 2 * step, 200.0))
    from service.store import targets as target_store

    with store.sessions() as session:
        target = target_store.get_target(session, "row")
    _, obs, _ = decisions.collect_power(store, target, now, None)
    assert obs.t == 2
    assert obs.history.tolist() == [[250.0, 200.0], [250.0, 200.0]]


def test_a_gap_right_after_the_first_sample_holds_that_sample(http, store):  # noqa: ANN001
    """Scaling demand: an empty bucket holds the value before it, also the second bucket."""
    now = int(time.time())
    step = int(store.settings.forecast_step_s)
    now -= now % step
    first = now - 10 * step
    pts = [(first + i, 4.0) for i in range(step)]  # bucket 0 only; buckets 1..2 empty
    pts += [(first + 3 * step + i, 6.0) for i in range(7 * step)]
    send(http, "web-vm", "vm", "cpu_cores", pts)
    assert http.post("/v1/targets", json=scaling_target()).status_code == 201
    from service.store import targets as target_store

    with store.sessions() as session:
        target = target_store.get_target(session, "web")
    _, obs, _ = decisions.collect_vm(store, target, now, None)
    assert obs.demand.tolist() == [4.0, 4.0, 4.0] + [6.0] * 7


def test_a_power_row_reads_one_bucket_when_the_window_is_one_step(http, settings_factory):  # noqa: ANN001
    from service.store import targets as target_store
    from service.store.db import Store

    store = Store(settings_factory(decision_history_s=60, forecast_step_s=60))
    try:
        now = int(time.time())
        now -= now % 60
        body = {"kind": "power", "name": "row", "servers": ["s1"], "budget_w": 600,
                "p_max_w": 300, "policy": "polca"}
        assert http.post("/v1/targets", json=body).status_code == 201
        send(http, "s1", "server", "power_w", _flat(now, 300, 250.0))
        with store.sessions() as session:
            target = target_store.get_target(session, "row")
        _, obs, _ = decisions.collect_power(store, target, now, None)
        assert obs.t == 1 and obs.history[:, 0].tolist() == [250.0]
    finally:
        store.close()
