"""The daemon at work: forecast refresh, decisions through policy.decide, the action log.

Jobs are called directly with ``now`` (no sleeping); the API is read over real HTTP.
"""

from __future__ import annotations

import time

import pytest

from policies import registry
from service import decisions, forecasting
from service.scheduler import DaemonContext, run_once
from service.store import model_registry as model_store
from tests.daemon.conftest import bearer, scaling_target, send

# both stores: JSON columns, upserts and the action log behave the same on each


def _flat(now: int, seconds: int, value: float) -> list[tuple[int, float]]:
    return [(now - seconds + i, value) for i in range(seconds)]


def test_hpa_target_recommends_hand_computed_replicas_and_logs_changes(http, store):
    now = int(time.time())
    send(http, "web-vm", "vm", "cpu_cores", _flat(now, 600, 7.0))
    assert http.post("/v1/targets", json=scaling_target()).status_code == 201
    r = http.get("/v1/recommendations/web")
    assert r.status_code == 200 and r.json()["ready"] is False  # nothing decided yet

    ctx = DaemonContext(store)
    assert run_once(ctx, "forecast", now) == "ok"
    rec = http.get("/v1/recommendations/web").json()
    # first decision: current = ceil(7 / 2) = 4; usage 7 / (4 * 2) = 0.875 with target 1.0
    # and tolerance 0 -> ceil(4 * 0.875) = 4
    assert rec["desired"] == {"replicas": 4}
    assert rec["valid"] and rec["policy"] == "hpa" and not rec["fallback"]
    assert rec["details"]["desired"] == 4 and rec["computed_at_unix"] == now
    acts = http.get("/v1/actions").json()["actions"]
    assert [(a["target"], a["changes"]) for a in acts] == [
        ("web", {"replicas": {"from": None, "to": 4}})
    ]

    # the same demand again: same setting, no new action
    decisions.decide_all(store, now + 15)
    assert len(http.get("/v1/actions").json()["actions"]) == 1

    # demand doubles to 15 cores: ceil(4 * 15 / 8) = 8 (HPA scales up at once)
    send(http, "web-vm", "vm", "cpu_cores", _flat(now + 60, 60, 15.0))
    http_rec_before = http.get("/v1/recommendations/web").json()
    assert http_rec_before["desired"] == {"replicas": 4}  # served from the stored decision
    decisions.decide_all(store, now + 60)
    assert http.get("/v1/keda/web").json()["desiredReplicas"] == 8
    acts = http.get("/v1/actions", params={"since": now + 30}).json()["actions"]
    assert [a["changes"] for a in acts] == [{"replicas": {"from": 4, "to": 8}}]

    # acknowledging: pending list empties, a second ack keeps the first time
    aid = acts[0]["id"]
    first = http.post(f"/v1/actions/{aid}/ack").json()
    assert first["acked"] and first["acked_by"] == "admin"
    again = http.post(f"/v1/actions/{aid}/ack", headers=bearer("act")).json()
    assert again["acked_at"] == first["acked_at"] and again["acked_by"] == "admin"
    pending = http.get("/v1/actions", params={"pending": "true"}).json()["actions"]
    assert [a["id"] for a in pending] == [1]
    r = http.get("/v1/actions", params={"since": "yesterday"})
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "since"
    r = http.post("/v1/actions/999/ack")
    assert r.status_code == 404 and "999" in r.json()["detail"]
    assert http.post(f"/v1/actions/{aid}/ack", headers=bearer("read")).status_code == 403


def test_forecast_endpoint_serves_mean_and_named_quantiles(http, store):
    now = int(time.time())
    now -= now % 15  # bucket boundaries: the last complete bucket ends at now
    send(http, "web-vm", "vm", "cpu_cores", _flat(now, 900, 3.0))
    res = forecasting.refresh(store, now)
    assert (res.series, res.forecasts, res.fallbacks) == (1, 1, 0)
    body = http.get("/v1/forecasts/web-vm", params={"metric": "cpu_cores", "horizon": 3}).json()
    assert body["model"] == "window-mean" and body["horizon"] == 3 and body["step_s"] == 15
    # constant history: every quantile is the level itself
    assert [s["ts"] for s in body["steps"]] == [now, now + 15, now + 30]
    for step in body["steps"]:
        assert {k: round(v, 9) for k, v in step.items() if k != "ts"} == {
            k: 3.0 for k in ("mean", "lo-90", "lo-80", "lo-50", "median", "hi-50", "hi-80",
                             "hi-90")
        }
    full = http.get("/v1/forecasts/web-vm", params={"metric": "cpu_cores"}).json()
    assert full["horizon"] == store.settings.forecast_horizon_steps
    r = http.get("/v1/forecasts/web-vm", params={"metric": "mem"})
    assert r.status_code == 404 and "'mem'" in r.json()["detail"]
    r = http.get("/v1/forecasts/web-vm")
    assert r.status_code == 422 and "metric" in r.json()["detail"]


def test_a_broken_model_yields_the_fallback_forecast_and_a_valid_decision(http, store, tmp_path):
    now = int(time.time())
    send(http, "web-vm", "vm", "cpu_cores", _flat(now, 600, 5.0))
    http.post("/v1/targets", json=scaling_target(policy="bayes", params={}))
    with store.write_sessions() as session, session.begin():  # current model, artifact gone
        model_store.register_model(session, forecasting.daemon_model_name("cpu_cores"), "v1",
                                  str(tmp_path / "missing"))
    ctx = DaemonContext(store)
    assert run_once(ctx, "forecast", now) == "ok"
    fc = http.get("/v1/forecasts/web-vm", params={"metric": "cpu_cores"}).json()
    assert fc["model"] == "fallback:last" and fc["fallback"] is True
    assert fc["steps"][0]["mean"] == pytest.approx(5.0)
    rec = http.get("/v1/recommendations/web").json()
    assert rec["valid"] is True and rec["desired"]["replicas"] >= 3  # 5 cores / 2 per replica


def test_a_policy_that_raises_keeps_the_setting_and_answers_200(http, store, monkeypatch):
    now = int(time.time())
    send(http, "web-vm", "vm", "cpu_cores", _flat(now, 600, 7.0))
    http.post("/v1/targets", json=scaling_target())
    decisions.decide_all(store, now)
    assert http.get("/v1/keda/web").json()["desiredReplicas"] == 4

    def boom(self, spec, obs, forecast, now, memory=None):  # noqa: ANN001, ANN202
        raise RuntimeError("model exploded")

    monkeypatch.setattr(registry.get("hpa", "vm"), "decide", boom)
    out = decisions.decide_all(store, now + 15)
    assert out[0].valid is False and out[0].fallback is True
    rec = http.get("/v1/recommendations/web")
    assert rec.status_code == 200
    body = rec.json()
    assert body["desired"] == {"replicas": 4} and body["fallback"] is True
    assert "model exploded" in body["why"] and "kept" in body["why"]
    assert len(http.get("/v1/actions").json()["actions"]) == 1  # no action for a kept setting


def test_serverless_keepalive_from_invocations_per_minute(http, store):
    now = int(time.time())
    now -= now % 60
    # 120 invocations in each of the last 5 minutes (2 per second for 60 s), 1 s each:
    # c = max(1, ceil(120 * 1 s / 60 s)) = 2 per minute -> keep-alive 10 min keeps 2 warm
    pts = [(now - 300 + i, 2.0) for i in range(300)]
    send(http, "fn-1", "function", "invocations", pts)
    r = http.post("/v1/targets", json={"kind": "serverless", "name": "fn", "entity": "fn-1",
                                        "memory_mb": 256, "duration_ms": 1000,
                                        "policy": "keepalive-10m"})
    assert r.status_code == 201, r.text
    decisions.decide_all(store, now)
    rec = http.get("/v1/recommendations/fn").json()
    assert rec["desired"] == {"warm": 2} and rec["kind"] == "serverless"
    assert http.get("/v1/keda/fn").json()["desiredReplicas"] == 2


def test_power_row_caps_then_uncaps_with_polca(http, store):
    now = int(time.time())
    now -= now % 15
    body = {"kind": "power", "name": "row", "servers": ["s1", "s2"], "budget_w": 600,
            "p_max_w": 300, "priorities": {"s1": "low"}, "policy": "polca"}
    assert http.post("/v1/targets", json=body).status_code == 201
    # row 250 + 250 = 500 W = 83 % of 600 W > t1 = 80 %: the low-priority s1 is capped at
    # cap1_low x nameplate = 0.75 x 300 = 225 W
    send(http, "s1", "server", "power_w", _flat(now, 120, 250.0))
    send(http, "s2", "server", "power_w", _flat(now, 120, 250.0))
    decisions.decide_all(store, now)
    assert http.get("/v1/recommendations/row").json()["desired"] == {"caps": {"s1": 225.0}}
    # row falls to 400 W = 67 % < 75 % (t1 - hysteresis): the cap is lifted
    send(http, "s1", "server", "power_w", _flat(now + 30, 30, 200.0))
    send(http, "s2", "server", "power_w", _flat(now + 30, 30, 200.0))
    decisions.decide_all(store, now + 30)
    acts = http.get("/v1/actions", params={"target": "row"}).json()["actions"]
    assert [a["changes"] for a in acts] == [
        {"cap": {"s1": 225.0}, "uncap": []},
        {"cap": {}, "uncap": ["s1"]},
    ]
    r = http.get("/v1/keda/row")
    assert r.status_code == 422 and "power target" in r.json()["detail"]


def test_a_target_without_data_gets_no_recommendation_and_no_action(http, store):
    """Invalid before any setting: recommend nothing rather than min_replicas (no scale-down)."""
    now = int(time.time())
    http.post("/v1/targets", json=scaling_target(min_replicas=1, policy="bayes", params={}))
    out = decisions.decide_all(store, now)
    assert [(o.valid, o.desired, o.action_id) for o in out] == [(False, {}, None)]
    rec = http.get("/v1/recommendations/web").json()
    assert rec["valid"] is False and rec["desired"] == {} and rec["why"]
    assert http.get("/v1/actions").json()["actions"] == []
    r = http.get("/v1/keda/web")
    assert r.status_code == 404 and "no valid decision yet" in r.json()["detail"]
    ext = http.get("/apis/external.metrics.k8s.io/v1beta1/namespaces/d/tidewise-desired-replicas")
    assert ext.json()["items"] == []


def test_policy_memory_is_stored_as_json_and_a_pickle_row_is_never_unpickled(
    http, store, tmp_path
):
    import base64
    import pickle

    from sqlalchemy import select, update

    from service.store.tables import DecisionRecord

    now = int(time.time())
    send(http, "web-vm", "vm", "cpu_cores", _flat(now, 600, 7.0))
    assert http.post("/v1/targets", json=scaling_target()).status_code == 201
    decisions.decide_all(store, now)
    with store.sessions() as session:
        row = session.execute(select(DecisionRecord.memory)).one()
    # hpa's memory is (recommendations, events): tuples, stored as tagged JSON beside the
    # forecaster's state (hpa reads no forecast: none)
    assert row.memory["policy"]["__tw__"] == "tuple" and row.memory["forecaster"] is None
    assert "pickle" not in str(row.memory)

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = {"pickle": base64.b64encode(pickle.dumps(Evil())).decode()}
    with store.write_sessions() as session, session.begin():
        session.execute(update(DecisionRecord).values(memory=evil))
    out = decisions.decide_all(store, now + 15)
    assert [o.valid for o in out] == [True] and not marker.exists()


def test_the_job_reads_every_targets_last_decision_in_one_batch(http, store, monkeypatch):
    """``latest_decisions`` gives what ``latest_decision`` gives, per target (none for a
    target not yet decided); the forecast job reads them so, not one per target, and a
    failing batch read falls back to the per-target reads."""
    from service.store import decisions as decision_store
    from service.store import targets as target_store

    now = int(time.time())
    for name in ("a", "b"):
        send(http, f"{name}-vm", "vm", "cpu_cores", _flat(now, 600, 7.0))
        body = scaling_target(name=name, entity=f"{name}-vm")
        assert http.post("/v1/targets", json=body).status_code == 201
    ctx = DaemonContext(store)  # one daemon: every shard, every run
    assert run_once(ctx, "forecast", now) == "ok"
    send(http, "c-vm", "vm", "cpu_cores", _flat(now, 600, 7.0))
    assert http.post("/v1/targets", json=scaling_target(name="c", entity="c-vm")).status_code == 201
    with store.sessions() as session:
        ids = {t.name: t.id for t in target_store.list_targets(session)}
        got = decision_store.latest_decisions(session, [*ids.values(), 10**6])
        one = {n: decision_store.latest_decision(session, i) for n, i in ids.items()}
    assert set(got) == {ids["a"], ids["b"]} and one["c"] is None
    for n in ("a", "b"):
        assert got[ids[n]].computed_at == one[n].computed_at == now
        assert got[ids[n]].memory == one[n].memory and got[ids[n]].desired == one[n].desired

    singles: list[int] = []
    real = decision_store.latest_decision
    monkeypatch.setattr(decision_store, "latest_decision",
                        lambda s, i: singles.append(i) or real(s, i))
    assert run_once(ctx, "forecast", now + 15) == "ok"
    assert singles == []  # the batch served all three
    monkeypatch.setattr(decision_store, "latest_decisions",
                        lambda s, i: (_ for _ in ()).throw(RuntimeError("store busy")))
    assert run_once(ctx, "forecast", now + 30) == "ok"
    assert sorted(singles) == sorted(ids.values())  # each read its own
    recs = {n: http.get(f"/v1/recommendations/{n}").json() for n in ids}
    assert {n: r["computed_at_unix"] for n, r in recs.items()} == dict.fromkeys(ids, now + 30)
    assert all(r["valid"] for r in recs.values())
